#!/usr/bin/python3
"""Loopback-only emulator of CMS's BCDA FHIR Bulk Data API, for testing bcdad.

It follows /work/shared/reference/bcda.md (section 1), quirks included:
string `expires_in`, Accept+Prefer required, only the first `_type` read,
duplicate-job 429, X-Progress forms, Go `time.String()` Expires header,
`JobID` in the manifest, two concatenated OperationOutcomes on 404 for
archived jobs, gzip files served with one extra empty gzip member, and
`Connection: close` on every response.

Usage:
  bcda_emu.py --port P [--portfile FILE] [--client ID:SECRET ...]
              [--token-ttl SECONDS] [--fixtures DIR] [--foreign-port P2]

Test control lives under /_emu/ on the main port (no auth):
  POST /_emu/config  JSON merged into the settings (returns settings)
  POST /_emu/reset   jobs, stats and settings back to defaults
  GET  /_emu/stats   counters
  GET  /_emu/jobs    jobs with their files (path, type, lines, sha256)
  GET  /_emu/file?path=/data/1/x.ndjson   exact decompressed bytes
  GET  /_emu/info    {"port", "foreign_port", "fixtures"}
  GET  /_emu/tokens  every bearer token issued (for leak checks)

Timing settings (pending_seconds, job_seconds, expire_*) are read live, so
a test can stall or expire a running job by changing them.  What a job
contains (types, lines_per_file, generate, error_lines, wrong_type,
foreign_file, job_fail) is fixed when the job is created.

Standard library only.  Never logs Authorization headers or bodies.
"""

import argparse
import base64
import copy
import datetime as dt
import gzip
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

# --------------------------------------------------------------------------
# Constants (reference/bcda.md a.1, a.3, a.4, a.5)
# --------------------------------------------------------------------------

VERSIONS = ("v1", "v2", "v3")
ALLOWED_TYPES = {
    "v1": ["Patient", "Coverage", "ExplanationOfBenefit"],
    "v2": ["Patient", "Coverage", "ExplanationOfBenefit", "Claim", "ClaimResponse"],
    "v3": ["Patient", "Coverage", "ExplanationOfBenefit"],
}
# requests.go getResourceTypes order; the emulated ACO is not PAC-eligible.
DEFAULT_TYPES = {v: ["Patient", "ExplanationOfBenefit", "Coverage"] for v in VERSIONS}
OUTPUT_FORMATS = ("ndjson", "application/fhir+ndjson", "application/ndjson")
JOB_STATUS_NAMES = ["Pending", "In Progress", "Completed", "Archived", "Expired",
                    "Failed", "FailedExpired", "Cancelled", "CancelledExpired"]
TASK_STATUS = {"Pending": "accepted", "In Progress": "in-progress",
               "Completed": "completed", "Archived": "completed", "Expired": "completed",
               "Failed": "failed", "FailedExpired": "failed",
               "Cancelled": "cancelled", "CancelledExpired": "cancelled"}
ARCHIVE_THRESHOLD = 24 * 3600          # ARCHIVE_THRESHOLD_HR = 24
JOB_FAILED_MSG = "Service encountered numerous errors. Job failed to complete."
WARNING_TEXT = "Default System-Type behavior includes only claims from NCH and DDPS in this export."
TAG_SYSTEM = "https://bluebutton.cms.gov/fhir/CodeSystem/"
TYPEFILTER_TAGS = {TAG_SYSTEM + "System-Type": ("SharedSystem", "NationalClaimsHistory", "DDPS"),
                   TAG_SYSTEM + "Final-Action": ("FinalAction", "NotFinalAction")}
# What Go's gzip.Writer.Close() emits when nothing was written: 10-byte
# header (mtime 0, XFL 0, OS 255), empty final fixed block 03 00, CRC 0, ISIZE 0.
EMPTY_GZIP_MEMBER = bytes.fromhex("1f8b08000000000000ff03000000000000000000")

DEFAULT_SETTINGS = {
    "pending_seconds": 0.5, "job_seconds": 1.0, "progress_form": "paren",
    "lines_per_file": 50, "generate": {}, "error_lines": 0,
    "retry_after": 0, "duplicate_429": True, "job_fail": False,
    "expire_after_seconds": None, "expire_mode": "410",
    "token_ttl": 1200, "token_delay": 0, "kickoff_delay": 0, "poll_delay": 0,
    "download_rate": 0, "transaction_time": None,
    "file_401_delay": 0,    # every file_401 answer but the first comes this late
    # one-shot counters, decremented as consumed
    "token_fail": 0, "token_503": 0, "token_429": 0, "kickoff_429": 0,
    "api_401": 0, "poll_5xx": 0, "poll_500_transient": 0,
    "file_404": 0, "file_500": 0, "file_401": 0,
    # flags
    "foreign_file": False, "truncate_gzip": False, "corrupt_gzip": False,
    "wrong_type": False, "expires_in_number": False,
}

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def go_json(obj):
    """json.Marshal style: compact, and HTML-escapes <, >, & like Go does."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    s = s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return s.encode("utf-8")


def _frac(ts):
    us = int(round((ts - int(ts)) * 1e6)) % 1000000
    return ("." + ("%06d" % us).rstrip("0")) if us else ""


def go_rfc3339nano(ts):
    """Go time.Time JSON/RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    d = dt.datetime.fromtimestamp(int(ts), dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + _frac(ts) + "Z"


def go_time_string(ts):
    """Go time.Time.String() in UTC, e.g. '2026-08-23 14:03:07.123456 +0000 UTC'."""
    d = dt.datetime.fromtimestamp(int(ts), dt.timezone.utc)
    return d.strftime("%Y-%m-%d %H:%M:%S") + _frac(ts) + " +0000 UTC"


_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?"
                      r"(Z|[+-](\d{2}):(\d{2}))$")


