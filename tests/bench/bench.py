"""make bench: bcdad beside the machine's limit, measured in the same run.

The data side is never the bottleneck: nginx serves the export's files,
pre-gzipped as BCDA stores them (the BCDA emulator writes each one as it
serves it: gzip level 6, then BCDA's empty gzip member), and passes token,
kickoff and status to the emulator behind the same origin.  The files are
BCDA-shaped: ExplanationOfBenefit lines copied from BFD's fixture (~17 KB
each, new ids), BENCH_LINES_PER_FILE to a file (~2.6 MB of NDJSON).

Each round runs, on the same files and at the same concurrency:
  limit: curl --parallel    every file to /dev/null (the transfer alone)
  limit: curl | gzip -d     each file inflated to disk (zlib)
  limit: curl | igzip -d    each file inflated to disk (ISA-L)
  bcdad                     a full export into a local directory: download,
                            inflate, check every line, SHA-256, fsync
and the table gives, per scenario: NDJSON and wire MB, files, wall s,
NDJSON MB/s, CPU s per GB of NDJSON, peak RSS, and the ratios of MB/s to
the curl | gzip -d and curl | igzip -d limits of the same round.  Nothing
is asserted.  The numbers (the median round) go to
tests/bench/results/<UTC time>.json with the machine's CPU and cores.

Then, once each:
  memory      bcdad's peak RSS at a quarter of BENCH_MB and at BENCH_BIG_MB;
              and with 500 and 5,000 files of one line each: what each file
              costs, whatever its size
  status      `bcdad status --json` run without pause during a download:
              p50 and p99 milliseconds, the client process included; and
              `true`, spawned the same way between them: the floor, what
              any process costs to start and reap on the loaded machine
  resume      SIGKILL once half the files are in, restart: the bytes nginx
              served again, for files complete at the kill and for those in
              flight (their .part files), against the latter's whole size
  S3          the export with S3 on (moto, keep_local): download + upload
              wall time against the larger of the local-only median and
              the upload limit, `curl -T --parallel` (SigV4) of the same
              files to the same moto at the same concurrency; `aws s3 cp
              --recursive` beside them; moto's CPU s/GB in each, and how
              busy the machine's CPUs were during bcdad's run
  S3 paced    the same two runs, local-only and S3 on, with a second nginx
              answering the file requests no faster than half the upload
              limit's rate (limit_req): the overlap where moto, not bcdad,
              would otherwise set the pace (on 2 cores moto alone takes
              longer than bcdad's whole local-only run)
Also: bench_pipeline, the data path on memory (no network, no disk), and
bench_store, durable file transitions per second and a start-up reading
100,000 file rows.

  BENCH_MB (1024), BENCH_PAR (4), BENCH_ROUNDS (3), BENCH_LINES_PER_FILE (150),
  BENCH_BIG_MB (4096; 0 skips the large memory run)
"""
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness  # noqa: E402
from awsenv import free_port  # noqa: E402

MB = 1e6
EOB_LINE = 17530        # bytes: BFD's EOB fixture, on average


def proc_cpu(pid):
    """User + system CPU seconds of a live process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Nginx:
    """nginx on loopback: /data/ from root, the rest to the emulator."""

    def __init__(self, workdir, root, upstream, per_minute=0):
        self.port = free_port()
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        conf = os.path.join(workdir, "nginx.conf")
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(workdir, d), exist_ok=True)
        with open(conf, "w") as f:
            f.write("""
