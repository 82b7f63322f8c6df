"""The S3 stage against moto_server (signatures checked, IAM enforced,
the user holding exactly packaging/iam-policy.json)."""
import json
import os
import subprocess
import threading
import time
from urllib.parse import unquote

from harness import TERMINAL, check, wait_for
from awsenv import BUCKET, PREFIX, aws_env, s3_error


def _keys(env, jid):
    j = env.job(jid)
    # Named as the export's directory: its transactionTime in UTC (.2 when
    # another export of that time came first), in ISO 8601 basic form.
    t = os.path.basename(j["dir"]).replace(":", "")
    base = "%s%s/%s/" % (PREFIX, env.profile, t)
    meta = "%s%s/%s_meta/" % (PREFIX, env.profile, t)
    return j, base, meta


def _check_objects(env, moto, jid):
    """Every output file is in S3, byte-identical to the emulator's."""
    j, base, meta = _keys(env, jid)
    objs = moto.objects()
    ejob = [x for x in env.emu.jobs() if x["status"] == "Completed"][-1]
    seen = {}
    for f in ejob["files"]:
        if f["type"] == "OperationOutcome":
            continue
        seen[f["type"]] = seen.get(f["type"], 0) + 1
        key = "%s%s-%d.ndjson" % (base, f["type"], seen[f["type"]])
        check(key in objs, "%s missing from S3 (have %s)" % (key, sorted(objs)))
        check(moto.get(key) == env.emu.file_bytes(f["path"]), "%s differs" % key)
    check(meta + "manifest.json" in objs, "manifest.json not in S3")
    man = json.loads(moto.get(meta + "manifest.json"))
    check(man["transactionTime"] == j["transaction_time"], "manifest transactionTime")
    return objs, base, meta


def test_export_lands_in_s3_with_kms(env):
    moto, key_arn, creds, _ = aws_env(env)
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=90)
    objs, base, meta = _check_objects(env, moto, jid)
    key = sorted(k for k in objs if k.startswith(base))[0]
    # Debian's awscli, as an operator would check it.
    r = subprocess.run(["aws", "--endpoint-url", moto.url, "--region", "us-east-1",
                        "s3api", "head-object", "--bucket", BUCKET, "--key", key],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, AWS_ACCESS_KEY_ID=moto.admin[0],
                                AWS_SECRET_ACCESS_KEY=moto.admin[1],
                                AWS_CONFIG_FILE="/dev/null",
                                AWS_SHARED_CREDENTIALS_FILE="/dev/null"))
    check(r.returncode == 0, "head-object failed: " + r.stderr)
    head = json.loads(r.stdout)
    check(head.get("ServerSideEncryption") == "aws:kms", "not SSE-KMS: %s" % head)
    check(key_arn.split("/")[-1] in head.get("SSEKMSKeyId", ""), "wrong KMS key: %s" % head)
    # keep_local defaults to no: the local copies are gone, manifest stays.
    d = env.job(jid)["dir"]
    left = sorted(os.listdir(d))
    check(left == ["errors", "manifest.json"], "local files left: %s" % left)
    hist = [h[2] for h in env.history(jid)]
    check(any("s3://%s/" % BUCKET in h for h in hist), "history: %s" % hist)
    # A clean stop: exit 0, and under ASan no leak or error report.
    check(env.stop() == 0, "daemon did not exit 0 on SIGTERM")
    check("Sanitizer" not in env.log_text(), "sanitizer report:\n" + env.log_text()[-3000:])


def test_exports_of_one_transaction_time_keep_apart(env):
    """BCDA v2's transactionTime is BFD's last load, the same for a second
    export until the next: a --full run after a first export gets a
    directory and an S3 folder of its own (<time>.2), its files fetched
    and stored there, the first export's objects left as they were."""
    moto, _, _, _ = aws_env(env, keep_local="yes")
    env.start()
    first = env.run()
    env.wait_done(first, timeout=120)
    objs1, base1, _ = _check_objects(env, moto, first)
    before = {k: moto.get(k) for k in objs1 if k.startswith(base1)}
    served = len([x for x in env.emu.jobs() if x["status"] == "Completed"][-1]["files"])
    out = env.cli("run", env.profile, "--full").stdout
    second = int(out.split()[2])
    env.wait_done(second, timeout=120)
    j1, j2 = env.job(first), env.job(second)
    check(j1["transaction_time"] == j2["transaction_time"], "the emulator moved the time")
    check(j2["dir"] == j1["dir"] + ".2", "second export in %s" % j2["dir"])
    _, base2, _ = _check_objects(env, moto, second)
    check(base2 == base1[:-1] + ".2/", "second export's keys under %s" % base2)
    check(all(moto.get(k) == v for k, v in before.items()), "the first export's objects changed")
    check("read back" not in env.log_text(), "a file was read back:\n" + env.log_text()[-2000:])
    check(served > 0, "the second export had no files")


