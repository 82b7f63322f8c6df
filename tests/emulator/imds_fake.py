#!/usr/bin/python3
"""Loopback-only fake of the AWS credential endpoints bcdad reads, for tests.

One port serves three things (reference/aws.md sections 1.7, 2.1, 2.2):

* EC2 IMDSv2:
    PUT /latest/api/token        needs X-aws-ec2-metadata-token-ttl-seconds
                                 1..21600 (else 400); X-Forwarded-For -> 403;
                                 a versioned path (/2021-03-23/api/token) -> 403
    GET /latest/meta-data/...    needs a valid, unexpired
                                 X-aws-ec2-metadata-token (else 401)
        iam/security-credentials/        the role name
        iam/security-credentials/<role>  JSON, Expiration = now + cred_ttl,
                                         new keys on every issue
        placement/region                 the region
* ECS container credentials: GET /ecs/creds, Authorization must equal
  ecs_token (when set), else 401.
* STS AssumeRoleWithWebIdentity: POST / (form), unsigned; RoleArn and
  WebIdentityToken must equal sts_role_arn and sts_token; XML as real STS.

Control (no auth), under /_fake/:
  POST /_fake/config         JSON merged into the settings; answers them
  GET  /_fake/stats          counters and the last web identity token seen
  POST /_fake/expire_tokens  every IMDS token issued so far becomes invalid
  POST /_fake/reset          settings, tokens and counters back to defaults

Settings: cred_ttl (s, default 21600), token_ttl_cap (s), fail_next (the
next N IMDS metadata GETs answer 500), code (IMDS "Code", default
"Success"), role, region, access_key_id / secret_access_key (fixed keys
instead of counted ones), ecs_token, sts_role_arn, sts_token.

Usage: imds_fake.py [--port 0] [--portfile FILE]
Standard library only.  Never logs headers or bodies.
"""

import argparse
import datetime as dt
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