%(user)s
daemon off;
worker_processes 2;
pid %(dir)s/nginx.pid;
error_log %(dir)s/nginx.err warn;
events { worker_connections 1024; }
http {
    access_log off;
    log_format bench '$uri $body_bytes_sent';
    sendfile on;
    tcp_nopush on;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    %(zone)s
    server {
        listen 127.0.0.1:%(port)d;
        location /data/ {
            access_log %(dir)s/access.log bench;
            root %(root)s;
            types { }
            default_type application/fhir+ndjson;
            add_header Content-Encoding gzip;
            %(limit)s
        }
        location / {
            proxy_pass http://127.0.0.1:%(up)d;
            proxy_set_header Host $http_host;
            proxy_http_version 1.1;
            proxy_buffering off;
        }
    }
}
""" % {"user": "user root;" if os.geteuid() == 0 else "", "dir": workdir,
       "port": self.port, "root": root, "up": upstream,
       "zone": "limit_req_zone $server_port zone=paced:1m rate=%dr/m;" % per_minute
       if per_minute else "",
       "limit": "limit_req zone=paced burst=100000;" if per_minute else ""})
        self.access_log = os.path.join(workdir, "access.log")
        self.proc = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf,
                                      "-e", os.path.join(workdir, "nginx.err")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_for(lambda: self._up(), 10, "nginx")
        self.base = "http://127.0.0.1:%d" % self.port

    def _up(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


# Runs a command and prints its descendants' CPU seconds and peak RSS: a
# process of its own, so that nothing run before counts.
MEASURE = ("import resource, subprocess, sys\n"
           "subprocess.run(sys.argv[1:], check=True, stdin=sys.stdin)\n"
           "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
           "print(r.ru_utime + r.ru_stime, r.ru_maxrss * 1024)\n")


def measured(args, stdin=b""):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", MEASURE] + args, input=stdin,
                       capture_output=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (args[0], r.stderr.decode(errors="replace")[-2000:]))
    wall = time.monotonic() - t0
    cpu, rss = r.stdout.split()[-2:]
    return wall, float(cpu), int(rss)


def limit_pipe(urls, par, tool, out):
    """curl | tool -d > file, par at a time; wall, CPU and peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    script = 'curl -s -H "Authorization: Bearer x" "$0" | %s -d > "%s/$(basename "$0")"' % (
        tool, out)
    wall, cpu, rss = measured(["xargs", "-P", str(par), "-n", "1", "sh", "-c", script],
                              "\n".join(urls).encode())
    ndjson = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
    shutil.rmtree(out, ignore_errors=True)
    return {"wall": wall, "cpu": cpu, "rss": rss, "ndjson": ndjson}


def limit_transfer(urls, par):
    args = ["curl", "--silent", "--no-progress-meter", "--parallel", "--parallel-max",
            str(par)]
    for u in urls:
        args += ["-o", "/dev/null", u]
    wall, cpu, rss = measured(args)
    return {"wall": wall, "cpu": cpu, "rss": rss, "ndjson": 0}


def bcdad_run(env, par, until=("DOWNLOAD",), probe=None):
    """A fresh daemon, one full export; wall, CPU and peak RSS while the job
    is in the states of until.  probe, a list, gets the milliseconds of
    each `bcdad status --json` run meanwhile (the client process
    included)."""
    shutil.rmtree(env.out, ignore_errors=True)
    shutil.rmtree(env.state, ignore_errors=True)
    env.start()
    pid = env.proc.pid
    jid = env.run()
    env.wait_state(jid, until + ("S3_PUT", "IMPORT", "NOTIFY", "DONE"), timeout=900)
    stop = threading.Event()
    prober = None
    if probe is not None:
        prober = threading.Thread(target=status_probe, args=(env, stop, probe))
        prober.start()
    cpu0, t0, busy0 = proc_cpu(pid), time.monotonic(), machine_busy()
    in_s3 = None        # files S3 had when the last download ended
    downloaded = None   # seconds until then
    while True:
        j = env.job(jid)
        if j["state"] != "DOWNLOAD" and downloaded is None:
            downloaded = time.monotonic() - t0
        if j["state"] != "DOWNLOAD" and in_s3 is None and "S3_PUT" in until:
            with env.db() as c:
                in_s3 = c.execute("SELECT COUNT(*) FROM files WHERE job_id = ? AND "
                                  "s3_state = 1", (jid,)).fetchone()[0]
        if j["state"] not in until:
            break
        # Polled less often beside the probe, so as not to be its load.
        time.sleep(0.05 if probe is None else 0.25)
    wall, cpu = time.monotonic() - t0, proc_cpu(pid) - cpu0
    busy = [b - a for a, b in zip(busy0, machine_busy())]
    rss = vm_hwm(pid)
    stop.set()
    if prober is not None:
        prober.join()
    j = env.wait_done(jid, timeout=600)
    env.stop()
    return {"wall": wall, "cpu": cpu, "rss": rss, "ndjson": j["bytes"],
            "files": j["files_total"], "job": jid, "busy": busy[0] / max(busy[1], 1),
            "in_s3_at_download_end": in_s3, "downloaded": downloaded}


