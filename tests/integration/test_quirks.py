"""BCDA's quirks, one test each: the real daemon against the emulator.

Every test switches on one behaviour of the real server (reference/bcda.md)
in the emulator and checks, from the emulator's counters, the job's state,
last_error, history and files, that the daemon handled it.  No assertion
depends on how long anything took, except where the wait is the outcome
(a token 429's Retry-After obeyed).
"""
import functools
import json
import os
import re
import time
from urllib.parse import parse_qs, urlparse

from harness import SECRET, check, wait_for

# job_state values as stored in job_history (lib/store/job.h).
NEW, TOKEN, KICKOFF, POLL, DOWNLOAD = 0, 1, 2, 3, 4


# ---- helpers ----------------------------------------------------------------

def _watch(env, jid, seen, timeout=40):
    """Polls status every 0.1 s until the job ends, feeding each row to seen()."""
    def pred():
        j = env.job(jid)
        seen(j)
        return j if j["state"] in ("DONE", "FAILED", "CANCELLED") else None
    return wait_for(pred, timeout, "job %d to end" % jid, 0.1)


def _output_files(d):
    return sorted(p for p in os.listdir(d) if p.endswith(".ndjson"))


def _manifest(d):
    return json.load(open(os.path.join(d, "manifest.json")))


def _status_texts(env):
    """Everything a person can read about the jobs: table and JSON."""
    return env.cli("status").stdout + env.cli("status", "--json").stdout


def _set_api_version(env, version):
    with open(env.conf) as f:
        text = f.read()
    check("api_version = v2" in text, "config layout changed: " + text)
    with open(env.conf, "w") as f:
        f.write(text.replace("api_version = v2", "api_version = " + version))


def _stop_clean(env):
    """SIGTERM, a clean exit, and no sanitizer report (leaks show at exit)."""
    rc = env.stop()
    log = env.log_text()
    check(rc == 0, "daemon exited %s on SIGTERM" % rc)
    check("Sanitizer" not in log and "runtime error:" not in log,
          "sanitizer report:\n" + log[-6000:])


def clean_exit(test):
    """Ends the test with _stop_clean once its own checks passed."""
    @functools.wraps(test)
    def run(env):
        test(env)
        _stop_clean(env)
    return run


def _history_has(env, jid, frm, to, words):
    return [h for h in env.history(jid)
            if h[0] == frm and h[1] == to and any(w in h[2].lower() for w in words)]


# ---- 1-4: tokens --------------------------------------------------------------

def _token_lifetime(env, number):
    # 900, not BCDA's 1200, so the log shows the value was read, not defaulted.
    jid, _ = _export_done(env, expires_in_number=number, token_ttl=900)
    env.check_export_matches(jid)
    st = env.emu.stats()
    check(st["token_ok"] == 1, "one token expected, got %d" % st["token_ok"])
    check("valid 900 s" in env.log_text(), "expires_in 900 was not read:\n" + env.log_text())



def _export_done(env, **settings):
    """The emulator set so, one export run to DONE: its job and the
    emulator's counters."""
    env.emu.config(**settings)
    env.start()
    jid = env.run()
    env.wait_done(jid)
    return jid, env.emu.stats()

@clean_exit
def test_token_expires_in_number(env):
    _token_lifetime(env, True)


@clean_exit
def test_token_expires_in_string(env):
    _token_lifetime(env, False)


@clean_exit
def test_token_503_retry_after(env):
    jid, st = _export_done(env, token_503=2)
    check(st["token_requests"] >= 3, "token_requests %d" % st["token_requests"])
    check(st["token_ok"] == 1, "token_ok %d" % st["token_ok"])
    check(st["kickoffs"] == 1, "kickoffs %d" % st["kickoffs"])
    check("token endpoint answered 503" in env.log_text(), "503 not reported in the log")


