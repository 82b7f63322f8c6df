"""Crash anywhere: full exports through every stage (BCDA emulator -> S3
and SNS in moto -> the HealthLake fake) with SIGKILL at random instants,
restarting until each job is DONE.  After each job: every S3 object
byte-identical to the emulator's file, one BCDA kickoff, one HealthLake
import, at most one repeated notification per kill, PRAGMA integrity_check
ok, no open multipart upload, no stray .part file.

`make check` runs the short form (CRASH_KILLS, 12 by default); `make
crashtest` the long one (200 kills), printing the kills per state.
"""
import collections
import os
import random
import sys
import time

from harness import check, wait_for
from awsenv import pipeline_env

STATES = ["NEW", "TOKEN", "KICKOFF", "POLL", "DOWNLOAD", "S3_PUT", "IMPORT",
          "NOTIFY", "DONE", "FAILED", "CANCELLED", "SKIPPED"]


def _state(env, jid):
    with env.db() as c:
        return c.execute("SELECT state FROM jobs WHERE id = ?", (jid,)).fetchone()[0]


def _check_job(env, moto, jid, base_kickoffs):
    j = env.job(jid)
    t = j["transaction_time"].replace(":", "")
    base = "exports/%s/%s/" % (env.profile, t)
    ejob = [x for x in env.emu.jobs() if x["status"] == "Completed"][-1]
    seen = collections.Counter()
    for f in ejob["files"]:
        if f["type"] == "OperationOutcome":
            continue
        seen[f["type"]] += 1
        key = "%s%s-%d.ndjson" % (base, f["type"], seen[f["type"]])
        check(moto.get(key) == env.emu.file_bytes(f["path"]), "job %d: %s differs" % (jid, key))
    kickoffs = env.emu.stats()["kickoffs"] - base_kickoffs
    check(kickoffs == 1, "job %d: %d BCDA kickoffs" % (jid, kickoffs))
    with env.db() as c:
        check(c.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check")
    check(moto.uploads_in_progress() == [], "job %d: multipart uploads left open" % jid)
    for root, _, files in os.walk(j["dir"]):
        stray = [f for f in files if f.endswith(".part")]
        check(not stray, "job %d: stray .part files %s in %s" % (jid, stray, root))


def test_kill_anywhere_full_pipeline(env):
    kills_wanted = int(os.environ.get("CRASH_KILLS", "12"))
    rnd = random.Random(int(os.environ.get("CRASH_SEED", "20261130")))
    moto, hl, _ = pipeline_env(env)
    env.emu.config(generate={"Patient": 300, "Coverage": 300, "ExplanationOfBenefit": 900},
                   lines_per_file=100, download_rate=10000, job_seconds=1)
    env.start()
    kills = collections.Counter()
    jobs = kills_done = 0
    notes = collections.Counter()
    sizes = []
    while kills_done < kills_wanted:
        base_kickoffs = env.emu.stats()["kickoffs"]
        out = env.cli("run", env.profile, "--full").stdout
        jid = int(out.split()[2])
        jobs += 1
        job_kills = 0
        while True:
            # A stage from here on picked at random, then a random instant
            # in it: the short stages get their share of kills too.
            cur = _state(env, jid)
            if cur >= 8:
                break
            target = rnd.randrange(max(cur, 1), 8)
            wait_for(lambda: _state(env, jid) >= target, 120, "state %s" % STATES[target],
                     0.01)
            time.sleep(rnd.expovariate(1 / 0.05))
            state = _state(env, jid)
            if STATES[state] == "DONE" or kills_done >= kills_wanted or \
                    job_kills >= 4:
                break
            env.kill9()
            kills[STATES[_state(env, jid)]] += 1
            kills_done += 1
            job_kills += 1
            env.start()
        j = env.wait_done(jid, timeout=180)
        sizes.append(j["bytes"])
        _check_job(env, moto, jid, base_kickoffs)
        notes[jid] = job_kills
    # One import per job; at most one repeated notification per kill.
    st = hl.stats()
    check(st["jobs_created"] == jobs, "%d HealthLake imports for %d jobs" % (
        st["jobs_created"], jobs))
    msgs = collections.Counter()
    wait_for(lambda: [msgs.update([m["MessageAttributes"]["dedup_key"]["Value"].split("-")[1]])
                      for m in moto.messages()] is not None and
             sum(msgs.values()) >= jobs, 60, "a notification per job", 0.5)
    for jid, k in notes.items():
        n = msgs[str(jid)]
        check(1 <= n <= 1 + k, "job %d: %d notifications after %d kills" % (jid, n, k))
    check(env.stop() == 0, "daemon did not exit 0 on SIGTERM")
    print("crash loop: %d kills over %d jobs of %d bytes; kills per state: %s" % (
        kills_done, jobs, max(sizes), ", ".join("%s %d" % (s, kills[s]) for s in STATES if kills[s])),
        file=sys.stderr, flush=True)