def machine_busy():
    """Jiffies the machine's CPUs spent busy, and in all, since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


# `bcdad status --json` without pause until stdin closes, each run
# followed by one of `true`, spawned the same way: the milliseconds of
# each, a pair to a line.  A process of its own, so that the bench's own
# threads do not stretch the times it takes; `true` is the floor, what
# starting and reaping any process costs on the loaded machine.
PROBE = ("import shutil, subprocess, sys, threading, time\n"
         "done = threading.Event()\n"
         "threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()\n"
         "true = [shutil.which('true')]\n"
         "while not done.is_set():\n"
         "    t = []\n"
         "    for argv in (sys.argv[1:], true):\n"
         "        t0 = time.monotonic()\n"
         "        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)\n"
         "        t.append((time.monotonic() - t0) * 1000)\n"
         "    print(*t, flush=True)\n")


def status_probe(env, stop, out):
    """out["status"] and out["true"] get the milliseconds of each run."""
    p = subprocess.Popen([sys.executable, "-c", PROBE, harness.BIN, "-c", env.conf, "status",
                          "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stop.wait()
    p.stdin.close()
    for line in p.stdout.read().splitlines():
        st, tr = line.split()
        out["status"].append(float(st))
        out["true"].append(float(tr))
    p.wait()


def percentile(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def resume_run(env, ngx, www):
    """SIGKILL once half the files are in, restart, and count what nginx
    served again: bytes of files complete at the kill (should be none),
    and of the files in flight then (their .part files), against those
    files' whole size."""
    shutil.rmtree(env.out, ignore_errors=True)
    shutil.rmtree(env.state, ignore_errors=True)
    env.start()
    jid = env.run()
    harness.wait_for(lambda: (lambda j: j["state"] == "DOWNLOAD" and j["files_total"] > 0 and
                              j["files_done"] * 2 >= j["files_total"])(env.job(jid)),
                     600, "half the files", 0.02)
    env.kill9()
    time.sleep(0.5)     # nginx logs the requests the kill cut
    offset = os.path.getsize(ngx.access_log)
    with env.db() as c:
        rows = c.execute("SELECT url, name, state FROM files WHERE job_id = ?",
                         (jid,)).fetchall()
    path = lambda u: urllib.parse.urlparse(u).path  # noqa: E731
    done = {path(u) for u, n, st in rows if st != 0}
    parts = set()
    for d, _, names in os.walk(env.out):
        parts |= {n[:-len(".part")] for n in names if n.endswith(".part")}
    inflight = {path(u) for u, n, st in rows if st == 0 and os.path.basename(n) in parts}
    env.start()
    env.wait_done(jid, timeout=600)
    env.stop()
    again_done = again_inflight = 0
    with open(ngx.access_log) as f:
        f.seek(offset)
        for line in f:
            uri, sent = line.split()
            again_done += int(sent) if uri in done else 0
            again_inflight += int(sent) if uri in inflight else 0
    wire = lambda p: os.path.getsize(os.path.join(www, p.lstrip("/")))  # noqa: E731
    return {"files": len(rows), "done_at_kill": len(done), "inflight": len(inflight),
            "inflight_wire_mb": sum(wire(p) for p in inflight) / MB,
            "again_inflight_mb": again_inflight / MB, "again_done_mb": again_done / MB}


