"""The S3 stage against moto_server (signatures checked, IAM enforced,
the user holding exactly packaging/iam-policy.json)."""
import json
import os
import subprocess

from harness import check, wait_for
from awsenv import BUCKET, PREFIX, aws_env


def _keys(env, jid):
    j = env.job(jid)
    t = j["transaction_time"].replace(":", "")     # ISO 8601 basic form
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


def test_kill_during_multipart_resumes(env):
    moto, proxy = _one_multipart_file(env)
    # Part 3 is held back before it reaches S3, so the kill lands while S3
    # has parts 1 and 2 only.
    proxy.hold = lambda m, p, q: 4 if m == "PUT" and q.get("partNumber") == ["3"] else 0
    env.start()
    jid = env.run()
    wait_for(lambda: len([p for p in proxy.parts() if p[1] == 200]) >= 2, 120, "two parts")
    _restart_and_compare(env, jid, moto, proxy)
    sent = [n for n, st in proxy.parts()]
    for n in set(sent):
        check(sent.count(n) == 1, "part %d sent %d times: %s" % (n, sent.count(n), sent))
    creates = [r for r in proxy.records if r[0] == "POST" and "uploads" in r[2]]
    check(len(creates) == 1, "CreateMultipartUpload sent %d times" % len(creates))
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


def _start_imds(env):
    import subprocess as sp
    import sys
    from harness import REPO
    portfile = os.path.join(env.dir, "imds.port")
    log = open(os.path.join(env.dir, "imds.log"), "w")
    p = sp.Popen([sys.executable, os.path.join(REPO, "tests", "emulator", "imds_fake.py"),
                  "--port", "0", "--portfile", portfile], stdout=log, stderr=sp.STDOUT)
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
