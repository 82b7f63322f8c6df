"""kill -9 in every state, then restart: the export completes, with files
byte-identical to the emulator's, exactly one kickoff at BCDA, and no file
downloaded again once it was recorded complete."""
import random
import time
from urllib.parse import urlparse

from harness import check, wait_for


def _state(env, jid):
    with env.db() as c:
        return c.execute("SELECT state FROM jobs WHERE id = ?", (jid,)).fetchone()[0]


def _finish_and_check(env, jid):
    env.emu.config(token_delay=0, kickoff_delay=0, download_rate=0)
    env.start()
    env.wait_done(jid, timeout=90)
    env.check_export_matches(jid)
    st = env.emu.stats()
    check(st["kickoff_attempts"] == 1,
          "BCDA saw %d kickoff requests, expected exactly 1" % st["kickoff_attempts"])
    with env.db() as c:
        check(c.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check")
    return st


def test_kill_in_token(env):
    env.emu.config(token_delay=3)
    env.start()
    jid = env.run()
    wait_for(lambda: env.emu.stats()["token_requests"] >= 1, 10, "a token request")
    check(_state(env, jid) == 1, "job should be in TOKEN")
    env.kill9()
    _finish_and_check(env, jid)


def test_kill_in_kickoff(env):
    # BCDA creates the job, then answers late: the kill falls in the gap
    # where BCDA has a job whose status URL bcdad never saw.
    env.emu.config(kickoff_delay=3, pending_seconds=6)
    env.start()
    jid = env.run()
    wait_for(lambda: env.emu.stats()["kickoff_attempts"] >= 1, 10, "a kickoff")
    check(_state(env, jid) == 2, "job should be in KICKOFF")
    env.kill9()
    _finish_and_check(env, jid)
    check(any("found the BCDA job" in h[2] for h in env.history(jid)),
          "history should say the BCDA job was found again: %s" % env.history(jid))


def test_kill_in_poll(env):
    env.emu.config(job_seconds=4)
    env.start()
    jid = env.run()
    wait_for(lambda: env.emu.stats()["polls"] >= 1, 15, "a poll")
    check(_state(env, jid) == 3, "job should be in POLL")
    env.kill9()
    _finish_and_check(env, jid)


def _big_export(env):
    # 40 EOB files of 50 lines, served slowly enough to be caught mid-way.
    env.emu.config(generate={"ExplanationOfBenefit": 2000}, lines_per_file=50,
                   download_rate=150000)
    env.write_config(profile_extra="resource_types = ExplanationOfBenefit")


def test_kill_mid_download(env):
    _big_export(env)
    env.start()
    jid = env.run()
    wait_for(lambda: _state(env, jid) == 4 and len(env.files_done(jid)) >= 5, 60,
             "some files done")
    env.kill9()
    done_before = env.files_done(jid)
    with env.db() as c:
        total = c.execute("SELECT count(*) FROM files WHERE job_id = ?", (jid,)).fetchone()[0]
    check(len(done_before) < total, "the kill should fall mid-download")
    st = _finish_and_check(env, jid)
    for url in done_before:
        n = st["downloads_started"].get(urlparse(url).path, 0)
        check(n == 1, "%s was complete before the kill but fetched %d times" % (url, n))


def test_kill_at_random_instants(env):
    _big_export(env)
    env.emu.config(download_rate=100000, job_seconds=2)
    env.start()
    jid = env.run()
    rnd = random.Random(20261126)
    done_sets, killed_in = [], []
    for _ in range(8):
        time.sleep(rnd.uniform(0.1, 1.2))
        if env.job(jid)["state"] == "DONE":
            break
        env.kill9()
        killed_in.append(_state(env, jid))
        done_sets.append(set(env.files_done(jid)))
        env.start()
    check(len(killed_in) >= 4, "only %d kills landed before DONE" % len(killed_in))
    env.emu.config(download_rate=0)
    env.wait_done(jid, timeout=90)
    env.check_export_matches(jid)
    st = env.emu.stats()
    check(st["kickoff_attempts"] == 1, "kickoffs: %d" % st["kickoff_attempts"])
    # A file recorded complete before a kill is never fetched again after it.
    seen = set().union(*done_sets) if done_sets else set()
    for url in seen:
        n = st["downloads_started"].get(urlparse(url).path, 0)
        check(n == 1, "%s fetched %d times after being complete" % (url, n))


def test_kill_in_kickoff_job_completes_while_down(env):
    """The kickoff reached BCDA, bcdad died before it saw the answer, and
    BCDA finished the job before bcdad came back: the completed job is
    found (it started after our kickoff), not exported a second time."""
    env.emu.config(kickoff_delay=3, pending_seconds=0, job_seconds=0.5)
    env.start()
    jid = env.run()
    wait_for(lambda: env.emu.stats()["kickoff_attempts"] >= 1, 10, "a kickoff")
    env.kill9()
    wait_for(lambda: [x for x in env.emu.jobs() if x["status"] == "Completed"], 15,
             "BCDA to finish the job while bcdad is down")
    _finish_and_check(env, jid)
