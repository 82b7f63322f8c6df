"""The whole pipeline: BCDA emulator -> S3 (moto) -> HealthLake (fake) ->
SNS (moto, delivered to an SQS queue), and Secrets Manager for the BCDA
credentials."""
import json
import os

import harness
from harness import check, wait_for
from awsenv import BUCKET, free_port, pipeline_env


def _resources(env, jid):
    return env.job(jid)["resources"]


def _notifications(moto, n, timeout=20):
    got = []
    wait_for(lambda: got.extend(moto.messages()) or len(got) >= n, timeout,
             "%d SNS notification(s)" % n, 0.3)
    return got


def test_full_pipeline(env):
    moto, hl, _ = pipeline_env(env)
    env.start()
    jid = env.run()
    j = env.wait_done(jid, timeout=120)
    st = hl.stats()
    check(st["jobs_created"] == 1, "imports created: %d" % st["jobs_created"])
    imp = st["jobs"][0]
    check(imp["resources_imported"] == j["resources"],
          "HealthLake imported %s resources, bcdad downloaded %s" % (
              imp["resources_imported"], j["resources"]))
    check(imp["ClientToken"].startswith("bcdad-"), "ClientToken %s" % imp["ClientToken"])
    msgs = _notifications(moto, 1)
    check(len(msgs) == 1, "expected one notification, got %d" % len(msgs))
    note = msgs[0]
    body = json.loads(note["Message"])
    check(body["outcome"] == "DONE" and body["job"] == jid, "message: %s" % body)
    check(body["resources"] == j["resources"], "resources in message %s" % body["resources"])
    check(body["import"]["status"] == "COMPLETED" and body["import"]["job_id"] == imp["JobId"],
          "import in message: %s" % body["import"])
    check(note["MessageAttributes"]["outcome"]["Value"] == "DONE", "attributes %s" % note)
    check(note["MessageAttributes"]["profile"]["Value"] == env.profile, "profile attribute")
    key = note["MessageAttributes"]["dedup_key"]["Value"]
    check(key.startswith("%s-%d-" % (env.profile, jid)) and key.endswith("-DONE"),
          "dedup_key %s" % key)
    check(len(note["Subject"]) < 100 and "DONE" in note["Subject"], "subject %s" % note["Subject"])
    states = [s["state"] for s in body["states"]]
    check(states[-1] in ("NOTIFY", "IMPORT"), "states end %s" % states)
    # No beneficiary data in the notification: the BCDA error files' MBIs.
    check("MBI" not in note["Message"], "the message holds error file content")
    # A clean stop: exit 0, and under ASan no leak or error report.
    check(env.stop() == 0, "daemon did not exit 0 on SIGTERM")
    check("Sanitizer" not in env.log_text(), "sanitizer report:\n" + env.log_text()[-3000:])


def _leaks(env, secrets):
    """Each secret that shows up in the logs, the database files or the
    status output."""
    import glob
    places = {"log": env.log_text().encode(),
              "status": (env.cli("status").stdout + env.cli("status", "--json").stdout).encode()}
    for f in glob.glob(env.state + "/bcdad.db*"):
        places[os.path.basename(f)] = open(f, "rb").read()
    return [(name, where) for name, sec in secrets.items() for where, data in places.items()
            if sec.encode() in data]