@clean_exit
def test_token_429_waits_retry_after(env):
    # SSAS limits /auth/token per ACO (TokenRateLimitMiddleware); BCDA answers
    # 429 with Retry-After = SSAS_RATE_LIMIT_DURATION_MINUTES * 60, 300 s by
    # default, 4 s here.  Without the header the next try would come within
    # retry_min (1 s), so the gap between the two token requests shows it.
    env.emu.config(token_429=1, token_429_retry_after=4)
    env.start()
    jid = env.run()
    j = wait_for(lambda: (lambda r: r if "waiting for a BCDA token" in (r["last_error"] or "")
                          else None)(env.job(jid)), 4, "status to say it waits for a token")
    check("429" in j["last_error"] and j["state"] == "TOKEN", "status: %r" % j)
    env.wait_done(jid)
    st = env.emu.stats()
    check(st["token_requests"] == 2 and st["token_ok"] == 1,
          "token requests %d, tokens %d" % (st["token_requests"], st["token_ok"]))
    check(st["kickoff_attempts"] == 1 and st["kickoffs"] == 1,
          "kickoffs %d/%d" % (st["kickoff_attempts"], st["kickoffs"]))
    # The first two requests to BCDA are the two token requests.
    t = env.emu.get("/_emu/requests")["times"]
    check(3.9 <= t[1] - t[0] < 10, "second token request %.1f s after the 429, "
          "Retry-After 4" % (t[1] - t[0]))
    check("token endpoint answered 429" in env.log_text(), "the 429 is not in the log")
    env.check_export_matches(jid)


@clean_exit
def test_token_wrong_secret(env):
    wrong = "wrong-secret-3f9a0c"
    with open(env.secret_file, "w") as f:
        f.write(wrong + "\n")
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid)
    check(j["state"] == "FAILED", "state %s" % j["state"])
    err = j["last_error"] or ""
    check("401" in err and "client_id" in err and "secret" in err,
          "last_error does not explain the 401: " + err)
    st = env.emu.stats()
    # Refused credentials are not retried in a loop (no lockout risk).
    check(st["token_requests"] == 1, "token_requests %d" % st["token_requests"])
    check(st["kickoffs"] == 0 and st["kickoff_attempts"] == 0, "kicked off without a token")
    texts = env.log_text() + _status_texts(env)
    check(wrong not in texts and SECRET not in texts, "a client secret leaked into log/status")


@clean_exit
def test_token_refresh_before_expiry(env):
    # A 2 s token and a job that polls for ~5 s: the daemon must refresh it
    # ahead of time rather than wait for a 401.
    env.emu.config(token_ttl=2, job_seconds=5)
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=60)
    env.check_export_matches(jid)
    st = env.emu.stats()
    check(st["token_ok"] >= 2, "token not refreshed: token_ok %d" % st["token_ok"])
    check(st["bad_auth"] == 0, "the daemon used an expired token %d times" % st["bad_auth"])
    check(st["kickoffs"] == 1, "kickoffs %d" % st["kickoffs"])


# ---- 5: one re-auth on 401 ----------------------------------------------------

@clean_exit
def test_401_while_polling(env):
    env.emu.config(job_seconds=3)
    env.start()
    jid = env.run()
    env.wait_state(jid, "POLL")
    env.emu.config(api_401=1)
    env.wait_done(jid)
    st = env.emu.stats()
    check(st["bad_auth"] == 1, "the 401 was not served (bad_auth %d)" % st["bad_auth"])
    check(st["token_requests"] == 2, "token_requests %d, expected 2" % st["token_requests"])
    check(st["kickoffs"] == 1, "kickoffs %d" % st["kickoffs"])
    check("getting a new token" in env.log_text(), "no re-auth in the log")
    env.check_export_matches(jid)


@clean_exit
def test_401_at_kickoff(env):
    # The first request carrying a token is the kickoff: its token is refused
    # once ("Expired Token").  One new token, the kickoff sent again.
    jid, st = _export_done(env, api_401=1)
    check(st["bad_auth"] == 1, "the 401 was not served (bad_auth %d)" % st["bad_auth"])
    check(st["token_requests"] == 2 and st["token_ok"] == 2,
          "token requests %d, tokens %d, expected 2 and 2" % (st["token_requests"], st["token_ok"]))
    # Two kickoffs sent, one BCDA job: the refused one was the kickoff.
    check(st["kickoff_attempts"] == 2, "kickoff attempts %d" % st["kickoff_attempts"])
    check(st["kickoffs"] == 1 and len(env.emu.jobs()) == 1, "BCDA jobs %d" % st["kickoffs"])
    check(len(set(st["kickoff_urls"])) == 1, "kickoff URLs differ: %s" % st["kickoff_urls"])
    check(st["jobs_list_requests"] <= 1, "jobs list requests %d" % st["jobs_list_requests"])
    check("BCDA answered 401; getting a new token" in env.log_text(), "no re-auth in the log")
    env.check_export_matches(jid)


