"""The control socket, the command-line client, shutdown and secrets.

Bad clients (garbage, oversized, silent, wrong version, unknown command)
get an error or are dropped while the daemon goes on answering; the CLI's
errors and exit codes; `bcdad -h` and `bcdad -n`; the socket's mode;
SIGTERM in any state, then resume; and that neither the client secret nor
any bearer token reaches the logs, the database or the status output.
"""
import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import harness
from harness import check, wait_for


def raw_request(env, data, timeout=5.0):
    """Sends data on a new connection; returns what came back before EOF."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(env.sock)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass            # the daemon may reply and close mid-request
        out = b""
        while b"\n" not in out:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def raw_json(env, obj):
    """One request; asked again while the daemon answers "busy" (all its
    control connections in use), as bcdad's client does."""
    import time
    end = time.monotonic() + 5
    while True:
        rep = raw_request(env, json.dumps(obj).encode() + b"\n")
        check(rep.endswith(b"\n"), "reply is not one line: %r" % rep)
        r = json.loads(rep)
        if not r.get("busy") or time.monotonic() > end:
            return r
        time.sleep(0.05)


def still_answers(env):
    r = raw_json(env, {"version": 1, "cmd": "status"})
    check(r.get("ok") is True and isinstance(r.get("jobs"), list),
          "status after a bad client: %r" % r)
    check(env.proc.poll() is None, "the daemon exited")
    env.status()            # and through the CLI


def test_garbage(env):
    env.start()
    rnd = random.Random(1234)
    for n in (1, 17, 300, 4000):
        data = bytes(rnd.randrange(256) for _ in range(n)).replace(b"\n", b"x")
        rep = raw_request(env, data + b"\n")
        r = json.loads(rep)
        check(r.get("ok") is False and r.get("error"), "garbage reply: %r" % rep)
    for line in (b"\n", b"[]\n", b"\"status\"\n", b"{\"cmd\":\n", b"\x00\n",
                 b"{\"version\":1,\"cmd\":42}\n", b"null\n",
                 b"{\"version\":1,\"cmd\":\"status\",\"cmd\":\"run\"}\n"):
        rep = raw_request(env, line)
        r = json.loads(rep)
        check(r.get("ok") is False and r.get("error"), "%r gave %r" % (line, rep))
    # A client that closes at once, or half-way through a request.
    s = socket.socket(socket.AF_UNIX)
    s.connect(env.sock)
    s.close()
    s = socket.socket(socket.AF_UNIX)
    s.connect(env.sock)
    s.sendall(b'{"version":1,"cmd":"sta')
    s.close()
    still_answers(env)


def test_request_ended_by_half_close(env):
    """A request without its newline, ended by shutdown(SHUT_WR) as `nc -N`
    does, is answered (the daemon closed without a word); garbage ended
    that way gets an error, and an empty one is dropped."""
    env.start()

    def half_closed(data):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(env.sock)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        s.close()
        return out
    rep = half_closed(b'{"version":1,"cmd":"status"}')
    check(rep.endswith(b"\n"), "no reply to a half-closed request: %r" % rep)
    r = json.loads(rep)
    check(r.get("ok") is True and r.get("jobs") == [], "half-closed status: %r" % r)
    r = json.loads(half_closed(b'{"version":1,"cmd":'))
    check(r.get("ok") is False and "not a JSON object" in r.get("error", ""),
          "half-closed garbage: %r" % r)
    check(half_closed(b"") == b"", "an empty request was answered")
    still_answers(env)


def test_request_too_long(env):
    env.start()
    rep = raw_request(env, b"x" * (70 * 1024), timeout=10)
    if rep:
        r = json.loads(rep)
        check(r.get("ok") is False and "too long" in r.get("error", ""),
              "oversized request: %r" % rep[:200])
    # A long but valid JSON request that is still too long.
    big = json.dumps({"version": 1, "cmd": "status", "pad": "y" * (80 * 1024)}).encode()
    rep = raw_request(env, big + b"\n", timeout=10)
    if rep:
        check(b"too long" in rep, "oversized JSON request: %r" % rep[:200])
    # Just under the limit is fine.
    ok = json.dumps({"version": 1, "cmd": "status", "pad": "z" * (60 * 1024)}).encode()
    r = json.loads(raw_request(env, ok + b"\n"))
    check(r.get("ok") is True, "a 60 KiB request was refused: %r" % r)
    still_answers(env)


def test_slow_clients(env):
    env.start()
    idle = []
    for _ in range(50):
        s = socket.socket(socket.AF_UNIX)
        s.connect(env.sock)
        idle.append(s)
    partial = socket.socket(socket.AF_UNIX)
    partial.connect(env.sock)
    partial.sendall(b'{"version":1,')
    for _ in range(3):
        still_answers(env)
    # The daemon drops a silent client after its idle timeout (5 s); a
    # client still connected after 20 s makes recv time out and fails.
    for s in (idle[0], partial):
        s.settimeout(20)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        check(data == b"", "a silent client got %r" % data)
    for s in idle + [partial]:
        s.close()
    still_answers(env)


