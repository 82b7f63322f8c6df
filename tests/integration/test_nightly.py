"""The nightly run against the real BCDA: the daemon against the emulator's
reading of BCDA's server code (bcda-app, bcda-ssas-app).

One behaviour each: BCDA's own 500s retried, the job-failed 500 terminal, a
disabled ACO, the duplicate-job 429, the three kickoff 404s, empty nights,
incremental watermarks per scope, cancel during a kickoff, transactionTime
with an offset, the credential expiry warning, many ACOs under one request
budget.  Assertions are on outcomes, messages and the emulator's counters,
never on how long anything took.
"""
import datetime as dt
import base64
import json
import os
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlparse

from harness import CLIENT, SECRET, check, wait_for


def _edit_config(env, *pairs):
    """Replaces text in the configuration file (each pair: old, new)."""
    with open(env.conf) as f:
        text = f.read()
    for old, new in pairs:
        check(old in text, "config layout changed: no %r in\n%s" % (old, text))
        text = text.replace(old, new)
    with open(env.conf, "w") as f:
        f.write(text)


def _kickoff_urls(env):
    return env.emu.stats()["kickoff_urls"]


def _since_of(url):
    return parse_qs(urlparse(url).query).get("_since", [None])[0]


def _watermarks(env):
    return json.loads(env.cli("status", "--profiles", "--json").stdout)


def _emu_kickoff(env, path, client=CLIENT, secret=SECRET):
    """Kicks off an export straight at the emulator, as another tool of the
    same ACO would; returns (status, headers)."""
    tok = urllib.request.Request(env.emu.base + "/auth/token", data=b"", method="POST")
    tok.add_header("Authorization", "Basic " +
                   base64.b64encode(("%s:%s" % (client, secret)).encode()).decode())
    with urllib.request.urlopen(tok, timeout=10) as r:
        token = json.loads(r.read())["access_token"]
    req = urllib.request.Request(env.emu.base + path)
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Accept", "application/fhir+json")
    req.add_header("Prefer", "respond-async")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def _night(env, state, daemon_extra=None, profile_extra=None, **emu):
    """One night with the emulator set up by emu: checks that the job ends
    in state and returns its last_error."""
    if daemon_extra or profile_extra:
        env.write_config(daemon_extra=daemon_extra or "", profile_extra=profile_extra or "")
    if emu:
        env.emu.config(**emu)
    env.start()
    j = env.wait_terminal(env.run(), 60)
    check(j["state"] == state, "state %s, expected %s (%s)" % (j["state"], state,
                                                             j["last_error"]))
    return j["last_error"] or ""


# ---- error semantics ----------------------------------------------------------

def test_poll_500_hiccup_is_retried(env):
    # requests.go: a failed job lookup is 500 + OO "exception", not "transient".
    env.emu.config(poll_500=2, job_seconds=2)
    env.start()
    jid = env.run()
    env.wait_done(jid)
    st = env.emu.stats()
    check(st["kickoffs"] == 1, "kickoffs %d" % st["kickoffs"])
    check(env.log_text().count("Error trying to fetch job") >= 2,
          "the two hiccups were not retried:\n" + env.log_text()[-3000:])
    env.check_export_matches(jid)


def test_kickoff_and_introspection_500_are_retried(env):
    env.emu.config(kickoff_500=1, auth_500=1)
    env.start()
    jid = env.run()
    env.wait_done(jid)
    st = env.emu.stats()
    check(st["kickoffs"] == 1, "kickoffs %d" % st["kickoffs"])
    check("HTTP 500" in env.log_text(), "no 500 seen in the log")


def test_job_failed_500_is_terminal(env):
    err = _night(env, "FAILED", job_fail=True)
    check("Job failed to complete" in err, "last_error: " + err)
    check(env.emu.stats()["kickoffs"] == 1, "kickoffs %d" % env.emu.stats()["kickoffs"])