def test_bcda_credentials_from_secrets_manager(env):
    moto, hl, _ = pipeline_env(env, secrets=True)
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=120)
    from harness import SECRET
    secrets = {"BCDA secret": SECRET, "AWS secret key": moto.bcdad_creds[1]}
    secrets.update({"bearer token %d" % i: t for i, t in enumerate(env.emu.tokens())})
    leaks = _leaks(env, secrets)
    check(not leaks, "secrets found: %s" % leaks)
    check("read from Secrets Manager" in env.log_text(), "secret not read from SM")
    # The secret version's CreatedDate starts its 90 days (no warning yet).
    import time
    prof = json.loads(env.cli("status", "--profiles", "--json").stdout)[0]
    check(abs(prof.get("secret_expires", 0) - (time.time() + 90 * 86400)) < 3600,
          "secret_expires from Secrets Manager: %s" % prof)
    check("warning" not in prof, "a fresh secret warned: %s" % prof)
    from harness import SECRET
    check(SECRET not in env.log_text(), "the BCDA secret reached the log")
    # Rotation: the secret changes at BCDA and in Secrets Manager, and the
    # cached token is refused; bcdad reads the secret again after the 401.
    moto.client("secretsmanager").put_secret_value(
        SecretId=moto.secret_arn, SecretString=json.dumps(
            {"client_id": "A9994", "client_secret": "rotated-secret-2"}))
    # api_401: BCDA refuses the cached token once, as after a rotation.
    env.emu.config(rotate_secret={"A9994": "rotated-secret-2"}, api_401=1)
    second = env.run()
    env.wait_done(second, timeout=120)
    check(env.log_text().count("read from Secrets Manager") >= 2,
          "the secret should have been read again after the rotation")
    check("rotated-secret-2" not in env.log_text(), "the rotated secret reached the log")


def test_kill_after_start_import_sent(env):
    """Killed after StartFHIRImportJob reached HealthLake but before its
    answer was recorded: the restart reuses the ClientToken, so there is
    still exactly one import."""
    moto, hl, _ = pipeline_env(env)
    hl.config(hold_start_seconds=4)
    env.start()
    jid = env.run()
    wait_for(lambda: hl.stats()["jobs_created"] >= 1, 90, "the import to start")
    env.kill9()
    hl.config(hold_start_seconds=0)
    env.start()
    env.wait_done(jid, timeout=120)
    st = hl.stats()
    check(st["jobs_created"] == 1, "imports created: %d" % st["jobs_created"])
    check(st["start_calls"] >= 2, "the restart should have asked again: %d" % st["start_calls"])
    check(len(_notifications(moto, 1)) == 1, "one notification")


def test_client_token_differs_after_the_database_is_recreated(env):
    """A job id repeats when the state database is made anew: the new job
    1's import has a ClientToken of its own (with its creation time), so
    HealthLake starts a new import instead of refusing it as a reuse of
    the old job 1's token with other parameters.  A resumed job sends the
    token its row holds, whatever made it."""
    import sqlite3
    moto, hl, _ = pipeline_env(env)
    env.start()
    first = env.run()
    env.wait_done(first, timeout=120)
    check(env.stop() == 0, "clean stop")
    for ext in ("", "-wal", "-shm"):
        if os.path.exists(os.path.join(env.state, "bcdad.db" + ext)):
            os.unlink(os.path.join(env.state, "bcdad.db" + ext))
    hl.config(hold_start_seconds=4)
    env.start()
    second = env.run()
    check(second == first, "the new database should give job id %d again, gave %d"
          % (first, second))
    wait_for(lambda: hl.stats()["jobs_created"] >= 2 or
             env.job(second)["state"] in harness.TERMINAL, 90, "the second import to start")
    j = env.job(second)
    check(hl.stats()["jobs_created"] == 2, "no second import; the job is %s: %s"
          % (j["state"], j["last_error"]))
    env.kill9()
    toks = [x["ClientToken"] for x in hl.stats()["jobs"]]
    check(toks[0] != toks[1], "the same ClientToken for both jobs: %s" % toks)
    # Stands for a token recorded by an older bcdad before the restart:
    # the resumed job must send it, not make a new one.
    planted = "bcdad-%d-0123456789abcdef0123456789abcdef" % second
    with sqlite3.connect(os.path.join(env.state, "bcdad.db")) as c:
        check(c.execute("SELECT import_token FROM jobs WHERE id = ?",
                        (second,)).fetchone()[0] == toks[1],
              "the token should be recorded before the call")
        c.execute("UPDATE jobs SET import_token = ? WHERE id = ?", (planted, second))
    hl.config(hold_start_seconds=0)
    env.start()
    env.wait_done(second, timeout=120)
    toks = [x["ClientToken"] for x in hl.stats()["jobs"]]
    check(toks[2:] == [planted], "the resumed job sent %s, not its own token" % toks[2:])