def test_large_file_goes_multipart(env):
    moto, _, _, proxy = aws_env(env, proxy=True, keep_local="yes")
    env.write_config  # (config already written by aws_env)
    env.emu.config(generate={"ExplanationOfBenefit": 23000}, lines_per_file=23000)
    text = open(env.conf).read().replace(
        "keep_local = yes", "keep_local = yes\nresource_types = ExplanationOfBenefit")
    open(env.conf, "w").write(text)
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=180)
    j, base, _ = _keys(env, jid)
    key = base + "ExplanationOfBenefit-1.ndjson"
    local = open(os.path.join(j["dir"], "ExplanationOfBenefit-1.ndjson"), "rb").read()
    check(len(local) > 20 * 1024 * 1024, "the file should be over 20 MiB: %d" % len(local))
    check(moto.get(key) == local, "S3 object differs from the local file")
    parts = proxy.parts()
    check(len(parts) == (len(local) + 8 * 1024 * 1024 - 1) // (8 * 1024 * 1024),
          "expected 8 MiB parts, saw %s" % parts)
    head = moto.client("s3").head_object(Bucket=BUCKET, Key=key)
    check(head["ETag"].endswith('-%d"' % len(parts)), "not a multipart ETag: %s" % head["ETag"])
    check(head.get("ServerSideEncryption") == "aws:kms", "multipart object not SSE-KMS")
    check(moto.uploads_in_progress() == [], "multipart uploads left open")


def test_wrong_secret_fails_clearly(env):
    moto, _, creds, _ = aws_env(env)
    env.env_extra["AWS_SECRET_ACCESS_KEY"] = creds[1][:-4] + "XXXX"
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid, timeout=120)
    check(j["state"] == "FAILED", "should fail, is %s" % j["state"])
    check("credentials" in j["last_error"] and "SignatureDoesNotMatch" in j["last_error"],
          "unclear error: %s" % j["last_error"])
    check(creds[1][:-4] not in env.log_text(), "the AWS secret reached the log")
    # Nothing lost: the files are still on disk.
    d = j["dir"]
    check(any(n.endswith(".ndjson") for n in os.listdir(d)), "local files were removed")
    check(moto.objects() == {}, "nothing should be in S3")


def test_access_denied_names_the_action(env):
    # The user may write only under another prefix.
    moto, _, _, _ = aws_env(env, policy_prefix="elsewhere/")
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid, timeout=120)
    check(j["state"] == "FAILED", "should fail, is %s" % j["state"])
    e = j["last_error"]
    check("s3:PutObject" in e and BUCKET in e and PREFIX in e,
          "error should name the action, bucket and key: %s" % e)


def _one_multipart_file(env):
    """One EOB file large enough for a multipart upload, kept locally, and
    S3 behind a proxy that can hold requests or answers."""
    moto, _, _, proxy = aws_env(env, proxy=True, keep_local="yes")
    env.emu.config(generate={"ExplanationOfBenefit": 36000}, lines_per_file=36000)
    text = open(env.conf).read().replace(
        "keep_local = yes", "keep_local = yes\nresource_types = ExplanationOfBenefit")
    open(env.conf, "w").write(text)
    return moto, proxy


def _restart_and_compare(env, jid, moto, proxy):
    """Kills the daemon, lets the proxy go, restarts it to DONE and checks
    the object against the local copy."""
    env.kill9()
    proxy.release()
    env.start()
    env.wait_done(jid, timeout=180)
    j, base, _ = _keys(env, jid)
    local = open(os.path.join(j["dir"], "ExplanationOfBenefit-1.ndjson"), "rb").read()
    check(moto.get(base + "ExplanationOfBenefit-1.ndjson") == local, "object differs")


def _parts_recorded(env):
    with env.db() as c:
        return c.execute("SELECT count(*) FROM parts").fetchone()[0]


