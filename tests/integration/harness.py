"""Integration-test harness: the real bcdad binary against the BCDA emulator.

Each test gets an Env: a private directory, a BCDA emulator on 127.0.0.1
(and its "foreign" second listener), a configuration file and helpers to
start, query, kill and restart the daemon.  Standard library only, for
Debian's /usr/bin/python3.
"""
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EMULATOR = os.path.join(REPO, "tests", "emulator", "bcda_emu.py")
BIN = os.environ.get("BCDAD_BIN", os.path.join(REPO, "bin", "bcdad"))
FIXTURES = os.environ.get("BCDAD_FIXTURES",
                          os.path.join(REPO, "tests", "fixtures"))
SECRET = "not-a-real-secret-7c1e"     # the profile's client secret
CLIENT = "A9994"

TERMINAL = ("DONE", "FAILED", "CANCELLED", "SKIPPED")


class TestFailure(Exception):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise TestFailure(msg)


def wait_for(pred, timeout=30.0, what="condition", interval=0.05):
    """Polls pred() until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


class Emulator:
    def __init__(self, workdir, token_ttl=1200):
        self.portfile = os.path.join(workdir, "emu.port")
        self.log = open(os.path.join(workdir, "emu.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, EMULATOR, "--port", "0", "--portfile", self.portfile,
             "--foreign-port", "0", "--client", "%s:%s" % (CLIENT, SECRET),
             "--token-ttl", str(token_ttl), "--fixtures", FIXTURES],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(self.portfile) and open(self.portfile).read().strip(),
                 10, "the emulator to listen")
        self.port = int(open(self.portfile).read().strip())
        self.base = "http://127.0.0.1:%d" % self.port
        self.foreign_port = self.get("/_emu/info")["foreign_port"]

    def _req(self, path, data=None):
        req = urllib.request.Request(self.base + path, data=data,
                                     method="POST" if data is not None else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def get(self, path):
        return json.loads(self._req(path))

    def config(self, **settings):
        return json.loads(self._req("/_emu/config", json.dumps(settings).encode()))

    def post(self, path, obj):
        return json.loads(self._req(path, json.dumps(obj).encode()))

    def stats(self):
        return self.get("/_emu/stats")

    def jobs(self):
        return self.get("/_emu/jobs")

    def tokens(self):
        return self.get("/_emu/tokens")

    def file_bytes(self, path):
        return self._req("/_emu/file?path=" + urllib.request.quote(path))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class Env:
    """A test's world: emulator, config, daemon.  Use as a context manager."""

    def __init__(self, name, token_ttl=1200, profile_extra="", daemon_extra=""):
        self.dir = tempfile.mkdtemp(prefix="bcdad-%s-" % name)
        self.emu = Emulator(self.dir, token_ttl)
        self.state = os.path.join(self.dir, "state")
        self.run_dir = os.path.join(self.dir, "run")
        self.out = os.path.join(self.dir, "out")
        self.secret_file = os.path.join(self.dir, "A9994.secret")
        with open(self.secret_file, "w") as f:
            f.write(SECRET + "\n")
        os.chmod(self.secret_file, 0o600)
        self.conf = os.path.join(self.dir, "bcdad.conf")
        self.write_config(profile_extra, daemon_extra)
        self.sock = os.path.join(self.run_dir, "bcdad.sock")
        self.proc = None
        self.env_extra = {}     # environment for the daemon (AWS tests)
        self.nofile = None      # the daemon's RLIMIT_NOFILE, if not inherited
        self.args = []          # the daemon's options before -c (-d)
        self.cleanups = []      # more things to stop at close()
        self.logs = []          # one log file per daemon start
        self.profile = CLIENT

    def write_config(self, profile_extra="", daemon_extra="", aws_section=""):
        with open(self.conf, "w") as f:
            f.write(
                "[daemon]\n"
                "state_dir = %s\nruntime_dir = %s\nstorage_dir = %s\n"
                "poll_min = 1\npoll_max = 1\nretry_min = 1\nretry_max = 2\n"
                "log_level = debug\n%s\n"
                "%s"
                "[profile %s]\n"
                "base_url = %s\napi_version = v2\nendpoint = group-all\n"
                "client_id = %s\nclient_secret_file = %s\n%s\n"
                % (self.state, self.run_dir, self.out, daemon_extra,
                   "[aws]\n%s\n" % aws_section if aws_section else "", CLIENT,
                   self.emu.base, CLIENT, self.secret_file, profile_extra))

    # ---- the daemon ---------------------------------------------------------
    def start(self):
        log = os.path.join(self.dir, "daemon-%d.log" % len(self.logs))
        self.logs.append(log)
        env = dict(os.environ)
        for k, v in self.env_extra.items():
            if v is None:
                env.pop(k, None)    # None: not set at all
            else:
                env[k] = v
        limit = None
        if self.nofile:
            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        self.proc = subprocess.Popen([BIN] + self.args + ["-c", self.conf], stdout=open(log, "w"),
                                     stderr=subprocess.STDOUT, env=env, preexec_fn=limit)
        wait_for(lambda: self.proc.poll() is not None or self._pingable(), 15,
                 "the daemon's control socket")
        check(self.proc.poll() is None, "daemon exited at start:\n" + self.log_text())
        return self

    def _pingable(self):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.sock)
            s.close()
            return True
        except OSError:
            return False

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout=15):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise TestFailure("daemon did not stop within %d s of SIGTERM" % timeout)
            return rc
        return self.proc.returncode if self.proc else None

    def log_text(self):
        return "".join(open(p, errors="replace").read() for p in self.logs if os.path.exists(p))

    # ---- the CLI -------------------------------------------------------------
    def cli(self, *args, ok=True):
        r = subprocess.run([BIN, "-c", self.conf] + list(args), capture_output=True,
                           text=True, timeout=30)
        if ok and r.returncode != 0:
            raise TestFailure("bcdad %s failed (%d): %s%s" % (" ".join(args), r.returncode,
                                                            r.stdout, r.stderr))
        return r

    def run(self, profile=None):
        out = self.cli("run", profile or self.profile).stdout
        check(out.startswith("started job "), "unexpected run output: " + out)
        return int(out.split()[2])

    def status(self):
        return json.loads(self.cli("status", "--json").stdout)

    def job(self, job_id):
        for j in self.status():
            if j["id"] == job_id:
                return j
        raise TestFailure("job %d not in status" % job_id)

    def wait_state(self, job_id, states, timeout=40):
        if isinstance(states, str):
            states = (states,)
        def pred():
            j = self.job(job_id)
            if j["state"] in states:
                return j
            if j["state"] in TERMINAL:
                raise TestFailure("job %d ended %s (%s) while waiting for %s\n%s" % (
                    job_id, j["state"], j["last_error"], states, self.log_text()[-3000:]))
            return None
        return wait_for(pred, timeout, "job %d to reach %s" % (job_id, "/".join(states)), 0.1)

    def wait_done(self, job_id, timeout=60):
        return self.wait_state(job_id, "DONE", timeout)

    def wait_terminal(self, job_id, timeout=60):
        return wait_for(lambda: (lambda j: j if j["state"] in TERMINAL else None)(self.job(job_id)),
                        timeout, "job %d to end" % job_id, 0.1)

    # ---- the database (read-only; WAL lets us read beside the daemon) --------
    def db(self):
        return sqlite3.connect("file:%s/bcdad.db?mode=ro" % self.state, uri=True, timeout=10)

    def history(self, job_id):
        with self.db() as c:
            return c.execute("SELECT from_state, to_state, reason FROM job_history "
                             "WHERE job_id = ? ORDER BY id", (job_id,)).fetchall()

    def files_done(self, job_id):
        with self.db() as c:
            return [r[0] for r in c.execute(
                "SELECT url FROM files WHERE job_id = ? AND state = 1", (job_id,))]

    # ---- checks shared by many tests -----------------------------------------
    def check_export_matches(self, job_id):
        """Every output file is byte-identical to the emulator's; returns the dir."""
        j = self.job(job_id)
        d = j["dir"]
        man = json.load(open(os.path.join(d, "manifest.json")))
        ejob = [x for x in self.emu.jobs() if x["status"] == "Completed"][-1]
        by_type = {}
        for f in ejob["files"]:
            if f["type"] != "OperationOutcome":
                by_type.setdefault(f["type"], []).append(f)
        names = []
        for t, files in by_type.items():
            for n, f in enumerate(files, 1):
                name = "%s-%d.ndjson" % (t, n)
                names.append(name)
                got = open(os.path.join(d, name), "rb").read()
                want = self.emu.file_bytes(f["path"])
                check(got == want, "%s differs from the emulator's %s" % (name, f["path"]))
        listed = sorted(f["name"] for f in man["files"] if f["kind"] == "output")
        check(listed == sorted(names), "manifest.json lists %s, expected %s" % (listed, sorted(names)))
        check(not [p for p in os.listdir(d) if p.endswith(".part")], "a .part file was left")
        return d

    def close(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        finally:
            self.emu.stop()
            for c in reversed(self.cleanups):
                try:
                    c()
                except Exception:   # noqa: BLE001 - best effort teardown
                    pass