def test_kill_in_import_polling_and_notify(env):
    moto, hl, _ = pipeline_env(env)
    hl.config(in_progress_seconds=4)
    env.start()
    jid = env.run()
    env.wait_state(jid, "IMPORT", timeout=90)
    wait_for(lambda: hl.stats()["describe_calls"] >= 1, 30, "import polling")
    env.kill9()
    env.start()
    env.wait_done(jid, timeout=120)
    check(hl.stats()["jobs_created"] == 1, "one import")
    msgs = _notifications(moto, 1)
    check(1 <= len(msgs) <= 2, "notifications: %d" % len(msgs))


def test_expired_token_refreshes_credentials(env):
    """HealthLake answers ExpiredTokenException (AWS's error for expired
    session credentials) to the credentials bcdad holds: they are fetched
    anew and the call made again with the new ones; DONE."""
    moto, hl, _ = pipeline_env(env)
    old = moto.bcdad_creds
    k = moto.client("iam").create_access_key(UserName="bcdad")["AccessKey"]
    new = (k["AccessKeyId"], k["SecretAccessKey"])
    hl.config(callers={old[0]: {"secret": old[1], "expired": True}, new[0]: new[1]})
    path = os.path.join(env.dir, "aws-credentials")

    def creds_file(c):
        with open(path + ".tmp", "w") as f:
            f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % c)
        os.rename(path + ".tmp", path)
    creds_file(old)
    env.env_extra.update({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                          "AWS_SHARED_CREDENTIALS_FILE": path})
    env.start()
    jid = env.run()
    # The old credentials are held from the first S3 upload on; the file
    # has the new ones for the next fetch.
    wait_for(lambda: "credentials from shared-credentials-file" in env.log_text(), 90,
             "the credentials to be read")
    creds_file(new)
    j = env.wait_terminal(jid, timeout=120)
    check(j["state"] == "DONE", "the job ended %s: %s" % (j["state"], j["last_error"]))
    check(hl.stats()["auth_errors"] == 1, "ExpiredTokenException answers: %d"
          % hl.stats()["auth_errors"])
    check(env.log_text().count("credentials from shared-credentials-file") == 2,
          "the credentials should have been fetched anew once")
    check("ExpiredTokenException" in env.log_text(), "the log should name the error")
    check(hl.stats()["jobs_created"] == 1, "one import")


def test_throttling_then_success(env):
    moto, hl, _ = pipeline_env(env)
    hl.config(throttle_next=2)
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=120)
    check(hl.stats()["throttled"] == 2, "throttled: %d" % hl.stats()["throttled"])
    check(hl.stats()["jobs_created"] == 1, "one import")


def test_failed_import_fails_job_and_notifies(env):
    moto, hl, _ = pipeline_env(env)
    hl.config(job_outcome="FAILED")
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid, timeout=120)
    check(j["state"] == "FAILED", "state %s" % j["state"])
    check("Import failed" in j["last_error"], "error: %s" % j["last_error"])
    msgs = _notifications(moto, 1)
    check(len(msgs) == 1, "one FAILED notification, got %d" % len(msgs))
    body = json.loads(msgs[0]["Message"])
    check(body["outcome"] == "FAILED", "outcome %s" % body["outcome"])
    check(msgs[0]["MessageAttributes"]["outcome"]["Value"] == "FAILED", "attribute")