DEFAULTS = {
    "cred_ttl": 21600,
    "token_ttl_cap": 21600,
    "fail_next": 0,
    "code": "Success",
    "role": "bcdad-test-role",
    "region": "us-west-2",
    "access_key_id": None,
    "secret_access_key": None,
    "session_token": None,
    "ecs_token": "ecs-auth-token",
    "sts_role_arn": "arn:aws:iam::123456789012:role/bcdad-web",
    "sts_token": "web-identity-token-1",
}
STATS0 = {
    "token_puts": 0, "token_rejected": 0, "cred_gets": 0, "role_gets": 0,
    "region_gets": 0, "unauthorized": 0, "failed": 0, "ecs_gets": 0,
    "ecs_rejected": 0, "sts_calls": 0, "sts_rejected": 0,
    "sts_last_token": None, "sts_last_session": None,
}
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.cfg = dict(DEFAULTS)
        self.stats = dict(STATS0)
        self.tokens = {}        # token -> expiry (monotonic)
        self.issued = 0

    def new_creds(self):
        """A fresh credential set; keys change on every issue."""
        self.issued += 1
        n = self.issued
        exp = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.cfg["cred_ttl"])
        return {
            "AccessKeyId": self.cfg["access_key_id"] or "ASIAFAKE%08d" % n,
            "SecretAccessKey": self.cfg["secret_access_key"] or "fakeSecret/%d+%s" % (n, "x" * 24),
            "Token": self.cfg["session_token"] or "fakeSessionToken%d-%s" % (n, "t" * 64),
            "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


STATE = State()


class Handler(BaseHTTPRequestHandler):
    server_version = "imds_fake/1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, body=b"", ctype="text/plain", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, code, obj):
        self.reply(code, json.dumps(obj), "application/json")

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    # ---------------------------------------------------------------- PUT
    def do_PUT(self):
        path = urlsplit(self.path).path
        self.body()
        if path != "/latest/api/token":
            return self.reply(403 if path.endswith("/api/token") else 404, "Forbidden")
        with STATE.lock:
            if self.headers.get("X-Forwarded-For") is not None:
                STATE.stats["token_rejected"] += 1
                return self.reply(403, "Forbidden")
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            try:
                ttl = int(ttl)
            except (TypeError, ValueError):
                ttl = 0
            if not 1 <= ttl <= 21600:
                STATE.stats["token_rejected"] += 1
                return self.reply(400, "Missing or Invalid Parameters")
            ttl = min(ttl, STATE.cfg["token_ttl_cap"])
            tok = "AQAEA" + secrets.token_urlsafe(32)
            STATE.tokens[tok] = time.monotonic() + ttl
            STATE.stats["token_puts"] += 1
        self.reply(200, tok, headers=[("X-aws-ec2-metadata-token-ttl-seconds", str(ttl))])

    # ---------------------------------------------------------------- GET
    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/_fake/stats":
            with STATE.lock:
                return self.reply_json(200, STATE.stats)
        if path == "/ecs/creds":
            return self.ecs()
        if not path.startswith("/latest/meta-data/"):
            return self.reply(404, "Not Found")
        with STATE.lock:
            tok = self.headers.get("X-aws-ec2-metadata-token")
            exp = STATE.tokens.get(tok) if tok else None
            if exp is None or exp <= time.monotonic():
                STATE.stats["unauthorized"] += 1
                return self.reply(401, "Unauthorized")
            if STATE.cfg["fail_next"] > 0:
                STATE.cfg["fail_next"] -= 1
                STATE.stats["failed"] += 1
                return self.reply(500, "Internal Server Error")
            sub = path[len("/latest/meta-data/"):]
            role = STATE.cfg["role"]
            if sub == "iam/security-credentials/":
                STATE.stats["role_gets"] += 1
                return self.reply(200, role + "\n" if role else "")
            if sub == "placement/region":
                STATE.stats["region_gets"] += 1
                return self.reply(200, STATE.cfg["region"])
            if role and sub == "iam/security-credentials/" + role:
                STATE.stats["cred_gets"] += 1
                c = STATE.new_creds()
                doc = {"Code": STATE.cfg["code"], "LastUpdated":
                       dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "Type": "AWS-HMAC"}
                if STATE.cfg["code"] == "Success":
                    doc.update(c)
                else:
                    doc["Message"] = "the role cannot be assumed by EC2"
                return self.reply_json(200, doc)
        self.reply(404, "Not Found")

    def ecs(self):
        with STATE.lock:
            want = STATE.cfg["ecs_token"]
            if want and self.headers.get("Authorization") != want:
                STATE.stats["ecs_rejected"] += 1
                return self.reply_json(401, {"message": "unauthorized"})
            STATE.stats["ecs_gets"] += 1
            c = STATE.new_creds()
        c["RoleArn"] = "arn:aws:iam::123456789012:role/bcdad-task"
        self.reply_json(200, c)

    # ---------------------------------------------------------------- POST
    def do_POST(self):
        path = urlsplit(self.path).path
        raw = self.body()
        if path == "/_fake/config":
            try:
                upd = json.loads(raw or b"{}")
            except ValueError:
                return self.reply(400, "bad JSON")
            with STATE.lock:
                unknown = [k for k in upd if k not in DEFAULTS]
                if unknown:
                    return self.reply(400, "unknown settings: %s" % unknown)
                STATE.cfg.update(upd)
                return self.reply_json(200, STATE.cfg)
        if path == "/_fake/expire_tokens":
            with STATE.lock:
                STATE.tokens.clear()
            return self.reply_json(200, {})
        if path == "/_fake/reset":
            with STATE.lock:
                STATE.reset()
            return self.reply_json(200, {})
        if path == "/":
            return self.sts(raw)
        self.reply(404, "Not Found")

    def sts_error(self, code, etype, message, status):
        body = ('<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code>'
                '<Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>'
                % (STS_NS, etype, code, escape(message), secrets.token_hex(8)))
        self.reply(status, body, "text/xml")

    def sts(self, raw):
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"),
                                               keep_blank_values=True).items()}
        with STATE.lock:
            STATE.stats["sts_calls"] += 1
            STATE.stats["sts_last_token"] = form.get("WebIdentityToken")
            STATE.stats["sts_last_session"] = form.get("RoleSessionName")
            cfg = dict(STATE.cfg)
        if (form.get("Action") != "AssumeRoleWithWebIdentity"
                or form.get("Version") != "2011-06-15"):
            return self.sts_error("InvalidAction", "Sender", "Could not find operation", 400)
        for k, lo, hi in (("RoleArn", 20, 2048), ("RoleSessionName", 2, 64),
                          ("WebIdentityToken", 4, 20000)):
            if not lo <= len(form.get(k, "")) <= hi:
                return self.sts_error("ValidationError", "Sender",
                                      "1 validation error detected: %s" % k, 400)
        if form["RoleArn"] != cfg["sts_role_arn"]:
            with STATE.lock:
                STATE.stats["sts_rejected"] += 1
            return self.sts_error("AccessDenied", "Sender",
                                  "Not authorized to perform sts:AssumeRoleWithWebIdentity", 403)
        if form["WebIdentityToken"] != cfg["sts_token"]:
            with STATE.lock:
                STATE.stats["sts_rejected"] += 1
            return self.sts_error("InvalidIdentityToken", "Sender",
                                  "Incorrect token audience", 400)
        with STATE.lock:
            c = STATE.new_creds()
        body = ('<AssumeRoleWithWebIdentityResponse xmlns="%s">'
                '<AssumeRoleWithWebIdentityResult>'
                '<SubjectFromWebIdentityToken>system:serviceaccount:bcdad</SubjectFromWebIdentityToken>'
                '<AssumedRoleUser><Arn>%s/%s</Arn><AssumedRoleId>AROAFAKE:%s</AssumedRoleId></AssumedRoleUser>'
                '<Credentials><SessionToken>%s</SessionToken><SecretAccessKey>%s</SecretAccessKey>'
                '<Expiration>%s</Expiration><AccessKeyId>%s</AccessKeyId></Credentials>'
                '<Audience>sts.amazonaws.com</Audience></AssumeRoleWithWebIdentityResult>'
                '<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata>'
                '</AssumeRoleWithWebIdentityResponse>'
                % (STS_NS, escape(form["RoleArn"]), escape(form["RoleSessionName"]),
                   escape(form["RoleSessionName"]), escape(c["Token"]),
                   escape(c["SecretAccessKey"]), c["Expiration"], c["AccessKeyId"],
                   secrets.token_hex(8)))
        self.reply(200, body, "text/xml")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--portfile", help="write the chosen port here once listening")
    a = ap.parse_args(argv)
    httpd = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    if a.portfile:
        tmp = a.portfile + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, a.portfile)
    sys.stderr.write("imds_fake: listening on 127.0.0.1:%d\n" % port)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
