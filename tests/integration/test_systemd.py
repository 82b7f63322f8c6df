"""systemd conventions: Type=notify (READY=1 after the socket listens,
STATUS=, WATCHDOG=1 when asked, STOPPING=1 on SIGTERM) and socket
activation (the control socket passed in by systemd)."""
import os
import shutil
import signal
import socket
import subprocess
import time

from harness import BIN, check, wait_for


def _notify_socket(env):
    path = os.path.join(env.dir, "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    env.cleanups.append(s.close)
    return s, path


def _drain(s, into):
    while True:
        try:
            into.append(s.recv(4096).decode())
        except socket.timeout:
            return


def test_notify_ready_watchdog_stopping(env):
    s, path = _notify_socket(env)
    env.env_extra.update({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000",
                          "WATCHDOG_PID": None})
    env.start()
    msgs = []
    wait_for(lambda: _drain(s, msgs) or any("READY=1" in m for m in msgs), 10, "READY=1")
    # READY=1 comes once the control socket answers.
    check(env.status() == [], "status should answer with no jobs")
    wait_for(lambda: _drain(s, msgs) or any("WATCHDOG=1" in m for m in msgs), 10,
             "WATCHDOG=1")
    check(any(m.startswith("STATUS=") for m in msgs), "no STATUS= line: %s" % msgs)
    check(env.stop() == 0, "exit status")
    _drain(s, msgs)
    check(any("STOPPING=1" in m for m in msgs), "no STOPPING=1: %s" % msgs)


def test_socket_activation(env):
    """systemd-socket-activate binds the control socket and passes it in,
    as bcdad.socket does; the daemon serves on it without binding its own."""
    sa = shutil.which("systemd-socket-activate")
    check(sa is not None, "systemd-socket-activate not found (package systemd)")
    os.makedirs(env.run_dir, exist_ok=True)
    log = open(os.path.join(env.dir, "daemon-activated.log"), "w")
    env.logs.append(log.name)
    env.proc = subprocess.Popen([sa, "-l", env.sock, BIN, "-c", env.conf],
                                stdout=log, stderr=subprocess.STDOUT)
    # The socket exists before bcdad runs: systemd made it.
    wait_for(lambda: os.path.exists(env.sock), 10, "the activated socket")
    # Like systemd, it starts bcdad on the first connection.
    wait_for(lambda: env.cli("status", ok=False).returncode == 0, 15, "the daemon")
    check("socket activation" in env.log_text(), "the passed socket was not used")
    jid = env.run()
    env.wait_done(jid)
    env.proc.send_signal(signal.SIGTERM)
    check(env.proc.wait(15) == 0, "exit status")


def test_units_verify_and_are_hardened(env):
    """systemd-analyze verifies every unit (bar the binary and man page not
    being installed here), and the two services' exposure stays <= 1.5."""
    import re
    from harness import REPO
    units = os.path.join(REPO, "systemd")
    work = os.path.join(env.dir, "units")
    os.mkdir(work)
    for f in sorted(os.listdir(units)):
        if f.endswith((".service", ".socket", ".timer")):
            # A template is verified as an instance of it.
            shutil.copy(os.path.join(units, f), os.path.join(work, f.replace("@.", "@A9994.")))
    for f in sorted(os.listdir(work)):
        r = subprocess.run(["systemd-analyze", "verify", os.path.join(work, f)],
                           capture_output=True, text=True, timeout=60)
        problems = [line for line in (r.stdout + r.stderr).splitlines()
                    if line.strip() and "is not executable" not in line
                    and "man " not in line and "Failed to create" not in line]
        check(not problems, "systemd-analyze verify %s:\n%s" % (f, "\n".join(problems)))
    for f in ("bcdad.service", "bcdad-run@A9994.service"):
        r = subprocess.run(["systemd-analyze", "security", "--offline=true",
                            os.path.join(work, f)], capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
        check(m is not None, "no exposure for %s: %s" % (f, r.stdout[-500:] + r.stderr[-500:]))
        check(float(m.group(1)) <= 1.5, "%s exposure %s (at most 1.5)" % (f, m.group(1)))


def _syscalls(name, cache={}):
    """The system calls of a systemd syscall set (@name, nested sets
    expanded), or {name} for one call."""
    if not name.startswith("@"):
        return {name}
    if name not in cache:
        r = subprocess.run(["systemd-analyze", "syscall-filter", name],
                           capture_output=True, text=True, timeout=30, check=True)
        calls = set()
        for line in r.stdout.splitlines()[1:]:
            t = line.strip()
            if t and not t.startswith("#"):
                calls |= _syscalls(t)
        cache[name] = calls
    return cache[name]


def _unit_allows(path):
    """What the unit's SystemCallFilter= lines allow, read as systemd does:
    the first line is an allow-list; later ~lines remove, later lines add."""
    allowed = None
    for line in open(path):
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.split("=", 1)[1].strip()
        deny = value.startswith("~")
        calls = set()
        for name in value.lstrip("~").split():
            calls |= _syscalls(name)
        if allowed is None:
            check(not deny, "the first SystemCallFilter= should allow, not deny")
            allowed = calls
        elif deny:
            allowed -= calls
        else:
            allowed |= calls
    return allowed


def test_the_unit_allows_every_system_call_bcdad_makes(env):
    """bcdad.service's seccomp filter would kill the daemon (or, with
    SystemCallErrorNumber=, fail the call) on any system call it leaves
    out: the calls of `bcdad -n` and of a whole export, traced with strace,
    must all be in what the unit's SystemCallFilter= lines allow."""
    import re
    import sys
    from harness import REPO
    if "asan" in os.environ.get("BUILD", ""):
        # ASan's runtime makes calls of its own, and LeakSanitizer will not
        # run under ptrace: the release build is the one to trace.
        print("skipped under ASan: the release build is traced", file=sys.stderr)
        return
    strace = shutil.which("strace")
    check(strace is not None, "strace not found: run make deps")
    trace = os.path.join(env.dir, "strace")
    subprocess.run([strace, "-f", "-qq", "-o", trace + ".pre", BIN, "-n", "-c", env.conf],
                   check=True, capture_output=True, timeout=60)
    log = open(os.path.join(env.dir, "daemon-traced.log"), "w")
    env.logs.append(log.name)
    env.proc = subprocess.Popen([strace, "-f", "-qq", "-o", trace, BIN, "-c", env.conf],
                                stdout=log, stderr=subprocess.STDOUT)
    wait_for(env._pingable, 30, "the traced daemon")
    # The nightly unit's command, traced too.
    r = subprocess.run([strace, "-f", "-qq", "-o", trace + ".run", BIN, "-c", env.conf,
                        "run", env.profile, "--wait"], capture_output=True, text=True,
                       timeout=120)
    check(r.returncode == 0, "bcdad run --wait: %s%s" % (r.stdout, r.stderr))
    # SIGTERM to the daemon, strace's child, as systemd would send it.
    with open("/proc/%d/task/%d/children" % (env.proc.pid, env.proc.pid)) as f:
        os.kill(int(f.read().split()[0]), signal.SIGTERM)
    check(env.proc.wait(30) == 0, "exit status")

    def used(*paths):
        calls = set()
        for path in paths:
            text = open(path).read()
            if os.geteuid() == 0:
                # SQLite hands its journal files to the database's owner
                # when it runs as root (unixFileOpen); the unit runs the
                # daemon as bcdad, where it does not.
                text = re.sub(r"^\d+\s+fchown\(\d+, 0, 0\).*$", "", text, flags=re.M)
            calls |= set(re.findall(r"^\d+\s+(\w+)\(", text, re.M))
        return calls
    daemon = used(trace + ".pre", trace)
    check({"setpriority", "prlimit64"} <= daemon, "expected calls missing: %s" % sorted(daemon))
    for unit, calls in (("bcdad.service", daemon), ("bcdad-run@.service", used(trace + ".run"))):
        allowed = _unit_allows(os.path.join(REPO, "systemd", unit))
        check(calls - allowed == set(), "%s's SystemCallFilter= refuses %s"
              % (unit, sorted(calls - allowed)))
