#!/usr/bin/env python3
"""A Kubernetes API server stand-in for udpringd's kube-mode tests.

No API server is packaged for Debian, so the tests run this one. It keeps
the semantics a client can get wrong, the way kube-apiserver has them:

- HTTPS only, bearer tokens (401 for a missing or unknown one), and RBAC
  per (resource, verb) with the real 403 message;
- Nodes and Pods with metadata.resourceVersion from one cluster-wide
  counter; lists of Nodes paginated with limit/continue from a consistent
  snapshot, the continue token expiring with compaction (410);
- watch streams (chunked, one JSON event per line) of ADDED, MODIFIED,
  DELETED, BOOKMARK (allowWatchBookmarks) from a resourceVersion, ERROR
  410 Expired when that version was compacted away, ended after
  timeoutSeconds;
- PATCH with the three patch types: strategic merge (lists of conditions
  and addresses merge by their key; null deletes), JSON merge (lists are
  replaced whole) and JSON patch; the status subresource keeps spec, the
  main resource keeps status;
- test controls under /_test/ (admin token only): compact the history,
  change a user's permissions, pause or end every open watch, create or
  patch many nodes at once, queue raw answers (any bytes) that a call of
  a user other than the admin gets instead of the real one.

Usage: kube_api_server.py --listen IP:PORT --cert F --key F --config F
The config is JSON: {"admin_token": T, "users": {TOKEN: {"name": N,
"allow": ["nodes/get", "nodes/status/patch", ...]}}, "bookmark_s": 1}.
"""

import argparse
import base64
import copy
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Strategic-merge keys of the list fields a Node or Pod carries.
MERGE_KEYS = {
    ("status", "conditions"): "type",
    ("status", "addresses"): "type",
    ("spec", "taints"): "key",
}


class ApiError(Exception):
    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


