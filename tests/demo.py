"""make demo: one complete export against the bundled BCDA emulator.

Starts the emulator on 127.0.0.1, writes a configuration, starts bcdad,
runs an export of the fixture data, prints `bcdad status` at every change
of state, and shows what landed on disk.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import harness  # noqa: E402


def main():
    build = os.environ.get("BUILD", "build/release")
    harness.BIN = os.path.join(harness.REPO, build, "bcdad")
    env = harness.Env("demo")
    try:
        # Slow the emulator a little so each state can be seen.
        env.emu.config(pending_seconds=1, job_seconds=3, error_lines=3, lines_per_file=2)
        env.start()
        print("bcdad is running (config %s)\n" % env.conf)
        jid = env.run()
        print("$ bcdad run %s\nstarted job %d\n" % (env.profile, jid))
        last = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            j = env.job(jid)
            key = (j["state"], j["progress"], j["files_done"])
            if key != last:
                print("$ bcdad status")
                print(env.cli("status").stdout)
                last = key
            if j["state"] in harness.TERMINAL:
                break
            time.sleep(0.2)
        if j["state"] != "DONE":
            print("the export ended %s: %s" % (j["state"], j["last_error"]))
            print(env.log_text()[-3000:])
            return 1
        print("Job history (from SQLite):")
        names = ["NEW", "TOKEN", "KICKOFF", "POLL", "DOWNLOAD", "S3_PUT", "IMPORT",
                 "NOTIFY", "DONE", "FAILED", "CANCELLED"]
        for frm, to, why in env.history(jid):
            print("  %-9s -> %-9s %s" % (names[frm] if frm is not None and frm >= 0 else "",
                                         names[to], why))
        d = j["dir"]
        print("\nExport in %s:" % d)
        for root, _, files in os.walk(d):
            for f in sorted(files):
                p = os.path.join(root, f)
                print("  %-40s %9d bytes" % (os.path.relpath(p, d), os.path.getsize(p)))
        man = json.load(open(os.path.join(d, "manifest.json")))
        print("\nmanifest.json: %d files, transactionTime %s, errors %s"
              % (len(man["files"]), man["transactionTime"], man["errors"]))
        env.check_export_matches(jid)
        print("Every file is byte-identical to what the emulator served.")
        env.stop()
        print("\nDemo complete: bcdad stopped cleanly.")
        return 0
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