def test_kill_during_multipart_resumes(env):
    moto, proxy = _one_multipart_file(env)
    # Part 3 is held back before it reaches S3, so the kill lands while S3
    # has parts 1 and 2 only.
    proxy.hold = lambda m, p, q: 4 if m == "PUT" and q.get("partNumber") == ["3"] else 0
    env.start()
    jid = env.run()
    # Recorded, not only answered: a part S3 took and bcdad had not yet
    # recorded when killed is rightly sent again.
    wait_for(lambda: _parts_recorded(env) >= 2, 120, "two parts recorded")
    _restart_and_compare(env, jid, moto, proxy)
    sent = [n for n, st in proxy.parts()]
    for n in set(sent):
        check(sent.count(n) == 1, "part %d sent %d times: %s" % (n, sent.count(n), sent))
    creates = [r for r in proxy.records if r[0] == "POST" and "uploads" in r[2]]
    check(len(creates) == 1, "CreateMultipartUpload sent %d times" % len(creates))
    check(moto.uploads_in_progress() == [], "multipart uploads left open")


def test_resume_with_a_gap_in_recorded_parts(env):
    """A part whose record failed is sent again after a restart (upload.h):
    with parts 1 and 3 recorded, the restart sends 2, then 4 and 5, never 3
    again, and completes the upload with each part once, in order (S3
    refuses a list out of order with InvalidPartOrder; moto takes it and
    builds a wrong object)."""
    moto, proxy = _one_multipart_file(env)
    proxy.hold = lambda m, p, q: 4 if m == "PUT" and q.get("partNumber") == ["4"] else 0
    env.start()
    jid = env.run()
    wait_for(lambda: _parts_recorded(env) >= 3, 120, "three parts recorded")
    env.kill9()
    import sqlite3
    with sqlite3.connect(os.path.join(env.state, "bcdad.db")) as c:
        # Stands in for part 2's failed write.
        c.execute("DELETE FROM parts WHERE number = 2")
    before = len(proxy.parts())
    proxy.release()
    env.start()
    env.wait_done(jid, timeout=180)
    sent = [n for n, st in proxy.parts()[before:]]
    check(sent == [2, 4, 5], "after the restart, parts sent: %s" % sent)
    j, base, _ = _keys(env, jid)
    key = base + "ExplanationOfBenefit-1.ndjson"
    local = open(os.path.join(j["dir"], "ExplanationOfBenefit-1.ndjson"), "rb").read()
    check(moto.get(key) == local, "S3 object differs from the local file")
    etag = moto.client("s3").head_object(Bucket=BUCKET, Key=key)["ETag"]
    check(etag.endswith('-5"'), "not a five-part ETag: %s" % etag)
    check(moto.uploads_in_progress() == [], "multipart uploads left open")


def test_kill_between_create_and_its_record(env):
    """S3 created the multipart upload, and bcdad was killed before its
    answer arrived: the intent recorded before the call makes the restart
    list the bucket's open uploads and abort the key's stray one, then
    upload anew, so no upload is left open in S3."""
    moto, proxy = _one_multipart_file(env)
    proxy.hold_answer = lambda m, p, q: 6 if m == "POST" and "uploads" in q else 0
    env.start()
    jid = env.run()
    wait_for(lambda: [r for r in proxy.records if r[0] == "POST" and "uploads" in r[2]],
             120, "a CreateMultipartUpload at S3")
    check(len(moto.uploads_in_progress()) == 1, "S3 should hold the new upload")
    _restart_and_compare(env, jid, moto, proxy)
    lists = [r for r in proxy.records if r[0] == "GET" and "uploads" in r[2]]
    check(len(lists) == 1 and lists[0][3] == 200, "ListMultipartUploads: %s" % lists)
    aborts = [r for r in proxy.records if r[0] == "DELETE" and "uploadId" in r[2]]
    check(len(aborts) == 1 and aborts[0][3] == 204, "stray aborted: %s" % aborts)
    check(moto.uploads_in_progress() == [], "multipart uploads left open")
    check("never recorded; aborting it" in env.log_text(), "the log should say so")


