#!/usr/bin/python3
"""Loopback-only emulator of CMS's BCDA FHIR Bulk Data API, for testing bcdad.

It follows BCDA's server code (CMSgov/bcda-app), quirks included:
string `expires_in`, Accept+Prefer required, only the first `_type` read,
duplicate-job 429 (with its whole-string `_type` comparison), X-Progress,
Go `time.String()` Expires header, `JobID` in the manifest, two concatenated
OperationOutcomes on 404 for archived jobs, OperationOutcomes shaped per API
version (v1 without `details`, v2 with a coding whose code is always
"Request Error", v3 with `details.text` only), `_typeFilter` decoded twice,
gzip files served with one extra empty gzip member, and `Connection: close`
on every response.  Every behaviour names the server file it mirrors.

Usage:
  bcda_emu.py --port P [--portfile FILE] [--client ID:SECRET ...]
              [--token-ttl SECONDS] [--fixtures DIR] [--foreign-port P2]

Test control lives under /_emu/ on the main port (no auth):
  POST /_emu/config  JSON merged into the settings (returns settings); two
                     keys are not settings: {"rotate_secret": {ID: SECRET}}
                     and {"clients": {ID: SECRET, ...}} set accepted credentials
  GET  /_emu/config  the settings
  POST /_emu/reset   jobs, stats, data loads, request times and settings back
                     to defaults (credentials stay)
  POST /_emu/load    {"Patient": 2, ...}: BFD loads that many new resources per
                     type now; returns {"load_time", "ids": {type: [ids]}}
  GET  /_emu/stats   counters
  GET  /_emu/jobs    jobs with their files (path, type, lines, sha256, listed)
  GET  /_emu/file?path=/data/1/x.ndjson   exact decompressed bytes
  GET  /_emu/info    {"port", "foreign_port", "fixtures"}
  GET  /_emu/tokens  every bearer token issued (for leak checks)
  GET  /_emu/requests  {"times": [...]}: time.monotonic() at the arrival of
                     every request to the API port except /_emu/

Data: BFD's data is a list of loads.  The base load (the fixtures, or the
`generate` setting's synthetic lines) was loaded one hour before the
emulator started; POST /_emu/load appends one.  An export gets the loads
with load time > `_since` and <= its transactionTime (bluebutton.go
_lastUpdated=gt<since>&_lastUpdated=le<transactionTime>).

Timing settings (pending_seconds, job_seconds, expire_*, archive_threshold_
seconds) are read live, so a test can stall or expire a running job by
changing them.  What a job contains (types, lines_per_file, generate,
error_lines, wrong_type, foreign_file, job_fail, transaction_time, the loads)
is fixed when the job is created.

Standard library only.  Never logs Authorization headers or bodies.
"""

import argparse
import base64
import bisect
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
from urllib.parse import unquote, urlsplit

# --------------------------------------------------------------------------
# Constants (reference/bcda.md a.1, a.3, a.4, a.5; bcda-app as cited)
# --------------------------------------------------------------------------

VERSIONS = ("v1", "v2", "v3")
# api/v1/api.go NewApiV1, v2/api.go NewApiV2, v3/api.go NewApiV3: the types
# each version's handler accepts.  v1 accepts Observation at kick-off, but
# the worker has no handler for it (bcdaworker/worker/worker.go
# writeBBDataToFile "unsupported resource type requested"): such a job fails.
ALLOWED_TYPES = {
    "v1": ["Patient", "Coverage", "ExplanationOfBenefit", "Observation"],
    "v2": ["Patient", "Coverage", "ExplanationOfBenefit", "Claim", "ClaimResponse"],
    "v3": ["Patient", "Coverage", "ExplanationOfBenefit"],
}
# service/resources.go: partially adjudicated types, allowed only to ACOs
# whose config has "partially-adjudicated" (setting pac_clients).
PAC_TYPES = ("Claim", "ClaimResponse")
# requests.go getResourceTypes order (+ Claim, ClaimResponse on v2 for PAC ACOs).
DEFAULT_TYPES = {v: ["Patient", "ExplanationOfBenefit", "Coverage"] for v in VERSIONS}
OUTPUT_FORMATS = ("ndjson", "application/fhir+ndjson", "application/ndjson")
# models/models.go AllJobStatuses, in its order.
JOB_STATUS_NAMES = ["Archived", "Cancelled", "CancelledExpired", "Completed", "Expired",
                    "Failed", "FailedExpired", "In Progress", "Pending"]
TASK_STATUS = {"Pending": "accepted", "In Progress": "in-progress",
               "Completed": "completed", "Archived": "completed", "Expired": "completed",
               "Failed": "failed", "FailedExpired": "failed",
               "Cancelled": "cancelled", "CancelledExpired": "cancelled"}
ARCHIVE_THRESHOLD = 24 * 3600          # ARCHIVE_THRESHOLD_HR = 24
# responseutils/issuedetail.go DetailJobFailed
JOB_FAILED_MSG = "Service encountered numerous errors. Job failed to complete."
WARNING_TEXT = "Default System-Type behavior includes only claims from NCH and DDPS in this export."
TAG_SYSTEM = "https://bluebutton.cms.gov/fhir/CodeSystem/"
SYSTEM_TYPE_URL = TAG_SYSTEM + "System-Type"          # constants.BFDSystemTypeURL
TYPEFILTER_TAGS = {SYSTEM_TYPE_URL: ("SharedSystem", "NationalClaimsHistory", "DDPS"),
                   TAG_SYSTEM + "Final-Action": ("FinalAction", "NotFinalAction")}
# What Go's gzip.Writer.Close() emits when nothing was written: 10-byte
# header (mtime 0, XFL 0, OS 255), empty final fixed block 03 00, CRC 0, ISIZE 0.
EMPTY_GZIP_MEMBER = bytes.fromhex("1f8b08000000000000ff03000000000000000000")
# BFD's own zone offset, as its resources show it (tests/fixtures/bfd-v2:
# meta.lastUpdated "2024-07-24T08:08:33.779-04:00").
BFD_OFFSET = "-04:00"
# CMSgov/cdap terraform/modules/firewall/main.tf: the WAF's rate-limit answer
# (block with custom_response 429, Retry-After 300, APPLICATION_JSON body).
WAF_BODY = (b'{\n    "issue": [\n        {\n            "code": "throttled",\n'
            b'            "details": {\n                "text": "Requests from this IP are '
            b'currently throttled due to exceeding the limit. Try again in 5 minutes."\n'
            b'            },\n            "severity": "error"\n        }\n    ],\n'
            b'    "resourceType": "OperationOutcome"\n}\n')
# github.com/golang-jwt/jwt/v5 signing methods (ParseUnverified looks alg up).
JWT_ALGS = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384",
            "ES512", "PS256", "PS384", "PS512", "EdDSA", "none"}