@clean_exit
def test_401_on_download(env):
    jid, st = _export_done(env, file_401=1)
    check(st["bad_auth"] == 1, "the 401 was not served (bad_auth %d)" % st["bad_auth"])
    check(st["token_requests"] == 2, "token_requests %d, expected 2" % st["token_requests"])
    env.check_export_matches(jid)
    for path, n in st["downloads_completed"].items():
        check(n == 1, "%s completed %d times" % (path, n))


@clean_exit
def test_401_on_parallel_downloads(env):
    # Four downloads in flight carry the same token and all get 401; the
    # last three answers come after the daemon already has a new token.
    # They must not throw that new token away too.
    jid, st = _export_done(env, file_401=4, file_401_delay=0.5, lines_per_file=1)
    check(st["bad_auth"] == 4, "the 401s were not served (bad_auth %d)" % st["bad_auth"])
    check(st["token_requests"] == 2, "token_requests %d, expected 2" % st["token_requests"])
    env.check_export_matches(jid)


# ---- 6: kickoff 429 -----------------------------------------------------------

def _kickoff_429(env, retry_after):
    env.emu.config(kickoff_429=1, retry_after=retry_after)
    env.start()
    jid = env.run()
    errors = set()
    j = _watch(env, jid, lambda r: errors.add(r["last_error"]))
    check(j["state"] == "DONE", "state %s (%s)" % (j["state"], j["last_error"]))
    st = env.emu.stats()
    check(st["kickoffs"] == 1, "BCDA jobs created: %d" % st["kickoffs"])
    check(st["kickoff_attempts"] == 2, "kickoff attempts %d" % st["kickoff_attempts"])
    # After a 429 the daemon first looks for a job of its own it may have lost.
    check(st["jobs_list_requests"] == 1, "jobs list requests %d" % st["jobs_list_requests"])
    check("refused the kickoff (429)" in env.log_text(), "429 not in the log")
    check(any(e and "429" in e for e in errors) or
          any("429" in h[2] for h in env.history(jid)),
          "429 never visible in status or history: %s" % errors)
    env.check_export_matches(jid)


@clean_exit
def test_kickoff_429_retry_after(env):
    _kickoff_429(env, 1)


@clean_exit
def test_kickoff_429_no_retry_after(env):
    _kickoff_429(env, None)


@clean_exit
def test_kickoff_timeout_finds_its_job(env):
    # BCDA creates the job, then answers after bcdad gave up on the request
    # (low_speed_time 1 s, the answer 4 s late).  The job is BCDA's already:
    # bcdad must find it in /jobs and poll it, not start a second one.
    env.write_config(daemon_extra="low_speed_time = 1")
    jid, st = _export_done(env, kickoff_delay=4)
    check(st["kickoff_attempts"] == 1, "kickoff attempts %d" % st["kickoff_attempts"])
    check(st["kickoffs"] == 1 and len(env.emu.jobs()) == 1, "BCDA jobs %d" % st["kickoffs"])
    check(st["jobs_list_requests"] >= 1, "BCDA's job list was not read")
    check("kickoff failed" in env.log_text(), "the timeout is not in the log")
    check(_history_has(env, jid, KICKOFF, POLL, ("found",)),
          "no KICKOFF -> POLL row for the found job: %s" % env.history(jid))
    env.check_export_matches(jid)


# ---- 7: X-Progress --------------------------------------------------------------

def _progress(env, form):
    env.emu.config(progress_form=form, job_seconds=2.5)
    env.start()
    jid = env.run()
    seen = []
    j = _watch(env, jid, lambda r: seen.append(r["progress"]) if r["state"] == "POLL" else None)
    check(j["state"] == "DONE", "state %s (%s)" % (j["state"], j["last_error"]))
    mid = [p for p in seen if 0 <= p < 100]
    check(mid, "X-Progress %r never parsed; progress seen while polling: %s"
          % (form, sorted(set(seen))))
    check(env.job(jid)["progress"] == 100, "progress after DONE: %s" % env.job(jid)["progress"])