def _start_imds(env, port=0):
    import subprocess as sp
    import sys
    from harness import REPO
    portfile = os.path.join(env.dir, "imds.port")
    log = open(os.path.join(env.dir, "imds.log"), "w")
    p = sp.Popen([sys.executable, os.path.join(REPO, "tests", "emulator", "imds_fake.py"),
                  "--port", str(port), "--portfile", portfile], stdout=log, stderr=sp.STDOUT)
    env.cleanups.append(p.kill)
    wait_for(lambda: os.path.exists(portfile) and open(portfile).read().strip(), 10, "imds fake")
    return "http://127.0.0.1:%s" % open(portfile).read().strip()


def _fake_call(url, path, body=None):
    import urllib.request
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None
                                 else None, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _role_creds(moto, key_arn, name="bcdad-role"):
    """Temporary credentials of a role holding exactly the shipped policy,
    as EC2 instance metadata or STS would hand them out."""
    iam = moto.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:user/admin"},
        "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName=name, PolicyName="bcdad", PolicyDocument=moto.policy)
    c = moto.client("sts").assume_role(RoleArn=role["Role"]["Arn"],
                                       RoleSessionName="bcdad")["Credentials"]
    return role["Role"]["Arn"], c


def test_credentials_from_imds(env):
    """EC2 instance-role credentials (IMDSv2) with a session token, signed
    requests accepted by moto; the token PUT and credential GETs happen."""
    moto, key_arn, _, _ = aws_env(env)
    _, tmp = _role_creds(moto, key_arn)
    imds = _start_imds(env)
    _fake_call(imds, "/_fake/config", {"access_key_id": tmp["AccessKeyId"],
                                       "secret_access_key": tmp["SecretAccessKey"],
                                       "session_token": tmp["SessionToken"],
                                       "region": "us-east-1"})
    env.env_extra.update({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                          "AWS_EC2_METADATA_DISABLED": None,
                          "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds})
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=90)
    _check_objects(env, moto, jid)
    st = _fake_call(imds, "/_fake/stats")
    check(st["token_puts"] >= 1 and st["cred_gets"] >= 1, "IMDS not used: %s" % st)
    check("credentials from imds" in env.log_text(), "log should name the source")
    check(tmp["SessionToken"] not in env.log_text(), "session token in the log")


def test_region_from_imds_not_up_at_start(env):
    """No region configured, and IMDS not answering yet when the daemon
    starts (the network comes up after it at boot): the job reaching S3
    backs off and asks IMDS again, instead of failing for the daemon's
    whole life, and ends DONE once IMDS answers."""
    from awsenv import free_port
    moto, _, _, _ = aws_env(env)
    text = open(env.conf).read()
    check("region = us-east-1\n" in text, "the config's region line moved")
    open(env.conf, "w").write(text.replace("region = us-east-1\n", ""))
    port = free_port()
    env.env_extra.update({"AWS_EC2_METADATA_DISABLED": None,
                          "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:%d" % port})
    env.start()
    wait_for(lambda: "no AWS region" in env.log_text(), 30, "the start-up lookup to fail")
    jid = env.run()
    # Asked again with the engine's backoff, not once for good.
    wait_for(lambda: ("waiting for the AWS region" in env.log_text() and
                      "retry 2 in" in env.log_text()) or
             env.job(jid)["state"] in TERMINAL, 60, "the job to ask twice for the region")
    j = env.job(jid)
    check(j["state"] == "S3_PUT", "the job should wait in S3_PUT, is %s: %s"
          % (j["state"], j["last_error"]))
    imds = _start_imds(env, port)
    _fake_call(imds, "/_fake/config", {"region": "us-east-1"})
    env.wait_done(jid, timeout=90)
    _check_objects(env, moto, jid)
    check(_fake_call(imds, "/_fake/stats")["region_gets"] >= 1, "IMDS not asked")
    check("AWS region us-east-1 (from IMDS)" in env.log_text(), "the log should say so")


def test_credentials_from_web_identity(env):
    """AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN: the token goes to STS
    (the fake in imds_fake.py: moto's STS crashes on the unsigned call when
    its auth is on), whose role credentials moto then accepts for S3."""
    moto, key_arn, _, _ = aws_env(env)
    role_arn, tmp = _role_creds(moto, key_arn)
    sts = _start_imds(env)
    token = "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl"
    _fake_call(sts, "/_fake/config", {"access_key_id": tmp["AccessKeyId"],
                                      "secret_access_key": tmp["SecretAccessKey"],
                                      "session_token": tmp["SessionToken"],
                                      "sts_role_arn": role_arn, "sts_token": token})
    tokfile = os.path.join(env.dir, "web-identity-token")
    open(tokfile, "w").write(token)
    text = open(env.conf).read().replace("[aws]\n", "[aws]\nsts_endpoint_url = %s\n" % sts)
    open(env.conf, "w").write(text)
    env.env_extra.update({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                          "AWS_WEB_IDENTITY_TOKEN_FILE": tokfile,
                          "AWS_ROLE_ARN": role_arn})
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=90)
    _check_objects(env, moto, jid)
    check(_fake_call(sts, "/_fake/stats")["sts_calls"] >= 1, "STS not called")
    check("credentials from web-identity" in env.log_text(), "log should name the source")
    check(token not in env.log_text(), "web identity token in the log")


