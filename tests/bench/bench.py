"""make bench: how fast bcdad moves an export, and that its memory does
not grow with the export's size.

1. bench_pipeline: the download data path (gzip decode, NDJSON parse and
   check, SHA-256) on in-memory data, at two sizes: MiB/s and peak RSS.
2. End to end: the real daemon exports N generated EOB lines (50 per file,
   like BCDA) from the emulator on loopback, at two sizes: files/s, MiB/s
   and the daemon's peak RSS (VmHWM).  The Python emulator is likely the
   bottleneck here, so these numbers are a floor for bcdad, not its limit.
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness  # noqa: E402


def vm_hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def end_to_end(lines, parallel):
    env = harness.Env("bench")
    try:
        env.emu.config(generate={"ExplanationOfBenefit": lines}, lines_per_file=50,
                       pending_seconds=0, job_seconds=0.2)
        env.write_config(profile_extra="resource_types = ExplanationOfBenefit",
                         daemon_extra="max_downloads = %d\nmax_downloads_per_job = %d\n"
                         "log_level = info" % (parallel, parallel))
        # write_config put log_level twice; keep the last one only.
        text = open(env.conf).read().replace("log_level = debug\n", "")
        open(env.conf, "w").write(text)
        env.start()
        jid = env.run()
        env.wait_state(jid, ("DOWNLOAD", "DONE"), timeout=300)
        t0 = time.monotonic()
        j = env.wait_done(jid, timeout=900)
        dt = time.monotonic() - t0
        rss = vm_hwm(env.proc.pid)
        mib = j["bytes"] / 1048576.0
        print("end-to-end: %6d lines, %4d files, %6.1f MiB, %d parallel: %.2f s = "
              "%.0f files/s, %.1f MiB/s; daemon peak RSS %d KiB"
              % (lines, j["files_total"], mib, parallel, dt, j["files_total"] / dt,
                 mib / dt, rss), flush=True)
        env.stop()
    finally:
        env.close()


def main():
    build = os.environ.get("BUILD", "build/release")
    harness.BIN = os.path.join(harness.REPO, build, "bcdad")
    bench = os.path.join(harness.REPO, build, "bench_pipeline")
    cov = os.path.join(harness.FIXTURES, "bcda", "Coverage.ndjson")
    for mib in (64, 512):
        subprocess.run([bench, cov, str(mib)], check=True)
    for lines in (5000, 50000):
        end_to_end(lines, 8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