@clean_exit
def test_progress_paren(env):
    _progress(env, "paren")


@clean_exit
def test_progress_comma(env):
    _progress(env, "comma")


@clean_exit
def test_progress_bare(env):
    # models.go StatusMessage while JobCount is 0: "In Progress", no percent.
    env.emu.config(progress_form="bare", job_seconds=2.5)
    env.start()
    jid = env.run()
    seen = set()
    j = _watch(env, jid, lambda r: seen.add(r["progress"]) if r["state"] == "POLL" else None)
    check(j["state"] == "DONE", "state %s (%s)" % (j["state"], j["last_error"]))
    check(seen <= {-1}, "a percentage was read from a bare X-Progress: %s" % sorted(seen))
    check(env.job(jid)["progress"] == 100, "progress after DONE")


# ---- 8, 9: poll errors ---------------------------------------------------------

@clean_exit
def test_poll_503_no_body(env):
    jid, st = _export_done(env, poll_5xx=2)
    check(st["polls"] >= 3, "polls %d" % st["polls"])
    check(st["kickoffs"] == 1, "kickoffs %d" % st["kickoffs"])
    check(env.log_text().count("polling failed: HTTP 503") == 2, "two 503s not retried")
    env.check_export_matches(jid)


@clean_exit
def test_poll_500_hiccup(env):
    # requests.go JobStatus: a failed job lookup is 500 + OO "exception",
    # the shape of a failed job; only the job-failed text is terminal.
    jid, st = _export_done(env, poll_500=1)
    check(st["polls"] >= 2, "polls %d" % st["polls"])
    check(st["kickoffs"] == 1, "kickoffs %d" % st["kickoffs"])
    check("polling failed: HTTP 500, exception: Error trying to fetch job" in env.log_text(),
          "the 500 hiccup was not retried")
    env.check_export_matches(jid)


@clean_exit
def test_job_failed_at_bcda(env):
    env.emu.config(job_fail=True)
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid)
    check(j["state"] == "FAILED", "state %s" % j["state"])
    err = j["last_error"] or ""
    check("failed" in err.lower() and "500" in err, "last_error: " + err)
    polls = env.emu.stats()["polls"]
    # pending 0.5 s + job 1 s at 0.5-1 s a poll: a handful, then one 500.
    check(polls <= 6, "retry storm: %d polls" % polls)
    time.sleep(2)
    st = env.emu.stats()
    check(st["polls"] == polls, "still polling after FAILED: %d -> %d" % (polls, st["polls"]))
    check(st["kickoffs"] == 1, "a failed BCDA job was restarted: kickoffs %d" % st["kickoffs"])


# ---- 10: expiry at poll time ---------------------------------------------------

def _expiry(env, mode, words):
    env.emu.config(expire_after_seconds=0, expire_mode=mode)
    env.start()
    jid = env.run()
    # The first BCDA job expires the moment it completes; once the daemon
    # has started a second one, let that one live.
    wait_for(lambda: env.emu.stats()["kickoffs"] >= 2, 30, "a second kickoff")
    env.emu.config(expire_after_seconds=None)
    env.wait_done(jid)
    st = env.emu.stats()
    check(st["kickoffs"] == 2, "kickoffs %d, expected 2" % st["kickoffs"])
    check(_history_has(env, jid, POLL, KICKOFF, words),
          "no POLL -> KICKOFF history row saying %s: %s" % (words, env.history(jid)))
    states = [h[1] for h in env.history(jid)]
    check(states.count(POLL) == 2, "history: %s" % states)
    d = env.check_export_matches(jid)
    check(_manifest(d)["request"] is not None, "manifest without request")


@clean_exit
def test_expired_410(env):
    _expiry(env, "410", ("expired", "410"))


@clean_exit
def test_expired_404_two_objects(env):
    _expiry(env, "404", ("gone", "404", "expired"))