class Store:
    """Objects by kind and key, a resourceVersion counter and the event history.

    A stored object is never changed in place (a write stores a new one),
    so lists, snapshots and the history share them without copies.
    """

    def __init__(self):
        self.lock = threading.Condition()
        self.rv = 100
        self.objects = {"nodes": {}, "pods": {}}
        self.history = []        # (rv, type, kind, object) for watches
        self.compacted = 0       # versions at or below this are gone
        self.snapshots = {}      # list snapshot rv -> sorted nodes
        self.generation = 0      # bumped to end every open watch
        self.paused = False      # watches hold their events (to make a client miss some)
        self.sabotage = []       # queued raw answers: {method, path, watch, client?, body, status?}

    def _bump(self, kind, etype, obj):
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, etype, kind, obj))
        self.lock.notify_all()

    def create(self, kind, key, obj):
        with self.lock:
            if key in self.objects[kind]:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (kind, key))
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", "uid-%s-%d" % (key.replace("/", "-"), self.rv + 1))
            meta.setdefault("creationTimestamp", now())
            obj.setdefault("spec", {})
            obj.setdefault("status", {})
            self.objects[kind][key] = obj
            self._bump(kind, "ADDED", obj)
            return copy.deepcopy(obj)

    def get(self, kind, key):
        with self.lock:
            obj = self.objects[kind].get(key)
            if obj is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (kind, key.split("/")[-1]))
            return copy.deepcopy(obj)

    def update(self, kind, key, fn):
        with self.lock:
            old = self.objects[kind].get(key)
            if old is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (kind, key.split("/")[-1]))
            new = fn(copy.deepcopy(old))
            new["metadata"]["name"] = old["metadata"]["name"]
            new["metadata"]["uid"] = old["metadata"]["uid"]
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return copy.deepcopy(old)  # a no-op write does not bump the version
            self.objects[kind][key] = new
            self._bump(kind, "MODIFIED", new)
            return copy.deepcopy(new)

    def delete(self, kind, key):
        with self.lock:
            obj = self.objects[kind].pop(key, None)
            if obj is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (kind, key.split("/")[-1]))
            self._bump(kind, "DELETED", obj)
            return copy.deepcopy(obj)

    def compact(self):
        with self.lock:
            self.compacted = self.rv
            self.history = []
            self.snapshots = {}
            return self.rv


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def strategic_merge(old, patch, path=()):
    if not isinstance(patch, dict) or not isinstance(old, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(old)
    for k, v in patch.items():
        if k.startswith("$"):
            continue  # directives ($patch, $retainKeys) are not used by flannel
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and (path + (k,)) in MERGE_KEYS:
            key = MERGE_KEYS[path + (k,)]
            merged = list(copy.deepcopy(out.get(k) or []))
            for item in v:
                for i, cur in enumerate(merged):
                    if isinstance(cur, dict) and isinstance(item, dict) and cur.get(key) == item.get(key):
                        merged[i] = strategic_merge(cur, item, path + (k,))
                        break
                else:
                    merged.append(copy.deepcopy(item))
            out[k] = merged
        elif isinstance(v, dict):
            out[k] = strategic_merge(out.get(k) if isinstance(out.get(k), dict) else {}, v, path + (k,))
        else:
            out[k] = copy.deepcopy(v)
    return out


def json_merge(old, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(old) if isinstance(old, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = json_merge(out.get(k), v)
    return out


def json_patch(old, ops):
    doc = copy.deepcopy(old)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                else:
                    parent.insert(int(last), op["value"]) if op["op"] == "add" else parent.__setitem__(int(last), op["value"])
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            raise ApiError(422, "Invalid", "unsupported JSON patch op " + op["op"])
    return doc


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, ctx, config, store):
        self.ctx, self.config, self.store = ctx, config, store
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        err = sys.exc_info()[1]
        if not isinstance(err, (ssl.SSLError, ConnectionError, BrokenPipeError, socket.timeout)):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        # The TLS handshake happens here, on the connection's own thread.
        self.request = self.server.ctx.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, fmt, *args):
        sys.stderr.write("api: %s %s\n" % (self.address_string(), fmt % args))

    # -- plumbing ----------------------------------------------------------
    def send_json(self, code, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise ApiError(400, "BadRequest", "the request body is not JSON")

    def user(self):
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        cfg = self.server.config
        if token and token == cfg.get("admin_token"):
            return {"name": "admin", "admin": True}
        u = cfg.get("users", {}).get(token) if token else None
        if not u:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return u

    def authorize(self, user, resource, verb, name=None, namespace=None):
        if user.get("admin") or (resource + "/" + verb) in user.get("allow", []):
            return
        what = '%s "%s"' % (resource.split("/")[0], name) if name else resource.split("/")[0]
        scope = 'in the namespace "%s"' % namespace if namespace else "at the cluster scope"
        raise ApiError(403, "Forbidden", '%s is forbidden: User "%s" cannot %s resource "%s" in API group "" %s'
                       % (what, user["name"], verb, resource, scope))

    def handle_any(self, method):
        try:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            parts = [p for p in url.path.split("/") if p]
            user = self.user()
            if parts[:1] == ["_test"]:
                if not user.get("admin"):
                    raise ApiError(403, "Forbidden", "test controls need the admin token")
                return self.test_control(method, parts[1:])
            if not user.get("admin") and self.sabotaged(method, url.path, query):
                return
            if parts[:2] != ["api", "v1"]:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            rest = parts[2:]
            if rest[:1] == ["nodes"]:
                return self.nodes(method, user, rest[1:], query)
            if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] == "pods":
                return self.pods(method, user, rest[1], rest[3:])
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        except ApiError as e:
            self.send_json(e.code, e.status())
        except (BrokenPipeError, ConnectionError, ssl.SSLError):
            pass

    do_GET = lambda self: self.handle_any("GET")
    do_POST = lambda self: self.handle_any("POST")
    do_PUT = lambda self: self.handle_any("PUT")
    do_PATCH = lambda self: self.handle_any("PATCH")
    do_DELETE = lambda self: self.handle_any("DELETE")

    def sabotaged(self, method, path, query):
        """Sends the first raw answer queued for this call, if any."""
        store = self.server.store
        watch = query.get("watch") in ("true", "1")
        client = self.client_address[0]
        with store.lock:
            for i, s in enumerate(store.sabotage):
                if (s["method"], s["path"], s.get("watch", False)) == (method, path, watch) and \
                        s.get("client", client) == client:
                    del store.sabotage[i]
                    break
            else:
                return False
        body = s["body"].encode()
        self.send_response(s.get("status", 200))
        self.send_header("Content-Type", "application/json")
        if watch:  # one chunk of the stream, then its end
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.wfile.flush()
        return True

    # -- nodes --------------------------------------------------------------
    def nodes(self, method, user, rest, query):
        store = self.server.store
        if not rest:
            if method == "GET" and query.get("watch") in ("true", "1"):
                self.authorize(user, "nodes", "watch")
                return self.watch(query)
            if method == "GET":
                self.authorize(user, "nodes", "list")
                return self.send_json(200, self.list_nodes(query))
            if method == "POST":
                self.authorize(user, "nodes", "create")
                obj = self.body() or {}
                obj.setdefault("kind", "Node")
                obj.setdefault("apiVersion", "v1")
                name = obj.get("metadata", {}).get("name")
                if not name:
                    raise ApiError(422, "Invalid", "metadata.name: Required value")
                return self.send_json(201, store.create("nodes", name, obj))
            raise ApiError(405, "MethodNotAllowed", "method not allowed")
        name, sub = rest[0], (rest[1] if len(rest) > 1 else None)
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        resource = "nodes/status" if sub else "nodes"
        if method == "GET":
            self.authorize(user, resource, "get", name)
            return self.send_json(200, store.get("nodes", name))
        if method == "DELETE":
            self.authorize(user, "nodes", "delete", name)
            store.delete("nodes", name)
            return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
        if method in ("PATCH", "PUT"):
            self.authorize(user, resource, "patch" if method == "PATCH" else "update", name)
            return self.send_json(200, self.write_node(method, name, sub))
        raise ApiError(405, "MethodNotAllowed", "method not allowed")

    def write_node(self, method, name, sub):
        body = self.body()
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()

        def change(old):
            if method == "PUT":
                new = body
            elif ctype == "application/strategic-merge-patch+json":
                new = strategic_merge(old, body)
            elif ctype == "application/merge-patch+json":
                new = json_merge(old, body)
            elif ctype == "application/json-patch+json":
                new = json_patch(old, body)
            else:
                raise ApiError(415, "UnsupportedMediaType", 'the body of the request was in an unknown '
                               'format - accepted media types include: application/json-patch+json, '
                               'application/merge-patch+json, application/strategic-merge-patch+json, '
                               'application/apply-patch+yaml')
            if not isinstance(new, dict):
                raise ApiError(400, "BadRequest", "the patched object is not an object")
            # The status subresource writes metadata and status; the main
            # resource metadata and spec.
            if sub == "status":
                new["spec"] = old.get("spec", {})
            else:
                new["status"] = old.get("status", {})
            pod_cidr = old.get("spec", {}).get("podCIDR")
            if pod_cidr and new.get("spec", {}).get("podCIDR") != pod_cidr and not self.server.config.get("mutable_pod_cidr"):
                raise ApiError(422, "Invalid", 'Node "%s" is invalid: spec.podCIDR: Forbidden: '
                               'node updates may not change podCIDR except from "" to valid' % name)
            return new

        return self.server.store.update("nodes", name, change)

    def list_nodes(self, query):
        store = self.server.store
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        with store.lock:
            if token:
                try:
                    state = json.loads(base64.b64decode(token))
                    rv, start = int(state["rv"]), int(state["start"])
                except (ValueError, KeyError, TypeError):
                    raise ApiError(400, "BadRequest", "continue key is not valid")
                items = store.snapshots.get(rv)
                if items is None:
                    raise ApiError(410, "Expired", "The provided continue parameter is too old to display "
                                   "a consistent list result. You can start a new list without the "
                                   "continue parameter.")
            else:
                rv, start = store.rv, 0
                items = [store.objects["nodes"][k] for k in sorted(store.objects["nodes"])]
                if limit and len(items) > limit:
                    store.snapshots[rv] = items
            page = items[start:start + limit] if limit else items[start:]
            meta = {"resourceVersion": str(rv)}
            if limit and start + limit < len(items):
                meta["continue"] = base64.b64encode(json.dumps({"rv": rv, "start": start + limit}).encode()).decode()
                meta["remainingItemCount"] = len(items) - start - limit
            return {"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": page}

    def watch(self, query):
        store = self.server.store
        timeout = float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        bookmark_s = float(self.server.config.get("bookmark_s", 60))
        deadline = time.monotonic() + timeout
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(obj):
            data = (json.dumps(obj) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        with store.lock:
            gen = store.generation
            since = query.get("resourceVersion") or "0"
            if since == "0":
                # "Any": the current state as ADDED events, then changes.
                pending = [("ADDED", o) for _, o in sorted(store.objects["nodes"].items())]
                pos = store.rv
            else:
                pos = int(since)
                if pos < store.compacted:
                    pending = [("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                          "status": "Failure", "code": 410, "reason": "Expired",
                                          "message": "too old resource version: %d (%d)" % (pos, store.compacted)})]
                    pos = None
                else:
                    pending = []
        try:
            for etype, obj in pending:
                send({"type": etype, "object": obj})
            last_bookmark = time.monotonic()
            while pos is not None:
                with store.lock:
                    while True:
                        ended = store.generation != gen or time.monotonic() >= deadline
                        events = [] if store.paused else [
                            (rv, t, o) for rv, t, k, o in store.history if rv > pos and k == "nodes"]
                        bookmark_due = (bookmarks and not store.paused and
                                        time.monotonic() - last_bookmark >= bookmark_s)
                        if ended or events or bookmark_due:
                            break
                        wake = min(deadline, last_bookmark + bookmark_s) if bookmarks else deadline
                        store.lock.wait(max(0.01, wake - time.monotonic()))
                    current = store.rv
                for rv, etype, obj in events:
                    send({"type": etype, "object": obj})
                    pos = rv
                if ended:
                    break
                if bookmark_due:
                    # Every node event up to `current` was just sent.
                    pos = max(pos, current)
                    send({"type": "BOOKMARK", "object": {"kind": "Node", "apiVersion": "v1",
                                                         "metadata": {"resourceVersion": str(pos)}}})
                    last_bookmark = time.monotonic()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionError, ssl.SSLError, OSError):
            pass
        self.close_connection = True

    # -- pods ---------------------------------------------------------------
    def pods(self, method, user, namespace, rest):
        store = self.server.store
        if method == "POST" and not rest:
            self.authorize(user, "pods", "create", None, namespace)
            obj = self.body() or {}
            obj.setdefault("kind", "Pod")
            obj.setdefault("apiVersion", "v1")
            obj.setdefault("metadata", {})["namespace"] = namespace
            name = obj["metadata"].get("name")
            return self.send_json(201, store.create("pods", namespace + "/" + name, obj))
        if method == "GET" and len(rest) == 1:
            self.authorize(user, "pods", "get", rest[0], namespace)
            return self.send_json(200, store.get("pods", namespace + "/" + rest[0]))
        raise ApiError(405, "MethodNotAllowed", "method not allowed")

    # -- test controls ------------------------------------------------------
    def test_control(self, method, parts):
        store = self.server.store
        what = parts[0] if parts else ""
        if what == "compact" and method == "POST":
            return self.send_json(200, {"compacted": store.compact()})
        if what == "close-watches" and method == "POST":
            with store.lock:
                store.generation += 1
                store.lock.notify_all()
            return self.send_json(200, {})
        if what in ("pause-watches", "resume-watches") and method == "POST":
            with store.lock:
                store.paused = what == "pause-watches"
                store.lock.notify_all()
            return self.send_json(200, {})
        if what == "users" and method == "POST":
            body = self.body() or {}
            self.server.config.setdefault("users", {})[body["token"]] = {"name": body["name"], "allow": body["allow"]}
            return self.send_json(200, {})
        if what == "nodes" and method == "POST":
            # Many nodes at once (the scale benchmark): one event each.
            made = 0
            for obj in self.body() or []:
                obj.setdefault("kind", "Node")
                obj.setdefault("apiVersion", "v1")
                store.create("nodes", obj["metadata"]["name"], obj)
                made += 1
            return self.send_json(200, {"created": made, "resourceVersion": str(store.rv)})
        if what == "patch-nodes" and method == "POST":
            # Many strategic-merge patches at once: {name: patch}, one
            # MODIFIED event each (the scale benchmark's watch events).
            patches = self.body() or {}
            for name, patch in patches.items():
                store.update("nodes", name, lambda old, p=patch: strategic_merge(old, p))
            return self.send_json(200, {"patched": len(patches), "resourceVersion": str(store.rv)})
        if what == "sabotage" and method == "POST":
            with store.lock:
                store.sabotage.append(self.body())
            return self.send_json(200, {})
        if what == "sabotage" and method == "GET":
            with store.lock:
                return self.send_json(200, {"pending": len(store.sabotage)})
        if what == "healthz":
            return self.send_json(200, {"resourceVersion": str(store.rv)})
        raise ApiError(404, "NotFound", "no such test control")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True, help="IP:PORT")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--config", required=True)
    args = ap.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    host, port = args.listen.rsplit(":", 1)
    server = Server((host, int(port)), ctx, config, Store())
    print("kube API stand-in listening on https://%s:%s" % (host, port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