def test_credentials_from_shared_file_profile(env):
    """AWS_PROFILE selects a profile of AWS_SHARED_CREDENTIALS_FILE."""
    moto, _, creds, _ = aws_env(env)
    path = os.path.join(env.dir, "aws-credentials")
    with open(path, "w") as f:
        f.write("[default]\naws_access_key_id = AKIAWRONGWRONGWRONG\n"
                "aws_secret_access_key = wrong\n\n"
                "[exports]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % creds)
    env.env_extra.update({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                          "AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": "exports"})
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=90)
    _check_objects(env, moto, jid)
    check("credentials from shared-credentials-file" in env.log_text(), "source not logged")


def test_credentials_from_ecs(env):
    """AWS_CONTAINER_CREDENTIALS_FULL_URI with the authorization token file."""
    moto, key_arn, _, _ = aws_env(env)
    _, tmp = _role_creds(moto, key_arn)
    fake = _start_imds(env)
    _fake_call(fake, "/_fake/config", {"access_key_id": tmp["AccessKeyId"],
                                       "secret_access_key": tmp["SecretAccessKey"],
                                       "session_token": tmp["SessionToken"],
                                       "ecs_token": "ecs-token-42"})
    tokfile = os.path.join(env.dir, "ecs-token")
    open(tokfile, "w").write("ecs-token-42")
    env.env_extra.update({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI": fake + "/ecs/creds",
                          "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokfile})
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=90)
    _check_objects(env, moto, jid)
    check(_fake_call(fake, "/_fake/stats")["ecs_gets"] >= 1, "ECS endpoint not used")
    check("credentials from ecs" in env.log_text(), "source not logged")


def test_uploads_waiting_for_a_slot_do_not_stall_the_daemon(env):
    """More files than upload slots at S3_PUT, with S3 answering slowly:
    the daemon keeps answering its control socket and finishes the job
    (it once re-armed its timer at 0 and starved every socket)."""
    moto, _, _, px = aws_env(env, proxy=True)
    text = open(env.conf).read().replace("log_level = debug",
                                         "log_level = debug\nmax_downloads = 1")
    open(env.conf, "w").write(text)
    env.emu.config(lines_per_file=2)
    px.hold = lambda m, p, q: 1 if m == "PUT" else 0
    env.start()
    jid = env.run()
    env.wait_state(jid, "S3_PUT", timeout=60)
    # The control socket answers while uploads wait for the one slot.
    check(env.job(jid)["state"] in ("S3_PUT", "IMPORT", "NOTIFY", "DONE"),
          "status answered with a wrong state")
    px.hold = None
    env.wait_done(jid, timeout=90)
    _check_objects(env, moto, jid)


def test_cancel_aborts_open_multipart_upload(env):
    """A job cancelled mid-multipart aborts its upload: no parts linger."""
    moto, _, _, proxy = aws_env(env, proxy=True, keep_local="yes")
    env.emu.config(generate={"ExplanationOfBenefit": 23000}, lines_per_file=23000)
    text = open(env.conf).read().replace(
        "keep_local = yes", "keep_local = yes\nresource_types = ExplanationOfBenefit")
    open(env.conf, "w").write(text)
    proxy.hold = lambda m, p, q: 3 if m == "PUT" and q.get("partNumber") == ["2"] else 0
    env.start()
    jid = env.run()
    wait_for(lambda: len([p for p in proxy.parts() if p[1] == 200]) >= 1, 120, "part 1")
    check(len(moto.uploads_in_progress()) == 1, "one multipart upload open")
    env.cli("cancel", str(jid))
    env.wait_terminal(jid, timeout=60)
    check(env.job(jid)["state"] == "CANCELLED", "state %s" % env.job(jid)["state"])
    wait_for(lambda: moto.uploads_in_progress() == [], 30, "the upload to be aborted")
    aborts = [r for r in proxy.records if r[0] == "DELETE" and "uploadId" in r[2]]
    check(len(aborts) == 1 and aborts[0][3] == 204, "AbortMultipartUpload: %s" % aborts)


# ---- S3 faults during an upload (tests/FAULTS.md, stage S3) ----------------

MIB = 1024 * 1024
SLOWDOWN = "Please reduce your request rate."
INTERNAL = "We encountered an internal error. Please try again."
NO_SUCH_UPLOAD = ("The specified upload does not exist. The upload ID may be invalid, "
                  "or the upload may have been aborted or completed.")


class _Inject:
    """A Proxy.fail predicate: answers the first `times` requests that
    match(method, path, query) with answer (a tuple, or a function of the
    request giving one) instead of S3, after calling before(method, path,
    query) if given.  seen: (monotonic time, answered here) of every
    matching request, in order."""

    def __init__(self, match, answer, times=1, before=None):
        self.match, self.answer, self.left, self.before = match, answer, times, before
        self.seen = []
        self.lock = threading.Lock()

    def __call__(self, m, p, q):
        if not self.match(m, p, q):
            return 0
        with self.lock:
            mine = self.left > 0
            self.left -= mine
            self.seen.append((time.monotonic(), mine))
        if not mine:
            return 0
        if self.before:
            self.before(m, p, q)
        return self.answer(m, p, q) if callable(self.answer) else self.answer


def _either(*preds):
    return lambda m, p, q: next((a for a in (f(m, p, q) for f in preds) if a), 0)


def _is_put(name):
    return lambda m, p, q: m == "PUT" and "partNumber" not in q and p.endswith("/" + name)


def _is_part(n):
    return lambda m, p, q: m == "PUT" and q.get("partNumber") == [str(n)]


def _is_complete(m, p, q):
    return m == "POST" and "uploadId" in q


def _mixed_upload(env):
    """The default export with a ~9 MB EOB file: with multipart_threshold
    5M it goes to S3 in two parts (8 MiB and the rest), Patient and
    Coverage in one PUT each.  S3 behind a proxy; local copies kept."""
    moto, _, _, proxy = aws_env(env, proxy=True, keep_local="yes",
                                multipart_threshold="5M")
    env.emu.config(generate={"ExplanationOfBenefit": 10000}, lines_per_file=10000)
    return moto, proxy


def _requests(proxy, pred):
    """(query, status) of every request the proxy saw matching pred."""
    with proxy.lock:
        return [(q, st) for m, p, q, st in proxy.records if pred(m, p, q)]


def _creates(proxy):
    return _requests(proxy, lambda m, p, q: m == "POST" and "uploads" in q)


def _check_upload_done(env, moto, jid, nparts=2):
    """DONE's outcome in S3: every object byte-identical to the emulator's
    files, the EOB object a multipart one of nparts parts, and no
    multipart upload left open (ListMultipartUploads)."""
    _check_objects(env, moto, jid)
    j, base, _ = _keys(env, jid)
    local = open(os.path.join(j["dir"], "ExplanationOfBenefit-1.ndjson"), "rb").read()
    check(8 * MIB < len(local) <= 16 * MIB, "EOB file of %d bytes: not two 8 MiB parts"
          % len(local))
    key = base + "ExplanationOfBenefit-1.ndjson"
    check(moto.get(key) == local, "the multipart object differs from the local file")
    etag = moto.client("s3").head_object(Bucket=BUCKET, Key=key)["ETag"]
    check(etag.endswith('-%d"' % nparts), "not a %d-part object: %s" % (nparts, etag))
    check(moto.uploads_in_progress() == [], "multipart uploads left open: %s"
          % moto.uploads_in_progress())


def _retried_once(name, inj):
    """inj answered once, and the request came again after a backoff."""
    check([mine for _, mine in inj.seen] == [True, False],
          "%s: expected the injected answer then one retry, saw %s" % (name, inj.seen))
    gap = inj.seen[1][0] - inj.seen[0][0]
    # retry_min = 1 s: the first retry waits 0.5 to 1 s (jitter).
    check(gap >= 0.45, "%s retried after %.2f s: no backoff" % (name, gap))


def _transient_error_is_retried(env, status, code, message):
    moto, proxy = _mixed_upload(env)
    put = _Inject(_is_put("Patient-1.ndjson"), s3_error(status, code, message))
    part = _Inject(_is_part(2), s3_error(status, code, message))
    proxy.fail = _either(put, part)
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=60)
    _retried_once("PutObject of Patient-1.ndjson", put)
    _retried_once("UploadPart 2", part)
    parts = sorted(proxy.parts())
    check(parts == sorted([(1, 200), (2, status), (2, 200)]), "UploadPart answers: %s" % parts)
    check(len(_creates(proxy)) == 1, "the multipart upload was started over: %s"
          % _creates(proxy))
    check(len(_requests(proxy, _is_complete)) == 1, "CompleteMultipartUpload count")
    _check_upload_done(env, moto, jid)
    log = env.log_text()
    check(log.count("failed: %s: %s; retry 1 in" % (code, message)) == 2,
          "the log should give each retry and S3's code:\n" + log[-3000:])