def test_flood_of_idle_clients(env):
    """Hundreds of silent clients: beyond the cap they are told the daemon
    is busy, the oldest are dropped for new ones once silent for 250 ms,
    so descriptors stay bounded and status and run still answer."""
    env.start()
    pid = env.proc.pid
    base = len(os.listdir("/proc/%d/fd" % pid))
    flood = []
    for _ in range(300):
        s = socket.socket(socket.AF_UNIX)
        s.connect(env.sock)
        flood.append(s)
    # Beyond the cap, while even the oldest is young, a clear refusal.
    import select
    ready, _, _ = select.select(flood, [], [], 2)
    replies = [s.recv(4096) for s in ready]
    busy = [r for r in replies if r and json.loads(r).get("busy") is True and
            "too many control connections" in json.loads(r)["error"]]
    check(busy, "no client of the flood was told the daemon is busy: %r" % replies[:3])
    still_answers(env)
    jid = env.run()
    fds = len(os.listdir("/proc/%d/fd" % pid))
    check(fds <= base + 64 + 2, "%d descriptors open (%d before the flood)" % (fds, base))
    # New clients after 250 ms drop the first ones, long before their idle
    # timeout.
    time.sleep(0.3)
    for _ in range(8):
        s = socket.socket(socket.AF_UNIX)
        s.connect(env.sock)
        flood.append(s)
    flood[0].settimeout(2)
    try:
        data = flood[0].recv(4096)
    except ConnectionResetError:
        data = b""
    check(data == b"", "the oldest silent client got %r" % data)
    for s in flood:
        s.close()
    env.wait_done(jid, timeout=60)