DEFAULT_SETTINGS = {
    "pending_seconds": 0.5, "job_seconds": 1.0,
    "progress_form": "paren",   # X-Progress: paren "In Progress (NN%)" (models.go
                                # StatusMessage), comma "In Progress, NN%" (the docs),
                                # bare "In Progress" (StatusMessage while JobCount is 0)
    "lines_per_file": 50, "generate": {}, "error_lines": 0,
    # make bench: "generate" lines copied from the fixture's (BFD's ~17 KB
    # EOBs) with new ids, not the ~1 KB synthetic ones; and every file as
    # served (its gzip and the empty tail member) written under
    # static_root/data/<job>/<name>, for nginx to serve.
    "generate_like_fixture": False, "static_root": None,
    "retry_after": 0,           # CLIENT_RETRY_AFTER_IN_SECONDS (ratelimit.go; default 0)
    "duplicate_429": True,      # ratelimit.go shouldRateLimit (rate_limit_config.all)
    "job_fail": False,
    "expire_after_seconds": None, "expire_mode": "410",
    "archive_threshold_seconds": ARCHIVE_THRESHOLD,   # ARCHIVE_THRESHOLD_HR: job timeout
                                # of the duplicate check and of expiry
    "token_ttl": 1200, "token_delay": 0, "kickoff_delay": 0, "poll_delay": 0,
    "download_rate": 0,
    "transaction_time": None,   # manifest transactionTime verbatim (and upper bound)
    "time_offset": "Z",         # the API server's time.Local offset, in which it prints
                                # the transactionTime read back from Postgres
    "file_401_delay": 0,    # every file_401 answer but the first comes this late
    # bcda/auth/api.go GetAuthToken: the token 429's Retry-After is BCDA's
    # MinutesToSeconds(SSAS_RATE_LIMIT_DURATION_MINUTES) (utils/common.go: a
    # multiple of 60; 300 when unset or not a positive number).  Tests shorten
    # it the way pending_seconds and job_seconds shorten a job.
    "token_429_retry_after": 300,
    # one-shot counters, decremented as consumed
    "token_fail": 0, "token_503": 0, "token_429": 0, "kickoff_429": 0,
    "api_401": 0, "poll_5xx": 0, "poll_500": 0, "kickoff_500": 0, "auth_500": 0,
    "file_404": 0, "file_500": 0, "file_401": 0,
    # flags
    "foreign_file": False, "truncate_gzip": False, "corrupt_gzip": False,
    # The first N copies of each file (gzip path only) are a gzip stream cut
    # in half, followed by ServeData's empty member and a clean chunked end:
    # a stored file truncated on EFS (bcdaworker/worker/worker.go
    # compressFiles defers gzipWriter.Close() and drops its error, so a
    # failed final flush leaves a short file and the job still completes).
    # A big N is BCDA's case: the stored file does not change, so every copy
    # is short.  N = 1 (whole from the second copy on) is not in BCDA's code;
    # it stands for a one-off fault between BCDA and bcdad.
    "short_gzip": 0,
    "wrong_type": False, "expires_in_number": False,
    # attribution (requests.go bulkRequest kick-off 404s)
    "attribution_current": True,    # False: /Patient and /Group/all 404 (January)
    "runout_expired": False,        # True: /Group/runout 404 (180 days after ingestion)
    "since_floor": None,            # oldest attribution file; with BCDA_ENABLE_NEW_GROUP
    # ACO configuration (service/config.go)
    "disabled_clients": [],         # aco_config disabled: true (ACOEnabled 401)
    "pac_clients": [],              # data includes partially-adjudicated (Claim, ClaimResponse)
    # AWS WAF in front of BCDA (CMSgov/cdap firewall module); None = off
    "waf_limit": None, "waf_window_seconds": 300,
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


_OFFSET = re.compile(r"^(Z|([+-])([01]\d|2[0-3]):([0-5]\d))$")


def offset_seconds(offset):
    m = _OFFSET.match(offset or "")
    if not m:
        raise ValueError("time_offset must be \"Z\" or +HH:MM / -HH:MM")
    if m.group(1) == "Z":
        return 0
    sec = int(m.group(3)) * 3600 + int(m.group(4)) * 60
    return -sec if m.group(2) == "-" else sec


def go_time_json_ns(ns, offset="Z"):
    """Go time.Time MarshalJSON (RFC3339Nano) of an instant in nanoseconds, in a
    zone at `offset`: trailing zeros of the fraction dropped, "Z" for offset 0."""
    off = offset_seconds(offset)
    secs, frac = divmod(int(ns), 10 ** 9)
    d = dt.datetime.fromtimestamp(secs, dt.timezone(dt.timedelta(seconds=off)))
    s = d.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        s += "." + ("%09d" % frac).rstrip("0")
    if off == 0:
        return s + "Z"
    sign, off = ("-", -off) if off < 0 else ("+", off)
    return s + "%s%02d:%02d" % (sign, off // 3600, off % 3600 // 60)


def bfd_last_updated(ms, offset=BFD_OFFSET):
    """meta.lastUpdated as BFD writes it: milliseconds, three digits, its own offset."""
    off = offset_seconds(offset)
    secs, milli = divmod(int(ms), 1000)
    d = dt.datetime.fromtimestamp(secs, dt.timezone(dt.timedelta(seconds=off)))
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03d" % milli + (
        "Z" if off == 0 else offset)


# Go time.Parse(time.RFC3339Nano, s): a zone is required; the fraction is
# optional, any length, after "." or ","; the hour may have one digit (the
# general parser, which Parse falls back to when the strict RFC 3339 path fails).
_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
                      r"(Z|[+-](\d{2}):(\d{2}))$")


def parse_rfc3339nano_ns(s):
    """Like Go time.Parse(time.RFC3339Nano, s); returns epoch nanoseconds or None."""
    m = _RFC3339.match(s or "")
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
    frac = int((m.group(7) or "0")[:9].ljust(9, "0"))
    return int(d.timestamp()) * 10 ** 9 + frac


_HEX = "0123456789abcdefABCDEF"


def go_unescape(s, plus_to_space=True):
    """Go url.QueryUnescape (plus_to_space) or url.PathUnescape: '%XX' must be
    valid hex, else ValueError; the result is decoded as UTF-8 (lossy)."""
    out = bytearray()
    i, raw = 0, s.encode("utf-8", "surrogateescape")
    while i < len(raw):
        c = raw[i]
        if c == 0x25:                                   # '%'
            h = raw[i + 1:i + 3].decode("latin-1")
            if i + 2 >= len(raw) or h[0] not in _HEX or h[1] not in _HEX:
                raise ValueError("invalid URL escape %r" % ("%" + h))
            out.append(int(h, 16))
            i += 3
            continue
        out.append(0x20 if (c == 0x2B and plus_to_space) else c)
        i += 1
    return out.decode("utf-8", "replace")


def go_parse_query(raw):
    """Go url.ParseQuery as r.URL.Query() uses it: pairs split on '&', a pair
    with ';' or a bad escape dropped, '+' is a space.  {key: [values]}."""
    q = {}
    for pair in (raw or "").split("&"):
        if ";" in pair or not pair:
            continue
        k, _, v = pair.partition("=")
        try:
            k, v = go_unescape(k), go_unescape(v)
        except ValueError:
            continue
        q.setdefault(k, []).append(v)
    return q


def header_tokens(value):
    """Comma split, ';params' dropped, lower-cased (validation.go:357-405)."""
    return [p.split(";", 1)[0].strip().lower() for p in (value or "").split(",")]


def writer_version(path):
    """auth/middleware.go GetRespWriter: which responseutils writer answers.
    /v1/ (and anything else, e.g. /data) -> v1, /v2/ -> v2, /v3/ -> v3."""
    if "/v1/" in path:
        return "v1"
    if "/v2/" in path:
        return "v2"
    if "/v3/" in path:
        return "v3"
    return "v1"


def op_outcome_body(ver, code, diag):
    """An OperationOutcome as the responseutils writers' CreateOpOutcome builds it
    (field order of models/fhir/{stu3,r4}/models.go Issue, omitempty honoured):
    v1 (responseutils/writer.go): severity, code, diagnostics;
    v2 (responseutils/v2/writer.go): + details.coding[0] with code always
    responseutils.RequestErr ("Request Error", whatever errType was passed);
    v3 (responseutils/v3/writer.go): + details {text} (coding omitted)."""
    issue = {"severity": "error", "code": code}
    if diag:
        issue["diagnostics"] = diag
    if ver == "v2":
        coding = {"system": "http://hl7.org/fhir/ValueSet/operation-outcome",
                  "code": "Request Error"}
        if diag:
            coding["display"] = diag
        details = {"coding": [coding]}
        if diag:
            details["text"] = diag
        issue["details"] = details
    elif ver == "v3":
        issue["details"] = {"text": diag} if diag else {}
    return go_json({"resourceType": "OperationOutcome", "issue": [issue]})


# responseutils writers' OpOutcome: the issue code follows the HTTP status
# (any other status gives the zero value "").
OPOUTCOME_CODES = {400: "structure", 401: "forbidden", 403: "forbidden", 410: "not-found"}