@clean_exit
def test_files_expire_while_downloading(env):
    # BCDA deletes the files a fixed time after the job completed (24 h; 2 s
    # here), whenever bcdad happened to see the manifest.  Its Expires header
    # says when.  Slow, one-at-a-time downloads outlive it: the 404s that
    # follow mean "start a new export", not "retry this file 40 times".
    env.write_config(daemon_extra="max_downloads_per_job = 1")
    # expire_mode 404: cleanup ran (before it, BCDA still serves the files
    # of a job past its 24 h, bcdaworker/cleanup).
    env.emu.config(lines_per_file=1, download_rate=10000, expire_after_seconds=2,
                   expire_mode="404")
    env.start()
    jid = env.run()
    wait_for(lambda: env.emu.stats()["kickoffs"] >= 2, 30, "a second kickoff")
    env.emu.config(expire_after_seconds=None, download_rate=0)
    env.wait_done(jid)
    st = env.emu.stats()
    check(st["kickoffs"] == 2, "kickoffs %d, expected 2" % st["kickoffs"])
    check(_history_has(env, jid, DOWNLOAD, KICKOFF, ("deleted", "expired")),
          "no DOWNLOAD -> KICKOFF history row: %s" % env.history(jid))
    env.check_export_matches(jid)


@clean_exit
def test_file_404_job_still_there(env):
    # ServeData's 404 (http.Error "Not Found") for one file while BCDA still
    # has the job: the job's status is read again, then the file retried.
    jid, st = _export_done(env, file_404=1)
    asked = sorted(st["data_requests"].values())
    check(asked == [1, 1, 2], "requests per file: %s" % st["data_requests"])
    check(st["kickoffs"] == 1, "kickoffs %d" % st["kickoffs"])
    log = env.log_text()
    check("HTTP 404" in log, "the 404 is not in the log")
    check("BCDA still has the job" in log, "the job's status was not read again")
    for path, n in st["downloads_completed"].items():
        check(n == 1, "%s completed %d times" % (path, n))
    env.check_export_matches(jid)


# ---- 11: gzip ----------------------------------------------------------------------

@clean_exit
def test_gzip_trailing_member(env):
    env.start()
    jid = env.run()
    env.wait_done(jid)
    env.check_export_matches(jid)
    st = env.emu.stats()
    for path, n in st["downloads_started"].items():
        check(n == 1, "%s downloaded %d times" % (path, n))


def _broken_gzip(env, setting):
    jid, _ = _export_done(env, **{setting: True})
    env.check_export_matches(jid)
    st = env.emu.stats()
    check(len(st["downloads_started"]) == 3, "files: %s" % st["downloads_started"])
    for path, n in st["downloads_started"].items():
        check(n == 2, "%s requested %d times, expected 2" % (path, n))
        if setting == "truncate_gzip":          # a corrupt body is sent whole
            check(st["downloads_completed"].get(path) == 1,
                  "%s completed %s times" % (path, st["downloads_completed"].get(path)))
    err = "gzip" if setting == "corrupt_gzip" else "transfer closed"
    check(env.log_text().count(err) >= 3, "the broken bodies were not reported: " + err)


@clean_exit
def test_gzip_truncated(env):
    _broken_gzip(env, "truncate_gzip")


@clean_exit
def test_gzip_corrupt(env):
    _broken_gzip(env, "corrupt_gzip")


@clean_exit
def test_gzip_short_once(env):
    # The first copy of each file is a gzip stream cut in half, in a complete
    # response (chunked end, ServeData's empty member after it): a content
    # error, not a transport one.  The second copy is whole.
    jid, st = _export_done(env, short_gzip=1)
    check(len(st["downloads_started"]) == 3, "files: %s" % st["downloads_started"])
    for path, n in st["downloads_started"].items():
        check(n == 2 and st["downloads_completed"].get(path) == 2,
              "%s requested %d times, sent whole %s times, expected 2 and 2"
              % (path, n, st["downloads_completed"].get(path)))
    check(env.log_text().count("gzip data cut short; retry 1 in") == 3,
          "three short files not reported and retried once each")
    check("transfer closed" not in env.log_text(), "taken for a transport error")
    env.check_export_matches(jid)


