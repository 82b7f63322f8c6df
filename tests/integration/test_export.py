"""A complete export, incremental _since, and the status output."""
import json
import os

from harness import check


def test_full_export(env):
    env.start()
    jid = env.run()
    env.wait_done(jid)
    d = env.check_export_matches(jid)
    st = env.emu.stats()
    check(st["kickoffs"] == 1, "expected one kickoff, saw %d" % st["kickoffs"])
    for path, n in st["downloads_completed"].items():
        check(n == 1, "%s downloaded %d times" % (path, n))
    man = json.load(open(os.path.join(d, "manifest.json")))
    check(man["transactionTime"] == env.job(jid)["transaction_time"], "manifest transactionTime")
    for f in man["files"]:
        data = open(os.path.join(d, f["name"]), "rb").read()
        import hashlib
        check(hashlib.sha256(data).hexdigest() == f["sha256"], "sha256 of " + f["name"])
        check(len(data) == f["bytes"], "bytes of " + f["name"])
        check(data.count(b"\n") == f["lines"], "lines of " + f["name"])
    states = [h[1] for h in env.history(jid)]
    check(states == [0, 1, 2, 3, 4, 5, 6, 7, 8],
          "history went through %s" % states)
    table = env.cli("status").stdout
    check("DONE" in table and "A9994" in table and "3/3" in table, "status table:\n" + table)
    # Beneficiary data: the daemon user's alone (0600 files, 0700 dirs).
    for root, dirs, files in os.walk(env.out):
        for name in dirs:
            mode = os.stat(os.path.join(root, name)).st_mode & 0o777
            check(mode == 0o700, "directory %s is %o" % (name, mode))
        for name in files:
            mode = os.stat(os.path.join(root, name)).st_mode & 0o777
            check(mode == 0o600, "file %s is %o" % (name, mode))


def test_incremental_since(env):
    env.start()
    first = env.run()
    env.wait_done(first)
    tt = env.job(first)["transaction_time"]
    second = env.run()
    env.wait_done(second)
    urls = env.emu.stats()["kickoff_urls"]
    check(len(urls) == 2, "two kickoffs expected: %s" % urls)
    check("_since" not in urls[0], "first export must be full history: " + urls[0])
    from urllib.parse import urlparse, parse_qs
    q = parse_qs(urlparse(urls[1]).query)
    check(q.get("_since") == [tt], "second _since %s, expected %s" % (q.get("_since"), tt))


def test_disk_full_waits_for_space(env):
    """The storage directory fills up mid-export (a 256 KiB tmpfs): the
    job waits, says why in status, spends none of its files' attempts, and
    finishes by itself once there is room (the tmpfs grown to 64 MiB)."""
    import subprocess
    import sys
    from harness import wait_for
    small = os.path.join(env.dir, "small")
    os.mkdir(small, 0o700)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs",
                       small], stderr=subprocess.DEVNULL).returncode != 0:
        print("skipped: cannot mount a tmpfs here (needs root)", file=sys.stderr)
        return
    env.cleanups.append(lambda: subprocess.run(["umount", "-l", small]))
    env.emu.config(generate={"ExplanationOfBenefit": 600}, lines_per_file=100)
    env.write_config(profile_extra="resource_types = ExplanationOfBenefit\n"
                     "storage_dir = %s\n" % small)
    env.start()
    jid = env.run()
    j = wait_for(lambda: (lambda r: r if "disk space" in (r["last_error"] or "") else None)(
        env.job(jid)), 60, "the job to say it waits for disk space")
    check(j["state"] == "DOWNLOAD", "state %s" % j["state"])
    subprocess.run(["mount", "-o", "remount,size=64m", small], check=True)
    j = env.wait_done(jid, timeout=120)
    env.check_export_matches(jid)
    with env.db() as c:
        worst = c.execute("SELECT max(attempts) FROM files WHERE job_id = ?",
                          (jid,)).fetchone()[0]
    check(worst == 0, "a full disk counted against a file's attempts: %s" % worst)
    check(not j["last_error"], "last_error after the wait: %s" % j["last_error"])


def test_low_descriptor_limit(env):
    """The daemon runs with a descriptor limit a little above what it holds
    idle, 32 downloads allowed, and a crowd of idle control clients: the
    control socket takes at most a quarter of the limit, transfers are
    capped to what is left (and the log says to raise LimitNOFILE=), status
    answers all along, and the export completes with no attempt spent.
    (A transfer that finds no descriptor anyway waits without spending its
    attempts: test_engine's t_out_of_descriptors.)"""
    import socket
    env.emu.config(generate={"ExplanationOfBenefit": 1200}, lines_per_file=40,
                   download_rate=200000)
    env.write_config(daemon_extra="max_downloads = 32\nmax_downloads_per_job = 32",
                     profile_extra="resource_types = ExplanationOfBenefit")
    env.nofile = 40
    env.start()
    log = env.log_text()
    check("control clients: 10" in log, "control clients not capped to a quarter of 40")
    check("raise LimitNOFILE=" in log, "no word on the transfer cap:\n" + log[-1500:])
    jid = env.run()
    crowd = []
    try:
        for _ in range(30):
            s = socket.socket(socket.AF_UNIX)
            s.connect(env.sock)
            crowd.append(s)
            check(env.job(jid)["id"] == jid, "status in the crowd")
        j = env.wait_done(jid, timeout=180)
    finally:
        for s in crowd:
            s.close()
    env.check_export_matches(jid)
    check("Couldn't connect" not in env.log_text() and "Too many open files" not in
          env.log_text(), "a transfer ran out of descriptors:\n" + env.log_text()[-1500:])
    with env.db() as c:
        worst = c.execute("SELECT max(attempts) FROM files WHERE job_id = ?",
                          (jid,)).fetchone()[0]
    check(worst == 0, "a file spent attempts: %s" % worst)
    check(not j["last_error"], "last_error: %s" % j["last_error"])
    check(env.stop() == 0, "clean stop")


def test_database_locked_by_another_process(env):
    """Another process holds the database's write lock for 4 s mid-download:
    status still answers, the daemon's writes wait and are written again,
    no file is fetched twice, and the export completes."""
    import sqlite3
    import time
    from urllib.parse import urlparse
    from harness import wait_for
    env.emu.config(generate={"ExplanationOfBenefit": 2000}, lines_per_file=50,
                   download_rate=300000)
    env.write_config(profile_extra="resource_types = ExplanationOfBenefit")
    env.start()
    jid = env.run()
    wait_for(lambda: len(env.files_done(jid)) >= 3, 60, "some files done")
    db = sqlite3.connect(os.path.join(env.state, "bcdad.db"), isolation_level=None,
                         timeout=10)
    db.execute("BEGIN EXCLUSIVE")
    try:
        t = time.monotonic() + 4
        while time.monotonic() < t:
            r = env.cli("status", "--json")
            check(json.loads(r.stdout)[0]["id"] == jid, "status under the lock")
            time.sleep(0.5)
    finally:
        db.execute("COMMIT")
        db.close()
    env.emu.config(download_rate=0)
    env.wait_done(jid, timeout=120)
    env.check_export_matches(jid)
    check("database is locked" in env.log_text() or "busy" in env.log_text().lower(),
          "the lock should have refused some write")
    for path, n in env.emu.stats()["downloads_started"].items():
        check(n == 1, "%s fetched %d times" % (path, n))
