#!/usr/bin/env python3
"""The kube store at cluster scale: udpringd against N Nodes.

Run by scripts/bench-kube-scale.sh, which says what is measured. One node
namespace and one "lan" namespace with the API server stand-in
(tests/support/kube_api_server.py) over TLS; the Nodes are shaped like real
ones (images, managedFields, addresses, capacity: ~9 KB of JSON each).
Everything made here is deleted at the end, also on failure.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER = os.path.join(ROOT, "tests", "support", "kube_api_server.py")
ADMIN = "admin-token"
TOKEN = "flannel-token"
ROLE = ["pods/get", "nodes/get", "nodes/list", "nodes/watch", "nodes/status/patch"]
PREFIX = "flannel.alpha.coreos.com/"
TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) ")


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, text=True, capture_output=True, **kw).stdout


def log(msg):
    print("[bench-kube-scale] " + msg, file=sys.stderr, flush=True)


def stamp(line):
    m = TS.match(line)
    if not m:
        return None
    t = time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")
    return time.mktime(t) + int(m.group(1)[20:]) / 1000.0


def realistic_node(i, name, cidr, ip, annotated=True):
    """A Node about the size of a kubelet-registered one."""
    images = [{"names": ["registry.example.com/team-%d/app-%d@sha256:%064x" % (i % 7, k, i * 100 + k),
                         "registry.example.com/team-%d/app-%d:v1.%d.%d" % (i % 7, k, k, i % 10)],
               "sizeBytes": 50000000 + k * 1234567} for k in range(30)]
    managed = [{"manager": m, "operation": "Update", "apiVersion": "v1", "time": "2026-12-01T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"%s\"}" % c: {
                    ".": {}, "f:lastHeartbeatTime": {}, "f:lastTransitionTime": {}, "f:message": {},
                    "f:reason": {}, "f:status": {}, "f:type": {}} for c in
                    ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")}}}}
               for m in ("kubelet", "kube-controller-manager", "flanneld")]
    ann = {"node.alpha.kubernetes.io/ttl": "0",
           "volumes.kubernetes.io/controller-managed-attach-detach": "true"}
    if annotated:
        ann.update({PREFIX + "kube-subnet-manager": "true", PREFIX + "backend-type": "",
                    PREFIX + "backend-data": "null", PREFIX + "public-ip": ip})
    return {
        "metadata": {"name": name, "annotations": ann, "managedFields": managed,
                     "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                "kubernetes.io/hostname": name,
                                "node.kubernetes.io/instance-type": "m5.large",
                                "topology.kubernetes.io/zone": "zone-%d" % (i % 3)}},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "providerID": "example://%s" % name},
        "status": {
            "capacity": {"cpu": "2", "memory": "8049136Ki", "pods": "110", "ephemeral-storage": "81106868Ki"},
            "allocatable": {"cpu": "2", "memory": "7946736Ki", "pods": "110", "ephemeral-storage": "74748856001"},
            "conditions": [{"type": c, "status": "False" if c != "Ready" else "True",
                            "reason": "Kubelet" + c, "message": "kubelet reports " + c,
                            "lastHeartbeatTime": "2026-12-01T00:00:00Z",
                            "lastTransitionTime": "2026-12-01T00:00:00Z"}
                           for c in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "%032x" % i, "systemUUID": "%032x" % (i + 1), "bootID": "%032x" % (i + 2),
                         "kernelVersion": "6.1.0-27-amd64", "osImage": "Debian GNU/Linux 12 (bookworm)",
                         "containerRuntimeVersion": "containerd://1.6.20", "kubeletVersion": "v1.31.2",
                         "kubeProxyVersion": "v1.31.2", "operatingSystem": "linux", "architecture": "amd64"},
            "images": images,
        },
    }


def peer_cidr(i):
    return "10.%d.%d.0/24" % (1 + i // 256, i % 256)


def peer_ip(i, gen=0):
    return "172.%d.%d.%d" % (16 + gen, (i // 250) % 250, 1 + i % 250)


class Rig:
    def __init__(self, work, binary):
        self.work, self.binary = work, binary
        tag = "ukb%d" % os.getpid()
        self.lan, self.node = tag + "l", tag + "n"
        self.procs = []
        sh("ip netns add %s && ip netns add %s" % (self.lan, self.node))
        sh("ip link add u0 netns %s type veth peer name v0 netns %s" % (self.node, self.lan))
        for ns, addr, dev in ((self.lan, "192.168.79.1/24", "v0"), (self.node, "192.168.79.2/24", "u0")):
            sh("ip -n %s addr add %s dev %s && ip -n %s link set %s up && ip -n %s link set lo up"
               % (ns, addr, dev, ns, dev, ns))
        pki = os.path.join(work, "pki")
        os.makedirs(pki)
        q = " >/dev/null 2>&1"
        sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout %s/ca.key -out %s/ca.crt%s"
           % (pki, pki, q))
        sh("openssl req -newkey rsa:2048 -nodes -subj /CN=server -keyout %s/server.key -out %s/server.csr%s"
           % (pki, pki, q))
        with open(os.path.join(pki, "ext"), "w") as f:
            f.write("subjectAltName=IP:192.168.79.1\nextendedKeyUsage=serverAuth\n")
        sh("openssl x509 -req -days 2 -in %s/server.csr -CA %s/ca.crt -CAkey %s/ca.key -CAcreateserial "
           "-extfile %s/ext -out %s/server.crt%s" % (pki, pki, pki, pki, pki, q))
        self.ca = os.path.join(pki, "ca.crt")
        self.kubeconfig = os.path.join(work, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: b\n  cluster:\n"
                    "    server: https://192.168.79.1:6443\n    certificate-authority: %s\n"
                    "users:\n- name: f\n  user:\n    token: %s\ncontexts:\n- name: b\n  context:\n"
                    "    cluster: b\n    user: f\ncurrent-context: b\n" % (self.ca, TOKEN))
        with open(os.path.join(work, "net-conf.json"), "w") as f:
            f.write('{"Network":"10.0.0.0/8","Backend":{"Type":"udp"}}')

    def start_api(self):
        cfg = os.path.join(self.work, "api.json")
        with open(cfg, "w") as f:
            json.dump({"admin_token": ADMIN, "users": {TOKEN: {"name": "flannel", "allow": ROLE}},
                       "bookmark_s": 60}, f)
        out = open(os.path.join(self.work, "api.log"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", self.lan, "python3", SERVER, "--listen", "192.168.79.1:6443",
                              "--cert", self.work + "/pki/server.crt", "--key", self.work + "/pki/server.key",
                              "--config", cfg], stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(p)
        for _ in range(100):
            try:
                self.call("GET", "/_test/healthz")
                return p
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        raise RuntimeError("the API stand-in did not start")

    def call(self, method, path, body=None):
        data = os.path.join(self.work, "body.json")
        cmd = ("ip netns exec %s curl -sf --max-time 120 --cacert %s -X %s -H 'Authorization: Bearer %s' "
               % (self.lan, self.ca, method, ADMIN))
        if body is not None:
            with open(data, "w") as f:
                json.dump(body, f)
            cmd += "-H 'Content-Type: application/json' --data-binary @%s " % data
        return json.loads(sh(cmd + "'https://192.168.79.1:6443%s'" % path))

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        for ns in (self.node, self.lan):
            subprocess.run("ip netns pids %s 2>/dev/null | xargs -r kill -9; ip netns del %s" % (ns, ns),
                           shell=True, stderr=subprocess.DEVNULL)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(rig, name):
    out = sh("ip netns exec %s curl -s http://127.0.0.1:9190/metrics" % rig.node)
    for line in out.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def one_run(args, nodes, events):
    work = tempfile.mkdtemp(prefix="udpring-kube-scale-")
    rig = Rig(work, args.binary)
    try:
        rig.start_api()
        rig.call("POST", "/_test/nodes", [realistic_node(0, "self", "10.0.0.0/24", "192.168.79.2", annotated=False)])
        batch = []
        for i in range(1, nodes):
            batch.append(realistic_node(i, "node-%05d" % i, peer_cidr(i), peer_ip(i)))
            if len(batch) == 500 or i == nodes - 1:
                rig.call("POST", "/_test/nodes", batch)
                batch = []
        log_path = os.path.join(work, "udpringd.log")
        out = open(log_path, "w")
        t0 = time.time()
        d = subprocess.Popen(["ip", "netns", "exec", rig.node, "env", "NODE_NAME=self", args.binary,
                              "--kube-subnet-mgr", "--kubeconfig-file=" + rig.kubeconfig,
                              "--net-config-path=" + work + "/net-conf.json", "--iface=u0", "--workers=1",
                              "--subnet-file=" + work + "/subnet.env", "--healthz-port=9190",
                              "--iptables-forward-rules=false"], stdout=out, stderr=subprocess.STDOUT)
        rig.procs.insert(0, d)
        deadline = time.time() + 120
        text = ""
        while "udpringd ready" not in text:
            if d.poll() is not None or time.time() > deadline:
                raise RuntimeError("udpringd did not become ready:\n" + open(log_path).read()[-3000:])
            time.sleep(0.02)
            text = open(log_path).read()
        start_to_ready = time.time() - t0
        # `ip netns exec` execs the daemon: its pid is the child's.
        pid = d.pid
        lines = text.splitlines()
        at = {}
        for key in ("from node self's podCIDR", "listed nodes at", "udpringd ready"):
            at[key] = next(stamp(l) for l in lines if key in l)
        result = {"nodes": nodes, "start_to_ready_s": start_to_ready,
                  "list_to_ready_s": at["udpringd ready"] - at["from node self's podCIDR"],
                  "listed_to_ready_s": at["udpringd ready"] - at["listed nodes at"],
                  "cpu_to_ready_s": cpu_ticks(pid) / os.sysconf("SC_CLK_TCK"),
                  "rss_mib": rss_kib(pid) / 1024.0}
        if events:
            # `events` MODIFIED events: peers move to new public IPs, so
            # each one is a route change the daemon must apply.
            cpu0 = cpu_ticks(pid)
            t1 = time.time()
            n = min(events, nodes - 1)
            patches = {"node-%05d" % i: {"metadata": {"annotations": {PREFIX + "public-ip": peer_ip(i, 1)}}}
                       for i in range(1, n + 1)}
            rig.call("POST", "/_test/patch-nodes", patches)
            while open(log_path).read().count(" -> 172.17.") < n:
                if time.time() - t1 > 120:
                    raise RuntimeError("the daemon did not apply the events")
                time.sleep(0.05)
            ticks = cpu_ticks(pid) - cpu0
            hz = os.sysconf("SC_CLK_TCK")
            result.update({"events": n, "events_s": time.time() - t1,
                           "cpu_ms_per_1000_events": ticks * 1000.0 / hz * 1000.0 / n,
                           "rss_after_events_mib": rss_kib(pid) / 1024.0,
                           "relists": metric(rig, "udpring_lease_relists_total"),
                           "routes": metric(rig, "udpring_routes")})
        d.terminate()
        d.wait(10)
        return result
    finally:
        rig.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--small", type=int, default=2)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    runs = []
    for r in range(args.rounds):
        for n, ev in ((args.small, 0), (args.nodes, args.events)):
            log("round %d/%d: %d nodes" % (r + 1, args.rounds, n))
            res = one_run(args, n, ev)
            res["round"] = r + 1
            log("  " + json.dumps(res))
            runs.append(res)
    big = [x for x in runs if x["nodes"] == args.nodes]
    small = [x for x in runs if x["nodes"] == args.small]
    med = lambda rows, k: statistics.median(x[k] for x in rows)
    summary = {
        "nodes": args.nodes, "rounds": args.rounds,
        "list_to_ready_s": med(big, "list_to_ready_s"),
        "start_to_ready_s": med(big, "start_to_ready_s"),
        "start_to_ready_small_s": med(small, "start_to_ready_s"),
        "listed_to_ready_s": med(big, "listed_to_ready_s"),
        "cpu_to_ready_s": med(big, "cpu_to_ready_s"),
        "cpu_to_ready_small_s": med(small, "cpu_to_ready_s"),
        "rss_mib": med(big, "rss_mib"), "rss_small_mib": med(small, "rss_mib"),
        "rss_extra_mib": med(big, "rss_mib") - med(small, "rss_mib"),
        "rss_after_events_mib": med(big, "rss_after_events_mib"),
        "cpu_ms_per_1000_events": med(big, "cpu_ms_per_1000_events"),
        "relists_during_events": max(x["relists"] for x in big),
        "routes": med(big, "routes"),
    }
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], text=True,
                            capture_output=True).stdout.strip()
    print("bench-kube-scale, %s, code at %s, %s" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                    commit, args.binary))
    print("\n%d nodes, median of %d rounds (each against %d nodes in the same round):" %
          (args.nodes, args.rounds, args.small))
    print("  ready after the node list began:  %.2f s   (target <= 2 s)" % summary["list_to_ready_s"])
    print("  start to ready:                   %.2f s   (%d nodes: %.2f s)" %
          (summary["start_to_ready_s"], args.small, summary["start_to_ready_small_s"]))
    print("  last page parsed to ready:        %.3f s" % summary["listed_to_ready_s"])
    print("  udpringd CPU until ready:         %.2f s   (%d nodes: %.2f s); the rest of the wait is"
          " the API server building the pages" %
          (summary["cpu_to_ready_s"], args.small, summary["cpu_to_ready_small_s"]))
    print("  RSS when ready:                   %.1f MiB (%d nodes: %.1f MiB; +%.1f MiB, target <= 32)" %
          (summary["rss_mib"], args.small, summary["rss_small_mib"], summary["rss_extra_mib"]))
    print("  RSS after %d events:            %.1f MiB" % (args.events, summary["rss_after_events_mib"]))
    print("  CPU per 1,000 watch events:       %.1f ms" % summary["cpu_ms_per_1000_events"])
    print("  re-lists during the events:       %d  (target 0)   routes: %d" %
          (summary["relists_during_events"], summary["routes"]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "runs": runs}, f, indent=2)


if __name__ == "__main__":
    main()