def test_retry_budget_names_itself(env):
    err = _night(env, "FAILED", daemon_extra="retry_budget = 3\n", poll_500=1000)
    check("retry_budget" in err and "Error trying to fetch job" in err, "last_error: " + err)


def test_disabled_aco_401(env):
    err = _night(env, "FAILED", disabled_clients=[CLIENT])
    check("credentials valid but this ACO is disabled or the job is not ours" in err,
          "last_error: " + err)
    # One fresh token after the first 401, then no more retries.
    check(env.emu.stats()["token_ok"] == 2, "tokens: %d" % env.emu.stats()["token_ok"])


def test_token_endpoint_outage_is_bounded(env):
    err = _night(env, "FAILED", daemon_extra="retry_budget = 3\n", token_503=1000)
    check("503" in err and "retry_budget" in err, "last_error: " + err)


def test_duplicate_429_waits_for_the_blocker(env):
    # A job of the same ACO and version, started by another tool, blocks
    # ours until it ends or is bcda_job_timeout (BCDA: 24 h; here 5 s)
    # old.  Waiting is not failing: were the 429s counted, the 2 s
    # retry_budget would end the job long before the blocker lets go.
    env.write_config(daemon_extra="bcda_job_timeout = 5\nretry_budget = 2\n")
    env.emu.config(archive_threshold_seconds=5, expire_after_seconds=600, job_seconds=3600)
    status, _ = _emu_kickoff(env, "/api/v2/Patient/$export")
    check(status == 202, "blocker kickoff: %d" % status)
    env.start()
    jid = env.run()
    j = wait_for(lambda: (lambda r: r if "waiting" in (r["last_error"] or "") else None)(
        env.job(jid)), 20, "the job to say what it waits for")
    check("BCDA job 1" in j["last_error"] and "429" in j["last_error"],
          "status: %s" % j["last_error"])
    env.wait_state(jid, "POLL", 30)
    env.emu.config(job_seconds=1)       # our own export, once accepted
    env.wait_done(jid, 60)
    st = env.emu.stats()
    check(st["kickoffs"] == 2, "BCDA jobs: %d (the blocker and ours)" % st["kickoffs"])
    check(st["kickoff_attempts"] >= 3, "kickoff attempts %d" % st["kickoff_attempts"])


def test_type_filter_plus_survives(env):
    env.write_config(profile_extra="type_filter = ExplanationOfBenefit?service-date="
                     "ge2024-01-01T00:00:00+05:00\n")
    _edit_config(env, ("api_version = v2", "api_version = v3"))
    env.start()
    jid = env.run()
    env.wait_done(jid)
    tf = env.emu.jobs()[-1]["type_filter"]
    check(tf is not None and "+05:00" in tf, "BCDA saw _typeFilter %r" % tf)


# ---- January and runout -----------------------------------------------------------

def test_january_skipped(env):
    err = _night(env, "SKIPPED", attribution_current=False)
    check("no current attribution" in err and "next scheduled run" in err, "reason: " + err)
    check("runout_fallback" in err, "no hint of the fallback: " + err)
    check("SKIPPED" in env.cli("status").stdout, "status table lacks SKIPPED")
    check("no current attribution" in env.log_text(), "not in the journal")
    check(_watermarks(env)[0]["watermarks"] == [], "a skipped night moved the watermark")


def test_january_runout_fallback(env):
    env.write_config(profile_extra="runout_fallback = yes\n")
    env.emu.config(attribution_current=False)
    env.start()
    jid = env.run()
    j = env.wait_done(jid)
    urls = _kickoff_urls(env)
    check(len(urls) == 2 and "/Group/all/" in urls[0] and "/Group/runout/" in urls[1],
          "kickoffs: %s" % urls)
    check(j["runout"] is True, "status does not record the fallback")
    check(any("/Group/runout instead" in h[2] for h in env.history(jid)),
          "history: %s" % env.history(jid))
    marks = _watermarks(env)[0]["watermarks"]
    check(len(marks) == 1 and " group-runout " in marks[0]["scope"], "watermarks %s" % marks)


