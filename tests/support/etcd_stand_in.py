#!/usr/bin/env python3
"""An etcd v3 JSON gateway stand-in for udpringd's control-input tests.

Real etcd (Debian's etcd-server, used by etcd_leases_test) only ever sends
well-formed answers. This one answers the calls udpringd makes the way
etcd's gateway does (int64s as strings, keys and values base64, false and
empty members left out, one JSON message per line on /v3/watch), and on
demand answers them wrong instead: a test queues "rules" of answers (any
bytes, or holding the request without an answer) for a path, a key and a
client address, which are served before the sane answers.

Calls: /v3/auth/authenticate, /v3/kv/range, /v3/kv/txn (compares on
VERSION and LEASE, requestPut), /v3/kv/deleterange, /v3/lease/grant,
/v3/lease/revoke (deletes the keys on the lease), /v3/watch (a stream of
the changes from start_revision on, which ends when the test closes it).

Test controls (no auth):
  POST /_test/rules    {"rules": [{"path": P, "key": K, "client": IP,
                        "after": N, "answers": [{"status": S, "body": B} |
                        {"hang": SECONDS}]}]}   key, client, after optional;
                        "after": let N matching calls through first
  POST /_test/put      {"key": K, "value": V}   (no etcd lease)
  POST /_test/raw_kvs  {"kvs": [...]}  appended to every range answer
                        under the subnets prefix, as they are
  GET  /_test/stats    {"served": n, "pending": n, "held": {path: n}}
  GET  /_test/healthz

Usage: etcd_stand_in.py --listen IP:PORT
"""

import argparse
import base64
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s):
    return base64.b64decode(s or "")