def parse_rfc3339nano(s):
    """Like Go time.Parse(time.RFC3339Nano, s); returns epoch seconds or None."""
    m = _RFC3339.match(s)
    if not m:
        return None
    try:
        tz = dt.timezone.utc
        if m.group(8) != "Z":
            hh, mm = int(m.group(9)), int(m.group(10))
            if hh > 23 or mm > 59:
                return None
            off = dt.timedelta(hours=hh, minutes=mm)
            tz = dt.timezone(off if m.group(8)[0] == "+" else -off)
        d = dt.datetime(*(int(m.group(i)) for i in range(1, 7)), tzinfo=tz)
    except ValueError:
        return None
    return d.timestamp() + (float(m.group(7)) if m.group(7) else 0.0)


def header_tokens(value):
    """Comma split, ';params' dropped, lower-cased (validation.go:357-405)."""
    return [p.split(";", 1)[0].strip().lower() for p in (value or "").split(",")]


def op_outcome(diag, code="exception", err_type="Request Error", severity="error"):
    """OperationOutcome as the responseutils writers build it."""
    return {"resourceType": "OperationOutcome", "issue": [{
        "severity": severity, "code": code,
        "details": {"coding": [{"system": "http://hl7.org/fhir/ValueSet/operation-outcome",
                                "code": err_type, "display": diag}], "text": diag},
        "diagnostics": diag}]}