def test_runout_expired(env):
    _edit_config(env, ("endpoint = group-all", "endpoint = group-runout"))
    err = _night(env, "FAILED", runout_expired=True)
    check("runout data" in err and "180 days" in err, "last_error: " + err)


def test_since_older_than_attribution(env):
    err = _night(env, "FAILED", profile_extra="since = 2020-01-01T00:00:00Z\n",
                 since_floor="2024-01-01T00:00:00Z")
    check("2020-01-01T00:00:00Z" in err and "bcdad run %s --full" % CLIENT in err,
          "last_error: " + err)
    check(env.emu.stats()["kickoff_attempts"] == 1, "a 404 was retried")


# ---- empty nights and watermarks ----------------------------------------------------

def test_empty_export_ends_done(env):
    env.start()
    first = env.run()
    env.wait_done(first)
    tt = env.job(first)["transaction_time"]
    second = env.run()
    j = env.wait_done(second)
    check(_since_of(_kickoff_urls(env)[-1]) == tt, "second _since: %s" % _kickoff_urls(env)[-1])
    man = json.load(open(os.path.join(j["dir"], "manifest.json")))
    check([f for f in man["files"] if f["kind"] == "output"] == [],
          "an empty night has output files: %s" % man["files"])
    check(j["resources"] == 0, "resources %d" % j["resources"])
    marks = _watermarks(env)[0]["watermarks"]
    check(len(marks) == 1 and marks[0]["job"] == second, "watermark did not move: %s" % marks)


def test_three_runs_receive_exactly_the_new(env):
    env.start()
    seen = set()

    def ids(jid):
        d = env.job(jid)["dir"]
        out = set()
        for name in os.listdir(d):
            if name.endswith(".ndjson"):
                for line in open(os.path.join(d, name)):
                    r = json.loads(line)
                    out.add((r["resourceType"], r["id"]))
        return out

    first = env.run()
    env.wait_done(first)
    seen |= ids(first)
    added = env.emu.post("/_emu/load", {"Patient": 2, "ExplanationOfBenefit": 3})
    second = env.run()
    env.wait_done(second)
    got = ids(second)
    want = {(t, i) for t, l in added["ids"].items() for i in l}
    check(got == want, "second run got %d resources, expected the %d new ones"
          % (len(got), len(want)))
    check(not (got & seen), "the second run fetched old resources again")
    added = env.emu.post("/_emu/load", {"Coverage": 1})
    third = env.run()
    env.wait_done(third)
    want = {(t, i) for t, l in added["ids"].items() for i in l}
    check(ids(third) == want, "third run: %s" % sorted(ids(third)))


def test_types_change_starts_full_history(env):
    env.write_config(profile_extra="resource_types = Patient\n")
    env.start()
    first = env.run()
    env.wait_done(first)
    second = env.run()
    env.wait_done(second)
    check(_since_of(_kickoff_urls(env)[1]) is not None, "second run had no _since")
    env.stop()
    env.write_config(profile_extra="resource_types = Patient, Coverage\n")
    env.start()
    third = env.run()
    env.wait_done(third)
    check(_since_of(_kickoff_urls(env)[2]) is None,
          "a new type set must start from full history: %s" % _kickoff_urls(env)[2])
    scopes = sorted(m["scope"] for m in _watermarks(env)[0]["watermarks"])
    check(scopes == ["v2 group-all Coverage,Patient", "v2 group-all Patient"],
          "scopes %s" % scopes)