class Store:
    def __init__(self):
        self.lock = threading.Condition()
        self.rev = 1
        self.kvs = {}      # key bytes -> {"value", "lease", "create", "mod", "version"}
        self.history = []  # (rev, "PUT"|"DELETE", key, kv copy)
        self.leases = {}   # id -> ttl
        self.rules = []
        self.raw_kvs = []
        self.served = 0
        self.held = {}     # path -> calls held now

    def header(self):
        return {"cluster_id": "1", "member_id": "1", "revision": str(self.rev), "raft_term": "2"}

    @staticmethod
    def kv_json(key, kv):
        out = {"key": b64(key), "create_revision": str(kv["create"]),
               "mod_revision": str(kv["mod"]), "version": str(kv["version"]),
               "value": b64(kv["value"])}
        if kv["lease"]:
            out["lease"] = str(kv["lease"])
        return out

    def put(self, key, value, lease):
        self.rev += 1
        old = self.kvs.get(key)
        kv = {"value": value, "lease": lease, "create": old["create"] if old else self.rev,
              "mod": self.rev, "version": old["version"] + 1 if old else 1}
        self.kvs[key] = kv
        self.history.append((self.rev, "PUT", key, dict(kv)))
        self.lock.notify_all()

    def delete(self, key):
        if key not in self.kvs:
            return 0
        self.rev += 1
        kv = self.kvs.pop(key)
        kv = dict(kv, mod=self.rev)
        self.history.append((self.rev, "DELETE", key, kv))
        self.lock.notify_all()
        return 1

    def keys_in(self, key, range_end):
        if not range_end:
            return [key] if key in self.kvs else []
        return sorted(k for k in self.kvs if key <= k < range_end)

    # The next queued answer for this call, or None for the sane one.
    def take_rule(self, path, key, client):
        with self.lock:
            for rule in self.rules:
                if rule["path"] != path or not rule["answers"]:
                    continue
                if rule.get("key") and rule["key"].encode() != key:
                    continue
                if rule.get("client") and rule["client"] != client:
                    continue
                if rule.get("after", 0) > 0:
                    rule["after"] -= 1
                    return None
                self.served += 1
                return rule["answers"].pop(0)
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        print("%s %s" % (self.client_address[0], fmt % args), flush=True)

    def reply(self, obj, status=200):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        st = self.server.store
        if self.path == "/_test/healthz":
            return self.reply({"ok": True})
        if self.path == "/_test/stats":
            with st.lock:
                pending = sum(len(r["answers"]) for r in st.rules)
                return self.reply({"served": st.served, "pending": pending, "held": st.held})
        self.reply({"error": "not found"}, 404)

    def do_POST(self):
        st = self.server.store
        length = int(self.headers.get("Content-Length") or 0)
        req = json.loads(self.rfile.read(length) or b"{}")
        path = self.path
        if path.startswith("/_test/"):
            return self.control(path, req)
        key = unb64((req.get("create_request") or req).get("key", ""))
        answer = st.take_rule(path, key, self.client_address[0])
        if answer is not None:
            return self.sabotage(path, answer)
        handler = {
            "/v3/auth/authenticate": self.authenticate,
            "/v3/kv/range": self.range,
            "/v3/kv/txn": self.txn,
            "/v3/kv/deleterange": self.deleterange,
            "/v3/lease/grant": self.grant,
            "/v3/lease/revoke": self.revoke,
            "/v3/watch": self.watch,
        }.get(path)
        if handler is None:
            return self.reply({"error": "Not Found", "code": 5}, 404)
        handler(req)

    def sabotage(self, path, answer):
        st = self.server.store
        if "hang" in answer:
            with st.lock:
                st.held[path] = st.held.get(path, 0) + 1
            try:
                time.sleep(answer["hang"])
            finally:
                with st.lock:
                    st.held[path] -= 1
            try:
                return self.reply({"error": "held"}, 503)
            except OSError:
                return  # the client gave up long ago
        body = answer["body"].encode()
        if path == "/v3/watch":
            # One message of the stream, then the stream ends.
            self.send_response(answer.get("status", 200))
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return
        self.reply(body, answer.get("status", 200))

    def control(self, path, req):
        st = self.server.store
        with st.lock:
            if path == "/_test/rules":
                for r in req["rules"]:
                    st.rules.append(dict(r, answers=list(r["answers"])))
            elif path == "/_test/put":
                st.put(req["key"].encode(), req["value"].encode(), 0)
            elif path == "/_test/raw_kvs":
                st.raw_kvs = req["kvs"]
            else:
                return self.reply({"error": "no such control"}, 404)
        self.reply({"ok": True})

    def authenticate(self, req):
        self.reply({"header": self.server.store.header(), "token": "stand-in-token.%d" % random.randrange(1 << 30)})

    def range(self, req):
        st = self.server.store
        key, end = unb64(req.get("key")), unb64(req.get("range_end"))
        with st.lock:
            keys = st.keys_in(key, end)
            out = {"header": st.header()}
            kvs = [st.kv_json(k, st.kvs[k]) for k in keys]
            if end and key.endswith(b"/subnets/"):
                kvs += st.raw_kvs
            if kvs:
                out["kvs"] = kvs
                out["count"] = str(len(kvs))
        self.reply(out)

    def txn(self, req):
        st = self.server.store
        with st.lock:
            ok = True
            for c in req.get("compare", []):
                kv = st.kvs.get(unb64(c["key"]))
                if c["target"] == "VERSION":
                    have, want = (kv["version"] if kv else 0), int(c.get("version", 0))
                elif c["target"] == "LEASE":
                    have, want = (kv["lease"] if kv else 0), int(c.get("lease", 0))
                else:
                    return self.reply({"error": "unsupported compare", "code": 3}, 400)
                ok = ok and have == want
            if ok:
                for op in req.get("success", []):
                    put = op["requestPut"]
                    lease = int(put.get("lease", 0))
                    if lease and lease not in st.leases:
                        return self.reply({"error": "etcdserver: requested lease not found", "code": 5}, 404)
                    st.put(unb64(put["key"]), unb64(put["value"]), lease)
            out = {"header": st.header()}
            if ok:
                out["succeeded"] = True  # false is left out, as the gateway does
        self.reply(out)

    def deleterange(self, req):
        st = self.server.store
        with st.lock:
            n = sum(st.delete(k) for k in st.keys_in(unb64(req.get("key")), unb64(req.get("range_end"))))
            out = {"header": st.header()}
            if n:
                out["deleted"] = str(n)
        self.reply(out)

    def grant(self, req):
        st = self.server.store
        with st.lock:
            lease = random.randrange(1, 1 << 62)
            st.leases[lease] = int(req.get("TTL", 0))
            self.reply({"header": st.header(), "ID": str(lease), "TTL": str(req.get("TTL", 0))})

    def revoke(self, req):
        st = self.server.store
        with st.lock:
            lease = int(req.get("ID", 0))
            if st.leases.pop(lease, None) is None:
                return self.reply({"error": "etcdserver: requested lease not found", "code": 5}, 404)
            for k in [k for k, kv in st.kvs.items() if kv["lease"] == lease]:
                st.delete(k)
            self.reply({"header": st.header()})

    def watch(self, req):
        st = self.server.store
        create = req.get("create_request", {})
        key, end = unb64(create.get("key")), unb64(create.get("range_end"))
        start = int(create.get("start_revision", 0) or 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def send(obj):
            self.wfile.write(json.dumps(obj).encode() + b"\n")
            self.wfile.flush()

        with st.lock:
            send({"result": {"header": st.header(), "created": True}})
            sent = start - 1
            while True:
                events = []
                for rev, kind, k, kv in st.history:
                    if rev > sent and key <= k < end:
                        ev = {"kv": st.kv_json(k, kv)}
                        if kind == "DELETE":
                            ev["type"] = "DELETE"
                            ev["kv"] = {"key": b64(k), "mod_revision": str(rev)}
                        events.append(ev)
                sent = st.rev
                if events:
                    try:
                        send({"result": {"header": st.header(), "events": events}})
                    except OSError:
                        return
                st.lock.wait(1.0)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr):
        super().__init__(addr, Handler)
        self.store = Store()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True, help="IP:PORT")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = Server((host, int(port)))
    print("etcd stand-in listening on http://%s:%s" % (host, port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