def test_retry_after_a_failed_import(env):
    """bcdad retry resumes a job whose HealthLake import failed: a new
    import (its own ClientToken) of the same export, no new BCDA export,
    no file fetched again, and the new outcome announced."""
    moto, hl, _ = pipeline_env(env)
    hl.config(job_outcome="FAILED")
    env.start()
    jid = env.run()
    check(env.wait_terminal(jid, timeout=120)["state"] == "FAILED", "first attempt")
    _notifications(moto, 1)
    hl.config(job_outcome="COMPLETED")
    r = env.cli("retry", str(jid), "--wait", ok=False)
    check(r.returncode == 0, "retry --wait exited %d: %s%s" % (r.returncode, r.stdout, r.stderr))
    check(env.job(jid)["state"] == "DONE", "state %s" % env.job(jid)["state"])
    st = hl.stats()
    check(st["jobs_created"] == 2, "imports created: %d" % st["jobs_created"])
    check(st["jobs"][0]["ClientToken"] != st["jobs"][1]["ClientToken"], "a new ClientToken")
    es = env.emu.stats()
    check(es["kickoffs"] == 1, "BCDA kickoffs: %d" % es["kickoffs"])
    check(all(n == 1 for n in es["downloads_started"].values()), "a file fetched again")
    msgs = _notifications(moto, 1)
    check([json.loads(m["Message"])["outcome"] for m in msgs] == ["DONE"],
          "the retry's outcome: %s" % [m["Message"][:80] for m in msgs])
    check(any(h[2] == "retry requested" and h[0] == 9 and h[1] == 6
              for h in env.history(jid)), "history: %s" % env.history(jid))
    # Only a FAILED job can be retried.
    r = env.cli("retry", str(jid), ok=False)
    check(r.returncode != 0 and "only a FAILED job" in r.stderr, "retry of DONE: %s" % r.stderr)


def test_completed_with_errors_is_announced(env):
    moto, hl, _ = pipeline_env(env)
    hl.config(job_outcome="COMPLETED_WITH_ERRORS")
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=120)
    msgs = _notifications(moto, 1)
    check(json.loads(msgs[0]["Message"])["outcome"] == "COMPLETED_WITH_ERRORS", "outcome")


def test_sns_down_job_done_notification_later(env):
    moto, hl, px = pipeline_env(env, sns_proxy=True)
    px.fail = lambda m, p, q: 503
    env.start()
    jid = env.run()
    j = env.wait_done(jid, timeout=120)
    check(j["state"] == "DONE", "the outcome must not depend on SNS")
    check(moto.messages() == [], "nothing can have been delivered yet")
    px.fail = None
    msgs = _notifications(moto, 1, timeout=30)
    check(len(msgs) == 1, "the owed notification arrives once SNS is back")
    check(json.loads(msgs[0]["Message"])["job"] == jid, "for the right job")


def test_kill_in_notify(env):
    """Killed while the publish is on its way: the job still completes,
    and the outcome is announced at most twice (only a kill between the
    publish and its record can repeat it)."""
    moto, hl, px = pipeline_env(env, sns_proxy=True)
    # Hold the publish before it reaches SNS, and kill while it is held.
    px.hold = lambda m, p, q: 3
    env.start()
    jid = env.run()
    env.wait_state(jid, "NOTIFY", timeout=120)
    wait_for(lambda: env.log_text().count("NOTIFY") and True, 5, "NOTIFY")
    import time
    time.sleep(0.5)
    env.kill9()
    px.release()
    env.start()
    env.wait_done(jid, timeout=120)
    msgs = _notifications(moto, 1)
    check(1 <= len(msgs) <= 2, "notifications: %d" % len(msgs))
    # A repeat carries the same key, for SNS FIFO or a subscriber to drop.
    keys = set(m["MessageAttributes"]["dedup_key"]["Value"] for m in msgs)
    check(len(keys) == 1, "dedup keys %s" % keys)
    check(hl.stats()["jobs_created"] == 1, "one import")