def test_run_since_and_full_override_once(env):
    env.start()
    first = env.run()
    env.wait_done(first)
    out = env.cli("run", CLIENT, "--since", "2025-01-02T03:04:05Z").stdout
    second = int(out.split()[2])
    env.wait_done(second)
    out = env.cli("run", CLIENT, "--full").stdout
    third = int(out.split()[2])
    env.wait_done(third)
    fourth = env.run()
    env.wait_done(fourth)
    urls = _kickoff_urls(env)
    check(_since_of(urls[1]) == "2025-01-02T03:04:05Z", "--since: %s" % urls[1])
    check(_since_of(urls[2]) is None, "--full: %s" % urls[2])
    check(_since_of(urls[3]) == env.job(third)["transaction_time"], "after: %s" % urls[3])
    r = env.cli("run", CLIENT, "--since", "yesterday", ok=False)
    check(r.returncode != 0 and "RFC 3339" in r.stderr, "bad --since: %s" % r.stderr)


def test_offset_transaction_time_named_in_utc(env):
    tt = "2024-07-24T08:08:33.779-04:00"
    env.emu.config(transaction_time=tt)
    env.start()
    first = env.run()
    j = env.wait_done(first)
    check(os.path.basename(j["dir"]) == "2024-07-24T12:08:33.779Z", "dir %s" % j["dir"])
    check(j["transaction_time"] == tt, "transaction_time %s" % j["transaction_time"])
    second = env.run()
    env.wait_done(second)
    check(_since_of(_kickoff_urls(env)[1]) == tt, "next _since: %s" % _kickoff_urls(env)[1])


# ---- cancel, credentials, many ACOs -----------------------------------------------------

def test_cancel_during_kickoff_deletes_the_bcda_job(env):
    env.emu.config(kickoff_delay=3, job_seconds=60)
    env.start()
    jid = env.run()
    wait_for(lambda: env.emu.stats()["kickoff_attempts"] >= 1, 10, "a kickoff")
    env.cli("cancel", str(jid))
    j = env.wait_terminal(jid, 30)
    check(j["state"] == "CANCELLED", "state %s (%s)" % (j["state"], j["last_error"]))
    st = env.emu.stats()
    check(st["kickoffs"] == 1 and st["deletes"] >= 1, "stats %s" % st)
    check([x["status"] for x in env.emu.jobs()] == ["Cancelled"],
          "BCDA job left %s" % [x["status"] for x in env.emu.jobs()])


def _issued(days_ago):
    return (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=days_ago)).isoformat()


def test_secret_expiry_warning_at_14_days(env):
    env.write_config(profile_extra="client_secret_issued = %s\n" % _issued(76))
    env.start()
    p = _watermarks(env)[0]
    check("expires on" in p.get("warning", "") and "in 14 days" in p["warning"],
          "warning %r" % p.get("warning"))
    jid = env.run()
    env.wait_done(jid)
    check("expires on" in env.log_text(), "no warning in the journal")
    check("warning:" in env.cli("status").stdout, "no warning in the status table")


def test_no_secret_expiry_warning_at_15_days(env):
    env.write_config(profile_extra="client_secret_issued = %s\n" % _issued(75))
    env.start()
    check("warning" not in _watermarks(env)[0], "warned 15 days ahead")
    jid = env.run()
    env.wait_done(jid)
    check("expires on" not in env.log_text(), "warned in the journal 15 days ahead")