def test_s3_503_slowdown_is_retried(env):
    """503 SlowDown to a PutObject and to an UploadPart: each retried once
    after a backoff, the same upload goes on, every object byte-identical,
    DONE."""
    _transient_error_is_retried(env, 503, "SlowDown", SLOWDOWN)


def test_s3_500_internal_error_is_retried(env):
    """500 InternalError to a PutObject and to an UploadPart: as 503."""
    _transient_error_is_retried(env, 500, "InternalError", INTERNAL)


def _lifecycle_abort(moto):
    """A `before` hook doing what an AbortIncompleteMultipartUpload rule
    does: the request's upload is aborted in S3 (moto itself answers
    500, not NoSuchUpload, to a part or a completion of an unknown upload,
    so the answer is injected)."""
    s3 = moto.client("s3")

    def abort(m, p, q):
        s3.abort_multipart_upload(Bucket=BUCKET, Key=unquote(p.split("/", 2)[2]),
                                  UploadId=q["uploadId"][0])
    return abort


def _no_such_upload(m, p, q):
    return s3_error(404, "NoSuchUpload", NO_SUCH_UPLOAD, UploadId=q["uploadId"][0])


def _upload_vanishes(env, match):
    """The upload is aborted behind bcdad's back when match() comes, and
    S3 answers NoSuchUpload: bcdad starts it over (a second
    CreateMultipartUpload, every part sent again under the new id) and the
    job ends DONE with nothing left open.  Returns the proxy."""
    moto, proxy = _mixed_upload(env)
    inj = _Inject(match, _no_such_upload, before=_lifecycle_abort(moto))
    proxy.fail = inj
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=60)
    check(inj.seen and inj.seen[0][1], "the fault was never injected")
    creates = _creates(proxy)
    check([st for _, st in creates] == [200, 200],
          "CreateMultipartUpload should be sent again once: %s" % creates)
    completes = _requests(proxy, _is_complete)
    check(completes and completes[-1][1] == 200, "no CompleteMultipartUpload: %s" % completes)
    ok = [q["uploadId"][0] for q, st in completes if st == 200]
    gone = [q["uploadId"][0] for q, st in _requests(proxy, lambda m, p, q: True)
            if st == 404]
    check(len(ok) == 1 and len(gone) == 1 and ok[0] != gone[0],
          "completed %s, vanished %s: the new upload should be completed" % (ok, gone))
    new_parts = sorted(int(q["partNumber"][0]) for q, st in _requests(
        proxy, lambda m, p, q: m == "PUT" and q.get("uploadId") == [ok[0]]) if st == 200)
    check(new_parts == [1, 2], "parts of the new upload: %s" % new_parts)
    check("S3 no longer knows the upload of" in env.log_text(), "the log should say so")
    _check_upload_done(env, moto, jid)
    return proxy