@clean_exit
def test_gzip_short_always(env):
    # A file stored short on BCDA's side comes cut every time: after
    # FILE_ATTEMPTS (5) content errors the job fails, naming the file.
    env.write_config(profile_extra="resource_types = Patient")
    with open(env.conf) as f:
        text = f.read()
    check("retry_max = 2" in text, "config layout changed: " + text)
    with open(env.conf, "w") as f:             # four waits of at most 1 s
        f.write(text.replace("retry_max = 2", "retry_max = 1"))
    env.emu.config(short_gzip=99)
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid)
    check(j["state"] == "FAILED", "state %s (%s)" % (j["state"], j["last_error"]))
    err = j["last_error"] or ""
    check("Patient-1.ndjson" in err and "gzip data cut short" in err, "last_error: " + err)
    st = env.emu.stats()
    (path,) = st["downloads_started"]
    check(st["downloads_started"][path] == 5 and st["downloads_completed"][path] == 5,
          "requested %d times, sent whole %d times, expected 5"
          % (st["downloads_started"][path], st["downloads_completed"][path]))
    check(env.files_done(jid) == [], "a short file was taken: %s" % env.files_done(jid))
    d = os.path.join(env.out, env.profile)
    kept = [p for _, _, fs in os.walk(d) for p in fs if p.endswith((".part", "Patient-1.ndjson"))]
    check(not kept, "the short file or its .part was kept: %s" % kept)


# ---- 12: wrong resourceType ------------------------------------------------------

@clean_exit
def test_wrong_resource_type(env):
    env.emu.config(wrong_type=True)
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid, timeout=60)
    check(j["state"] == "FAILED", "state %s" % j["state"])
    err = j["last_error"] or ""
    check("Patient-1.ndjson" in err and "resourceType" in err, "last_error: " + err)
    ejob = env.emu.jobs()[-1]
    bad = ejob["files"][0]
    check(bad["type"] == "Patient", "emulator layout changed: %s" % bad)
    line = env.emu.file_bytes(bad["path"]).decode()
    ident = json.loads(line.splitlines()[0])["id"]
    check(ident not in err and "{" not in err, "last_error quotes the line: " + err)
    check(ident not in env.log_text(), "the daemon logged the bad line's content")
    st = env.emu.stats()
    check(st["downloads_started"][bad["path"]] == 5,
          "bad file tried %d times" % st["downloads_started"][bad["path"]])
    # The other files were still downloaded, complete and exact.
    d = os.path.join(env.out, env.profile)
    (tdir,) = os.listdir(d)
    d = os.path.join(d, tdir)
    got = _output_files(d)
    check("Patient-1.ndjson" not in got, "the invalid file was kept: %s" % got)
    check(not [p for p in os.listdir(d) if p.endswith(".part")], "a .part file was left")
    done = env.files_done(jid)
    check(len(done) == len(ejob["files"]) - 1, "files done: %s" % done)
    for f in ejob["files"][1:]:
        name = "%s-1.ndjson" % f["type"]
        check(open(os.path.join(d, name), "rb").read() == env.emu.file_bytes(f["path"]),
              name + " differs")


# ---- 13: a file on another origin ---------------------------------------------------

@clean_exit
def test_foreign_file_url(env):
    env.emu.config(foreign_file=True)
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid)
    check(j["state"] == "FAILED", "state %s" % j["state"])
    err = j["last_error"] or ""
    check("origin" in err and "token" in err, "last_error: " + err)
    st = env.emu.stats()
    check(st["foreign_requests"] == 0, "requests to the foreign host: %d" % st["foreign_requests"])
    check(st["foreign_auth_seen"] == 0, "the token went to the foreign host")
    # The files on the BCDA origin were fetched all the same.
    check(len(env.files_done(jid)) == 2, "files done: %s" % env.files_done(jid))


# ---- 14, 15: error[] files -------------------------------------------------------------

@clean_exit
def test_error_file_counts_no_mbi_leak(env):
    env.emu.config(error_lines=5)
    env.start()
    jid = env.run()
    j = env.wait_done(jid)
    d = j["dir"]
    path = os.path.join(d, "errors", "OperationOutcome-1.ndjson")
    check(os.path.exists(path), "no errors/OperationOutcome-1.ndjson")
    text = open(path).read()
    mbis = re.findall(r"MBI (\w+)", text)
    check(len(mbis) == 5, "MBIs in the error file: %s" % mbis)
    ejob = env.emu.jobs()[-1]
    ef = [f for f in ejob["files"] if f["kind"] == "error"]
    check(text.encode() == env.emu.file_bytes(ef[0]["path"]), "error file differs")
    man = _manifest(d)
    check(man["errors"]["error"] == 5 and man["errors"]["warning"] == 0,
          "manifest errors: %s" % man["errors"])
    check(j["errors"] == 5, "status errors %s" % j["errors"])
    check([f for f in man["files"] if f["kind"] == "error" and
           f["name"] == "errors/OperationOutcome-1.ndjson"], "manifest files: %s" % man["files"])
    texts = env.log_text() + _status_texts(env)
    leaked = [m for m in mbis if m in texts]
    check(not leaked, "MBIs in the log or status: %s" % leaked)
    env.check_export_matches(jid)