def test_many_acos_under_one_request_budget(env):
    n, limit, window = 30, 40, 2
    clients = {"Z%04d" % i: "secret-%d" % i for i in range(n)}
    env.emu.config(clients=clients, pending_seconds=0.2, job_seconds=0.5, lines_per_file=4)
    sections = []
    for cid, secret in clients.items():
        path = os.path.join(env.dir, cid + ".secret")
        with open(path, "w") as f:
            f.write(("wrong" if cid == "Z0007" else secret) + "\n")
        os.chmod(path, 0o600)
        sections.append("[profile %s]\nbase_url = %s\napi_version = v2\nclient_id = %s\n"
                        "client_secret_file = %s\nresource_types = Patient, Coverage\n"
                        % (cid, env.emu.base, cid, path))
    with open(env.conf, "w") as f:
        f.write("[daemon]\nstate_dir = %s\nruntime_dir = %s\nstorage_dir = %s\n"
                "poll_min = 1\npoll_max = 1\nretry_min = 1\nretry_max = 2\n"
                "max_downloads = 8\nbcda_request_limit = %d\nbcda_request_window = %d\n\n%s"
                % (env.state, env.run_dir, env.out, limit, window, "\n".join(sections)))
    env.start()
    jobs = {cid: env.run(cid) for cid in clients}
    ended = {cid: env.wait_terminal(jid, 180) for cid, jid in jobs.items()}
    bad = {c: j["state"] for c, j in ended.items() if (j["state"] == "DONE") == (c == "Z0007")}
    check(not bad, "unexpected outcomes: %s" % bad)
    check("rejected the credentials" in ended["Z0007"]["last_error"],
          "Z0007: %s" % ended["Z0007"]["last_error"])
    times = sorted(env.emu.get("/_emu/requests")["times"])
    worst, lo = 0, 0
    for hi, t in enumerate(times):
        # The emulator stamps arrivals, some ms after bcdad counted the
        # sends (more on a loaded machine): 200 ms of slack at the edge.
        while times[lo] <= t - (window - 0.2):
            lo += 1
        worst = max(worst, hi - lo + 1)
    check(worst <= limit, "BCDA saw %d requests within %d s (limit %d)" % (worst, window, limit))
    check(len(times) > 2 * limit, "too few requests (%d) to test the budget" % len(times))


def test_s3_failure_keeps_the_watermark(env):
    # Three nights: the second fails in S3_PUT, so its watermark must not
    # move and the third receives what the second should have had too.
    from awsenv import aws_env
    moto, _, _, px = aws_env(env, proxy=True, keep_local="yes")

    env.start()
    first = env.run()
    env.wait_done(first, 60)
    mark = _watermarks(env)[0]["watermarks"][0]
    load2 = env.emu.post("/_emu/load", {"Patient": 2})
    px.fail = lambda m, p, q: 403 if m in ("PUT", "POST") else 0
    second = env.run()
    j = env.wait_terminal(second, 60)
    check(j["state"] == "FAILED", "second night: %s (%s)" % (j["state"], j["last_error"]))
    check(_watermarks(env)[0]["watermarks"] == [mark], "a failed night moved the watermark")
    px.fail = None
    load3 = env.emu.post("/_emu/load", {"ExplanationOfBenefit": 1})
    third = env.run()
    env.wait_done(third, 60)
    urls = _kickoff_urls(env)
    check(_since_of(urls[2]) == _since_of(urls[1]) == env.job(first)["transaction_time"],
          "third _since %s" % urls[2])
    d = env.job(third)["dir"]
    got = set()
    for name in os.listdir(d):
        if name.endswith(".ndjson"):
            got |= {json.loads(line)["id"] for line in open(os.path.join(d, name))}
    want = {i for load in (load2, load3) for l in load["ids"].values() for i in l}
    check(got == want, "third night got %s, expected the union %s" % (sorted(got), sorted(want)))
    basic = "/%s/" % os.path.basename(d).replace(":", "")
    check([k for k in moto.objects() if basic in k], "the third night is not in S3")


def test_run_wait_exit_codes(env):
    # `bcdad run --wait` follows the job: 0 DONE, 3 FAILED, 5 SKIPPED.
    env.start()
    r = env.cli("run", CLIENT, "--wait", ok=False)
    check(r.returncode == 0 and "ended DONE" in r.stdout, "DONE: %d %r" % (r.returncode, r.stdout))
    env.emu.config(job_fail=True)
    r = env.cli("run", CLIENT, "--wait", ok=False)
    check(r.returncode == 3 and "ended FAILED: " in r.stdout and "Job failed" in r.stdout,
          "FAILED: %d %r" % (r.returncode, r.stdout))
    env.emu.config(job_fail=False, attribution_current=False)
    r = env.cli("run", CLIENT, "--wait", ok=False)
    check(r.returncode == 5 and "ended SKIPPED: " in r.stdout,
          "SKIPPED: %d %r" % (r.returncode, r.stdout))