def test_s3_no_such_upload_on_part_starts_over(env):
    """The upload vanishes (a lifecycle rule) after part 1: part 2 hears
    NoSuchUpload; the upload is started over and completes; DONE."""
    proxy = _upload_vanishes(env, _is_part(2))
    check(sorted(proxy.parts()) == [(1, 200), (1, 200), (2, 200), (2, 404)],
          "UploadPart answers: %s" % sorted(proxy.parts()))


def test_s3_no_such_upload_on_complete_starts_over(env):
    """The upload vanishes before CompleteMultipartUpload: NoSuchUpload;
    the upload is started over and completes; DONE."""
    proxy = _upload_vanishes(env, _is_complete)
    check([st for _, st in _requests(proxy, _is_complete)] == [404, 200],
          "CompleteMultipartUpload answers")
    check(sorted(proxy.parts()) == [(1, 200), (1, 200), (2, 200), (2, 200)],
          "UploadPart answers: %s" % sorted(proxy.parts()))


def test_s3_200_with_error_on_complete_is_retried(env):
    """CompleteMultipartUpload answers 200 OK whose body is an <Error>
    (InternalError after S3's keep-alive whitespace, as the S3 API
    reference describes): not taken for success; the completion is
    retried after a backoff, the same upload completes; DONE."""
    moto, proxy = _mixed_upload(env)
    inj = _Inject(_is_complete, s3_error(200, "InternalError", INTERNAL,
                                         prefix=b" \n" * 3))
    proxy.fail = inj
    env.start()
    jid = env.run()
    env.wait_done(jid, timeout=60)
    _retried_once("CompleteMultipartUpload", inj)
    completes = _requests(proxy, _is_complete)
    check(len(completes) == 2 and completes[0][0] == completes[1][0],
          "the same upload should be completed again: %s" % completes)
    check(len(_creates(proxy)) == 1, "the upload was started over")
    check(sorted(proxy.parts()) == [(1, 200), (2, 200)], "parts sent again")
    check("failed: InternalError: %s; retry 1 in" % INTERNAL in env.log_text(),
          "the log should name the error in the 200 OK")
    _check_upload_done(env, moto, jid)


