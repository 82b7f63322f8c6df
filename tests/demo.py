"""make demo: one complete export through every state, on loopback.

Starts the BCDA emulator, moto (S3, KMS, SNS, SQS, Secrets Manager, IAM,
with signature checking on) and the HealthLake fake; writes a
configuration; starts bcdad; runs an export of the fixture data; prints
`bcdad status` at every change; and ends with the objects in S3, the
HealthLake import's result and the SNS notification, as received by an
SQS queue subscribed to the topic.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import harness  # noqa: E402
import awsenv  # noqa: E402

NAMES = ["NEW", "TOKEN", "KICKOFF", "POLL", "DOWNLOAD", "S3_PUT", "IMPORT", "NOTIFY",
         "DONE", "FAILED", "CANCELLED"]


def main():
    build = os.environ.get("BUILD", "build/release")
    harness.BIN = os.path.join(harness.REPO, build, "bcdad")
    env = harness.Env("demo")
    try:
        print("Starting the BCDA emulator, moto and the HealthLake fake on 127.0.0.1 ...")
        moto, hl, _ = awsenv.pipeline_env(env, secrets=True)
        # Slow things a little so each state can be seen.
        env.emu.config(pending_seconds=1, job_seconds=3, error_lines=3, lines_per_file=2)
        hl.config(submitted_seconds=1, in_progress_seconds=2)
        env.start()
        print("bcdad is running (config %s)\n" % env.conf)
        print(open(env.conf).read())
        jid = env.run()
        print("$ bcdad run %s\nstarted job %d\n" % (env.profile, jid))
        last = None
        deadline = time.monotonic() + 180
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
        for frm, to, why in env.history(jid):
            print("  %-9s -> %-9s %s" % (NAMES[frm] if frm is not None else "", NAMES[to], why))
        print("\nObjects in s3://%s (moto):" % awsenv.BUCKET)
        for k, size in sorted(moto.objects().items()):
            print("  %-70s %9d bytes" % (k, size))
        imp = hl.stats()["jobs"][0]
        print("\nHealthLake import %s: %s, %d resources imported %s"
              % (imp["JobId"], imp["status"], imp["resources_imported"],
                 json.dumps(imp["per_type"], sort_keys=True)))
        got = []
        harness.wait_for(lambda: got.extend(moto.messages()) or got, 20, "the notification")
        note = got[0]
        print("\nSNS notification received on the subscribed SQS queue:")
        print("  Subject: %s" % note["Subject"])
        print("  Attributes: %s" % {k: v["Value"] for k, v in note["MessageAttributes"].items()})
        print("  Message: %s" % json.dumps(json.loads(note["Message"]), indent=2)
              .replace("\n", "\n  "))
        env.stop()
        print("\nDemo complete: token -> kickoff -> poll -> download -> S3 put -> "
              "HealthLake import -> notify, and bcdad stopped cleanly.")
        return 0
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