def fake_mbi(i):
    """Fake MBI with the real 11-character shape (C A AN N A AN N A A N N)."""
    return "%dEG%dTE%dMK%d%d" % (1 + i % 9, i % 10, (i // 10) % 10, (i // 100) % 10, (i // 1000) % 10)


def aco_uuid(client):
    """The ACO's UUID (acos.uuid in BCDA's database), stable per client id."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, "aco.%s.bcda-emu" % client)


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


def load_ids(no, rtype, n):
    return ["load%d-%s-%06d" % (no, rtype.lower(), i) for i in range(n)]


def load_line(rtype, ident, ms, seq):
    """A resource of a later BFD load: unique id, meta.lastUpdated = the load time."""
    obj = {"resourceType": rtype, "id": ident,
           "meta": {"lastUpdated": bfd_last_updated(ms)},
           "status": "active",
           "identifier": [{"system": "https://bluebutton.cms.gov/resources/variables/clm_id",
                           "value": str(800000000 + seq)}],
           "patient": {"reference": "Patient/-%d" % (20000000 + seq)},
           "text": {"status": "generated", "div": "<div>loaded %s %s</div>" % (rtype, ident)}}
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def gz(data):
    return gzip.compress(data, compresslevel=6, mtime=0)


def b64url_nopad(seg):
    """jwt/v5 Parser.DecodeSegment default: base64.RawURLEncoding (no padding)."""
    if not re.match(r"^[A-Za-z0-9_-]*\Z", seg) or len(seg) % 4 == 1:
        raise ValueError("bad segment")
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def jwt_claims(tok):
    """bcda/auth/ssas.go confirmTokenStringLegitimacy: jwt ParseUnverified into
    CommonClaims (3 segments, JSON header with a known alg, JSON claims of the
    right types), then issuer "ssas" and a non-empty `dat`.  Claims or None."""
    parts = tok.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(b64url_nopad(parts[0]))
        claims = json.loads(b64url_nopad(parts[1]))
    except ValueError:
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    if header.get("alg") not in JWT_ALGS:
        return None
    for k in ("iss", "sub", "cid", "sys", "dat", "aco", "id", "jti"):
        if k in claims and not isinstance(claims[k], str):
            return None
    for k in ("exp", "iat", "nbf"):
        if k in claims and (isinstance(claims[k], bool) or not isinstance(claims[k], (int, float))):
            return None
    if claims.get("iss") != "ssas" or not claims.get("dat"):
        return None
    return claims


# validation.go validateServiceDateSubqueryParameter: Go time.Parse against
# "2006", "2006-01", "2006-01-02", "2006-01-02T15:04:05" (+ "Z", "-07:00", or
# the literal "+07:00").  An hour of one digit and a fraction after the
# seconds are accepted by Go's parser; "-07:00" takes either sign.
_SERVICE_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{1,2}):(\d{2}):(\d{2})(?:[.,]\d+)?"
                           r"(?:Z|[+-]\d{2}:\d{2})?)?)?)?$")


def fhir_date_ok(s):
    m = _SERVICE_DATE.match(s)
    if not m:
        return False
    y, mo, d, hh, mi, ss = m.groups()
    try:
        if mo is not None and not 1 <= int(mo) <= 12:
            return False
        if d is not None:
            dt.date(int(y), int(mo), int(d))
        if hh is not None and (int(hh) > 23 or int(mi) > 59 or int(ss) > 59):
            return False
    except ValueError:
        return False
    if hh is not None and s[-6:-5] in ("+", "-") and s[-6:].count(":") == 1:
        zh, zm = int(s[-5:-3]), int(s[-2:])
        if zh > 24 or zm > 60:                       # Go: "time zone offset hour"
            return False
    return True


def type_filter_string(tf):
    """A TypeFilterParameter as text: ResourceType?name=value&name=value."""
    if tf is None or not tf[1]:
        return None
    return tf[0] + "?" + "&".join("%s=%s" % (n, v) for n, v in tf[1])


def has_shared_system_tag(tf):
    """validation.go HasSharedSystemTag: some _tag token's system (before the
    last '|') is the System-Type code system."""
    for name, value in (tf[1] if tf else []):
        if name == "_tag":
            for tag in value.split(","):
                system = tag[:tag.rfind("|")] if "|" in tag else tag
                if system == SYSTEM_TYPE_URL:
                    return True
    return False


# make bench exports the same generated gigabyte again and again: the gzip
# of a file's content, and the static copy nginx serves, are made once.
GZ_CACHE = {}
STATIC_COPY = {}


class EmuFile:
    """One export file: stored gzip-compressed, as BCDA stores it on EFS."""

    def __init__(self, job_id, name, rtype, kind, raw, lines, listed=True, cache=False):
        self.name, self.type, self.kind = name, rtype, kind   # kind: output|error
        self.path = "/data/%d/%s" % (job_id, name)
        self.sha256 = hashlib.sha256(raw).hexdigest()
        if cache:
            if self.sha256 not in GZ_CACHE:
                GZ_CACHE[self.sha256] = gz(raw)
            self.gz = GZ_CACHE[self.sha256]
        else:
            self.gz = gz(raw)
        self.lines = lines
        self.size = len(raw)
        self.foreign = False
        self.listed = listed            # in the manifest (an error file of a
                                        # sub-job without data is not)

    def raw(self):
        return gzip.decompress(self.gz)

    def info(self):
        return {"path": self.path, "name": self.name, "type": self.type, "kind": self.kind,
                "lines": self.lines, "bytes": self.size, "gzip_bytes": len(self.gz),
                "sha256": self.sha256, "foreign": self.foreign, "listed": self.listed}


class Job:
    def __init__(self, job_id, client, version, request_url, path_query, types, explicit,
                 type_filter, user_type_filter, since_ns, cfg):
        self.id, self.client, self.version = job_id, client, version
        self.request_url, self.path_query = request_url, path_query
        self.types, self.explicit_types = types, explicit
        self.type_filter = type_filter            # (resourceType, [(name, value)]) or None
        self.user_type_filter = user_type_filter  # as the request gave it
        self.since_ns = since_ns
        self.cfg = cfg                  # content settings snapshot taken at kickoff
        self.created = time.time()
        self.created_ns = time.time_ns() // 1000 * 1000   # Postgres keeps microseconds
        self.updated = self.created
        self.cancelled = False
        self.final = None               # None until finished: "Completed" | "Failed"
        self.completed_at = None
        self.files = []                 # EmuFile list once built
        self.built = threading.Event()
        self.served_once = set()        # file names whose fault (truncate/corrupt) was used
        self.short_served = {}          # file name -> copies served cut short
        self.tt_string = None           # manifest transactionTime
        self.tt_ns = None               # _lastUpdated upper bound for adjudicated types
        self.loads = []                 # the BFD loads that existed at kickoff


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
        self.started = time.time()
        # The base load (fixtures or `generate`) happened an hour before start.
        self.base_ms = int(self.started * 1000) - 3600 * 1000
        # The newest attribution (CCLF8) file, as /attribution_status shows it.
        self.attribution_ts = self.started - 86400 * 10
        self.reset()

    # ---- settings and stats ------------------------------------------------
    def reset(self):
        with self.lock:
            self.settings = copy.deepcopy(DEFAULT_SETTINGS)
            self.settings["token_ttl"] = self.cli_token_ttl
            self.jobs = {}              # ids keep counting up, like a DB sequence
            self.file_401_served = 0
            self.loads = []             # later BFD loads: {"no", "ms", "counts", "ids"}
            self.request_times = []     # time.monotonic() of each API-port request
            self.stats = {"token_requests": 0, "token_ok": 0, "kickoffs": 0,
                          "kickoff_attempts": 0, "kickoff_urls": [], "polls": 0,
                          "deletes": 0, "jobs_list_requests": 0,
                          "data_requests": {}, "downloads_started": {},
                          "downloads_completed": {},
                          "foreign_auth_seen": 0, "foreign_requests": 0,
                          "bad_auth": 0, "requests": 0, "waf_blocked": 0,
                          "downloads_in_flight": 0, "downloads_in_flight_max": 0}

    def configure(self, update):
        if not isinstance(update, dict):
            raise ValueError("config must be a JSON object")
        update = dict(update)
        creds = {}
        for key in ("rotate_secret", "clients"):
            # {"rotate_secret": {"A9994": "new"}}: BCDA now accepts only the new
            # secret for that client (credential rotation).  {"clients": {...}}:
            # more accepted credentials (more ACOs against one emulator).
            if key in update:
                v = update.pop(key)
                if not isinstance(v, dict) or not all(isinstance(a, str) and isinstance(b, str)
                                                      for a, b in v.items()):
                    raise ValueError("%s must be an object {client_id: secret}" % key)
                creds.update(v)
        for k in update:
            if k not in DEFAULT_SETTINGS:
                raise ValueError("unknown setting %s" % k)
        if update.get("expire_mode", "410") not in ("410", "404", 410, 404):
            raise ValueError("expire_mode must be \"410\" or \"404\"")
        if update.get("progress_form", "paren") not in ("paren", "comma", "bare"):
            raise ValueError("progress_form must be paren, comma or bare")
        if "generate" in update and not isinstance(update["generate"], dict):
            raise ValueError("generate must be an object {type: lines}")
        if "time_offset" in update:
            offset_seconds(update["time_offset"])
        if update.get("since_floor") is not None and parse_rfc3339nano_ns(update["since_floor"]) is None:
            raise ValueError("since_floor must be an RFC 3339 time with a zone, or null")
        for k in ("disabled_clients", "pac_clients"):
            if k in update and not (isinstance(update[k], list)
                                    and all(isinstance(c, str) for c in update[k])):
                raise ValueError("%s must be a list of client ids" % k)
        if "archive_threshold_seconds" in update and not float(update["archive_threshold_seconds"]) > 0:
            raise ValueError("archive_threshold_seconds must be > 0")
        with self.lock:
            self.clients.update(creds)
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

    def arrival(self):
        """Records a request to the API port; True if the WAF blocks it.
        CMSgov/cdap terraform/modules/firewall/main.tf: an AWS WAF rate-based
        rule (aggregate_key_type IP) over a 5-minute window; services/api-waf
        sets BCDA's limit to 1000 (the docs say 3000).  Every request that
        reaches the rule counts, blocked ones included."""
        now = time.monotonic()
        with self.lock:
            self.stats["requests"] += 1
            self.request_times.append(now)
            limit = self.settings["waf_limit"]
            if limit is None:
                return False
            since = now - float(self.settings["waf_window_seconds"])
            n = len(self.request_times) - bisect.bisect_left(self.request_times, since)
            if n > int(limit):
                self.stats["waf_blocked"] += 1
                return True
            return False

    # ---- tokens ------------------------------------------------------------
    def issue_token(self, client):
        """An SSAS-like access token (ssas/service/public/api.go token):
        issuer "ssas", `dat` carrying the ACO's CMS id (bcda/auth/ssas.go
        getAuthDataFromClaims reads {"cms_ids": [...]})."""
        def b64(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
        with self.lock:
            ttl = float(self.settings["token_ttl"])
            now = time.time()
            tok = ".".join([b64({"alg": "RS512", "typ": "JWT"}),
                            b64({"cid": client, "sys": "1",
                                 "dat": json.dumps({"cms_ids": [client]}, separators=(",", ":")),
                                 "iss": "ssas", "sub": client, "iat": int(now),
                                 "exp": int(now + ttl), "jti": secrets.token_hex(16)}),
                            secrets.token_urlsafe(64)])
            self.tokens[tok] = (client, now + ttl)
            return tok, int(ttl)

    def introspect(self, tok):
        """SSAS introspect: the client if the token is one we issued and still
        active, else None (bcda/auth/ssas.go checkTokenExpiration: active=false)."""
        with self.lock:
            entry = self.tokens.get(tok)
        if entry is None or time.time() >= entry[1]:
            return None
        return entry[0]

    # ---- jobs --------------------------------------------------------------
    def threshold(self):
        """ARCHIVE_THRESHOLD_HR (24 h), the handler's JobTimeout.  Caller holds the lock."""
        return float(self.settings["archive_threshold_seconds"])

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
        exp = self.threshold() if exp is None else float(exp)
        if now >= job.completed_at + exp:
            return "Archived" if s["expire_mode"] == "404" else "Stale"
        return "Completed"

    def expires_at(self, job):
        exp = self.settings["expire_after_seconds"]
        return job.completed_at + (self.threshold() if exp is None else float(exp))

    def progress(self, job, now):
        js = float(self.settings["job_seconds"])
        start = job.created + float(self.settings["pending_seconds"])
        pct = int(100 * (now - start) / js) if js > 0 else 99
        return max(0, min(99, pct))

    @staticmethod
    def db_status(state):
        return {"Stale": "Completed"}.get(state, state)

    def find_duplicate(self, client, version, new_url, types):
        """web/middleware/ratelimit.go CheckConcurrentJobs/hasDuplicates, exactly.
        Caller holds the lock.  new_url is r.URL.String() (path?query as sent)."""
        now = time.time()
        try:
            unescaped_new = go_unescape(new_url)
        except ValueError:
            unescaped_new = None        # "Unable to unescape new job URL": every job skipped
        type_set = set(types or [])
        all_resources = not types       # len(rp.ResourceTypes) == 0
        # repository.GetJobs(acoID, InProgress, Pending)
        for job in self.jobs.values():
            if job.client != client:
                continue
            if self.db_status(self.job_state(job, now)) not in ("Pending", "In Progress"):
                continue
            # url.Parse(job.RequestURL): Path unescaped (failure skips the job)
            u = urlsplit(job.request_url)
            try:
                req_path = go_unescape(u.path, plus_to_space=False)
            except ValueError:
                continue
            raw_query = job.request_url.partition("?")[2]
            jv = re.search(r"/api/(v\d+)/", req_path)           # getVersion
            if not jv or jv.group(1) != version:
                continue
            if now > job.created + self.threshold():            # job timed out
                continue
            if unescaped_new is None:
                continue
            try:
                unescaped_old = go_unescape(req_path + "?" + raw_query)
            except ValueError:
                unescaped_old = ""
            if unescaped_old == unescaped_new:
                return job
            if all_resources:
                return job
            # req.Query()["_type"]: each value compared whole, so an old
            # `_type=A,B` matches only a new type set holding "A,B".
            old_types = go_parse_query(raw_query).get("_type")
            if old_types is None:
                return job              # the old job exports every type
            if any(t in type_set for t in old_types):
                return job
        return None

    def create_job(self, client, version, request_url, path_query, types, explicit,
                   type_filter, user_type_filter, since_ns):
        with self.lock:
            cfg = {k: copy.deepcopy(self.settings[k]) for k in
                   ("lines_per_file", "generate", "error_lines", "wrong_type", "foreign_file",
                    "job_fail", "transaction_time", "time_offset", "generate_like_fixture",
                    "static_root")}
            if "Observation" in types:
                # worker.go writeBBDataToFile: "unsupported resource type
                # requested"; ProcessJob moves the job to Failed.
                cfg["job_fail"] = True
            job = Job(self.next_id, client, version, request_url, path_query, types, explicit,
                      type_filter, user_type_filter, since_ns, cfg)
            self.next_id += 1
            job.loads = list(self.loads)
            last_ms = job.loads[-1]["ms"] if job.loads else self.base_ms
            override = cfg["transaction_time"]
            if version == "v3":
                # worker_prepare.go GetBundleLastUpdated: v3 uses time.Now()
                # at prepare (TODO BCDA-10317).
                job.tt_ns = job.created_ns
            else:
                # v1/v2: BFD's Patient bundle meta.lastUpdated = its last load.
                job.tt_ns = last_ms * 10 ** 6
            if override is not None:
                job.tt_string = override
                job.tt_ns = parse_rfc3339nano_ns(override) or job.tt_ns
            else:
                # requests.go JobStatus: json.Marshal(job.TransactionTime), a
                # time read back from Postgres (timestamptz, pgx): microseconds,
                # in the API server's time.Local (setting time_offset).
                job.tt_string = go_time_json_ns(job.tt_ns // 1000 * 1000, cfg["time_offset"])
            self.jobs[job.id] = job
            self.stats["kickoffs"] += 1
        threading.Thread(target=self._build, args=(job,), daemon=True).start()
        return job

    def add_load(self, counts):
        """POST /_emu/load: BFD loads new resources now (after the last load)."""
        with self.lock:
            last = self.loads[-1]["ms"] if self.loads else self.base_ms
            ms = max(int(time.time() * 1000), last + 1)
            no = len(self.loads) + 1
            ids = {t: load_ids(no, t, n) for t, n in counts.items()}
            self.loads.append({"no": no, "ms": ms, "counts": dict(counts), "ids": ids})
            offset = self.settings["time_offset"]
        return {"load_time": go_time_json_ns(ms * 10 ** 6, offset), "ids": ids}

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

    def _fixture_like(self, version, rtype, n):
        """n lines cycled from the fixture's, each with an id of its own."""
        base = self._fixture_lines(version, rtype)
        out = []
        for i in range(n):
            line = base[i % len(base)]
            k = line.index(b'"id":"') + 6
            out.append(line[:k] + b"bench-%08d-" % i + line[k:])
        return out

    def _lines(self, job, rtype):
        """The lines of one type in the job's window: bluebutton.go
        updateParamWithLastUpdated asks BFD for _lastUpdated=le<transactionTime>
        and, with a _since, _lastUpdated=gt<since>.  Partially adjudicated types
        use the job's creation time as the upper bound (service.go
        getQueueJobTransactionTime)."""
        hi = job.created_ns if rtype in PAC_TYPES else job.tt_ns
        lo = job.since_ns

        def inside(ms):
            ns = ms * 10 ** 6
            return (lo is None or ns > lo) and ns <= hi

        out = []
        if inside(self.base_ms):
            n = job.cfg["generate"].get(rtype)
            if n is not None and job.cfg["generate_like_fixture"]:
                out.extend(self._fixture_like(job.version, rtype, int(n)))
            elif n is not None:
                out.extend(synth_line(rtype, i) for i in range(int(n)))
            else:
                out.extend(self._fixture_lines(job.version, rtype))
        for ld in job.loads:
            if inside(ld["ms"]):
                for i, ident in enumerate(ld["ids"].get(rtype, [])):
                    out.append(load_line(rtype, ident, ld["ms"], ld["no"] * 100000 + i))
        return out

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
            if rtype == "Observation":
                continue
            lines_all = self._lines(job, rtype)
            # One file per sub-job with data; a sub-job without data writes
            # blank.ndjson, which GetJobAndKeys leaves out (service.go:217).
            for chunk, start in enumerate(range(0, len(lines_all), per)):
                name = "%s.ndjson" % uuid.uuid5(uuid.NAMESPACE_URL,
                                                "bcda-emu/%d/%s/%d" % (job.id, rtype, chunk))
                lines = lines_all[start:start + per]
                if job.cfg["wrong_type"] and not files:
                    obj = json.loads(lines[0])
                    obj["resourceType"] = "Basic" if rtype != "Basic" else "Patient"
                    lines[0] = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                files.append(EmuFile(job.id, name, rtype, "output", b"".join(lines), len(lines),
                                     cache=bool(job.cfg["static_root"])))
        n_err = int(job.cfg["error_lines"])
        if n_err > 0:
            etype = "ExplanationOfBenefit" if "ExplanationOfBenefit" in job.types else job.types[0]
            # worker.go writeBBDataToFile: errors go to <uuid>-error.ndjson next
            # to the sub-job's <uuid>.ndjson; requests.go JobStatus lists an
            # error file only through its data file's name, so the error file
            # of a sub-job that found no data is written but never listed.
            owner = next((f for f in files if f.type == etype), None)
            base = (owner.name[:-len(".ndjson")] if owner else
                    str(uuid.uuid5(uuid.NAMESPACE_URL, "bcda-emu/%d/%s/blank" % (job.id, etype))))
            aco = aco_uuid(job.client)
            body = b"".join(go_json({"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "not-found",
                "diagnostics": "Error retrieving %s for beneficiary MBI %s in ACO %s"
                               % (etype, fake_mbi(i), aco)}]}) + b"\n" for i in range(n_err))
            errors.append(EmuFile(job.id, base + "-error.ndjson", "OperationOutcome", "error",
                                  body, n_err, listed=owner is not None))
        # worker_prepare.go defaultSystemTypeWarningNeeded: v3, EOB requested,
        # and no System-Type _tag in the request's _typeFilter.
        warnings = []
        if (job.version == "v3" and "ExplanationOfBenefit" in job.types
                and not has_shared_system_tag(job.user_type_filter)):
            body = go_json({"resourceType": "OperationOutcome", "issue": [{
                "severity": "warning", "code": "processing",
                "details": {"text": WARNING_TEXT}}]}) + b"\n"
            warnings.append(EmuFile(job.id, "warnings-and-info.ndjson", "OperationOutcome", "error",
                                    body, 1))
        if job.cfg["foreign_file"] and files and self.foreign_port:
            files[-1].foreign = True
        # requests.go JobStatus: warnings-and-info.ndjson first in error[].
        job.files = files + warnings + errors
        root = job.cfg["static_root"]
        if root:
            d = os.path.join(root, "data", str(job.id))
            os.makedirs(d, exist_ok=True)
            for f in job.files:
                path = os.path.join(d, f.name)
                if f.sha256 in STATIC_COPY:
                    os.link(STATIC_COPY[f.sha256], path)
                    continue
                with open(path, "wb") as out:
                    out.write(f.gz + EMPTY_GZIP_MEMBER)
                STATIC_COPY[f.sha256] = path

    def manifest(self, job, host):
        """requests.go JobStatus BulkResponseBody."""
        def url(f):
            h = "127.0.0.1:%d" % self.foreign_port if f.foreign else host
            return "http://%s%s" % (h, f.path)
        return {"transactionTime": job.tt_string, "request": job.request_url,
                "requiresAccessToken": True,
                "output": [{"type": f.type, "url": url(f)} for f in job.files
                           if f.kind == "output"],
                "error": [{"type": "OperationOutcome", "url": url(f)} for f in job.files
                          if f.kind == "error" and f.listed],
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
                        "type_filter": type_filter_string(j.type_filter),
                        "since": None if j.since_ns is None else go_time_json_ns(j.since_ns),
                        "transaction_time": j.tt_string,
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
        if self.written is not None:
            # A middleware already wrote the status line, its headers and a body
            # (Go: WriteHeader without return); whatever follows is appended,
            # and later status codes and headers are lost.
            status, ctype, pre = self.written
            headers, body = {}, pre + body
            self.written = None
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

    def send_text(self, status, text):
        self.send(status, text, "text/plain; charset=utf-8", {"X-Content-Type-Options": "nosniff"})

    def http_error(self, status, text, headers=None):
        """Go net/http http.Error: text/plain, nosniff, the text and a newline."""
        h = {"X-Content-Type-Options": "nosniff"}
        h.update(headers or {})
        self.send(status, text + "\n", "text/plain; charset=utf-8", h)

    # The responseutils writers (writer.go, v2/writer.go, v3/writer.go), chosen
    # by auth/middleware.go GetRespWriter from the path.
    def _write_oo(self, status, code, diag, headers=None, partial=False):
        ver = writer_version(self.path_only)
        h = dict(headers or {})
        if status == 503 and ver == "v1":
            # responseutils/writer.go WriteError: includeRetryAfterHeader, v1 writer only
            h["Retry-After"] = "1"
        body = op_outcome_body(ver, code, diag)
        if partial:
            if self.written is None:
                self.written = (status, "application/fhir+json", body)
            else:
                self.written = (self.written[0], self.written[1], self.written[2] + body)
            return
        self.send(status, body, "application/fhir+json", h)

    def oo_exception(self, status, diag, headers=None):
        self._write_oo(status, "exception", diag, headers)

    def oo_not_found(self, status, diag, headers=None, partial=False):
        self._write_oo(status, "not-found", diag, headers, partial)

    def oo_outcome(self, status, diag, headers=None):
        self._write_oo(status, OPOUTCOME_CODES.get(status, ""), diag, headers)

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
        self.written = None
        self.path_only = unquote(urlsplit(self.path).path)
        # r.URL.RawQuery: everything after the first '?'; r.URL.Query() parses it.
        self.raw_query = self.path.partition("?")[2]
        self.query = go_parse_query(self.raw_query)
        if self.foreign:
            return self.route_foreign()
        if self.path_only.startswith("/_emu/"):
            return self.route_emu()
        try:
            if self.st.arrival():
                # AWS WAF rate-based rule (CMSgov/cdap terraform/modules/firewall/
                # main.tf): block with custom_response 429, header Retry-After 300,
                # custom body rate-limit-exceeded as APPLICATION_JSON.
                return self.send(429, WAF_BODY, "application/json", {"Retry-After": "300"})
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
    def parse_token(self, poll=False, inject=True):
        """auth/middleware.go ParseToken, which runs for every request of the API
        and data routers that carries an Authorization header.  inject=False:
        no injected fault (for /metadata, which needs no token).
        Returns (client, answered)."""
        st = self.st
        auth = self.headers.get("Authorization")
        if not auth:
            return None, False                  # RequireTokenAuth decides
        m = re.match(r"Bearer (\S+)\Z", auth)
        if not m:
            st.count("bad_auth")
            self.oo_outcome(401, "Invalid Token")
            return None, True
        tok = m.group(1)
        if jwt_claims(tok) is None:
            # ssas.go confirmTokenStringLegitimacy: RequestorDataError ->
            # handleTokenVerificationError 400 "Request Error"
            st.count("bad_auth")
            self.oo_outcome(400, "Request Error")
            return None, True
        # handleTokenVerificationError for failures of the SSAS introspect call:
        # UnexpectedSSASError / InternalParsingError -> 500 Exception "Internal
        # Error"; RequestTimeoutError -> 503 Exception "Internal Error" (the v1
        # writer adds Retry-After: 1, the v2 and v3 writers do not).
        if inject and st.take("auth_500"):
            self.oo_exception(500, "Internal Error")
            return None, True
        if inject and poll and st.take("poll_5xx"):
            self.oo_exception(503, "Internal Error")
            return None, True
        client = st.introspect(tok)
        expired = client is None
        if inject and client is not None and st.take("api_401"):
            expired = True                      # the token went inactive early
        if inject and client is not None and not expired and self.path_only.startswith("/data/") \
                and st.take("file_401"):        # an expired token seen only on /data
            with st.lock:
                late = st.file_401_served > 0
                st.file_401_served += 1
            if late:                            # parallel requests that used the same token
                time.sleep(float(st.get("file_401_delay") or 0))
            expired = True
        if expired:
            # checkTokenExpiration: active=false -> ExpiredTokenError ->
            # OpOutcome 401 "Expired Token" (unknown tokens are inactive too)
            st.count("bad_auth")
            self.oo_outcome(401, "Expired Token")
            return None, True
        return client, False

    def require_token(self, poll=False):
        """ParseToken + auth/middleware.go RequireTokenAuth.  Returns the client
        id, or None after answering."""
        client, answered = self.parse_token(poll)
        if answered:
            return None
        if client is None:
            self.st.count("bad_auth")
            self.oo_outcome(401, "Invalid Token")
        return client

    def aco_enabled(self, client):
        """web/middleware/middleware.go ACOEnabled (export kick-offs and /jobs only):
        a disabled ACO gets OpOutcome 401 with an empty message."""
        with self.st.lock:
            disabled = client in self.st.settings["disabled_clients"]
        if disabled:
            self.oo_outcome(401, "")
            return False
        return True

    def h_token(self):
        """bcda/auth/api.go GetAuthToken (BCDA's proxy to SSAS /token)."""
        st = self.st
        st.count("token_requests")
        delay = float(st.get("token_delay") or 0)
        if delay > 0:
            time.sleep(delay)
        # r.BasicAuth(): "Basic " (any case), standard base64 with padding, a ':'.
        auth = self.headers.get("Authorization") or ""
        creds = None
        if auth[:6].lower() == "basic ":
            try:
                raw = base64.b64decode(auth[6:].replace("\r", "").replace("\n", ""), validate=True)
                cid, sep, secret = raw.decode("utf-8", "replace").partition(":")
                creds = (cid, secret) if sep else None
            except ValueError:
                creds = None
        if creds is None:
            return self.http_error(400, "Bad Request")
        cid, secret = creds
        if st.take("token_503"):
            # RequestTimeoutError from SSAS: Retry-After 1, http.Error 503
            return self.http_error(503, "Service Unavailable", {"Retry-After": "1"})
        if st.take("token_429"):
            # SSASErrorTooManyRequests: Retry-After = MinutesToSeconds(
            # SSAS_RATE_LIMIT_DURATION_MINUTES) (default 5 -> 300); the entity is
            # the ACO's CMS id (here the client id).
            return self.http_error(429, "%s exceeded the rate limit for /auth/token. Access "
                                   "tokens last 20 minutes; please cache and reuse them." % cid,
                                   {"Retry-After": str(int(st.get("token_429_retry_after")))})
        with st.lock:
            ok = st.clients.get(cid) == secret
        if st.take("token_fail") or not ok:
            return self.http_error(401, "Unauthorized")     # SSASErrorUnauthorized
        # A disabled ACO still gets a token: SSAS (bcda-ssas-app
        # ssas/service/public/api.go token) knows nothing of BCDA's ACO config.
        tok, ttl = st.issue_token(cid)
        if st.get("expires_in_number"):
            body = '{"access_token": "%s", "expires_in": %d, "token_type":"bearer"}' % (tok, ttl)
        else:
            body = '{"access_token": "%s", "expires_in": "%d", "token_type":"bearer"}' % (tok, ttl)
        st.count("token_ok")
        self.send(200, body, "application/json", {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def header_values(self, name):
        """validation.go parseHeaderValues: every line, split on ',', trimmed,
        empty parts dropped."""
        return [p.strip() for raw in (self.headers.get_all(name) or []) for p in raw.split(",")
                if p.strip()]

    def check_accept_prefer(self):
        """validation.go ValidateRequestHeaders; True if OK, else 400 already sent."""
        accept, prefer = self.header_values("Accept"), self.header_values("Prefer")
        if not accept:
            self.oo_outcome(400, "Accept header is required")
        elif "application/fhir+json" not in header_tokens(", ".join(accept)):
            self.oo_outcome(400, "application/fhir+json is the only supported response format")
        elif not prefer:
            self.oo_outcome(400, "Prefer header is required")
        elif "respond-async" not in header_tokens(", ".join(prefer)):
            self.oo_outcome(400, "Only asynchronous responses are supported")
        else:
            return True
        return False

    # ---- kick-off ------------------------------------------------------------
    def validate_params(self, ver):
        """validation.go ValidateRequestURL.  Returns (types|None, typeFilter|None,
        since_ns|None) or False after answering 400."""
        q = self.query
        bad = lambda msg: self.oo_outcome(400, msg) or False
        if "_outputFormat" in q and q["_outputFormat"][0] not in OUTPUT_FORMATS:
            # getKeys(map): Go's map order is random; this is one of the orders.
            return bad("_outputFormat parameter must be one of [%s]" % " ".join(OUTPUT_FORMATS))
        if "_elements" in q:
            return bad("Invalid parameter: this server does not support the _elements parameter.")
        if any(k.startswith("?") for k in q):
            return bad("Invalid parameter: query parameters cannot start with ?")
        since_ns = None
        if "_since" in q:
            since_ns = parse_rfc3339nano_ns(q["_since"][0])
            if since_ns is None:
                return bad("Invalid date format supplied in _since parameter.  Date must be in "
                           "FHIR Instant format.")
            if since_ns > time.time_ns():
                return bad("Invalid date format supplied in _since parameter. Date must be a date "
                           "that has already passed")
        types = None
        if "_type" in q:                       # only params[0]; repeats silently ignored
            types = q["_type"][0].split(",")
            seen = set()
            for t in types:
                if t in seen:
                    return bad("Repeated resource type %s" % t)
                seen.add(t)
        tf = None
        if ver == "v3" and "_typeFilter" in q:   # validateTypeFilterParameter: v3 only
            tf, err = self.type_filter_params(q["_typeFilter"])
            if err:
                return bad(err)
        return types, tf, since_ns

    @staticmethod
    def type_filter_params(params):
        """validation.go GetTypeFilterParams.  params are r.URL.Query() values,
        already decoded once; they are decoded again here (url.QueryUnescape),
        so '+' or '%2B' sent by the client becomes a space and '%252B' a '+'.
        Returns ((resourceType, [(name, value)]), None) or (None, message)."""
        if len(params) > 1:
            return None, "failed to process request given more that one _typeFilter parameter"
        try:
            decoded = go_unescape(params[0])
        except ValueError:
            return None, "failed to unescape %s" % params[0]
        if "?" not in decoded:
            return None, "missing question mark %s" % decoded
        rtype, qs = decoded.split("?", 1)
        if rtype != "ExplanationOfBenefit":
            return None, "invalid _typeFilter Resource Type (Only EOBs valid): %s" % rtype
        out = []
        for pair in qs.split("&"):
            if "=" not in pair:
                return None, "invalid _typeFilter parameter/value: %s" % pair
            name, value = pair.split("=", 1)
            if name not in ("service-date", "_tag", "outcome"):
                return None, "invalid _typeFilter subquery parameter: %s" % name
            for v in value.split(","):
                if name == "_tag":
                    if "|" not in v:
                        return None, ("invalid _tag value: %s. Searching by tag requires a token "
                                      "(system|code) to be specified" % v)
                    sysname, code = v.split("|")[:2]
                    if code not in TYPEFILTER_TAGS.get(sysname, ()):
                        return None, "invalid _tag value: %s" % v
                elif name == "outcome":
                    if v not in ("complete", "partial"):
                        return None, ("invalid outcome value: %s. Supported outcome values are "
                                      "'complete' and 'partial'" % v)
                else:
                    # BFD supports only eq, ge, gt, lt, le (validation.go, 2026-08-17)
                    d = v[2:] if len(v) > 2 and v[:2] in ("eq", "lt", "gt", "le", "ge") else v
                    if not fhir_date_ok(d):
                        return None, ("invalid service-date value: %s. Pass a valid FHIR date "
                                      "parameter" % v)
            out.append((name, value))
        return ("ExplanationOfBenefit", out), None

    def h_kickoff(self, ver, rest):
        """Router order (web/router.go): ParseToken, RequireTokenAuth,
        CheckBlacklist, ACOEnabled, ValidateRequestURL, ValidateRequestHeaders,
        CheckConcurrentJobs, then BulkGroupRequest/BulkPatientRequest."""
        st = self.st
        with st.lock:
            st.stats["kickoff_attempts"] += 1
            st.stats["kickoff_urls"].append(self.path)
        client = self.require_token()
        if client is None or not self.aco_enabled(client):
            return
        parsed = self.validate_params(ver)
        if parsed is False or not self.check_accept_prefer():
            return
        types, type_filter, since_ns = parsed
        # ratelimit.go CheckConcurrentJobs: 429, no body, Retry-After always
        # (CLIENT_RETRY_AFTER_IN_SECONDS, default 0).
        retry = {"Retry-After": str(int(st.get("retry_after") or 0))}
        if st.take("kickoff_429"):
            return self.send(429, b"", None, retry)
        with st.lock:
            dup = st.settings["duplicate_429"] and st.find_duplicate(client, ver, self.path, types)
        if dup:
            return self.send(429, b"", None, retry)
        # requests.go BulkGroupRequest
        gm = re.match(r"^/Group/([^/]+)/\$export$", rest)
        if gm and gm.group(1) not in ("all", "runout"):
            return self.oo_outcome(400, "Invalid group ID")
        req = gm.group(1) if gm else "patient"
        # requests.go getResourceTypes / validateResources
        with st.lock:
            s = copy.deepcopy(st.settings)
        pac = client in s["pac_clients"]
        effective = list(types) if types else list(DEFAULT_TYPES[ver])
        if not types and pac and ver == "v2":
            effective += list(PAC_TYPES)
        for t in effective:
            if t not in ALLOWED_TYPES[ver]:
                # h.supportedResourceTypes comes from a Go map: random order in reality.
                return self.oo_outcome(400, "invalid resource type %s. Supported types [%s]"
                                       % (t, " ".join(ALLOWED_TYPES[ver])))
            if t in PAC_TYPES and not pac:
                return self.oo_outcome(400, "unauthorized resource type %s" % t)
        # requests.go omitSharedSystemByDefault (v3 with EOB)
        final_tf = type_filter
        if ver == "v3" and "ExplanationOfBenefit" in effective and not has_shared_system_tag(type_filter):
            default_tag = ("_tag", SYSTEM_TYPE_URL + "|NationalClaimsHistory," + SYSTEM_TYPE_URL + "|DDPS")
            final_tf = ("ExplanationOfBenefit", (list(type_filter[1]) if type_filter else []) + [default_tag])
        # requests.go bulkRequest: GetLatestCCLFFile and the performance-year check.
        if req == "runout":
            if s["runout_expired"]:
                # no runout CCLF8 file newer than now - RUNOUT_CUTOFF_DATE_DAYS (180)
                return self.oo_not_found(404, "runout data is no longer available. Runout data "
                                              "expires 180 days after ingestion")
        elif not s["attribution_current"]:
            # the newest attribution file is of last performance year
            return self.oo_not_found(404, "unable to perform export operations for this Group. "
                                     "No up-to-date attribution information is available for "
                                     "ACOID '%s'. Usually this is due to awaiting new attribution "
                                     "information at the beginning of a Performance Year" % client)
        if req == "all" and since_ns is not None and s["since_floor"] is not None:
            # BulkGroupRequest: /Group/all with _since and BCDA_ENABLE_NEW_GROUP=true
            # (code default false) -> RetrieveNewBeneHistData -> FindOldCCLFFile:
            # the newest attribution file at or before _since (or, if _since is
            # after the newest file, strictly before the newest file).  since_floor
            # is the oldest attribution file's timestamp.
            floor = parse_rfc3339nano_ns(s["since_floor"])
            newest = max(floor, int(st.attribution_ts * 1e9))
            old_time = since_ns if since_ns <= newest else newest - 10 ** 9
            if not any(f <= old_time for f in (floor, newest)):
                return self.oo_not_found(404, "failed to start job; attribution file not found "
                                              "for given _since parameter.")
        if st.take("kickoff_500"):
            # repository CreateJob fails: Exception(500, DbErr, "")
            return self.oo_exception(500, "")
        host = self.host()
        job = st.create_job(client, ver, "http://%s%s" % (host, self.path), self.path,
                            effective, types, final_tf, type_filter, since_ns)
        delay = float(st.get("kickoff_delay") or 0)
        if delay > 0:                            # job exists; the answer is late (crash window)
            time.sleep(delay)
        self.send(202, b"", None, {"Content-Location": "http://%s/api/%s/jobs/%d" % (host, ver, job.id)})

    # ---- status / cancel ---------------------------------------------------
    def h_job(self, ver, id_str):
        """GET/DELETE /jobs/{jobID}: ParseToken, RequireTokenAuth, CheckBlacklist,
        RequireTokenJobMatch (auth/middleware.go), then JobStatus / DeleteJob."""
        st = self.st
        get = self.command == "GET"
        st.count("polls" if get else "deletes")
        if get:
            delay = float(st.get("poll_delay") or 0)
            if delay > 0:
                time.sleep(delay)
        client = self.require_token(poll=get)
        if client is None:
            return
        # RequireTokenJobMatch
        if not re.match(r"^[0-9]+\Z", id_str) or int(id_str) >= 2 ** 64:
            return self.oo_outcome(400, "")
        with st.lock:
            job = st.jobs.get(int(id_str))
            state = st.job_state(job) if job else None
        if job is None:
            return self.oo_not_found(404, "")
        if state == "Archived":
            # writes a 404 NotFound (empty diagnostics) and does not return: the
            # handler's answer is appended to the same body.
            self.oo_not_found(404, "", partial=True)
        if job.client != client:
            st.count("bad_auth")
            return self.oo_outcome(401, "")
        if not get:
            return self.cancel_job(job)
        if st.take("poll_500"):
            # JobStatus: GetJobAndKeys fails with an error other than ErrNoRows
            return self.oo_exception(500, "Error trying to fetch job. Please try again.")
        with st.lock:
            now = time.time()
            state = st.job_state(job, now)
            form = st.settings["progress_form"]
            pct = st.progress(job, now)
            expires = go_time_string(st.expires_at(job)) if job.completed_at else None
        if state == "Pending":
            return self.send(202, b"", None, {"X-Progress": "Pending"})
        if state == "In Progress":
            # models.go StatusMessage: "In Progress (NN%)", or plain "In
            # Progress" while JobCount is 0 ("bare"); the docs show "In Progress, NN%".
            prog = {"paren": "In Progress (%d%%)" % pct, "comma": "In Progress, %d%%" % pct,
                    "bare": "In Progress"}[form]
            return self.send(202, b"", None, {"X-Progress": prog})
        if state == "Failed":
            return self.oo_exception(500, JOB_FAILED_MSG)       # errType JobFailed
        if state == "Cancelled":
            return self.oo_not_found(404, "Job has been cancelled.")
        if state in ("Stale", "Archived"):
            # Completed past JobTimeout (cleanup not run yet), or Archived/Expired:
            # Expires header + OpOutcome 410 with an empty message.
            return self.oo_outcome(410, "", {"Expires": expires})
        job.built.wait(600)
        self.send_json(200, st.manifest(job, self.host()), "application/json", {"Expires": expires})

    def cancel_job(self, job):
        """requests.go DeleteJob / service.go CancelJob."""
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
        self.oo_outcome(410, "job was not cancelled because it is not Pending or In Progress")

    def h_jobs_list(self, ver):
        """GET /jobs: commonAuth, ACOEnabled, ValidateRequestURL,
        ValidateRequestHeaders (web/router.go), then requests.go JobsStatus."""
        st = self.st
        st.count("jobs_list_requests")
        client = self.require_token()
        if client is None or not self.aco_enabled(client):
            return
        if self.validate_params(ver) is False or not self.check_accept_prefer():
            return
        wanted = list(JOB_STATUS_NAMES)
        if "_status" in self.query:
            wanted = []
            for s in self.query["_status"][0].split(","):
                if s in wanted:
                    return self.oo_outcome(400, "Repeated status type %s" % s)
                wanted.append(s)
            for s in wanted:
                if s not in JOB_STATUS_NAMES:
                    # "%s" of Go's map[JobStatus]struct{}: keys printed sorted
                    return self.oo_outcome(400, "invalid status type %s. Supported types map[%s]"
                                           % (s, " ".join("%s:{}" % n for n in sorted(JOB_STATUS_NAMES))))
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
        # requests.go JobsStatus: the 404 NotFound (service.JobsNotFoundError) is
        # written without a return, so the (empty) Bundle is appended to it.
        self.oo_not_found(404, "no Jobs found for acoID %s with job statuses [%s]"
                          % (aco_uuid(client), " ".join(wanted)), partial=True)
        self.send_json(200, bundle)

    # ---- other endpoints ---------------------------------------------------
    def h_metadata(self, ver):
        _, answered = self.parse_token(inject=False)    # ParseToken runs on /metadata too
        if answered:
            return
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
        """requests.go AttributionStatus: json.NewEncoder(w).Encode (trailing newline)."""
        if self.require_token() is None:
            return
        with self.st.lock:
            runout_expired = self.st.settings["runout_expired"]
        ts = go_rfc3339nano(self.st.attribution_ts)
        runout = go_rfc3339nano(self.st.started - 86400 * (181 if runout_expired else 10))
        self.send(200, go_json({"ingestion_dates": [
            {"timestamp": ts, "type": "last_attribution_update"},
            {"timestamp": runout, "type": "last_runout_update"}]}) + b"\n", "application/json")

    # ---- data files --------------------------------------------------------
    def h_data(self):
        """Data router: ParseToken, RequireTokenAuth, CheckBlacklist,
        RequireTokenJobMatch, then api/v1/api.go ServeData.  Every OperationOutcome
        here comes from the v1 writer (GetRespWriter: no /vN/ in the path)."""
        st = self.st
        client = self.require_token()
        if client is None:
            return
        m = re.match(r"^/data/([^/]+)/([^/]+)$", self.path_only)
        if not m:
            return self.send_text(404, "404 page not found\n")     # chi: no route
        if not re.match(r"^[0-9]+\Z", m.group(1)) or int(m.group(1)) >= 2 ** 64:
            return self.oo_outcome(400, "")
        with st.lock:
            job = st.jobs.get(int(m.group(1)))
            state = st.job_state(job) if job else None
        if job is None:
            return self.oo_not_found(404, "")
        if state == "Archived":
            self.oo_not_found(404, "", partial=True)   # no return: ServeData's 404 follows
        if job.client != client:
            st.count("bad_auth")
            return self.oo_outcome(401, "")
        st.count_path("data_requests", self.path_only)   # answered with a file or not
        # ServeData: http.Error(404/500) when the job dir or file is missing.
        if st.take("file_404"):
            return self.http_error(404, "Not Found")
        if st.take("file_500"):
            return self.http_error(500, "Internal Server Error")
        _, f = st.find_file(self.path_only)
        # Files are in the payload dir once the job completed, and stay there
        # after the 24 h (the poll then answers 410) until the cleanup job
        # (twice a day, bcdaworker/queueing/river.go "0 11,23 * * *") archives them.
        if f is None or state not in ("Completed", "Stale"):
            return self.http_error(404, "Not Found")
        self.serve_file(job, f)

    def serve_file(self, job, f):
        st = self.st
        use_gzip = any("gzip" in v for v in (self.headers.get_all("Accept-Encoding") or []))
        with st.lock:
            s = st.settings
            fresh = f.name not in job.served_once
            truncate = bool(s["truncate_gzip"]) and fresh
            corrupt = bool(s["corrupt_gzip"]) and fresh and use_gzip
            if truncate or corrupt:
                job.served_once.add(f.name)
            short = use_gzip and job.short_served.get(f.name, 0) < int(s["short_gzip"] or 0)
            if short:
                job.short_served[f.name] = job.short_served.get(f.name, 0) + 1
            rate = float(s["download_rate"] or 0)
        st.count_path("downloads_started", f.path)
        headers = {"Content-Type": "application/fhir+ndjson"}
        if use_gzip:
            data = f.gz
            if corrupt:                          # force BTYPE=11 (invalid) in the first deflate block
                b = bytearray(data)
                b[10] |= 0x06
                data = bytes(b)
            if short:                            # the stored file ends mid-stream
                data = data[:len(data) // 2]
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
            except (ValueError, TypeError) as e:
                return self.send(400, json.dumps({"error": str(e)}), "application/json")
        if p == "/_emu/config" and m == "GET":
            with st.lock:
                return self.send(200, json.dumps(st.settings), "application/json")
        if p == "/_emu/reset" and m == "POST":
            st.reset()
            return self.send(200, json.dumps(st.settings), "application/json")
        if p == "/_emu/load" and m == "POST":
            try:
                counts = json.loads(self.body or b"{}")
                if not isinstance(counts, dict):
                    raise ValueError("load must be an object {type: count}")
                known = {t for ts in ALLOWED_TYPES.values() for t in ts}
                for t, n in counts.items():
                    if t not in known or isinstance(n, bool) or not isinstance(n, int) or n < 0:
                        raise ValueError("bad load entry %s: %r" % (t, n))
            except ValueError as e:
                return self.send(400, json.dumps({"error": str(e)}), "application/json")
            return self.send(200, json.dumps(st.add_load(counts)), "application/json")
        if p == "/_emu/requests" and m == "GET":
            with st.lock:
                return self.send(200, json.dumps({"times": list(st.request_times)}),
                                 "application/json")
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
    return str(repo / "tests" / "fixtures")


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
