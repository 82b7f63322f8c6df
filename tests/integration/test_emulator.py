"""The BCDA emulator itself, spoken to directly over HTTP (no daemon).

Each test turns on one behaviour of the real server (bcda-app code, cited
in tests/emulator/bcda_emu.py) and checks the exact status, headers and
body the emulator answers with.  Standard library only.
"""
import base64
import json
import time
import urllib.error
import urllib.request

from harness import CLIENT, SECRET, check, wait_for

FHIR = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
OO_SYSTEM = "http://hl7.org/fhir/ValueSet/operation-outcome"


# ---- helpers ----------------------------------------------------------------

def call(env, path, method="GET", headers=None, data=None):
    """One request; returns (status, headers as a dict, body bytes)."""
    req = urllib.request.Request(env.emu.base + path, data=data, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def token(env, client=CLIENT, secret=SECRET):
    basic = base64.b64encode(("%s:%s" % (client, secret)).encode()).decode()
    st, _, body = call(env, "/auth/token", "POST", {"Authorization": "Basic " + basic})
    check(st == 200, "token: HTTP %d %r" % (st, body))
    return json.loads(body)["access_token"]


def auth(tok, fhir=True):
    h = {"Authorization": "Bearer " + tok}
    if fhir:
        h.update(FHIR)
    return h


def oo(ver, code, diag=""):
    """The OperationOutcome bytes BCDA's writer for `ver` produces."""
    issue = {"severity": "error", "code": code}
    if diag:
        issue["diagnostics"] = diag
    if ver == "v2":
        coding = {"system": OO_SYSTEM, "code": "Request Error"}
        if diag:
            coding["display"] = diag
        issue["details"] = {"coding": [coding]}
        if diag:
            issue["details"]["text"] = diag
    elif ver == "v3":
        issue["details"] = {"text": diag} if diag else {}
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]},
                      separators=(",", ":")).encode()


def expect(got, status, body=None, what=""):
    st, _, b = got
    check(st == status, "%s: HTTP %d, expected %d: %r" % (what, st, status, b[:300]))
    if body is not None:
        check(b == body, "%s: body\n%r\nexpected\n%r" % (what, b, body))


def kickoff(env, tok, path="/api/v2/Group/all/$export", status=202):
    got = call(env, path, headers=auth(tok))
    expect(got, status, what="kickoff " + path)
    if status == 202:
        return got[1]["Content-Location"].split("/api/", 1)[1]   # "v2/jobs/N"
    return got


def manifest(env, tok, job, timeout=10):
    def done():
        st, h, b = call(env, "/api/" + job, headers=auth(tok, False))
        check(st in (200, 202), "poll %s: HTTP %d %r" % (job, st, b[:300]))
        return json.loads(b) if st == 200 else None
    return wait_for(done, timeout, "job %s to complete" % job)


def lines_of(env, man):
    """{type: [resource ids]} of a manifest's output files."""
    out = {}
    for f in man["output"]:
        path = f["url"].split(env.emu.base, 1)[1]
        for line in env.emu.file_bytes(path).splitlines():
            out.setdefault(f["type"], []).append(json.loads(line)["id"])
    return out


def fast(env, **extra):
    env.emu.config(pending_seconds=0.05, job_seconds=0.1, **extra)