@clean_exit
def test_v3_warnings_are_not_errors(env):
    _set_api_version(env, "v3")
    env.start()
    jid = env.run()
    j = env.wait_done(jid)
    check("/api/v3/" in env.emu.stats()["kickoff_urls"][0], "not a v3 kickoff")
    check(j["errors"] == 0 and j["warnings"] == 1,
          "errors %s warnings %s" % (j["errors"], j["warnings"]))
    man = _manifest(j["dir"])
    check(man["errors"]["warning"] == 1 and man["errors"]["error"] == 0 and
          man["errors"]["fatal"] == 0, "manifest errors: %s" % man["errors"])
    check(os.path.exists(os.path.join(j["dir"], "errors", "OperationOutcome-1.ndjson")),
          "warnings-and-info.ndjson not saved")
    env.check_export_matches(jid)


# ---- 16: Accept / Prefer / _type -------------------------------------------------------

@clean_exit
def test_type_one_param_comma_joined(env):
    env.write_config(profile_extra="resource_types = Patient, Coverage")
    env.start()
    jid = env.run()
    j = env.wait_done(jid)
    (url,) = env.emu.stats()["kickoff_urls"]
    query = urlparse(url).query
    check(query.count("_type=") == 1, "kickoff query: " + query)
    check(parse_qs(query)["_type"] == ["Patient,Coverage"], "kickoff query: " + query)
    # The emulator answers 400 without Accept and Prefer: DONE proves them.
    check(_output_files(j["dir"]) == ["Coverage-1.ndjson", "Patient-1.ndjson"],
          "files: %s" % _output_files(j["dir"]))
    check(sorted({f["type"] for f in _manifest(j["dir"])["files"]}) == ["Coverage", "Patient"],
          "manifest types")
    env.check_export_matches(jid)


# ---- 17: cancel ---------------------------------------------------------------------------

@clean_exit
def test_cancel_while_polling(env):
    env.emu.config(job_seconds=30)
    env.start()
    jid = env.run()
    env.wait_state(jid, "POLL")
    env.cli("cancel", str(jid))
    j = env.wait_terminal(jid)
    check(j["state"] == "CANCELLED", "state %s (%s)" % (j["state"], j["last_error"]))
    st = env.emu.stats()
    check(st["deletes"] == 1, "DELETEs %d" % st["deletes"])
    check(env.emu.jobs()[-1]["status"] == "Cancelled", "the BCDA job was not cancelled")
    polls = st["polls"]
    time.sleep(1.5)
    check(env.emu.stats()["polls"] == polls, "still polling after CANCELLED")


# ---- 18: many files, bounded parallelism ------------------------------------------------

@clean_exit
def test_many_files_bounded(env):
    env.write_config(daemon_extra="max_downloads_per_job = 2")
    # One line a file, throttled so that downloads overlap.
    env.emu.config(lines_per_file=1, download_rate=5000)
    env.start()
    jid = env.run()
    j = env.wait_done(jid, timeout=90)
    ejob = env.emu.jobs()[-1]
    want = {}
    for f in ejob["files"]:
        want[f["type"]] = want.get(f["type"], 0) + 1
    check(sum(want.values()) == 13, "emulator files: %s" % want)
    names = sorted("%s-%d.ndjson" % (t, n) for t, c in want.items() for n in range(1, c + 1))
    check(_output_files(j["dir"]) == names, "files: %s" % _output_files(j["dir"]))
    env.check_export_matches(jid)
    st = env.emu.stats()
    # Two at once (so parallel), never three.
    check(st["downloads_in_flight_max"] == 2,
          "%d downloads at once, limit 2" % st["downloads_in_flight_max"])
    check(j["files_done"] == 13 and j["files_total"] == 13, "status files %s/%s"
          % (j["files_done"], j["files_total"]))