def test_empty_night_and_january_are_announced(env):
    # Night 1 exports; night 2 has nothing new (output: []): DONE with no
    # import and "0 resources"; night 3 meets January's missing
    # attribution: SKIPPED, announced with the reason.
    moto, hl, _ = pipeline_env(env)
    env.start()
    first = env.run()
    env.wait_done(first, timeout=120)
    second = env.run()
    j = env.wait_done(second, timeout=120)
    check(j["resources"] == 0, "resources %d" % j["resources"])
    check(hl.stats()["jobs_created"] == 1, "an empty night started an import")
    env.emu.config(attribution_current=False)
    third = env.run()
    j = env.wait_terminal(third, 60)
    check(j["state"] == "SKIPPED", "state %s (%s)" % (j["state"], j["last_error"]))
    msgs = {json.loads(m["Message"])["job"]: m for m in _notifications(moto, 3)}
    check(sorted(msgs) == [first, second, third], "announced jobs %s" % sorted(msgs))
    empty = json.loads(msgs[second]["Message"])
    check(empty["outcome"] == "DONE" and empty["resources"] == 0, "empty night: %s" % empty)
    jan = json.loads(msgs[third]["Message"])
    check(jan["outcome"] == "SKIPPED" and "no current attribution" in jan["error_message"],
          "January: %s" % jan)
    check(msgs[third]["MessageAttributes"]["outcome"]["Value"] == "SKIPPED", "attribute")


def test_start_import_validation_exception_fails_the_job(env):
    """HealthLake refuses StartFHIRImportJob with a ValidationException
    (400): not retried; the job FAILED with HealthLake's code and message;
    no import; the failure announced once."""
    moto, hl, _ = pipeline_env(env)
    refusal = ("Datastore 0123456789abcdef0123456789abcdef is not in ACTIVE state")
    hl.config(refuse_start=refusal)
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid, timeout=60)
    check(j["state"] == "FAILED", "state %s (%s)" % (j["state"], j["last_error"]))
    want = "HealthLake refused StartFHIRImportJob (ValidationException): " + refusal
    check(j["last_error"] == want, "last_error %r, expected %r" % (j["last_error"], want))
    st = hl.stats()
    check(st["start_calls"] == 1 and st["validation_errors"] == 1,
          "StartFHIRImportJob sent %d times, refused %d: a ValidationException is not "
          "retried" % (st["start_calls"], st["validation_errors"]))
    check(st["jobs_created"] == 0, "imports created: %d" % st["jobs_created"])
    msgs = _notifications(moto, 1)
    check([json.loads(m["Message"])["outcome"] for m in msgs] == ["FAILED"],
          "notifications: %s" % [m["Message"][:80] for m in msgs])


def test_datastore_not_active_fails_the_job(env):
    """The datastore is not ACTIVE (DescribeFHIRDatastore says CREATING):
    the job FAILED, naming the datastore and its status, with no
    StartFHIRImportJob sent."""
    moto, hl, _ = pipeline_env(env)
    hl.config(datastore_status="CREATING")
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid, timeout=60)
    check(j["state"] == "FAILED", "state %s (%s)" % (j["state"], j["last_error"]))
    want = ("HealthLake datastore 0123456789abcdef0123456789abcdef is CREATING, "
            "not ACTIVE")
    check(j["last_error"] == want, "last_error %r, expected %r" % (j["last_error"], want))
    st = hl.stats()
    check(st["datastore_calls"] == 1, "DescribeFHIRDatastore calls: %d"
          % st["datastore_calls"])
    check(st["start_calls"] == 0 and st["jobs_created"] == 0,
          "StartFHIRImportJob sent %d times" % st["start_calls"])


def _doctor(env, *args):
    """bcdad doctor with the daemon's AWS environment."""
    import subprocess
    e = dict(os.environ)
    for k, v in env.env_extra.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    r = subprocess.run([harness.BIN, "-c", env.conf, "doctor"] + list(args),
                       capture_output=True, text=True, timeout=120, env=e)
    fails = [l for l in r.stdout.splitlines() if l.startswith("FAIL")]
    return r, fails