def s3_runs(env, par):
    """The same export with S3 on (moto), and aws s3 cp --recursive of the
    same files beside it."""
    from awsenv import BUCKET, REGION, aws_env
    moto, _, creds, _ = aws_env(
        env, resource_types="ExplanationOfBenefit", keep_local="true",
        daemon_extra="max_downloads = %d\nmax_downloads_per_job = %d" % (par, par))
    text = open(env.conf).read().replace("log_level = debug\n", "log_level = warning\n")
    open(env.conf, "w").write(text)
    moto_cpu = [proc_cpu(moto.proc.pid), 0]
    run = bcdad_run(env, par, until=("DOWNLOAD", "S3_PUT"))
    run["moto_cpu"] = proc_cpu(moto.proc.pid) - moto_cpu[0]
    moto_cpu[0] = proc_cpu(moto.proc.pid)
    with env.db() as c:
        job_dir = c.execute("SELECT out_dir FROM jobs WHERE id = ?",
                            (run["job"],)).fetchone()[0]
    cli_env = dict(os.environ, AWS_ACCESS_KEY_ID=moto.admin[0],
                   AWS_SECRET_ACCESS_KEY=moto.admin[1], AWS_DEFAULT_REGION=REGION,
                   AWS_EC2_METADATA_DISABLED="true")
    cli_env.pop("AWS_SESSION_TOKEN", None)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", MEASURE, "aws", "--endpoint-url", moto.url,
                        "s3", "cp", "--recursive", "--only-show-errors", job_dir,
                        "s3://%s/awscli/" % BUCKET], env=cli_env, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError("aws s3 cp: %s" % r.stderr.decode(errors="replace")[-2000:])
    cli_wall = time.monotonic() - t0
    cli_cpu, cli_rss = r.stdout.split()[-2:]
    moto_cpu[1] = proc_cpu(moto.proc.pid)
    cli = {"wall": cli_wall, "cpu": float(cli_cpu), "rss": int(cli_rss),
           "ndjson": run["ndjson"], "files": run["files"],
           "moto_cpu": moto_cpu[1] - moto_cpu[0]}
    # The upload limit: curl putting the same files, signed (SigV4), par
    # at a time, to the same moto.
    # The keys go in curl's configuration file, not on its command line.
    # curl 7.88 signs an upload's payload only as the header says.
    names = sorted(n for n in os.listdir(job_dir) if n.endswith(".ndjson"))
    kfile = os.path.join(env.dir, "curl-upload.conf")
    with open(os.open(kfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write('user = "%s:%s"\naws-sigv4 = "aws:amz:%s:s3"\n'
                'header = "x-amz-content-sha256: UNSIGNED-PAYLOAD"\n' % (
                    moto.admin[0], moto.admin[1], REGION))
        for n in names:
            f.write('output = "/dev/null"\nupload-file = "%s"\nurl = "%s/%s/curl/%s"\n' % (
                os.path.join(job_dir, n), moto.url, BUCKET, n))
    c0 = proc_cpu(moto.proc.pid)
    wall, cpu, rss = measured(["curl", "--silent", "--show-error", "--fail", "--parallel",
                               "--parallel-max", str(par), "--config", kfile])
    up = {"wall": wall, "cpu": cpu, "rss": rss, "ndjson": run["ndjson"],
          "moto_cpu": proc_cpu(moto.proc.pid) - c0}
    return run, cli, up


def paced_runs(env, www, par, confs, base, per_minute):
    """The export local-only, then with S3 on, nginx answering per_minute
    file requests a minute at most (limit_req; the rest wait their turn):
    the overlap of uploads and downloads when the files come slower than
    moto takes them in.  confs: the two configurations, written for the
    nginx at base."""
    slow = Nginx(os.path.join(env.dir, "paced"), www, env.emu.port, per_minute=per_minute)
    try:
        runs = []
        for conf, until in zip(confs, (("DOWNLOAD",), ("DOWNLOAD", "S3_PUT"))):
            with open(env.conf, "w") as f:
                f.write(conf.replace(base, slow.base))
            runs.append(bcdad_run(env, par, until=until))
        return runs
    finally:
        slow.stop()


def median(runs, key):
    v = sorted(r[key] for r in runs)
    return v[len(v) // 2]


def main():
    build = os.environ.get("BUILD", "build/release")
    harness.BIN = os.path.join(harness.REPO, build, "bcdad")
    size = float(os.environ.get("BENCH_MB", "1024"))
    par = int(os.environ.get("BENCH_PAR", "4"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    per = int(os.environ.get("BENCH_LINES_PER_FILE", "150"))
    big_mb = float(os.environ.get("BENCH_BIG_MB", "4096"))
    for tool in ("nginx", "igzip", "curl", "gzip"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            print("bench: %s is missing (make bench installs nginx-light and isal)" % tool)
            return 1

    bench = os.path.join(harness.REPO, build, "bench_pipeline")
    cov = os.path.join(harness.FIXTURES, "bcda", "Coverage.ndjson")
    subprocess.run([bench, cov, "512"], check=True)
    tmp = tempfile.mkdtemp(prefix="bcdad-bench-store-")
    try:
        store = subprocess.run([os.path.join(harness.REPO, build, "bench_store"), tmp,
                                "100000", "5000"], check=True, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(store, end="")

    env = harness.Env("bench")
    www = tempfile.mkdtemp(prefix="bcdad-bench-www-")
    ngx = None
    results = {}
    try:
        lines = int(size * 1024 * 1024 / EOB_LINE)
        env.emu.config(generate={"ExplanationOfBenefit": lines}, lines_per_file=per,
                       generate_like_fixture=True, static_root=www,
                       pending_seconds=0, job_seconds=0.1)
        ngx = Nginx(env.dir, www, env.emu.port)
        env.emu.base = ngx.base         # bcdad talks to nginx only
        env.write_config(profile_extra="resource_types = ExplanationOfBenefit",
                         daemon_extra="max_downloads = %d\nmax_downloads_per_job = %d\n"
                         "log_level = warning" % (par, par))
        local_conf = open(env.conf).read().replace("log_level = debug\n", "")
        open(env.conf, "w").write(local_conf)
        print("generating %.0f MB of BCDA-shaped EOB files (the first export)..." % size,
              flush=True)
        first = bcdad_run(env, par)
        data = os.path.join(www, "data")
        job_dir = os.path.join(data, sorted(os.listdir(data), key=int)[0])
        names = sorted(os.listdir(job_dir))
        urls = ["%s/data/%s/%s" % (ngx.base, os.path.basename(job_dir), n) for n in names]
        wire = sum(os.path.getsize(os.path.join(job_dir, n)) for n in names)
        runs = {"limit: curl --parallel": [], "limit: curl | gzip -d": [],
                "limit: curl | igzip -d": [], "bcdad": []}
        scratch = os.path.join(env.dir, "scratch")
        for r in range(rounds):
            runs["limit: curl --parallel"].append(limit_transfer(urls, par))
            runs["limit: curl | gzip -d"].append(limit_pipe(urls, par, "gzip", scratch))
            runs["limit: curl | igzip -d"].append(limit_pipe(urls, par, "igzip", scratch))
            runs["bcdad"].append(bcdad_run(env, par))
            print("round %d of %d done" % (r + 1, rounds), flush=True)
        ndjson = first["ndjson"]
        rows = []
        for name, rs in runs.items():
            wall = median(rs, "wall")
            rows.append({"scenario": name, "ndjson_mb": ndjson / MB, "wire_mb": wire / MB,
                         "files": len(urls), "wall_s": wall,
                         "ndjson_mb_s": ndjson / MB / wall,
                         "cpu_s_per_gb": median(rs, "cpu") / (ndjson / 1e9),
                         "peak_rss_mib": median(rs, "rss") / 1048576})
        gz_lim = rows[1]["ndjson_mb_s"]
        igz_lim = rows[2]["ndjson_mb_s"]
        print("\n%d files, %.0f MB NDJSON (%.0f MB on the wire), %d at a time, median of %d "
              "rounds" % (len(urls), ndjson / MB, wire / MB, par, rounds))
        print("%-24s %8s %10s %10s %9s %8s %9s %9s" % (
            "scenario", "wall s", "NDJSON MB/s", "CPU s/GB", "RSS MiB", "files",
            "x gzip -d", "x igzip"))
        for row in rows:
            row["ratio_gzip"] = row["ndjson_mb_s"] / gz_lim
            row["ratio_igzip"] = row["ndjson_mb_s"] / igz_lim
            transfer_only = row["scenario"].endswith("--parallel")
            print("%-24s %8.2f %10s %10.2f %9.1f %8d %9s %9s" % (
                row["scenario"], row["wall_s"],
                "(%.0f wire)" % (wire / MB / row["wall_s"]) if transfer_only
                else "%.0f" % row["ndjson_mb_s"],
                row["cpu_s_per_gb"], row["peak_rss_mib"], row["files"],
                "-" if transfer_only else "%.2f" % row["ratio_gzip"],
                "-" if transfer_only else "%.2f" % row["ratio_igzip"]))
        # Memory at a quarter of the size and at BENCH_BIG_MB: the same
        # peak, or it grows.
        env.emu.config(generate={"ExplanationOfBenefit": lines // 4})
        small = bcdad_run(env, par)
        mem = [small, {"ndjson": ndjson, "rss": median(runs["bcdad"], "rss")}]
        if big_mb > 0:
            print("generating %.0f MB for the memory run..." % big_mb, flush=True)
            env.emu.config(generate={"ExplanationOfBenefit": int(big_mb * MB / EOB_LINE)})
            mem.append(bcdad_run(env, par))
        print("bcdad peak RSS: " + ", ".join("%.1f MiB at %.0f MB" % (
            m["rss"] / 1048576, m["ndjson"] / MB) for m in mem))
        # Memory against the number of files: exports of one-line files
        # (BCDA's request budget raised for them: paced at 1,000 requests
        # per 5 minutes, 5,000 files would take 25).
        with open(env.conf, "w") as f:
            f.write(local_conf.replace("max_downloads = ", "bcda_request_limit = 100000\n"
                                       "max_downloads = ", 1))
        many = []
        for n in (500, 5000):
            env.emu.config(generate={"ExplanationOfBenefit": n}, lines_per_file=1)
            many.append(bcdad_run(env, par))
        env.emu.config(lines_per_file=per)
        with open(env.conf, "w") as f:
            f.write(local_conf)
        slope = (many[1]["rss"] - many[0]["rss"]) / (many[1]["files"] - many[0]["files"])
        print("bcdad peak RSS with one-line files: " + ", ".join("%.1f MiB at %d files" % (
            m["rss"] / 1048576, m["files"]) for m in many) + "; %.2f KiB a file" % (
                slope / 1024))
        # Status while the full-size download runs, and a resume.
        env.emu.config(generate={"ExplanationOfBenefit": lines})
        probe = {"status": [], "true": []}
        probed = bcdad_run(env, par, probe=probe)
        lat, floor = probe["status"], probe["true"]
        print("bcdad status --json during the download: p50 %.1f ms, p99 %.1f ms, max %.1f "
              "ms (%d calls, client process included; %.0f MB/s meanwhile); `true` spawned "
              "the same way: p50 %.1f ms, p99 %.1f ms" % (
                  percentile(lat, 50), percentile(lat, 99), max(lat), len(lat),
                  probed["ndjson"] / MB / probed["wall"], percentile(floor, 50),
                  percentile(floor, 99)))
        res = resume_run(env, ngx, www)
        print("resume after SIGKILL at %d of %d files: fetched again %.1f MB of the %d files "
              "in flight (%.1f MB whole), %.1f MB of files already complete" % (
                  res["done_at_kill"], res["files"], res["again_inflight_mb"],
                  res["inflight"], res["inflight_wire_mb"], res["again_done_mb"]))
        # Last: S3 on moto rewrites the configuration.
        s3run, cli, up = s3_runs(env, par)
        local = median(runs["bcdad"], "wall")
        gb = s3run["ndjson"] / 1e9
        s3lim = max(local, up["wall"])
        print("S3 on (moto): download + upload %.2f s, %.0f MB/s, %.2f CPU s/GB, %.1f MiB; "
              "moto %.2f CPU s/GB" % (
                  s3run["wall"], s3run["ndjson"] / MB / s3run["wall"], s3run["cpu"] / gb,
                  s3run["rss"] / 1048576, s3run["moto_cpu"] / gb))
        print("limit: curl -T --parallel (SigV4) of the same files (upload only): %.2f s, "
              "%.0f MB/s, %.2f CPU s/GB; moto %.2f CPU s/GB" % (
                  up["wall"], up["ndjson"] / MB / up["wall"], up["cpu"] / gb,
                  up["moto_cpu"] / gb))
        print("aws s3 cp --recursive of the same files (upload only): %.2f s, %.0f MB/s, "
              "%.2f CPU s/GB, %.1f MiB; moto %.2f CPU s/GB" % (
                  cli["wall"], cli["ndjson"] / MB / cli["wall"], cli["cpu"] / gb,
                  cli["rss"] / 1048576, cli["moto_cpu"] / gb))
        # The CPU bcdad and moto spent, spread over every core: no
        # overlap can end sooner (nginx's share left out).
        cpu_floor = (s3run["cpu"] + s3run["moto_cpu"]) / os.cpu_count()
        print("S3 on: %.2fx the local-only %.2f s; %.2fx the larger of it and the upload "
              "limit (%.2f s); the machine's %d CPUs %.0f%% busy meanwhile (local-only: "
              "%.0f%%); bcdad's and moto's CPU over %d cores: %.2f s, %.2fx the local-only" % (
                  s3run["wall"] / local, local, s3run["wall"] / s3lim, s3lim,
                  os.cpu_count(), 100 * s3run["busy"], 100 * median(runs["bcdad"], "busy"),
                  os.cpu_count(), cpu_floor, cpu_floor / local))
        print("S3 had %d of the %d files when the last download ended, %.2f s into the "
              "%.2f s" % (s3run["in_s3_at_download_end"], s3run["files"], s3run["downloaded"],
                          s3run["wall"]))
        # The overlap where moto is not the bottleneck: the downloads held
        # to half the upload limit's rate, as when the target was set
        # (bcdad then downloaded slower than moto takes files in).
        pace = up["ndjson"] / up["wall"] / 2
        per_minute = int(pace * 60 * len(urls) / ndjson)
        paced = paced_runs(env, www, par, (local_conf, open(env.conf).read()), ngx.base,
                           per_minute)
        print("files served at %d a minute (nginx limit_req: %.0f MB/s of NDJSON, half the "
              "upload limit): local-only %.2f s, S3 on %.2f s = %.2fx; "
              "S3 had %d of the %d files when the last download ended" % (
                  per_minute, pace / MB, paced[0]["wall"], paced[1]["wall"],
                  paced[1]["wall"] / paced[0]["wall"], paced[1]["in_s3_at_download_end"],
                  paced[1]["files"]))
        results = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                               "kernel": platform.release()},
                   "concurrency": par, "rounds": rounds, "rows": rows,
                   "store": store.strip(),
                   "peak_rss": [{"ndjson_mb": m["ndjson"] / MB,
                                 "peak_rss_mib": m["rss"] / 1048576} for m in mem],
                   "peak_rss_by_files": [{"files": m["files"],
                                          "peak_rss_mib": m["rss"] / 1048576} for m in many],
                   "status_ms": {"p50": percentile(lat, 50), "p99": percentile(lat, 99),
                                 "max": max(lat), "calls": len(lat),
                                 "true_p50": percentile(floor, 50),
                                 "true_p99": percentile(floor, 99)},
                   "resume": res,
                   "s3": {"wall_s": s3run["wall"], "ratio_to_local": s3run["wall"] / local,
                          "cpu_s_per_gb": s3run["cpu"] / (s3run["ndjson"] / 1e9),
                          "peak_rss_mib": s3run["rss"] / 1048576,
                          "moto_cpu_s_per_gb": s3run["moto_cpu"] / gb,
                          "ratio_to_limit": s3run["wall"] / s3lim,
                          "machine_busy": s3run["busy"],
                          "cpu_floor_s": cpu_floor,
                          "in_s3_at_download_end": s3run["in_s3_at_download_end"],
                          "downloads_end_s": s3run["downloaded"],
                          "curl_upload_wall_s": up["wall"],
                          "curl_upload_moto_cpu_s_per_gb": up["moto_cpu"] / gb,
                          "awscli_wall_s": cli["wall"],
                          "awscli_cpu_s_per_gb": cli["cpu"] / gb,
                          "awscli_moto_cpu_s_per_gb": cli["moto_cpu"] / gb,
                          "paced_ndjson_mb_s": pace / MB,
                          "paced_local_wall_s": paced[0]["wall"],
                          "paced_s3_wall_s": paced[1]["wall"],
                          "paced_ratio_to_local": paced[1]["wall"] / paced[0]["wall"],
                          "paced_in_s3_at_download_end": paced[1]["in_s3_at_download_end"]}}
        outdir = os.path.join(HERE, "results")
        os.makedirs(outdir, exist_ok=True)
        path = os.path.join(outdir, time.strftime("%Y%m%dT%H%M%SZ.json", time.gmtime()))
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
        print("results: %s" % os.path.relpath(path, harness.REPO))
    finally:
        if ngx is not None:
            ngx.stop()
        env.close()
        shutil.rmtree(www, ignore_errors=True)
    return 0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
