# The corporate lab's firewall management API: a small HTTPS service on the
# edge standing in for a commercial firewall's (OPNsense, pfSense, FortiOS,
# PAN-OS). It authenticates a token header, stages DNAT and allow rules as
# separate objects with per-field validation errors, applies a staged
# configuration asynchronously as a numbered revision that reverts by itself
# unless confirmed in time (OPNsense's savepoint, Junos `commit confirmed`),
# and programs real nftables rules on the edge.
#
# usage: fwapi.py LISTEN_IP PORT CERT KEY TOKEN [--apply-ms N] [--stuck-apply]
# Standard library only; one JSON object per request and answer.

import json, re, ssl, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTEN, PORT, CERT, KEY, TOKEN = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
APPLY_MS = int(sys.argv[sys.argv.index("--apply-ms") + 1]) if "--apply-ms" in sys.argv else 200
STUCK = "--stuck-apply" in sys.argv
MAX_OBJECTS = 256

lock = threading.Lock()
staged = {"dnat": {}, "allow": {}}   # id -> object: the candidate configuration
running = {"dnat": {}, "allow": {}}  # what nftables holds now
confirmed = {"dnat": {}, "allow": {}}  # the last confirmed configuration
revisions = {}                        # n -> {"state", "deadline", "error"}
next_id = [1]
next_rev = [1]

IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def port_error(v):
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
        return "must be an integer from 1 to 65535"
    return None


def validate(kind, o):
    """Per-field errors of a DNAT or allow object; {} when valid."""
    if not isinstance(o, dict):
        return {"": "the body must be a JSON object"}
    fields = {
        "dnat": ["name", "protocol", "external_port", "target", "target_port"],
        "allow": ["name", "protocol", "destination", "port"],
    }[kind]
    errors = {k: "unknown field" for k in o if k not in fields}
    for k in fields:
        if k not in o:
            errors[k] = "is required"
    if "name" in o and not (isinstance(o["name"], str) and NAME.match(o["name"])):
        errors["name"] = "must be 1-64 letters, digits, `_`, `.` or `-`"
    if "protocol" in o and o["protocol"] not in ("tcp", "udp"):
        errors["protocol"] = "must be `tcp` or `udp`"
    for k in ("external_port", "target_port", "port"):
        if k in o and port_error(o[k]):
            errors[k] = port_error(o[k])
    for k in ("target", "destination"):
        if k in o and not (isinstance(o[k], str) and IPV4.match(o[k])):
            errors[k] = "must be an IPv4 address"
    return errors


def ruleset(cfg):
    """nft commands that make the edge hold exactly `cfg` (atomic as one file)."""
    lines = ["flush chain inet edge fwapi", "flush chain ip fwnat prerouting"]
    for i, d in sorted(cfg["dnat"].items()):
        lines.append(
            f'add rule ip fwnat prerouting iifname "wan" {d["protocol"]} dport {d["external_port"]} '
            f'dnat to {d["target"]}:{d["target_port"]} comment "fwapi:{i}"'
        )
    for i, a in sorted(cfg["allow"].items()):
        lines.append(
            f'add rule inet edge fwapi ip daddr {a["destination"]} {a["protocol"]} dport {a["port"]} '
            f'accept comment "fwapi:{i}"'
        )
    return "\n".join(lines) + "\n"


def program(cfg):
    r = subprocess.run(["nft", "-f", "-"], input=ruleset(cfg).encode(), capture_output=True)
    if r.returncode != 0:
        return r.stderr.decode(errors="replace").strip()
    running["dnat"], running["allow"] = json.loads(json.dumps(cfg["dnat"])), json.loads(json.dumps(cfg["allow"]))
    return None


def apply_later(n, cfg, confirm_s):
    time.sleep(APPLY_MS / 1000)
    with lock:
        err = program(cfg)
        rev = revisions[n]
        if err:
            rev.update(state="failed", error=err)
            return
        rev.update(state="applied", deadline=time.time() + confirm_s)
    time.sleep(confirm_s)
    with lock:
        if revisions[n]["state"] == "applied":
            # Not confirmed in time: back to the last confirmed configuration.
            program(confirmed)
            revisions[n]["state"] = "reverted"


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the second
    # waits for the client's delayed ACK (40 ms per answer), which no
    # firewall's own web server does.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        print("%s %s" % (self.command, self.path), flush=True)

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 16384:
            return None
        try:
            return json.loads(self.rfile.read(n) or b"null")
        except ValueError:
            return None

    def authorized(self):
        if self.headers.get("X-API-Token") != TOKEN:
            self.answer(401, {"error": "missing or wrong X-API-Token"})
            return False
        return True

    def do_GET(self):
        if not self.authorized():
            return
        m = re.match(r"^/api/v1/revisions/(\d+)$", self.path)
        with lock:
            if self.path in ("/api/v1/nat/dnat", "/api/v1/filter/allow"):
                kind = "dnat" if "dnat" in self.path else "allow"
                self.answer(200, {"staged": staged[kind], "running": running[kind]})
            elif m and int(m.group(1)) in revisions:
                self.answer(200, revisions[int(m.group(1))])
            else:
                self.answer(404, {"error": "no such object"})

    def do_POST(self):
        if not self.authorized():
            return
        body = self.body()
        kinds = {"/api/v1/nat/dnat": "dnat", "/api/v1/filter/allow": "allow"}
        m = re.match(r"^/api/v1/revisions/(\d+)/confirm$", self.path)
        with lock:
            if self.path in kinds:
                kind = kinds[self.path]
                errors = validate(kind, body)
                if errors:
                    return self.answer(422, {"error": "validation failed", "fields": errors})
                if sum(len(v) for v in staged.values()) >= MAX_OBJECTS:
                    return self.answer(507, {"error": "too many objects"})
                i = str(next_id[0])
                next_id[0] += 1
                staged[kind][i] = body
                return self.answer(201, {"id": i})
            if self.path == "/api/v1/apply":
                confirm_s = (body or {}).get("confirm_within_s", 60) if isinstance(body, dict) else 60
                if port_error(confirm_s) or confirm_s > 3600:
                    return self.answer(422, {"error": "validation failed",
                                             "fields": {"confirm_within_s": "must be 1-3600"}})
                n = next_rev[0]
                next_rev[0] += 1
                revisions[n] = {"state": "pending"}
                if not STUCK:
                    cfg = json.loads(json.dumps(staged))
                    threading.Thread(target=apply_later, args=(n, cfg, confirm_s), daemon=True).start()
                return self.answer(202, {"revision": n, "state": "pending"})
            if m and int(m.group(1)) in revisions:
                rev = revisions[int(m.group(1))]
                if rev["state"] != "applied":
                    return self.answer(409, {"error": "revision is %s, not applied" % rev["state"]})
                rev["state"] = "confirmed"
                confirmed["dnat"] = json.loads(json.dumps(running["dnat"]))
                confirmed["allow"] = json.loads(json.dumps(running["allow"]))
                return self.answer(200, rev)
            self.answer(404, {"error": "no such object"})

    def do_DELETE(self):
        if not self.authorized():
            return
        m = re.match(r"^/api/v1/(nat/dnat|filter/allow)/(\d+)$", self.path)
        with lock:
            kind = m and ("dnat" if m.group(1) == "nat/dnat" else "allow")
            if not m or m.group(2) not in staged[kind]:
                return self.answer(404, {"error": "no such object"})
            del staged[kind][m.group(2)]
            self.answer(200, {"deleted": m.group(2)})


server = ThreadingHTTPServer((LISTEN, PORT), Api)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