def test_doctor_checks_bcda_and_aws(env):
    """bcdad doctor against the emulators: BCDA gives a token and answers
    attribution_status; AWS credentials resolve (from the environment);
    the bucket takes a test object with the KMS key, deleted after; the
    datastore is ACTIVE; the SNS topic exists.  Then each check fails on
    its own, with its fix: a wrong secret, a bucket that is not there, a
    datastore not ACTIVE, BCDA unreachable."""
    moto, hl, _ = pipeline_env(env)
    env.start()
    r, fails = _doctor(env)
    check(r.returncode == 0 and not fails and "all checks passed" in r.stdout,
          "doctor:\n%s%s" % (r.stdout, r.stderr))
    for what in ("gives a token", "attribution_status answers",
                 "AWS credentials from environment", "accepts a test object (put and deleted)",
                 "encrypted with arn:aws:kms:", "is ACTIVE", "exists"):
        check(what in r.stdout, "doctor does not say %r:\n%s" % (what, r.stdout))
    check(not [k for k in moto.objects() if k.endswith(".bcdad-doctor")],
          "the test object was left in S3: %s" % list(moto.objects()))
    check(harness.SECRET not in r.stdout + r.stderr, "the secret in doctor's output")

    good = open(env.conf).read()
    with open(env.secret_file, "w") as f:
        f.write("wrong-secret\n")
    r, fails = _doctor(env)
    check(r.returncode == 1 and len(fails) == 1 and "no BCDA token" in fails[0] and
          "HTTP 401" in fails[0] and "client secret" in r.stdout,
          "wrong secret:\n%s" % r.stdout)
    with open(env.secret_file, "w") as f:
        f.write(harness.SECRET + "\n")

    with open(env.conf, "w") as f:
        f.write(good.replace("s3_bucket = %s" % BUCKET, "s3_bucket = bcdad-not-there"))
    r, fails = _doctor(env)
    check(r.returncode == 1 and len(fails) == 1 and "s3://bcdad-not-there/" in fails[0],
          "missing bucket:\n%s" % r.stdout)

    with open(env.conf, "w") as f:
        f.write(good)
    hl.config(datastore_status="CREATING")
    r, fails = _doctor(env)
    check(r.returncode == 1 and len(fails) == 1 and "is CREATING, not ACTIVE" in fails[0],
          "inactive datastore:\n%s" % r.stdout)
    hl.config(datastore_status="ACTIVE")

    closed = free_port()
    with open(env.conf, "w") as f:
        f.write(good.replace(env.emu.base, "http://127.0.0.1:%d" % closed))
    r, fails = _doctor(env, env.profile)
    check(r.returncode == 1 and len(fails) == 1 and "no BCDA token" in fails[0] and
          "allow-list" in r.stdout, "unreachable BCDA:\n%s" % r.stdout)
    with open(env.conf, "w") as f:
        f.write(good)
    r, fails = _doctor(env, "no-such-profile")
    check(r.returncode == 2 and "no profile named" in r.stderr, "unknown profile: %r" % (r,))


def test_doctor_reads_bcda_credentials_from_secrets_manager(env):
    """With bcda_secret_arn, doctor reads the client id and secret from
    Secrets Manager (and gets a token with them), printing neither."""
    pipeline_env(env, secrets=True)
    env.start()
    r, fails = _doctor(env)
    check(r.returncode == 0 and not fails, "doctor:\n%s%s" % (r.stdout, r.stderr))
    check("BCDA credentials read from Secrets Manager" in r.stdout and
          "gives a token" in r.stdout, "doctor:\n%s" % r.stdout)
    check(harness.SECRET not in r.stdout + r.stderr, "the secret in doctor's output")