def test_s3_no_such_upload_without_end_fails(env):
    """S3 loses every upload of the key (each first UploadPart hears
    NoSuchUpload): the upload is started over 3 times, not more, then
    the job FAILED, naming UploadPart and NoSuchUpload; the local file
    kept; nothing left open in S3."""
    moto, proxy = _mixed_upload(env)
    proxy.fail = _Inject(_is_part(1), _no_such_upload, times=10 ** 6,
                         before=_lifecycle_abort(moto))
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid, timeout=30)
    check(j["state"] == "FAILED", "state %s (%s)" % (j["state"], j["last_error"]))
    e = j["last_error"]
    check("(UploadPart)" in e and "NoSuchUpload" in e and "ExplanationOfBenefit-1" in e,
          "last_error should name the upload's own failure: %s" % e)
    check(len(_creates(proxy)) == 4, "CreateMultipartUpload sent %d times: the upload "
          "should start over 3 times" % len(_creates(proxy)))
    log = env.log_text()
    check(log.count("S3 no longer knows the upload of") == 3, "restarts logged: %d"
          % log.count("S3 no longer knows the upload of"))
    check("left in S3" not in log, "a vanished upload reported as left in S3")
    check(moto.uploads_in_progress() == [], "multipart uploads left open")
    check(os.path.exists(os.path.join(j["dir"], "ExplanationOfBenefit-1.ndjson")),
          "the local file is gone")


def test_s3_failed_abort_keeps_the_cause(env):
    """UploadPart is refused (403 AccessDenied: the policy changed during
    the upload), and so is the AbortMultipartUpload that follows: the job
    FAILED naming UploadPart, the upload's own failure, not the abort's;
    the abort's failure is logged."""
    moto, proxy = _mixed_upload(env)
    denied = s3_error(403, "AccessDenied", "Access Denied")
    proxy.fail = _either(_Inject(_is_part(2), denied),
                         _Inject(lambda m, p, q: m == "DELETE" and "uploadId" in q, denied,
                                 times=10 ** 6))
    env.start()
    jid = env.run()
    j = env.wait_terminal(jid, timeout=30)
    check(j["state"] == "FAILED", "state %s (%s)" % (j["state"], j["last_error"]))
    e = j["last_error"]
    check("s3:PutObject (UploadPart)" in e and "AbortMultipartUpload" not in e,
          "last_error should name UploadPart, not the abort: %s" % e)
    aborts = _requests(proxy, lambda m, p, q: m == "DELETE" and "uploadId" in q)
    check(aborts and aborts[0][1] == 403, "no AbortMultipartUpload tried: %s" % aborts)
    check("s3:AbortMultipartUpload" in env.log_text(), "the abort's failure is not logged")