def test_flood_keeps_the_watchdog(env):
    """2,000 jobs in the database, an export running, and clients asking
    for the largest status page as fast as they can while others connect
    and say nothing: the daemon's WATCHDOG=1 is never late (read from our
    own NOTIFY_SOCKET), `bcdad status` and `bcdad run` still answer, the
    export completes.  Prints the gaps and the latencies it measured."""
    import sqlite3
    import threading
    import time
    env.start()
    env.wait_done(env.run())
    check(env.stop() == 0, "clean stop")
    db = sqlite3.connect(os.path.join(env.state, "bcdad.db"))
    jcols = ", ".join(r[1] for r in db.execute("PRAGMA table_info(jobs)") if r[1] != "id")
    fcols = [r[1] for r in db.execute("PRAGMA table_info(files)") if r[1] not in ("id",)]
    db.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
               "WHERE i < 2000) INSERT INTO jobs (%s) SELECT %s FROM jobs, n "
               "WHERE jobs.id = 1" % (jcols, jcols))
    db.execute("INSERT INTO files (%s) SELECT %s FROM jobs j, files f WHERE f.job_id = 1 "
               "AND j.id > 1" % (", ".join(fcols), ", ".join(
                   "j.id" if c == "job_id" else "f." + c for c in fcols)))
    db.commit()
    db.close()

    period = 1.0    # WATCHDOG_USEC: the daemon pings every half of it
    ns_path = os.path.join(env.dir, "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(ns_path)
    ns.settimeout(0.2)
    env.env_extra = {"NOTIFY_SOCKET": ns_path, "WATCHDOG_USEC": str(int(period * 1e6))}
    env.emu.config(generate={"ExplanationOfBenefit": 3000}, lines_per_file=100,
                   download_rate=400000)
    env.start()
    pings = []
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            try:
                if b"WATCHDOG=1" in ns.recv(4096):
                    pings.append(time.monotonic())
            except socket.timeout:
                pass

    served = [0]

    def flood():
        req = (json.dumps({"version": 1, "cmd": "status", "limit": 1000}) + "\n").encode()
        while not stop.is_set():
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(env.sock)
                s.sendall(req)
                while s.recv(65536):
                    pass
                s.close()
                served[0] += 1
            except OSError:
                pass

    def idle():
        crowd = []
        while not stop.is_set():
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(env.sock)
            except OSError:
                continue
            crowd.append(s)
            if len(crowd) > 200:
                crowd.pop(0).close()
            time.sleep(0.005)
        for s in crowd:
            s.close()

    threads = [threading.Thread(target=f) for f in [listen, idle] + [flood] * 4]
    for t in threads:
        t.start()
    lat = []
    try:
        jid = env.run()
        end = time.monotonic() + 8
        while time.monotonic() < end:
            t0 = time.monotonic()
            r = env.cli("status", "--json")
            lat.append(time.monotonic() - t0)
            check(json.loads(r.stdout)[0]["id"] == jid, "status under the flood")
        rid = env.run()
    finally:
        stop.set()
        for t in threads:
            t.join()
        ns.close()
    env.wait_done(jid, timeout=120)
    env.wait_done(rid, timeout=120)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    lat.sort()
    print("flood: %d status pages of 200 jobs served, %d pings, watchdog gap max %.0f ms "
          "(period %.0f ms, pings every %.0f ms); bcdad status --json p50 %.0f ms, p99 %.0f ms "
          "over %d calls" % (served[0], len(pings), 1000 * max(gaps), 1000 * period,
                             500 * period, 1000 * lat[len(lat) // 2],
                             1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], len(lat)),
          file=sys.stderr)
    check(len(pings) >= 8, "only %d WATCHDOG=1 in the flood" % len(pings))
    check(max(gaps) < period, "WATCHDOG=1 late: a gap of %.0f ms, the period is %.0f ms"
          % (1000 * max(gaps), 1000 * period))
    check(env.stop() == 0, "clean stop")


def test_protocol_errors(env):
    env.start()
    r = raw_json(env, {"version": 2, "cmd": "status"})
    check(r["ok"] is False and "version" in r["error"], "wrong version: %r" % r)
    r = raw_json(env, {"cmd": "status"})
    check(r["ok"] is False and "version" in r["error"], "no version: %r" % r)
    r = raw_json(env, {"version": "1", "cmd": "status"})
    check(r["ok"] is False and "version" in r["error"], "string version: %r" % r)
    r = raw_json(env, {"version": 1, "cmd": "frobnicate"})
    check(r["ok"] is False and "unknown command" in r["error"], "unknown command: %r" % r)
    r = raw_json(env, {"version": 1})
    check(r["ok"] is False and "cmd" in r["error"], "no cmd: %r" % r)
    r = raw_json(env, {"version": 1, "cmd": "run"})
    check(r["ok"] is False and "profile" in r["error"], "run without profile: %r" % r)
    r = raw_json(env, {"version": 1, "cmd": "cancel", "job": "1"})
    check(r["ok"] is False and "job" in r["error"], "cancel with a string: %r" % r)
    # A job id below 1 is answered as given (it was read as 0).
    r = raw_json(env, {"version": 1, "cmd": "cancel", "job": -1})
    check(r["ok"] is False and r["error"] == "no running job -1", "cancel -1: %r" % r)
    r = raw_json(env, {"version": 1, "cmd": "retry", "job": -1})
    check(r["ok"] is False and r["error"] == "no job -1", "retry -1: %r" % r)
    r = raw_json(env, {"version": 1, "cmd": "status", "job": -1})
    check(r["ok"] is True and r["jobs"] == [], "status of job -1: %r" % r)
    r = raw_json(env, {"version": 1, "cmd": "ping"})
    check(r["ok"] is True and r.get("daemon"), "ping: %r" % r)
    check(r.get("version") == 1, "reply carries no version: %r" % r)
    still_answers(env)


def test_cli_errors(env):
    env.start()
    r = env.cli("run", "NOPE", ok=False)
    check(r.returncode == 1, "run of an unknown profile exited %d" % r.returncode)
    check("no profile named NOPE" in r.stderr, "run NOPE said: %r" % r.stderr)
    r = env.cli("cancel", "9999", ok=False)
    check(r.returncode == 1, "cancel 9999 exited %d" % r.returncode)
    check("9999" in r.stderr and "no running job" in r.stderr, "cancel 9999 said: %r" % r.stderr)
    for bad in ("abc", "0", "-3", "12x", ""):
        r = env.cli("cancel", bad, ok=False)
        check(r.returncode == 2 and "job number" in r.stderr,
              "cancel %r: %d %r" % (bad, r.returncode, r.stderr))
    for args in (("frob",), ("run",), ("run", "a", "b"), ("status", "--yaml"), ("cancel",),
                 ("doctor", "A9994", "B0001")):
        r = env.cli(*args, ok=False)
        check(r.returncode == 2 and "bcdad -h" in r.stderr,
              "%s: %d %r" % (args, r.returncode, r.stderr))
    r = env.cli("doctor")
    check("daemon: bcdad" in r.stdout, "doctor: %r" % r.stdout)
    env.stop(5)
    r = env.cli("status", ok=False)
    check(r.returncode == 1 and "cannot reach the daemon" in r.stderr,
          "status with no daemon: %d %r" % (r.returncode, r.stderr))


def test_run_twice_and_cancel(env):
    env.emu.config(pending_seconds=3600)
    env.start()
    jid = env.run()
    env.wait_state(jid, "POLL")
    r = env.cli("run", env.profile, ok=False)
    check(r.returncode == 1, "second run exited %d" % r.returncode)
    check(("job %d" % jid) in r.stderr and "still in" in r.stderr,
          "second run said: %r" % r.stderr)
    check(len(env.status()) == 1, "a second job was recorded")
    r = env.cli("cancel", str(jid))
    check(("cancelling job %d" % jid) in r.stdout, "cancel said: %r" % r.stdout)
    j = env.wait_terminal(jid)
    check(j["state"] == "CANCELLED", "job ended %s" % j["state"])
    r = env.cli("cancel", str(jid), ok=False)
    check(r.returncode == 1 and "no running job" in r.stderr,
          "cancel of a finished job: %r" % r.stderr)
    # Once the first is over, a new run is accepted.
    env.emu.config(pending_seconds=0.2)
    second = env.run()
    check(second != jid, "the same job id twice")
    env.wait_done(second)


def test_status_output(env):
    env.start()
    out = env.cli("status").stdout
    lines = out.splitlines()
    check(lines and lines[0].split() == ["JOB", "PROFILE", "STATE", "PROGRESS", "FILES",
                                         "BYTES", "AGE", "LAST", "ERROR"],
          "status header: %r" % out)
    check("no jobs yet" in out, "empty status: %r" % out)
    check(json.loads(env.cli("status", "--json").stdout) == [], "empty --json")
    jid = env.run()
    env.wait_done(jid)
    jobs = json.loads(env.cli("status", "--json").stdout)
    check(isinstance(jobs, list) and len(jobs) == 1, "--json: %r" % jobs)
    j = jobs[0]
    for k in ("id", "profile", "state", "progress", "files_done", "files_total",
              "bytes", "created_at", "last_error"):
        check(k in j, "--json has no %s: %r" % (k, j))
    check(j["id"] == jid and j["state"] == "DONE" and j["profile"] == env.profile, "%r" % j)
    out = env.cli("status").stdout.splitlines()
    check(len(out) >= 2 and out[1].split()[:3] == [str(jid), env.profile, "DONE"],
          "status table: %r" % out)
    # Then the profiles: the watermark the next export starts from.
    check(out[2] == "" and out[3].split()[:3] == ["PROFILE", "SCOPE", "WATERMARK"],
          "profiles header: %r" % out)
    check(out[4].split()[:2] == [env.profile, "v2"] and j["transaction_time"] in out[4],
          "profiles table: %r" % out)


def test_status_of_rows_not_utf8(env):
    """Rows holding bytes that are not UTF-8 (a Latin-1 type_filter or
    storage_dir from before the configuration refused them, an error
    message cut inside a character) show with U+FFFD in their place, and
    the rest of status and history still answers."""
    import sqlite3
    env.start()
    jid = env.run()
    env.wait_done(jid)
    check(env.stop() == 0, "clean stop")
    bad = b"caf\xe9 \xe2\x80"
    db = sqlite3.connect(os.path.join(env.state, "bcdad.db"))
    for sql in ("UPDATE jobs SET last_error = CAST(? AS TEXT), scope = CAST(? AS TEXT), "
                "out_dir = CAST(? AS TEXT)",
                "UPDATE watermark SET scope = CAST(? AS TEXT)",
                "UPDATE job_history SET reason = CAST(? AS TEXT)",
                "UPDATE files SET last_error = CAST(? AS TEXT)"):
        db.execute(sql, (bad,) * sql.count("?"))
    db.commit()
    db.close()
    env.start()
    j = env.job(jid)
    for k in ("last_error", "scope", "dir"):
        check(j[k].startswith("caf\ufffd "), "status %s: %r" % (k, j[k]))
    check(str(jid) in env.cli("status").stdout, "status table")
    profs = json.loads(env.cli("status", "--profiles", "--json").stdout)
    check(profs[0]["watermarks"][0]["scope"].startswith("caf\ufffd "), "watermark: %r" % profs)
    h = json.loads(env.cli("history", str(jid), "--json").stdout)
    check(all(x["reason"].startswith("caf\ufffd ") for x in h["history"]) and
          all(f["last_error"].startswith("caf\ufffd ") for f in h["files"]), "history: %r" % h)


def test_help_and_check(env):
    r = subprocess.run([harness.BIN, "-h"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 0, "-h exited %d" % r.returncode)
    for word in ("status", "--json", "run", "cancel", "doctor", "-n", "-c", "-s", "-v", "-d"):
        check(word in r.stdout, "-h does not mention %s:\n%s" % (word, r.stdout))
    # bcdad COMMAND --help: that command's synopsis and text, exit 0,
    # before (and without) reading any configuration.
    for cmd, word in (("status", "--before"), ("run", "5 SKIPPED"), ("cancel", "CANCELLED"),
                      ("retry", "ClientToken"), ("history", "--json"),
                      ("doctor", "allow-list")):
        r = subprocess.run([harness.BIN, "-c", "/nonexistent.conf", cmd, "--help"],
                           capture_output=True, text=True, timeout=10)
        check(r.returncode == 0 and r.stdout.startswith("usage: bcdad") and
              (" %s " % cmd) in r.stdout.splitlines()[0] and word in r.stdout and
              not r.stderr, "%s --help: %r" % (cmd, r))
    r = subprocess.run([harness.BIN, "-v"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 0 and r.stdout.startswith("bcdad "), "-v: %r" % r.stdout)

    r = subprocess.run([harness.BIN, "-n", "-c", env.conf], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 0 and "configuration OK" in r.stdout, "-n on a good file: %r" % (r,))

    bad = os.path.join(env.dir, "bad.conf")
    with open(bad, "w") as f:
        f.write("[daemon]\n"                                   # 1
                "state_dir = %s\n"                             # 2
                "bogus_key = 1\n"                              # 3
                "max_downloads = lots\n"                       # 4
                "\n"                                           # 5
                "[profile A9994]\n"                            # 6
                "base_url = %s\n"                              # 7
                "api_version = v9\n"                           # 8
                "client_id = A9994\n"                          # 9
                "client_secret_file = %s\n"                    # 10
                % (env.state, env.emu.base, env.secret_file))
    r = subprocess.run([harness.BIN, "-n", "-c", bad], capture_output=True, text=True,
                       timeout=10)
    check(r.returncode == 1, "-n on a bad file exited %d" % r.returncode)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    check(len(lines) == 3, "expected 3 error lines, got:\n" + "\n".join(lines))
    for line, n in zip(lines, (3, 4, 8)):
        check(line.startswith("%s:%d: " % (bad, n)), "error line %r (expected line %d)" % (line, n))
    check(not os.path.exists(env.state), "-n created the state directory")


def test_runtime_dir_too_long(env):
    """A runtime_dir whose bcdad.sock would not fit a Unix socket path (107
    bytes) is a configuration error, with the limit, for -n and the daemon
    alike (libuv cut the name short, chmod then failed, and the daemon
    said "Unknown system error 0", leaving a stray socket).  96 bytes do."""
    def use(d):
        env.run_dir, env.sock = d, d + "/bcdad.sock"
        env.write_config()
    ok = env.dir + "/" + "r" * (96 - len(env.dir) - 1)
    use(ok + "x")
    r = subprocess.run([harness.BIN, "-n", "-c", env.conf], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 1 and ':3: runtime_dir "%sx" is too long (97 bytes)' % ok
          in r.stderr and "107 bytes of a Unix socket path; use at most 96 bytes"
          in r.stderr, "-n, 97 bytes: %r" % (r,))
    r = subprocess.run([harness.BIN, "-c", env.conf], capture_output=True, text=True,
                       timeout=10)
    check(r.returncode == 1 and "too long (97 bytes)" in r.stderr, "daemon: %r" % (r,))
    check(not os.path.exists(env.run_dir), "the refused runtime_dir was made")
    use(ok)
    r = subprocess.run([harness.BIN, "-n", "-c", env.conf], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 0, "-n, 96 bytes: %r" % (r,))
    env.start()
    env.status()
    check(env.stop() == 0, "clean stop")


def test_check_storage_writable(env):
    """bcdad -n (the unit's ExecStartPre=, run inside its sandbox) finds a
    profile storage_dir the daemon could not write, with the fix: a
    read-only mount (as ProtectSystem= makes one) names ReadWritePaths=.
    The daemon refuses to start on it, and a reload to it is refused."""
    blocker = os.path.join(env.dir, "a-file")
    open(blocker, "w").close()
    env.write_config(profile_extra="storage_dir = %s/sub" % blocker)
    r = subprocess.run([harness.BIN, "-n", "-c", env.conf], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 1 and "profile A9994 storage_dir is not writable here: %s/sub"
          % blocker in r.stderr, "-n, storage under a file: %r" % (r,))
    ro = os.path.join(env.dir, "ro")
    os.mkdir(ro)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", ro],
                      capture_output=True).returncode == 0:
        env.cleanups.append(lambda: subprocess.run(["umount", ro]))
        env.write_config(profile_extra="storage_dir = %s/A9994/out" % ro)
        r = subprocess.run([harness.BIN, "-n", "-c", env.conf], capture_output=True,
                           text=True, timeout=10)
        check(r.returncode == 1 and "Read-only file system" in r.stderr and
              "ReadWritePaths=" in r.stderr, "-n, read-only mount: %r" % (r,))
        p = subprocess.run([harness.BIN, "-c", env.conf], capture_output=True, text=True,
                           timeout=10)
        check(p.returncode == 1 and "Read-only file system" in p.stderr,
              "the daemon started on a read-only storage_dir: %r" % (p,))
    else:
        print("read-only mount skipped: cannot mount a tmpfs here (needs root)",
              file=sys.stderr)
    # A reload to an unwritable storage_dir keeps the configuration in use.
    env.write_config()
    env.start()
    env.write_config(profile_extra="storage_dir = %s/sub" % blocker)
    env.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "is not writable here" in env.log_text(), 10, "the refused reload")
    check("keeping the configuration in use" in env.log_text(), env.log_text()[-600:])
    env.wait_done(env.run())
    check(env.stop() == 0, "clean stop")


def as_nobody(env, *args):
    """bcdad ARGS over env's socket, run as nobody (in group nogroup alone):
    a client that is neither root nor the daemon's user or group.  The
    client is a copy in env.dir (which the caller opened to others): the
    build tree may sit where nobody cannot reach it (CI's is in a 0700
    temporary directory)."""
    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    client = os.path.join(env.dir, "bcdad-client")
    if not os.path.exists(client):
        shutil.copy(harness.BIN, client)
        os.chmod(client, 0o755)
    return subprocess.run([client, "-s", env.sock] + list(args), capture_output=True,
                          text=True, timeout=30, preexec_fn=drop)


def test_control_group(env):
    """control_group gives the control socket its group: its members (here
    nobody, whose group is nogroup) reach the socket for status, through a
    runtime directory the daemon made 0750 with that group, and are refused
    run; without control_group the directory is 0750 with the daemon's own
    group, and one that already exists is left alone.  An unknown group is
    a configuration error."""
    import grp
    g = grp.getgrnam("nogroup")
    os.chmod(env.dir, 0o711)        # let nobody through to runtime_dir
    env.write_config(daemon_extra="control_group = nogroup")
    env.start()
    st = os.stat(env.sock)
    check(st.st_gid == g.gr_gid and stat.S_IMODE(st.st_mode) == 0o660,
          "socket group %d mode %o" % (st.st_gid, stat.S_IMODE(st.st_mode)))
    st = os.stat(env.run_dir)
    check(st.st_gid == g.gr_gid and stat.S_IMODE(st.st_mode) == 0o750,
          "runtime_dir group %d mode %o" % (st.st_gid, stat.S_IMODE(st.st_mode)))
    r = as_nobody(env, "status", "--json")
    check(r.returncode == 0 and json.loads(r.stdout) == [], "status as nobody: %r" % (r,))
    r = as_nobody(env, "run", env.profile)
    check(r.returncode == 1 and "permission denied" in r.stderr, "run as nobody: %r" % (r,))
    check(env.stop() == 0, "clean stop")
    # Without control_group: the daemon's group alone.
    os.rmdir(env.run_dir)
    env.write_config()
    env.start()
    st = os.stat(env.run_dir)
    check(st.st_gid == os.getegid() and stat.S_IMODE(st.st_mode) == 0o750,
          "runtime_dir group %d mode %o" % (st.st_gid, stat.S_IMODE(st.st_mode)))
    r = as_nobody(env, "status")
    check(r.returncode == 1 and "Permission denied" in r.stderr, "status as nobody: %r" % (r,))
    check(env.stop() == 0, "clean stop")
    os.chmod(env.run_dir, 0o700)
    env.start()
    check(stat.S_IMODE(os.stat(env.run_dir).st_mode) == 0o700, "an existing runtime_dir changed")
    check(env.stop() == 0, "clean stop")
    env.write_config(daemon_extra="control_group = no-such-group-here")
    r = subprocess.run([harness.BIN, "-n", "-c", env.conf], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 1 and "control_group \"no-such-group-here\" is not a group"
          in r.stdout + r.stderr, "-n, unknown group: %r" % (r,))


def test_status_looks_up_no_groups(env):
    """The peer's supplementary groups (a user database look-up, which
    sssd or LDAP can make slow, on the event loop) are looked up for run,
    cancel and retry only, never for status: traced with strace while
    nobody, a member of control_group, asks each."""
    import shutil
    if "asan" in os.environ.get("BUILD", ""):
        print("skipped under ASan: its runtime will not run under ptrace", file=sys.stderr)
        return
    strace = shutil.which("strace")
    check(strace is not None, "strace not found: run make deps")
    os.chmod(env.dir, 0o711)        # let nobody through to runtime_dir
    env.write_config(daemon_extra="control_group = nogroup")
    env.start()

    def lookups(*args):
        trace = os.path.join(env.dir, "strace-%s" % args[0])
        st = subprocess.Popen([strace, "-f", "-qq", "-e", "trace=open,openat,connect",
                               "-o", trace, "-p", str(env.proc.pid)])
        wait_for(lambda: open("/proc/%d/status" % env.proc.pid).read().count(
            "TracerPid:\t%d\n" % st.pid), 10, "strace to attach")
        r = as_nobody(env, *args)
        st.send_signal(signal.SIGINT)
        st.wait(10)
        return r, [l for l in open(trace) if any(
            w in l for w in ("/etc/passwd", "/etc/group", "libnss_", "/userdb/"))]
    r, seen = lookups("status", "--json")
    check(r.returncode == 0, "status as nobody: %r" % (r,))
    check(seen == [], "status looked up the user database: %s" % seen)
    r, seen = lookups("run", env.profile)
    check(r.returncode == 1 and "permission denied" in r.stderr, "run as nobody: %r" % (r,))
    check(seen != [], "run did not look up nobody's groups (does the trace see it?)")
    check(env.stop() == 0, "clean stop")


def test_socket_mode(env):
    env.start()
    st = os.stat(env.sock)
    check(stat.S_ISSOCK(st.st_mode), "%s is not a socket" % env.sock)
    check(stat.S_IMODE(st.st_mode) == 0o660, "socket mode %o" % stat.S_IMODE(st.st_mode))
    # A stale socket file from a killed daemon does not stop the next one.
    env.kill9()
    check(os.path.exists(env.sock), "kill -9 removed the socket?")
    env.start()
    check(stat.S_IMODE(os.stat(env.sock).st_mode) == 0o660, "mode after restart")
    env.status()
    check(env.stop(5) == 0, "daemon exit code")
    check(not os.path.exists(env.sock), "the socket file was left behind")


def stop_timed(env):
    """SIGTERM stops the daemon, exit 0.  The deadline only catches a hang
    (a silent client once held the stop for its 10 s idle timeout)."""
    rc = env.stop(timeout=8)
    check(rc == 0, "SIGTERM exit code %r\n%s" % (rc, env.log_text()[-2000:]))


def test_sigterm_idle(env):
    env.start()
    stop_timed(env)
    # And with clients connected, one of them silent.
    env.start()
    s = socket.socket(socket.AF_UNIX)
    s.connect(env.sock)
    stop_timed(env)
    s.close()


def test_sigterm_in_poll_resumes(env):
    env.emu.config(pending_seconds=3600)
    env.start()
    jid = env.run()
    env.wait_state(jid, "POLL")
    time.sleep(1.5)         # let a poll or two happen
    stop_timed(env)
    check(env.emu.stats()["kickoffs"] == 1, "kickoffs before restart")
    env.emu.config(pending_seconds=0)
    env.start()
    env.wait_done(jid)
    check(env.emu.stats()["kickoffs"] == 1,
          "the restart kicked off again: %d" % env.emu.stats()["kickoffs"])
    env.check_export_matches(jid)
    stop_timed(env)


def test_sigterm_in_download_resumes(env):
    # Slow downloads, so that SIGTERM lands while files are in flight.
    env.emu.config(download_rate=20000, lines_per_file=400)
    env.start()
    jid = env.run()
    env.wait_state(jid, "DOWNLOAD")
    time.sleep(0.5)
    stop_timed(env)
    env.emu.config(download_rate=0)
    env.start()
    env.wait_done(jid)
    env.check_export_matches(jid)
    check(env.emu.stats()["kickoffs"] == 1, "the restart kicked off again")


def _daemon_bytes(env):
    """Every byte bcdad wrote that a person or a backup could read."""
    blobs = {"logs": env.log_text().encode()}
    for suffix in ("", "-wal", "-shm"):
        p = os.path.join(env.state, "bcdad.db" + suffix)
        if os.path.exists(p):
            with open(p, "rb") as f:
                blobs["bcdad.db" + suffix] = f.read()
    blobs["status"] = env.cli("status").stdout.encode()
    blobs["status --json"] = env.cli("status", "--json").stdout.encode()
    blobs["doctor"] = env.cli("doctor").stdout.encode()
    for root, _, files in os.walk(env.out):
        for name in files:
            if name == "manifest.json":
                with open(os.path.join(root, name), "rb") as f:
                    blobs[name] = f.read()
    return blobs


def test_secrets_not_leaked(env):
    env.start()
    jid = env.run()
    env.wait_done(jid)
    tokens = env.emu.tokens()
    check(tokens, "the emulator issued no token?")
    pid = env.proc.pid
    blobs = _daemon_bytes(env)
    check(len(blobs["bcdad.db"]) > 0, "empty database")
    needles = {"the client secret": harness.SECRET.encode()}
    for i, t in enumerate(tokens):
        needles["token %d" % i] = t.encode()
        # A token's signature part alone is as good as the token.
        needles["token %d signature" % i] = t.rsplit(".", 1)[-1].encode()
    for where, data in blobs.items():
        for what, needle in needles.items():
            check(needle not in data, "%s found in %s" % (what, where))

    # No core files (the memory holds the token and the secret).
    limits = open("/proc/%d/limits" % pid).read()
    core = [l for l in limits.splitlines() if l.startswith("Max core file size")]
    check(core and core[0].split()[4:6] == ["0", "0"], "core limit: %r" % core)
    # Not dumpable: /proc/<pid> then belongs to root whoever runs bcdad.
    # (Only visible when the daemon runs as another user than root.)
    if os.getuid() != 0:
        check(os.stat("/proc/%d/status" % pid).st_uid == 0, "the daemon is dumpable")
    # After a restart (a fresh token from disk-held secret), still clean.
    env.stop(5)
    env.start()
    second = env.run()
    env.wait_done(second)
    tokens = env.emu.tokens()
    blobs = _daemon_bytes(env)
    for where, data in blobs.items():
        check(harness.SECRET.encode() not in data, "secret found in %s" % where)
        for t in tokens:
            check(t.encode() not in data, "a token found in %s" % where)


def test_second_daemon_refused(env):
    # One daemon per state directory: a second one exits at once, naming
    # the first, and leaves its socket alone.
    env.start()
    before = os.stat(env.sock).st_ino
    r = subprocess.run([harness.BIN, "-c", env.conf], capture_output=True, text=True,
                       timeout=20)
    check(r.returncode != 0, "a second daemon started (rc %d)" % r.returncode)
    check("another bcdad (pid %d) is running on the state directory" % env.proc.pid
          in r.stderr, "second daemon said: %r" % r.stderr[-500:])
    check(os.stat(env.sock).st_ino == before, "the first daemon's socket was replaced")
    still_answers(env)
    # Another state directory with the same runtime directory: the socket
    # is in use, so it is not replaced either.
    other = os.path.join(env.dir, "other.conf")
    with open(env.conf) as f:
        text = f.read()
    with open(other, "w") as f:
        f.write(text.replace("state_dir = %s" % env.state,
                             "state_dir = %s2" % env.state))
    r = subprocess.run([harness.BIN, "-c", other], capture_output=True, text=True,
                       timeout=20)
    check(r.returncode != 0 and "in use by another process" in r.stderr,
          "second daemon on the same socket: rc %d %r" % (r.returncode, r.stderr[-500:]))
    check(os.stat(env.sock).st_ino == before, "the socket was replaced")
    still_answers(env)
    # After the first stops (even by kill -9), a new one starts.
    env.kill9()
    env.start()
    still_answers(env)


def test_metrics_file(env):
    # The Prometheus text file for node_exporter's textfile collector,
    # read back with the reference parser (python3-prometheus-client).
    from prometheus_client.parser import text_string_to_metric_families
    path = os.path.join(env.dir, "bcdad.prom")
    env.write_config(daemon_extra="metrics_file = %s\n" % path,
                     profile_extra="client_secret_issued = 2026-01-01\n")
    env.start()
    jid = env.run()
    j = env.wait_done(jid)

    def parsed():
        if not os.path.exists(path):
            return None
        text = open(path).read()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        return fams if "bcdad_last_success_timestamp_seconds" in fams and \
            fams["bcdad_last_success_timestamp_seconds"].samples else None
    fams = wait_for(parsed, 40, "metrics with the finished export", 0.5)
    def sample(name, **labels):
        # The parser names a counter's family without its _total.
        fam = fams[name] if name in fams else fams[name[:-len("_total")]]
        for s in fam.samples:
            if all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        raise harness.TestFailure("no %s %s in %s" % (name, labels, fam.samples))
    check(sample("bcdad_last_outcome", profile=env.profile, outcome="DONE") == 1, "outcome")
    check(sample("bcdad_last_export_resources", profile=env.profile) == j["resources"],
          "resources")
    check(sample("bcdad_last_export_bytes", profile=env.profile) == j["bytes"], "bytes")
    check(abs(sample("bcdad_last_success_timestamp_seconds", profile=env.profile)
              - j["updated_at"]) <= 1, "last success time")
    check(sample("bcdad_jobs", state="DONE") == 1 and sample("bcdad_jobs", state="FAILED") == 0,
          "jobs by state")
    check(sample("bcdad_retries_total", profile=env.profile) == 0, "retries")
    check(sample("bcdad_secret_expiry_timestamp_seconds", profile=env.profile)
          == 1767225600 + 90 * 86400, "secret expiry")
    check(stat.S_IMODE(os.stat(path).st_mode) == 0o644, "metrics file mode")


def test_history(env):
    env.start()
    jid = env.run()
    env.wait_done(jid)
    out = env.cli("history", str(jid)).stdout
    lines = out.splitlines()
    check(lines[0].split()[:4] == ["TIME", "(UTC)", "FROM", "TO"], "header: %r" % out)
    check([l.split()[3] for l in lines[1:10]] == ["NEW", "TOKEN", "KICKOFF", "POLL",
          "DOWNLOAD", "S3_PUT", "IMPORT", "NOTIFY", "DONE"], "states: %r" % out)
    check("full-history export" in out and "Patient-1.ndjson" in out, "history:\n" + out)
    d = json.loads(env.cli("history", str(jid), "--json").stdout)
    check([h["to"] for h in d["history"]][-1] == "DONE" and d["history"][0]["from"] is None,
          "json history %r" % d["history"])
    check(sorted(f["name"] for f in d["files"] if f["kind"] == "output") ==
          ["Coverage-1.ndjson", "ExplanationOfBenefit-1.ndjson", "Patient-1.ndjson"],
          "json files %r" % d["files"])
    check(all(f["state"] == "done" for f in d["files"]), "files %r" % d["files"])
    r = env.cli("history", "999", ok=False)
    check(r.returncode == 1 and "no such job" in r.stderr, "unknown job: %r" % (r,))
    r = env.cli("history", "x", ok=False)
    check(r.returncode == 2, "bad argument: %r" % (r,))


def test_status_of_one_job_or_profile(env):
    env.start()
    first = env.run()
    env.wait_done(first)
    second = env.run()
    env.wait_done(second)
    one = json.loads(env.cli("status", str(first), "--json").stdout)
    check([j["id"] for j in one] == [first], "status JOB: %r" % one)
    mine = json.loads(env.cli("status", env.profile, "--json").stdout)
    check(sorted(j["id"] for j in mine) == [first, second], "status PROFILE: %r" % mine)
    check(json.loads(env.cli("status", "NOPE", "--json").stdout) == [], "unknown profile")
    out = env.cli("status", env.profile).stdout
    check("WATERMARK" in out and out.count(" DONE ") == 2, "table:\n" + out)
    # --watch redraws until interrupted.
    p = subprocess.Popen([harness.BIN, "-c", env.conf, "status", "--watch"],
                         stdout=subprocess.PIPE, text=True)
    time.sleep(3)
    p.terminate()
    out, _ = p.communicate(timeout=10)
    check(out.count("JOB ") >= 2, "--watch drew %d times:\n%s" % (out.count("JOB "), out))


def test_sighup_reload(env):
    import signal
    env.start()
    env.emu.config(clients={"B0001": "secret-b"})
    secret_b = os.path.join(env.dir, "B0001.secret")
    with open(secret_b, "w") as f:
        f.write("secret-b\n")
    os.chmod(secret_b, 0o600)
    with open(env.conf) as f:
        good = f.read()
    profile_b = ("\n[profile B0001]\nbase_url = %s\napi_version = v2\nclient_id = B0001\n"
                 "client_secret_file = %s\n" % (env.emu.base, secret_b))
    r = env.cli("run", "B0001", ok=False)
    check(r.returncode != 0 and "no profile named B0001" in r.stderr, "before: %r" % r.stderr)

    def reloaded(n):
        env.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: env.log_text().count("SIGHUP: ") >= n, 10, "the reload")

    # A new profile takes effect for new jobs.
    with open(env.conf, "w") as f:
        f.write(good + profile_b)
    reloaded(1)
    check("configuration reloaded" in env.log_text() and "2 profiles" in env.log_text(),
          "log: " + env.log_text()[-800:])
    env.wait_done(env.run("B0001"))
    # A broken file is refused with its errors; the old one stays.
    with open(env.conf, "w") as f:
        f.write(good + profile_b + "bogus_key = 1\n")
    reloaded(3)
    log = env.log_text()
    check("has errors; keeping the configuration in use" in log and "bogus_key" in log,
          "log: " + log[-800:])
    # (The CLI cannot read the broken file either: it is told the socket.)
    r = subprocess.run([harness.BIN, "-s", env.sock, "run", "B0001"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.startswith("started job "), "run: %r" % (r,))
    # A removed profile takes no new job; the others go on.
    with open(env.conf, "w") as f:
        f.write(good.replace("[profile A9994]", "[profile A9994-gone]") + profile_b)
    env.wait_done(int(r.stdout.split()[2]))
    reloaded(4)
    r = env.cli("run", "A9994", ok=False)
    check(r.returncode != 0 and "no profile named A9994" in r.stderr, "after: %r" % r.stderr)
    env.wait_done(env.run("B0001"))
    check(env.stop() == 0, "clean stop after reloads")


def test_sighup_log_level(env):
    """log_level applies at a reload, either way (it was read only at
    start-up), but not over -d; connect_timeout, low_speed_time and
    control_group need a restart, so a reload that changes them is
    refused, naming them."""
    def config(level, daemon_extra=""):
        env.write_config(daemon_extra=daemon_extra)
        with open(env.conf) as f:
            text = f.read()
        with open(env.conf, "w") as f:
            f.write(text.replace("log_level = debug\n", "log_level = %s\n" % level))

    def reload(line):
        n = env.log_text().count(line)
        env.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: env.log_text().count(line) > n, 10, "the reload")
        return len(env.log_text())

    def levels_after(mark):
        """The levels of the lines a whole export (its files logged at
        debug) logs after mark."""
        out = env.cli("run", env.profile, "--full").stdout
        env.wait_done(int(out.split()[2]))
        return {l.split()[1] for l in env.log_text()[mark:].splitlines()
                if l[:1].isdigit() and len(l.split()) > 1}

    config("debug")
    env.start()
    check("debug:" in levels_after(0), "no debug lines at log_level = debug")
    config("warning")
    mark = reload("SIGHUP: configuration reloaded")
    check("log level warning" in env.log_text(), env.log_text()[-500:])
    seen = levels_after(mark)
    check(not seen & {"debug:", "info:"}, "log_level = warning after a reload logs %s" % seen)
    config("debug")
    mark = reload("SIGHUP: configuration reloaded")
    check("debug:" in levels_after(mark), "no debug lines after a reload back to debug")
    # Keys read once at start-up: refused, the configuration in use stays.
    config("debug", "connect_timeout = 5\ncontrol_group = nogroup")
    reload("SIGHUP: not reloaded")
    check("connect_timeout and control_group take effect only at a restart"
          in env.log_text(), env.log_text()[-500:])
    check(env.stop() == 0, "clean stop")
    # -d wins over log_level, at start and at a reload.
    config("warning")
    env.args = ["-d"]
    env.start()
    mark = reload("SIGHUP: configuration reloaded")
    check("debug:" in levels_after(mark), "-d lost at a reload")
    check(env.stop() == 0, "clean stop")


def test_doctor(env):
    env.start()
    r = env.cli("doctor")
    check(r.returncode == 0 and "all checks passed" in r.stdout and "FAIL" not in r.stdout,
          "doctor: %r" % r.stdout)
    for what in ("configuration", "state directory", "client secret readable",
                 "storage directory of", "daemon: bcdad"):
        check(what in r.stdout, "doctor does not check %s:\n%s" % (what, r.stdout))
    # Each failure on its own, with what to do.
    os.chmod(env.secret_file, 0o644)
    r = env.cli("doctor", ok=False)
    check(r.returncode == 1 and "FAIL  profile A9994" in r.stdout and "fix: " in r.stdout,
          "secret 0644: %r" % r.stdout)
    os.chmod(env.secret_file, 0o600)
    env.stop(5)
    r = env.cli("doctor", ok=False)
    check(r.returncode == 1 and "FAIL  daemon: no answer" in r.stdout,
          "no daemon: %r" % r.stdout)