def fake_mbi(i):
    """Fake MBI with the real 11-character shape (C A AN N A AN N A A N N)."""
    return "%dEG%dTE%dMK%d%d" % (1 + i % 9, i % 10, (i // 10) % 10, (i // 100) % 10, (i // 1000) % 10)


def synth_line(rtype, i):
    """Deterministic synthetic resource, about 1 KB, one ndjson line."""
    obj = {"resourceType": rtype, "id": "gen-%s-%08d" % (rtype.lower(), i),
           "meta": {"lastUpdated": "2024-07-24T08:08:33.779-04:00"},
           "status": "active",
           "identifier": [{"system": "https://bluebutton.cms.gov/resources/variables/clm_id",
                           "value": str(900000000 + i)}],
           "patient": {"reference": "Patient/-%d" % (10000000 + i // 10)},
           "text": {"status": "generated",
                    "div": "<div>" + "synthetic %s line %08d; " % (rtype, i) * 14 + "</div>"}}
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def gz(data):
    return gzip.compress(data, compresslevel=6, mtime=0)


class EmuFile:
    """One export file: stored gzip-compressed, as BCDA stores it on EFS."""

    def __init__(self, job_id, name, rtype, kind, raw, lines):
        self.name, self.type, self.kind = name, rtype, kind   # kind: output|error
        self.path = "/data/%d/%s" % (job_id, name)
        self.gz = gz(raw)
        self.lines = lines
        self.size = len(raw)
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.foreign = False

    def raw(self):
        return gzip.decompress(self.gz)

    def info(self):
        return {"path": self.path, "name": self.name, "type": self.type, "kind": self.kind,
                "lines": self.lines, "bytes": self.size, "gzip_bytes": len(self.gz),
                "sha256": self.sha256, "foreign": self.foreign}


class Job:
    def __init__(self, job_id, client, version, request_url, path_query, types, explicit,
                 type_filter, cfg):
        self.id, self.client, self.version = job_id, client, version
        self.request_url, self.path_query = request_url, path_query
        self.types, self.explicit_types, self.type_filter = types, explicit, type_filter
        self.cfg = cfg                  # content settings snapshot taken at kickoff
        self.created = time.time()
        self.updated = self.created
        self.cancelled = False
        self.final = None               # None until finished: "Completed" | "Failed"
        self.completed_at = None
        self.files = []                 # EmuFile list once built
        self.built = threading.Event()
        self.served_once = set()        # file names whose fault (truncate/corrupt) was used


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------


class EmuState:
    """All mutable emulator state, guarded by one lock."""

    def __init__(self, clients, token_ttl, fixtures, foreign_port=None):
        self.lock = threading.Lock()
        self.clients = clients
        self.cli_token_ttl = token_ttl
        self.fixtures = Path(fixtures)
        self.port = None
        self.foreign_port = foreign_port
        self.tokens = {}                # token -> (client, expiry epoch)
        self.next_id = 1
        self._fixture_cache = {}
        self.reset()

    # ---- settings and stats ------------------------------------------------
    def reset(self):
        with self.lock:
            self.settings = copy.deepcopy(DEFAULT_SETTINGS)
            self.settings["token_ttl"] = self.cli_token_ttl
            self.jobs = {}              # ids keep counting up, like a DB sequence
            self.file_401_served = 0
            self.stats = {"token_requests": 0, "token_ok": 0, "kickoffs": 0,
                          "kickoff_attempts": 0, "kickoff_urls": [], "polls": 0,
                          "deletes": 0, "jobs_list_requests": 0,
                          "downloads_started": {}, "downloads_completed": {},
                          "foreign_auth_seen": 0, "foreign_requests": 0,
                          "bad_auth": 0, "requests": 0,
                          "downloads_in_flight": 0, "downloads_in_flight_max": 0}

    def configure(self, update):
        if not isinstance(update, dict):
            raise ValueError("config must be a JSON object")
        if "rotate_secret" in update:
            # {"rotate_secret": {"A9994": "new"}}: BCDA now accepts only
            # the new secret for that client (credential rotation).
            update = dict(update)
            with self.lock:
                self.clients.update(update.pop("rotate_secret"))
        for k in update:
            if k not in DEFAULT_SETTINGS:
                raise ValueError("unknown setting %s" % k)
        if update.get("expire_mode", "410") not in ("410", "404", 410, 404):
            raise ValueError("expire_mode must be \"410\" or \"404\"")
        if update.get("progress_form", "paren") not in ("paren", "comma", "bare"):
            raise ValueError("progress_form must be paren, comma or bare")
        if "generate" in update and not isinstance(update["generate"], dict):
            raise ValueError("generate must be an object {type: lines}")
        with self.lock:
            self.settings.update(update)
            self.settings["expire_mode"] = str(self.settings["expire_mode"])
            return copy.deepcopy(self.settings)

    def get(self, name):
        with self.lock:
            return self.settings[name]

    def take(self, name):
        """Consume one unit of a one-shot counter setting; True if one was left."""
        with self.lock:
            if self.settings.get(name, 0) > 0:
                self.settings[name] -= 1
                return True
            return False

    def count(self, name, n=1):
        with self.lock:
            self.stats[name] += n

    def count_path(self, name, path):
        with self.lock:
            d = self.stats[name]
            d[path] = d.get(path, 0) + 1

    def snapshot_stats(self):
        with self.lock:
            return copy.deepcopy(self.stats)

    # ---- tokens ------------------------------------------------------------
    def issue_token(self, client):
        def b64(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
        with self.lock:
            ttl = float(self.settings["token_ttl"])
            now = time.time()
            tok = ".".join([b64({"alg": "RS512", "typ": "JWT"}),
                            b64({"iss": "ssas", "sub": client, "iat": int(now), "exp": int(now + ttl),
                                 "jti": secrets.token_hex(16)}),
                            secrets.token_urlsafe(64)])
            self.tokens[tok] = (client, now + ttl)
            return tok, int(ttl)

    def check_token(self, auth_header):
        """Returns (client, None) or (None, 'Invalid Token'|'Expired Token')."""
        m = re.match(r"^Bearer (\S+)$", auth_header or "")
        if not m:
            return None, "Invalid Token"
        with self.lock:
            entry = self.tokens.get(m.group(1))
        if entry is None:
            return None, "Invalid Token"
        if time.time() >= entry[1]:
            return None, "Expired Token"
        return entry[0], None

    # ---- jobs --------------------------------------------------------------
    def job_state(self, job, now=None):
        """Caller holds the lock.  Pending | In Progress | Completed | Stale (410) |
        Archived (404) | Failed | Cancelled."""
        now = time.time() if now is None else now
        s = self.settings
        if job.cancelled:
            return "Cancelled"
        if job.final is None:
            t_pending = job.created + float(s["pending_seconds"])
            t_done = t_pending + float(s["job_seconds"])
            if now < t_pending:
                return "Pending"
            if now < t_done:
                return "In Progress"
            job.final = "Failed" if job.cfg["job_fail"] else "Completed"
            job.completed_at = job.updated = t_done
        if job.final == "Failed":
            return "Failed"
        exp = s["expire_after_seconds"]
        exp = ARCHIVE_THRESHOLD if exp is None else float(exp)
        if now >= job.completed_at + exp:
            return "Archived" if s["expire_mode"] == "404" else "Stale"
        return "Completed"

    def expires_at(self, job):
        exp = self.settings["expire_after_seconds"]
        return job.completed_at + (ARCHIVE_THRESHOLD if exp is None else float(exp))

    def progress(self, job, now):
        js = float(self.settings["job_seconds"])
        start = job.created + float(self.settings["pending_seconds"])
        pct = int(100 * (now - start) / js) if js > 0 else 99
        return max(0, min(99, pct))

    @staticmethod
    def db_status(state):
        return {"Stale": "Completed"}.get(state, state)

    def find_duplicate(self, client, version, path_query, types):
        """ratelimit.go: Pending/In Progress job, same ACO and version, < 24 h old."""
        now = time.time()
        for job in self.jobs.values():
            if job.client != client or job.version != version:
                continue
            if self.job_state(job, now) not in ("Pending", "In Progress"):
                continue
            if now - job.created >= ARCHIVE_THRESHOLD:
                continue
            if (job.path_query == path_query or types is None or job.explicit_types is None
                    or set(types) & set(job.explicit_types)):
                return job
        return None

    def create_job(self, client, version, request_url, path_query, types, explicit, type_filter):
        with self.lock:
            cfg = {k: copy.deepcopy(self.settings[k]) for k in
                   ("lines_per_file", "generate", "error_lines", "wrong_type", "foreign_file",
                    "job_fail", "transaction_time")}
            job = Job(self.next_id, client, version, request_url, path_query, types, explicit,
                      type_filter, cfg)
            self.next_id += 1
            self.jobs[job.id] = job
            self.stats["kickoffs"] += 1
        threading.Thread(target=self._build, args=(job,), daemon=True).start()
        return job

    # ---- export contents ---------------------------------------------------
    def _fixture_lines(self, version, rtype):
        if version == "v1" and rtype in ("Patient", "Coverage"):
            path = self.fixtures / "bcda" / (rtype + ".ndjson")
        else:
            path = self.fixtures / "bfd-v2" / (rtype + ".ndjson")
        key = str(path)
        if key not in self._fixture_cache:
            lines = path.read_bytes().splitlines(keepends=True) if path.exists() else []
            self._fixture_cache[key] = lines
        return self._fixture_cache[key]

    def _line_source(self, job, rtype):
        """(count, getter) for the lines of one type; generated lines are made on demand."""
        n = job.cfg["generate"].get(rtype)
        if n is not None:
            return int(n), (lambda i: synth_line(rtype, i))
        lines = self._fixture_lines(job.version, rtype)
        return len(lines), (lambda i: lines[i])

    def _build(self, job):
        try:
            self._build_files(job)
        except Exception as e:                  # keep the emulator alive, make it visible
            sys.stderr.write("bcda_emu: build of job %d failed: %r\n" % (job.id, e))
        finally:
            job.built.set()

    def _build_files(self, job):
        per = max(1, int(job.cfg["lines_per_file"]))
        files, errors = [], []
        for rtype in job.types:
            total, line = self._line_source(job, rtype)
            for chunk, start in enumerate(range(0, total, per)):
                name = "%s.ndjson" % uuid.uuid5(uuid.NAMESPACE_URL,
                                                "bcda-emu/%d/%s/%d" % (job.id, rtype, chunk))
                lines = [line(i) for i in range(start, min(total, start + per))]
                if job.cfg["wrong_type"] and not files:
                    obj = json.loads(lines[0])
                    obj["resourceType"] = "Basic" if rtype != "Basic" else "Patient"
                    lines[0] = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                files.append(EmuFile(job.id, name, rtype, "output", b"".join(lines), len(lines)))
        n_err = int(job.cfg["error_lines"])
        if n_err > 0:
            base = files[0].name[:-len(".ndjson")] if files else str(uuid.uuid4())
            etype = "ExplanationOfBenefit" if "ExplanationOfBenefit" in job.types else job.types[0]
            aco = uuid.uuid5(uuid.NAMESPACE_DNS, "aco.%s.bcda-emu" % job.client)
            body = b"".join(go_json({"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "not-found",
                "diagnostics": "Error retrieving %s for beneficiary MBI %s in ACO %s"
                               % (etype, fake_mbi(i), aco)}]}) + b"\n" for i in range(n_err))
            errors.append(EmuFile(job.id, base + "-error.ndjson", "OperationOutcome", "error",
                                  body, n_err))
        if job.version == "v3" and job.type_filter is None:
            body = go_json({"resourceType": "OperationOutcome", "issue": [{
                "severity": "warning", "code": "processing",
                "details": {"text": WARNING_TEXT}}]}) + b"\n"
            errors.append(EmuFile(job.id, "warnings-and-info.ndjson", "OperationOutcome", "error",
                                  body, 1))
        if job.cfg["foreign_file"] and files and self.foreign_port:
            files[-1].foreign = True
        job.files = files + errors

    def manifest(self, job, host):
        def url(f):
            h = "127.0.0.1:%d" % self.foreign_port if f.foreign else host
            return "http://%s%s" % (h, f.path)
        tt = job.cfg["transaction_time"]
        if tt is None:
            # v1/v2: BFD's last data load (before kickoff); v3: time.Now() at job prepare
            tt = go_rfc3339nano(job.created if job.version == "v3" else job.created - 3600.25)
        return {"transactionTime": tt, "request": job.request_url, "requiresAccessToken": True,
                "output": [{"type": f.type, "url": url(f)} for f in job.files if f.kind == "output"],
                "error": [{"type": "OperationOutcome", "url": url(f)} for f in job.files if f.kind == "error"],
                "JobID": job.id}

    def find_file(self, path):
        m = re.match(r"^/data/(\d+)/([^/]+)$", path)
        if not m:
            return None, None
        with self.lock:
            job = self.jobs.get(int(m.group(1)))
        if job is None or not job.built.wait(600):
            return job, None
        return job, next((f for f in job.files if f.name == m.group(2)), None)

    def jobs_info(self):
        with self.lock:
            jobs = list(self.jobs.values())
            states = {j.id: self.job_state(j) for j in jobs}
        out = []
        for j in jobs:
            j.built.wait(600)
            out.append({"id": j.id, "status": states[j.id], "client": j.client, "version": j.version,
                        "request": j.request_url, "types": j.types, "explicit_types": j.explicit_types,
                        "created": go_rfc3339nano(j.created),
                        "files": [f.info() for f in j.files]})
        return out


# --------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bcda-emu"
    foreign = False

    @property
    def st(self) -> EmuState:
        return self.server.state

    # ---- plumbing ----------------------------------------------------------
    def log_request(self, code="-", size="-"):
        sys.stderr.write("bcda_emu%s: %s %s %s\n" % (" foreign" if self.foreign else "",
                                                     self.command, self.path, code))

    def log_message(self, fmt, *args):
        sys.stderr.write("bcda_emu: %s\n" % (fmt % args))

    def send(self, status, body=b"", ctype=None, headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def send_json(self, status, obj, ctype="application/json", headers=None):
        self.send(status, go_json(obj), ctype, headers)

    def send_oo(self, status, diag, code="exception", err_type="Request Error", headers=None):
        self.send(status, go_json(op_outcome(diag, code, err_type)), "application/fhir+json", headers)

    def send_text(self, status, text):
        self.send(status, text, "text/plain; charset=utf-8", {"X-Content-Type-Options": "nosniff"})

    def retry_after_headers(self):
        ra = self.st.get("retry_after")
        return {} if ra is None else {"Retry-After": str(int(ra))}

    def host(self):
        return self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def dispatch(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(n) if n > 0 else b""
        url = urlsplit(self.path)
        self.path_only = unquote(url.path)
        self.query = parse_qs(url.query, keep_blank_values=True)
        if self.foreign:
            return self.route_foreign()
        if self.path_only.startswith("/_emu/"):
            return self.route_emu()
        self.st.count("requests")
        try:
            self.route_api()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def route_api(self):
        p, m = self.path_only, self.command
        if p == "/auth/token" and m == "POST":
            return self.h_token()
        if p.startswith("/data/") and m == "GET":
            return self.h_data()
        mm = re.match(r"^/api/(v\d+)(/.*)$", p)
        if not mm or mm.group(1) not in VERSIONS:
            return self.send_text(404, "404 page not found\n")
        ver, rest = mm.group(1), mm.group(2)
        if rest == "/metadata" and m == "GET":
            return self.h_metadata(ver)
        if m == "GET" and (rest == "/Patient/$export" or re.match(r"^/Group/[^/]+/\$export$", rest)):
            return self.h_kickoff(ver, rest)
        if rest == "/jobs" and m == "GET":
            return self.h_jobs_list(ver)
        jm = re.match(r"^/jobs/([^/]+)$", rest)
        if jm and m in ("GET", "DELETE"):
            return self.h_job(ver, jm.group(1))
        if rest == "/attribution_status" and m == "GET":
            return self.h_attribution()
        return self.send_text(404, "404 page not found\n")

    # ---- auth --------------------------------------------------------------
    def require_token(self):
        """Returns the client id, or None after answering 401."""
        client, err = self.st.check_token(self.headers.get("Authorization"))
        if client is not None and self.st.take("api_401"):
            client, err = None, "Expired Token"
        if client is None:
            self.st.count("bad_auth")
            self.send_oo(401, err, "exception", err)
        return client

    def h_token(self):
        st = self.st
        st.count("token_requests")
        delay = float(st.get("token_delay") or 0)
        if delay > 0:
            time.sleep(delay)
        if st.take("token_503"):
            return self.send(503, "Service Unavailable", "text/plain; charset=utf-8", {"Retry-After": "1"})
        if st.take("token_429"):
            return self.send(429, "You have exceeded the rate limit for /auth/token. Access tokens "
                             "last 20 minutes; please cache and reuse them.\n",
                             "text/plain; charset=utf-8", {"Retry-After": "300"})
        auth = self.headers.get("Authorization") or ""
        creds = None
        if auth[:6].lower() == "basic ":
            try:
                creds = base64.b64decode(auth[6:].strip(), validate=True).decode().split(":", 1)
            except Exception:
                creds = None
        if not creds or len(creds) != 2:
            return self.send_text(400, "Bad Request\n")
        cid, secret = creds
        if st.take("token_fail") or st.clients.get(cid) != secret:
            return self.send_text(401, "Unauthorized")
        tok, ttl = st.issue_token(cid)
        if st.get("expires_in_number"):
            body = '{"access_token": "%s", "expires_in": %d, "token_type":"bearer"}' % (tok, ttl)
        else:
            body = '{"access_token": "%s", "expires_in": "%d", "token_type":"bearer"}' % (tok, ttl)
        st.count("token_ok")
        self.send(200, body, "application/json")

    def check_accept_prefer(self):
        """validation.go ValidateRequestHeaders; True if OK, else 400 already sent."""
        accept, prefer = self.headers.get("Accept"), self.headers.get("Prefer")
        if not accept:
            self.send_oo(400, "Accept header is required", "structure", "Formatting Error")
        elif "application/fhir+json" not in header_tokens(accept):
            self.send_oo(400, "application/fhir+json is the only supported response format",
                         "structure", "Formatting Error")
        elif not prefer:
            self.send_oo(400, "Prefer header is required", "structure", "Formatting Error")
        elif "respond-async" not in header_tokens(prefer):
            self.send_oo(400, "Only asynchronous responses are supported", "structure", "Formatting Error")
        else:
            return True
        return False

    # ---- kick-off ------------------------------------------------------------
    def validate_params(self, ver):
        """validation.go ValidateRequestURL.  Returns (types|None, typeFilter|None) or False."""
        q = self.query
        bad = lambda msg, et="Request Error": self.send_oo(400, msg, "structure", et) or False
        if "_outputFormat" in q and q["_outputFormat"][0] not in OUTPUT_FORMATS:
            return bad("_outputFormat parameter must be one of [%s]" % " ".join(OUTPUT_FORMATS),
                       "Formatting Error")
        if "_elements" in q:
            return bad("Invalid parameter: this server does not support the _elements parameter.")
        if any(k.startswith("?") for k in q):
            return bad("Invalid parameter: query parameters cannot start with ?", "Formatting Error")
        if "_since" in q:
            since = parse_rfc3339nano(q["_since"][0])
            if since is None:
                return bad("Invalid date format supplied in _since parameter.  Date must be in "
                           "FHIR Instant format.", "Formatting Error")
            if since > time.time():
                return bad("Invalid date format supplied in _since parameter. Date must be a date "
                           "that has already passed", "Formatting Error")
        types = None
        if "_type" in q:                       # only params[0]; repeats silently ignored
            types = q["_type"][0].split(",")
            seen = set()
            for t in types:
                if t in seen:
                    return bad("Repeated resource type %s" % t)
                seen.add(t)
        tf = None
        if ver == "v3" and "_typeFilter" in q:
            err = self.typefilter_error(q["_typeFilter"])
            if err:
                return bad(err)
            tf = q["_typeFilter"][0]
        return types, tf

    @staticmethod
    def typefilter_error(params):
        if len(params) > 1:
            return "failed to process request given more that one _typeFilter parameter"
        decoded = unquote_plus(params[0])
        if "?" not in decoded:
            return "missing question mark %s" % decoded
        rtype, qs = decoded.split("?", 1)
        if rtype != "ExplanationOfBenefit":
            return "Invalid _typeFilter Resource Type (Only EOBs valid): %s" % rtype
        for pair in qs.split("&"):
            if "=" not in pair:
                return "Invalid _typeFilter parameter/value: %s" % pair
            name, value = pair.split("=", 1)
            for v in value.split(","):
                if name == "_tag":
                    if "|" not in v:
                        return ("invalid _tag value: %s. Searching by tag requires a token "
                                "(system|code) to be specified" % v)
                    sysname, code = v.split("|")[:2]
                    if code not in TYPEFILTER_TAGS.get(sysname, ()):
                        return "invalid _tag value: %s" % v
                elif name == "outcome":
                    if v not in ("complete", "partial"):
                        return ("invalid outcome value: %s. Supported outcome values are "
                                "'complete' and 'partial'" % v)
                elif name == "service-date":
                    d = v[2:] if len(v) > 2 and v[:2] in ("eq", "ne", "lt", "gt", "le", "ge",
                                                           "sa", "eb", "ap") else v
                    if not re.match(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})?)?)?)?$", d):
                        return "invalid service-date value: %s. Pass a valid FHIR date parameter" % v
                else:
                    return "Invalid _typeFilter subquery parameter: %s" % name
        return None

    def h_kickoff(self, ver, rest):
        st = self.st
        with st.lock:
            st.stats["kickoff_attempts"] += 1
            st.stats["kickoff_urls"].append(self.path)
        client = self.require_token()
        if client is None or not self.check_accept_prefer():
            return
        parsed = self.validate_params(ver)
        if parsed is False:
            return
        types, type_filter = parsed
        if st.take("kickoff_429"):
            return self.send(429, b"", None, self.retry_after_headers())
        with st.lock:
            dup = st.settings["duplicate_429"] and st.find_duplicate(client, ver, self.path, types)
        if dup:
            return self.send(429, b"", None, self.retry_after_headers())
        gm = re.match(r"^/Group/([^/]+)/\$export$", rest)
        if gm and gm.group(1) not in ("all", "runout"):
            return self.send_oo(400, "Invalid group ID")
        effective = types if types is not None else list(DEFAULT_TYPES[ver])
        for t in effective:
            if t not in ALLOWED_TYPES[ver]:
                return self.send_oo(400, "invalid resource type %s. Supported types [%s]"
                                    % (t, " ".join(ALLOWED_TYPES[ver])))
        host = self.host()
        job = st.create_job(client, ver, "http://%s%s" % (host, self.path), self.path,
                            effective, types, type_filter)
        delay = float(st.get("kickoff_delay") or 0)
        if delay > 0:                            # job exists; the answer is late (crash window)
            time.sleep(delay)
        self.send(202, b"", None, {"Content-Location": "http://%s/api/%s/jobs/%d" % (host, ver, job.id)})

    # ---- status / cancel ---------------------------------------------------
    def h_job(self, ver, id_str):
        st = self.st
        st.count("polls" if self.command == "GET" else "deletes")
        if self.command == "GET":               # injected poll faults come first (gateway-like)
            delay = float(st.get("poll_delay") or 0)
            if delay > 0:
                time.sleep(delay)
            if st.take("poll_5xx"):
                return self.send(503, b"")
            if st.take("poll_500_transient"):
                return self.send_json(500, op_outcome("Service temporarily unavailable; retry later",
                                                      "transient", "Internal Error"), "application/fhir+json")
        client = self.require_token()
        if client is None:
            return
        if not id_str.isdigit():
            return self.send_oo(400, "could not parse job id")
        with st.lock:
            job = st.jobs.get(int(id_str))
        if job is None:
            return self.send_oo(404, "Job not found.", "exception", "Database Error")
        if job.client != client:
            st.count("bad_auth")
            return self.send_oo(401, "Invalid Token", "exception", "Invalid Token")
        if self.command == "DELETE":
            return self.cancel_job(job)
        with st.lock:
            now = time.time()
            state = st.job_state(job, now)
            form = st.settings["progress_form"]
            pct = st.progress(job, now)
            expires = go_time_string(st.expires_at(job)) if job.completed_at else None
        if state == "Pending":
            return self.send(202, b"", None, {"X-Progress": "Pending"})
        if state == "In Progress":
            prog = {"paren": "In Progress (%d%%)", "comma": "In Progress, %d%%",
                    "bare": "%d%%"}[form] % pct
            return self.send(202, b"", None, {"X-Progress": prog})
        if state == "Failed":
            return self.send_oo(500, JOB_FAILED_MSG, "exception", "Job Failed")
        if state == "Cancelled":
            return self.send_oo(404, "Job has been cancelled.", "not-found", "Not Found Error")
        if state == "Stale":
            return self.send_oo(410, "", "exception", "Not Found Error", {"Expires": expires})
        if state == "Archived":
            # auth/middleware.go:266-273 writes a 404 OO without returning, then the
            # handler's 410 OO is appended to the same body (its Expires header is lost).
            body = (go_json(op_outcome("Job Expired", "not-found", "Not Found Error"))
                    + go_json(op_outcome("", "exception", "Not Found Error")))
            return self.send(404, body, "application/fhir+json")
        job.built.wait(600)
        self.send_json(200, st.manifest(job, self.host()), "application/json", {"Expires": expires})

    def cancel_job(self, job):
        st = self.st
        with st.lock:
            state = st.job_state(job)
            if state in ("Pending", "In Progress"):
                job.cancelled = True
                job.updated = time.time()
                ok = True
            else:
                ok = False
        if ok:
            return self.send(202, b"")
        self.send_oo(410, "job was not cancelled because it is not Pending or In Progress",
                     "exception", "Deleted Error")

    def h_jobs_list(self, ver):
        st = self.st
        st.count("jobs_list_requests")
        client = self.require_token()
        if client is None or not self.check_accept_prefer():
            return
        wanted = list(JOB_STATUS_NAMES)
        if "_status" in self.query:
            wanted = []
            for s in self.query["_status"][0].split(","):
                if s in wanted:
                    return self.send_oo(400, "Repeated status type %s" % s)
                wanted.append(s)
            for s in wanted:
                if s not in JOB_STATUS_NAMES:
                    return self.send_oo(400, "invalid status type %s. Supported types [%s]"
                                        % (s, " ".join(JOB_STATUS_NAMES)))
        host = "http://" + self.host()
        entries = []
        with st.lock:
            for job in st.jobs.values():
                status = st.db_status(st.job_state(job))
                if job.client != client or status not in wanted:
                    continue
                entries.append({"resource": {
                    "resourceType": "Task",
                    "identifier": [{"use": "official", "system": "%s/api/%s/jobs" % (host, ver),
                                    "value": str(job.id)}],
                    "status": TASK_STATUS[status], "intent": "order",
                    "input": [{"type": {"text": "BULK FHIR Export"},
                               "valueString": "GET " + job.request_url}],
                    "executionPeriod": {"start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.created)),
                                        "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.updated))}}})
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
        if entries:
            bundle["entry"] = entries
            return self.send_json(200, bundle)
        # requests.go JobsStatus: the 404 OO is written without a return, so the
        # (empty) Bundle is appended to the same body.
        body = go_json(op_outcome("no jobs found", "exception", "Database Error")) + go_json(bundle)
        self.send(404, body, "application/fhir+json")

    # ---- other endpoints ---------------------------------------------------
    def h_metadata(self, ver):
        base = "http://" + self.host()
        self.send_json(200, {
            "resourceType": "CapabilityStatement", "status": "active",
            "date": go_rfc3339nano(time.time()), "publisher": "Centers for Medicare & Medicaid Services",
            "kind": "instance", "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
            "software": {"name": "Beneficiary Claims Data API (emulator)", "version": "emu"},
            "implementation": {"description": "BCDA emulator", "url": base},
            "fhirVersion": "3.0.2" if ver == "v1" else "4.0.1",
            "format": ["application/json", "application/fhir+json"],
            "rest": [{"mode": "server",
                      "security": {"cors": True, "extension": [{
                          "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                          "extension": [{"url": "token", "valueUri": base + "/auth/token"}]}]},
                      "interaction": [{"code": "batch"}, {"code": "search-system"}],
                      "operation": [
                          {"name": "patient-export", "definition": base + "/api/%s/Patient/$export" % ver},
                          {"name": "group-export", "definition": base + "/api/%s/Group/[id]/$export" % ver}]}]})

    def h_attribution(self):
        if self.require_token() is None:
            return
        ts = go_rfc3339nano(time.time() - 86400 * 10)
        self.send_json(200, {"ingestion_dates": [{"timestamp": ts, "type": "last_attribution_update"},
                                                 {"timestamp": ts, "type": "last_runout_update"}]})

    # ---- data files --------------------------------------------------------
    def h_data(self):
        st = self.st
        client = self.require_token()
        if client is None:
            return
        if st.take("file_401"):                 # an expired token seen only on /data
            st.count("bad_auth")
            with st.lock:
                late = st.file_401_served > 0
                st.file_401_served += 1
            if late:                            # parallel requests that used the same token
                time.sleep(float(st.get("file_401_delay") or 0))
            return self.send_oo(401, "Expired Token", "exception", "Expired Token")
        if st.take("file_404"):
            return self.send_text(404, "404 page not found\n")
        if st.take("file_500"):
            return self.send_text(500, "Internal Server Error\n")
        job, f = st.find_file(self.path_only)
        if job is not None and job.client != client:
            st.count("bad_auth")
            return self.send_oo(401, "Invalid Token", "exception", "Invalid Token")
        if job is None or f is None:
            return self.send_text(404, "404 page not found\n")
        with st.lock:
            state = st.job_state(job)
        if state != "Completed":                # expired, archived, cancelled, not ready
            return self.send_text(404, "404 page not found\n")
        self.serve_file(job, f)

    def serve_file(self, job, f):
        st = self.st
        use_gzip = "gzip" in header_tokens(self.headers.get("Accept-Encoding"))
        with st.lock:
            s = st.settings
            fresh = f.name not in job.served_once
            truncate = bool(s["truncate_gzip"]) and fresh
            corrupt = bool(s["corrupt_gzip"]) and fresh and use_gzip
            if truncate or corrupt:
                job.served_once.add(f.name)
            rate = float(s["download_rate"] or 0)
        st.count_path("downloads_started", f.path)
        headers = {"Content-Type": "application/fhir+ndjson"}
        if use_gzip:
            data = f.gz
            if corrupt:                          # force BTYPE=11 (invalid) in the first deflate block
                b = bytearray(data)
                b[10] |= 0x06
                data = bytes(b)
            pieces, total = [data, EMPTY_GZIP_MEMBER], len(data) + len(EMPTY_GZIP_MEMBER)
            headers["Content-Encoding"] = "gzip"
        else:
            pieces, total = self._inflate_pieces(f.gz), f.size
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        with st.lock:                           # concurrency, for parallelism bounds
            st.stats["downloads_in_flight"] += 1
            st.stats["downloads_in_flight_max"] = max(st.stats["downloads_in_flight_max"],
                                                      st.stats["downloads_in_flight"])
        try:
            ok = self._write_chunked(pieces, rate, total // 2 if truncate else None)
        finally:
            st.count("downloads_in_flight", -1)
        if ok:
            st.count_path("downloads_completed", f.path)

    @staticmethod
    def _inflate_pieces(gz_bytes):
        d = zlib.decompressobj(31)
        for off in range(0, len(gz_bytes), 65536):
            out = d.decompress(gz_bytes[off:off + 65536])
            if out:
                yield out
        tail = d.flush()
        if tail:
            yield tail

    def _write_chunked(self, pieces, rate, limit):
        """Chunked body; throttled if rate > 0; cut (no last-chunk) after `limit` bytes."""
        step = 65536 if rate <= 0 else max(64, min(16384, int(rate / 10)))
        sent = 0
        try:
            for piece in pieces:
                for off in range(0, len(piece), step):
                    chunk = piece[off:off + step]
                    if limit is not None and sent + len(chunk) >= limit:
                        chunk = chunk[:limit - sent]
                        if chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                        return False
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                    if rate > 0:
                        self.wfile.flush()
                        time.sleep(len(chunk) / rate)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            return False

    # ---- foreign listener --------------------------------------------------
    def route_foreign(self):
        st = self.st
        with st.lock:
            st.stats["foreign_requests"] += 1
            st.stats["requests"] += 1
            if self.headers.get("Authorization"):
                st.stats["foreign_auth_seen"] += 1
        if self.command != "GET" or not self.path_only.startswith("/data/"):
            return self.send_text(404, "404 page not found\n")
        job, f = st.find_file(self.path_only)
        if job is None or f is None:
            return self.send_text(404, "404 page not found\n")
        try:
            self.serve_file(job, f)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ---- test control ------------------------------------------------------
    def route_emu(self):
        st, p, m = self.st, self.path_only, self.command
        if p == "/_emu/config" and m == "POST":
            try:
                return self.send(200, json.dumps(st.configure(json.loads(self.body or b"{}"))),
                                 "application/json")
            except ValueError as e:
                return self.send(400, json.dumps({"error": str(e)}), "application/json")
        if p == "/_emu/config" and m == "GET":
            with st.lock:
                return self.send(200, json.dumps(st.settings), "application/json")
        if p == "/_emu/reset" and m == "POST":
            st.reset()
            return self.send(200, json.dumps(st.settings), "application/json")
        if p == "/_emu/stats" and m == "GET":
            return self.send(200, json.dumps(st.snapshot_stats()), "application/json")
        if p == "/_emu/jobs" and m == "GET":
            return self.send(200, json.dumps(st.jobs_info()), "application/json")
        if p == "/_emu/tokens" and m == "GET":
            # Every bearer token issued, so tests can prove none leaked.
            with st.lock:
                return self.send(200, json.dumps(sorted(st.tokens)), "application/json")
        if p == "/_emu/info" and m == "GET":
            return self.send(200, json.dumps({"port": st.port, "foreign_port": st.foreign_port,
                                              "fixtures": str(st.fixtures)}), "application/json")
        if p == "/_emu/file" and m == "GET":
            _, f = st.find_file(self.query.get("path", [""])[0])
            if f is None:
                return self.send_text(404, "no such file\n")
            return self.send(200, f.raw(), "application/octet-stream")
        self.send_text(404, "unknown /_emu/ endpoint\n")


class ForeignHandler(Handler):
    foreign = True


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def default_fixtures():
    env = os.environ.get("BCDAD_FIXTURES")
    if env:
        return env
    repo = Path(__file__).resolve().parents[2]
    return str((repo / ".." / "shared" / "fixtures").resolve())


def main(argv=None):
    ap = argparse.ArgumentParser(description="Loopback BCDA emulator for bcdad tests")
    ap.add_argument("--port", type=int, required=True, help="0 = pick a free port")
    ap.add_argument("--portfile", help="write the chosen port here once listening")
    ap.add_argument("--client", action="append", metavar="ID:SECRET",
                    help="accepted credentials (repeatable; default A9994:not-a-real-secret)")
    ap.add_argument("--token-ttl", type=float, default=1200)
    ap.add_argument("--fixtures", default=None)
    ap.add_argument("--foreign-port", type=int, default=None,
                    help="second listener serving /data without auth, recording Authorization headers")
    a = ap.parse_args(argv)

    clients = {}
    for c in a.client or ["A9994:not-a-real-secret"]:
        cid, sep, secret = c.partition(":")
        if not sep or not cid:
            ap.error("--client must be ID:SECRET")
        clients[cid] = secret
    fixtures = a.fixtures or default_fixtures()
    if not Path(fixtures, "bfd-v2").is_dir():
        sys.stderr.write("bcda_emu: warning: fixtures not found under %s\n" % fixtures)

    ttl = int(a.token_ttl) if float(a.token_ttl).is_integer() else a.token_ttl
    state = EmuState(clients, ttl, fixtures)
    httpd = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    httpd.daemon_threads = True
    httpd.state = state
    state.port = httpd.server_address[1]

    foreign = None
    if a.foreign_port is not None:
        foreign = ThreadingHTTPServer(("127.0.0.1", a.foreign_port), ForeignHandler)
        foreign.daemon_threads = True
        foreign.state = state
        state.foreign_port = foreign.server_address[1]
        threading.Thread(target=foreign.serve_forever, daemon=True).start()

    if a.portfile:
        tmp = a.portfile + ".tmp"
        with open(tmp, "w") as fh:
            fh.write("%d\n" % state.port)
        os.replace(tmp, a.portfile)
    sys.stderr.write("bcda_emu: listening on 127.0.0.1:%d%s, fixtures %s\n"
                     % (state.port, " (foreign 127.0.0.1:%d)" % state.foreign_port if foreign else "",
                        fixtures))
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        if foreign:
            foreign.shutdown()
            foreign.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