def load(env, counts):
    req = urllib.request.Request(env.emu.base + "/_emu/load",
                                 data=json.dumps(counts).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


# ---- 1: transient failures ------------------------------------------------------

def test_poll_500_transient_setting_removed(env):
    try:
        env.emu.config(poll_500_transient=1)
        check(False, "poll_500_transient still accepted")
    except urllib.error.HTTPError as e:
        check(e.code == 400 and b"unknown setting" in e.read(), "config answered %d" % e.code)


def test_poll_500(env):
    fast(env)
    tok = token(env)
    job = kickoff(env, tok)
    env.emu.config(poll_500=1)
    got = call(env, "/api/" + job, headers=auth(tok, False))
    expect(got, 500, oo("v2", "exception", "Error trying to fetch job. Please try again."), "poll")
    check(got[1]["Content-Type"] == "application/fhir+json", "content type %s" % got[1])
    check("Retry-After" not in got[1], "Retry-After on a 500")
    manifest(env, tok, job)                     # one-shot: the next poll is normal
    check(env.emu.get("/_emu/config")["poll_500"] == 0, "counter not consumed")


def test_kickoff_500(env):
    tok = token(env)
    for ver in ("v1", "v2", "v3"):
        env.emu.config(kickoff_500=1)
        got = call(env, "/api/%s/Patient/$export" % ver, headers=auth(tok))
        expect(got, 500, oo(ver, "exception"), "kickoff " + ver)
    check(env.emu.jobs() == [], "a job was created")
    v2 = oo("v2", "exception")
    check(v2 == b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":'
               b'"exception","details":{"coding":[{"system":"http://hl7.org/fhir/ValueSet/'
               b'operation-outcome","code":"Request Error"}]}}]}', "empty-message OO shape")


def test_auth_500(env):
    tok = token(env)
    env.emu.config(auth_500=1)
    got = call(env, "/api/v3/Patient/$export", headers=auth(tok))
    expect(got, 500, oo("v3", "exception", "Internal Error"), "auth_500")
    env.emu.config(auth_500=1)
    got = call(env, "/data/1/x.ndjson", headers=auth(tok, False))
    expect(got, 500, oo("v1", "exception", "Internal Error"), "auth_500 on /data")
    kickoff(env, tok, "/api/v3/Patient/$export")


def test_poll_5xx_is_token_timeout_503(env):
    fast(env, poll_5xx=1)
    tok = token(env)
    job = kickoff(env, tok)
    got = call(env, "/api/" + job, headers=auth(tok, False))
    # v2 writer: no Retry-After
    expect(got, 503, oo("v2", "exception", "Internal Error"), "v2 503")
    check("Retry-After" not in got[1], "v2 writer sent Retry-After")
    env.emu.config(poll_5xx=1)
    job1 = kickoff(env, tok, "/api/v1/Patient/$export")
    got = call(env, "/api/" + job1, headers=auth(tok, False))
    expect(got, 503, oo("v1", "exception", "Internal Error"), "v1 503")
    check(got[1].get("Retry-After") == "1", "v1 writer: Retry-After %s" % got[1].get("Retry-After"))


def test_job_failed_500(env):
    fast(env, job_fail=True)
    tok = token(env)
    job = kickoff(env, tok)
    want = oo("v2", "exception", "Service encountered numerous errors. Job failed to complete.")
    wait_for(lambda: call(env, "/api/" + job, headers=auth(tok, False))[0] == 500, 5, "failure")
    expect(call(env, "/api/" + job, headers=auth(tok, False)), 500, want, "failed job")


# ---- 2: kick-off 404s -----------------------------------------------------------

def test_attribution_not_current(env):
    fast(env, attribution_current=False)
    tok = token(env)
    msg = ("unable to perform export operations for this Group. No up-to-date attribution "
           "information is available for ACOID '%s'. Usually this is due to awaiting new "
           "attribution information at the beginning of a Performance Year" % CLIENT)
    for path in ("/api/v2/Patient/$export", "/api/v2/Group/all/$export"):
        expect(call(env, path, headers=auth(tok)), 404, oo("v2", "not-found", msg), path)
    job = kickoff(env, tok, "/api/v2/Group/runout/$export")
    man = manifest(env, tok, job)
    check(man["request"].endswith("/api/v2/Group/runout/$export"), "request %s" % man["request"])
    check(man["output"], "runout export empty")


def test_runout_expired(env):
    env.emu.config(runout_expired=True)
    tok = token(env)
    msg = "runout data is no longer available. Runout data expires 180 days after ingestion"
    expect(call(env, "/api/v3/Group/runout/$export", headers=auth(tok)), 404,
           oo("v3", "not-found", msg), "runout")
    kickoff(env, tok, "/api/v3/Group/all/$export")


def test_since_floor(env):
    fast(env, since_floor="2025-01-01T00:00:00Z")
    tok = token(env)
    msg = "failed to start job; attribution file not found for given _since parameter."
    early = "/api/v2/Group/all/$export?_since=2024-12-31T18:59:59.999-05:00"
    expect(call(env, early, headers=auth(tok)), 404, oo("v2", "not-found", msg), "early _since")
    # FindOldCCLFFile runs only for /Group/all: /Patient ignores the floor.
    job = kickoff(env, tok, "/api/v2/Patient/$export?_since=2024-06-01T00:00:00Z")
    manifest(env, tok, job)
    kickoff(env, tok, "/api/v2/Group/all/$export?_since=2025-01-01T00:00:00Z")


# ---- 3: 401 for a disabled ACO, and for another ACO's job -----------------------------

def test_disabled_aco(env):
    fast(env)
    tok = token(env)
    job = kickoff(env, tok)
    env.emu.config(disabled_clients=[CLIENT])
    tok2 = token(env)                           # SSAS still issues a token
    for path in ("/api/v2/Group/all/$export", "/api/v2/jobs"):
        expect(call(env, path, headers=auth(tok2)), 401, oo("v2", "forbidden"), path)
    expect(call(env, "/api/v1/jobs", headers=auth(tok2)), 401,
           b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden"}]}',
           "v1 /jobs")
    # ACOEnabled is not on the status route (web/router.go).
    manifest(env, tok2, job)


def test_other_aco_job(env):
    fast(env, clients={"A0002": "other-secret"})
    tok = token(env)
    job = kickoff(env, tok, "/api/v3/Group/all/$export")
    other = token(env, "A0002", "other-secret")
    expect(call(env, "/api/" + job, headers=auth(other, False)), 401, oo("v3", "forbidden"),
           "another ACO's job")
    man = manifest(env, tok, job)
    path = man["output"][0]["url"].split(env.emu.base, 1)[1]
    expect(call(env, path, headers=auth(other, False)), 401, oo("v1", "forbidden"),
           "another ACO's file")


def test_token_errors_on_api(env):
    tok = token(env)
    expect(call(env, "/api/v2/jobs", headers=FHIR), 401, oo("v2", "forbidden", "Invalid Token"),
           "no token")
    expect(call(env, "/api/v2/jobs", headers=dict(FHIR, Authorization="Bearer a b")), 401,
           oo("v2", "forbidden", "Invalid Token"), "bad header")
    expect(call(env, "/api/v2/jobs", headers=dict(FHIR, Authorization="Bearer garbage")), 400,
           oo("v2", "structure", "Request Error"), "not a JWT")
    forged = tok.split(".")
    # Another first character (the same one would leave the token valid).
    forged[2] = ("y" if forged[2][0] == "x" else "x") + forged[2][1:]
    expect(call(env, "/api/v2/jobs", headers=auth(".".join(forged))), 401,
           oo("v2", "forbidden", "Expired Token"), "unknown token")
    env.emu.config(api_401=1)
    expect(call(env, "/api/v2/jobs", headers=auth(tok)), 401,
           oo("v2", "forbidden", "Expired Token"), "api_401")


# ---- 4: duplicate-job 429 ----------------------------------------------------------

def _expect_429(env, tok, path, retry="0"):
    st, h, b = call(env, path, headers=auth(tok))
    check(st == 429 and b == b"", "%s: HTTP %d %r" % (path, st, b[:200]))
    check(h.get("Retry-After") == retry, "%s: Retry-After %s" % (path, h.get("Retry-After")))


def test_duplicate_429(env):
    env.emu.config(pending_seconds=30)
    tok = token(env)
    base = "/api/v2/Group/all/$export"
    kickoff(env, tok, base + "?_type=Patient")
    _expect_429(env, tok, base + "?_type=Patient")                    # same URL
    _expect_429(env, tok, "/api/v2/Patient/$export")                  # all types
    _expect_429(env, tok, "/api/v2/Group/runout/$export?_type=Coverage,Patient")  # overlap
    kickoff(env, tok, base + "?_type=Coverage")                       # no overlap
    kickoff(env, tok, "/api/v3/Patient/$export")                      # other version
    env.emu.config(retry_after=7)
    _expect_429(env, tok, "/api/v3/Patient/$export?_type=Coverage", "7")
    check(len(env.emu.jobs()) == 3, "jobs: %d" % len(env.emu.jobs()))


def test_duplicate_429_whole_string_type_quirk(env):
    env.emu.config(pending_seconds=30)
    tok = token(env)
    kickoff(env, tok, "/api/v2/Patient/$export?_type=Patient,Coverage")
    # The old job's _type values are compared whole: "Patient,Coverage" is in
    # no new type set, so overlapping requests pass...
    kickoff(env, tok, "/api/v2/Patient/$export?_type=Patient")
    # ...except an identical URL (compared unescaped).
    _expect_429(env, tok, "/api/v2/Patient/$export?_type=Patient%2CCoverage")
    # A job whose _type is repeated: each value is compared.
    kickoff(env, tok, "/api/v2/Group/all/$export?_type=ExplanationOfBenefit&_type=Claim")
    _expect_429(env, tok, "/api/v2/Group/runout/$export?_type=Claim")


def test_duplicate_429_times_out(env):
    # 3 s: room for the 429 check on a loaded machine, before it times out.
    env.emu.config(pending_seconds=30, archive_threshold_seconds=3)
    tok = token(env)
    kickoff(env, tok)
    _expect_429(env, tok, "/api/v2/Group/all/$export")
    time.sleep(3.1)
    kickoff(env, tok)                           # the blocker is older than the job timeout
    states = [j["status"] for j in env.emu.jobs()]
    check(states == ["Pending", "Pending"], "the blocker keeps running: %s" % states)


# ---- 5: _typeFilter decoded twice ---------------------------------------------------

def test_typefilter_double_decode(env):
    fast(env)
    tok = token(env)
    base = "/api/v3/Group/all/$export?_typeFilter=ExplanationOfBenefit%3Fservice-date%3D"
    msg = ("invalid service-date value: ge2024-01-01T00:00:00 05:00. Pass a valid FHIR date "
           "parameter")
    expect(call(env, base + "ge2024-01-01T00%3A00%3A00%2B05%3A00", headers=auth(tok)), 400,
           oo("v3", "structure", msg), "%2B")
    job = kickoff(env, tok, base + "ge2024-01-01T00%3A00%3A00%252B05%3A00")
    manifest(env, tok, job)
    (ej,) = env.emu.jobs()
    tag = ("_tag=https://bluebutton.cms.gov/fhir/CodeSystem/System-Type|NationalClaimsHistory,"
           "https://bluebutton.cms.gov/fhir/CodeSystem/System-Type|DDPS")
    check(ej["type_filter"] == "ExplanationOfBenefit?service-date=ge2024-01-01T00:00:00+05:00&" + tag,
          "type_filter %r" % ej["type_filter"])
    expect(call(env, "/api/v3/Patient/$export?_typeFilter=Claim%3Foutcome%3Dcomplete",
                headers=auth(tok)), 400,
           oo("v3", "structure", "invalid _typeFilter Resource Type (Only EOBs valid): Claim"), "type")
    expect(call(env, "/api/v3/Patient/$export?_typeFilter=ExplanationOfBenefit%253Fa%25zz",
                headers=auth(tok)), 400,
           oo("v3", "structure", "failed to unescape ExplanationOfBenefit%3Fa%zz"), "unescape")


# ---- 6: token endpoint ----------------------------------------------------------------

def test_token_503_and_429(env):
    basic = {"Authorization": "Basic " + base64.b64encode(
        ("%s:%s" % (CLIENT, SECRET)).encode()).decode()}
    env.emu.config(token_503=1, token_429=1)
    st, h, b = call(env, "/auth/token", "POST", basic)
    check((st, b) == (503, b"Service Unavailable\n"), "503: %d %r" % (st, b))
    check(h.get("Retry-After") == "1" and h.get("Content-Type") == "text/plain; charset=utf-8",
          "503 headers %s" % h)
    st, h, b = call(env, "/auth/token", "POST", basic)
    check((st, b) == (429, b"A9994 exceeded the rate limit for /auth/token. Access tokens last "
                           b"20 minutes; please cache and reuse them.\n"), "429: %d %r" % (st, b))
    check(h.get("Retry-After") == "300", "429 Retry-After %s" % h.get("Retry-After"))
    st, _, b = call(env, "/auth/token", "POST", {"Authorization": "Basic " + base64.b64encode(
        b"A9994:wrong").decode()})
    check((st, b) == (401, b"Unauthorized\n"), "401: %d %r" % (st, b))
    st, _, b = call(env, "/auth/token", "POST")
    check((st, b) == (400, b"Bad Request\n"), "400: %d %r" % (st, b))
    token(env)


# ---- 7: data that changes, and _since ---------------------------------------------------

def test_incremental_exports(env):
    fast(env)
    tok = token(env)
    first = manifest(env, tok, kickoff(env, tok, "/api/v2/Group/all/$export"))
    t0 = first["transactionTime"]
    check(t0.endswith("Z"), "v2 transactionTime %s" % t0)
    check(set(lines_of(env, first)) == {"Patient", "ExplanationOfBenefit", "Coverage"},
          "first export: %s" % first["output"])
    loaded = load(env, {"Patient": 2, "ExplanationOfBenefit": 5})
    t1 = loaded["load_time"]
    check(t1 > t0, "load time %s not after %s" % (t1, t0))
    second = manifest(env, tok, kickoff(env, tok, "/api/v2/Group/all/$export?_since=" + t0))
    check(second["transactionTime"] == t1, "second transactionTime %s, load %s"
          % (second["transactionTime"], t1))
    got = lines_of(env, second)
    check(got == loaded["ids"], "second export %s, loaded %s" % (got, loaded["ids"]))
    # Without _since, everything up to the last load.
    full = manifest(env, tok, kickoff(env, tok, "/api/v2/Patient/$export?_type=Patient"))
    check(set(loaded["ids"]["Patient"]) <= set(lines_of(env, full)["Patient"]), "full export")
    check(len(lines_of(env, full)["Patient"]) == len(lines_of(env, first)["Patient"]) + 2,
          "full export Patient count")


def test_incremental_nothing_new(env):
    fast(env)
    tok = token(env)
    first = manifest(env, tok, kickoff(env, tok, "/api/v2/Group/all/$export"))
    again = manifest(env, tok, kickoff(
        env, tok, "/api/v2/Group/all/$export?_since=" + first["transactionTime"]))
    check(again["output"] == [] and again["error"] == [], "empty export: %s" % again)
    check(again["transactionTime"] == first["transactionTime"], "transactionTime moved")
    # error_lines: the error file of a sub-job without data is not listed.
    env.emu.config(error_lines=3)
    empty = manifest(env, tok, kickoff(
        env, tok, "/api/v2/Group/all/$export?_since=" + first["transactionTime"]))
    check(empty["output"] == [] and empty["error"] == [], "empty export with errors: %s" % empty)
    # v3: the prepare worker still writes warnings-and-info.ndjson.
    v3 = manifest(env, tok, kickoff(env, tok, "/api/v3/Group/all/$export?_since="
                                    + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    check(v3["output"] == [] and len(v3["error"]) == 1 and
          v3["error"][0]["url"].endswith("/warnings-and-info.ndjson"), "v3 empty: %s" % v3)


def test_time_offset(env):
    fast(env, time_offset="-04:00")
    tok = token(env)
    man = manifest(env, tok, kickoff(env, tok, "/api/v3/Patient/$export"))
    check(man["transactionTime"].endswith("-04:00"), "v3 %s" % man["transactionTime"])
    loaded = load(env, {"Coverage": 1})
    check(loaded["load_time"].endswith("-04:00"), "load_time %s" % loaded["load_time"])
    man = manifest(env, tok, kickoff(env, tok, "/api/v1/Patient/$export?_since="
                                     + loaded["load_time"].replace("+", "%2B")))
    check(man["output"] == [], "nothing after the last load: %s" % man["output"])


# ---- 8: request accounting, WAF ---------------------------------------------------------

def test_request_times(env):
    before = time.monotonic()
    tok = token(env)
    call(env, "/api/v2/jobs", headers=auth(tok))
    call(env, "/data/1/x.ndjson", headers=auth(tok, False))
    env.emu.stats()                              # /_emu/ is not counted
    times = env.emu.get("/_emu/requests")["times"]
    check(len(times) == 3, "times %s" % times)
    check(all(before <= t <= time.monotonic() for t in times), "not monotonic times")
    check(times == sorted(times), "out of order")


def test_waf_limit(env):
    # A 3 s window: the four requests fit in it even on a loaded machine.
    env.emu.config(waf_limit=3, waf_window_seconds=3)
    for _ in range(3):
        check(call(env, "/api/v2/metadata")[0] == 200, "under the limit")
    st, h, b = call(env, "/api/v2/metadata")
    check(st == 429 and h.get("Retry-After") == "300" and h.get("Content-Type") == "application/json",
          "WAF answer %d %s" % (st, h))
    check(json.loads(b)["issue"][0]["code"] == "throttled" and b.startswith(b'{\n    "issue"'),
          "WAF body %r" % b)
    time.sleep(3.1)
    check(call(env, "/api/v2/metadata")[0] == 200, "the window did not slide")


# ---- 9: clients at run time -------------------------------------------------------------

def test_thirty_acos(env):
    acos = {"A%04d" % (5000 + i): "secret-%d" % i for i in range(30)}
    fast(env, clients=acos)
    jobs = {}
    for cid, sec in acos.items():
        tok = token(env, cid, sec)
        jobs[cid] = (tok, kickoff(env, tok))     # one ACO does not block another
    for cid, (tok, job) in jobs.items():
        man = manifest(env, tok, job)
        check(man["output"], "%s: no output" % cid)
    check(len({j["client"] for j in env.emu.jobs()}) == 30, "jobs per ACO")


# ---- 10: other behaviours of the real server ---------------------------------------------

def test_archived_job_two_outcomes(env):
    fast(env)
    tok = token(env)
    job = kickoff(env, tok, "/api/v3/Patient/$export")
    man = manifest(env, tok, job)
    env.emu.config(expire_after_seconds=0, expire_mode="404")
    got = call(env, "/api/" + job, headers=auth(tok, False))
    expect(got, 404, oo("v3", "not-found") + oo("v3", "not-found"), "archived")
    check("Expires" not in got[1], "Expires after the status was written")
    path = man["output"][0]["url"].split(env.emu.base, 1)[1]
    expect(call(env, path, headers=auth(tok, False)), 404, oo("v1", "not-found") + b"Not Found\n",
           "archived file")


def test_stale_job_410_files_still_served(env):
    fast(env)
    tok = token(env)
    job = kickoff(env, tok)
    man = manifest(env, tok, job)
    env.emu.config(expire_after_seconds=0)      # past 24 h, cleanup not run yet
    got = call(env, "/api/" + job, headers=auth(tok, False))
    expect(got, 410, oo("v2", "not-found"), "stale")
    check(got[1].get("Expires", "").endswith(" +0000 UTC"), "Expires %s" % got[1].get("Expires"))
    path = man["output"][0]["url"].split(env.emu.base, 1)[1]
    st, _, body = call(env, path, headers=auth(tok, False))
    check(st == 200 and body == env.emu.file_bytes(path), "stale file: %d" % st)


def test_cancel_and_unknown_job(env):
    env.emu.config(pending_seconds=30)
    tok = token(env)
    job = kickoff(env, tok)
    st, _, b = call(env, "/api/" + job, "DELETE", auth(tok, False))
    check((st, b) == (202, b""), "cancel %d %r" % (st, b))
    expect(call(env, "/api/" + job, headers=auth(tok, False)), 404,
           oo("v2", "not-found", "Job has been cancelled."), "cancelled")
    expect(call(env, "/api/" + job, "DELETE", auth(tok, False)), 410,
           oo("v2", "not-found", "job was not cancelled because it is not Pending or In Progress"),
           "second cancel")
    expect(call(env, "/api/v2/jobs/999", headers=auth(tok, False)), 404, oo("v2", "not-found"),
           "unknown job")
    expect(call(env, "/api/v2/jobs/abc", headers=auth(tok, False)), 400, oo("v2", "structure"),
           "bad id")


def test_v3_warning_only_with_eob(env):
    fast(env)
    tok = token(env)
    man = manifest(env, tok, kickoff(env, tok, "/api/v3/Patient/$export?_type=Patient"))
    check(man["error"] == [], "warning without EOB: %s" % man["error"])
    tf = ("_typeFilter=ExplanationOfBenefit%3F_tag%3Dhttps%3A%2F%2Fbluebutton.cms.gov%2Ffhir"
          "%2FCodeSystem%2FSystem-Type%7CSharedSystem")
    man = manifest(env, tok, kickoff(env, tok, "/api/v3/Group/all/$export?_type=ExplanationOfBenefit&" + tf))
    check(man["error"] == [], "warning despite a System-Type tag: %s" % man["error"])


def test_pac_types(env):
    tok = token(env)
    expect(call(env, "/api/v2/Patient/$export?_type=Claim", headers=auth(tok)), 400,
           oo("v2", "structure", "unauthorized resource type Claim"), "non-PAC ACO")
    env.emu.config(pac_clients=[CLIENT], pending_seconds=0.05, job_seconds=0.1)
    man = manifest(env, tok, kickoff(env, tok, "/api/v2/Patient/$export"))
    check({f["type"] for f in man["output"]} >= {"Claim", "ClaimResponse"},
          "PAC default types: %s" % man["output"])
