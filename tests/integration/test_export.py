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
