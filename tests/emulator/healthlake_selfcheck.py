#!/usr/bin/python3
"""Hand-run self-check of healthlake_fake.py against a real moto_server.

Usage: tests/emulator/healthlake_selfcheck.py   (needs moto_server on PATH
and Debian python3-botocore).  Starts moto and the fake on loopback, runs the
checks, stops both.  Not part of the test suite.
"""
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import botocore.session
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
DS = "0123456789abcdef0123456789abcdef"
ROLE = "arn:aws:iam::123456789012:role/HealthLakeImport"
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CALLER = ("AKIDCALLER0001", "caller/secret+key0001")
fails = 0


def check(cond, what):
    global fails
    print("%s %s" % ("PASS" if cond else "FAIL", what))
    fails += 0 if cond else 1


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, secs=20):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("port %d never opened" % port)


def client(service, url, key, secret, token=None, **cfg):
    return botocore.session.Session().create_client(
        service, endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=key, aws_secret_access_key=secret,
        aws_session_token=token,
        config=botocore.config.Config(retries={"total_max_attempts": 1},
                                      **cfg))


def ctl(base, path, obj=None):
    data = None if obj is None else json.dumps(obj).encode()
    req = urllib.request.Request(base + path, data=data,
                                 method="GET" if obj is None else "POST")
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def raw(base, target, body, key=CALLER[0], secret=CALLER[1], token=None,
        when=None, sign_token=True, ctype="application/x-amz-json-1.0"):
    """Signs a request by hand (no client-side validation) and sends it."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = botocore.awsrequest.AWSRequest(
        method="POST", url=base + "/", data=data,
        headers={"Content-Type": ctype, "X-Amz-Target": target})
    when = when or dt.datetime.utcnow()
    req.context["timestamp"] = stamp = when.strftime("%Y%m%dT%H%M%SZ")
    req.headers["X-Amz-Date"] = stamp
    req.headers["Host"] = base.split("//")[1]
    if token and sign_token:
        req.headers["X-Amz-Security-Token"] = token
    s = botocore.auth.SigV4Auth(botocore.credentials.Credentials(
        key, secret), "healthlake", "us-east-1")
    sig = s.signature(s.string_to_sign(req, s.canonical_request(req)), req)
    s._inject_signature_to_request(req, sig)
    hdrs = dict(req.headers.items())
    if token and not sign_token:
        hdrs["X-Amz-Security-Token"] = token
    r = urllib.request.Request(base + "/", data=data, headers=hdrs,
                               method="POST")
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def wait_job(hl, job_id, secs=15):
    seen, end = [], time.time() + secs
    while time.time() < end:
        p = hl.describe_fhir_import_job(DatastoreId=DS, JobId=job_id)[
            "ImportJobProperties"]
        if not seen or seen[-1] != p["JobStatus"]:
            seen.append(p["JobStatus"])
        if p["JobStatus"] in ("COMPLETED", "FAILED", "COMPLETED_WITH_ERRORS"):
            return p, seen
        time.sleep(0.2)
    return p, seen


def err_code(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response[
            "ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


def main():
    tmp = tempfile.mkdtemp(prefix="hlfake.")
    procs = []
    try:
        mport = free_port()
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="1000")
        procs.append(subprocess.Popen(
            [shutil.which("moto_server"), "-H", "127.0.0.1", "-p",
             str(mport)], env=env, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(tmp, "moto.log"), "w")))
        wait_port(mport)
        murl = "http://127.0.0.1:%d" % mport
        s3 = client("s3", murl, "AKIDS3", "s3secret",
                    s3={"addressing_style": "path"})
        s3.create_bucket(Bucket="bcdad-in")
        s3.put_object(Bucket="bcdad-in", Key="run1/Patient.ndjson",
                      Body=b'{"resourceType":"Patient","id":"p1"}\n'
                           b'{"resourceType":"Patient","id":"p2"}\n')
        s3.put_object(Bucket="bcdad-in", Key="run1/sub/EOB.ndjson",
                      Body=b'{"resourceType":"ExplanationOfBenefit"}\n\n'
                           b'{"resourceType":"Coverage"}\n')
        s3.put_object(Bucket="bcdad-in", Key="other/x.ndjson",
                      Body=b'{"resourceType":"Patient"}\n')
        s3.put_object(Bucket="bcdad-in", Key="bad/a.ndjson",
                      Body=b'{"resourceType":"Patient"}\nnot json\n[1]\n')
        s3.put_object(Bucket="bcdad-in", Key="bad/readme.txt", Body=b"hi")

        portfile = os.path.join(tmp, "port")
        log = open(os.path.join(tmp, "fake.log"), "w")
        procs.append(subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "healthlake_fake.py"),
             "--port", "0", "--portfile", portfile, "--s3-endpoint", murl,
             "--region", "us-east-1", "--access-key", "AKIDS3",
             "--secret-key", "s3secret", "--caller", ":".join(CALLER),
             "--allowed-role-arn", ROLE], stderr=log))
        for _ in range(100):
            if os.path.exists(portfile):
                break
            time.sleep(0.1)
        base = "http://127.0.0.1:%s" % open(portfile).read().strip()
        hl = client("healthlake", base, *CALLER)
        args = dict(JobName="bcdad-run1",
                    InputDataConfig={"S3Uri": "s3://bcdad-in/run1/"},
                    JobOutputDataConfig={"S3Configuration": {
                        "S3Uri": "s3://bcdad-in/out/", "KmsKeyId": KMS}},
                    DatastoreId=DS, DataAccessRoleArn=ROLE,
                    ClientToken="3f1e6c1a-0000-4000-8000-000000000001")

        d = hl.describe_fhir_datastore(DatastoreId=DS)["DatastoreProperties"]
        check(d["DatastoreStatus"] == "ACTIVE" and
              d["DatastoreTypeVersion"] == "R4", "DescribeFHIRDatastore")
        check(err_code(hl.describe_fhir_datastore, DatastoreId="nope")[0] ==
              "ResourceNotFoundException", "unknown datastore")

        r1 = hl.start_fhir_import_job(**args)
        r2 = hl.start_fhir_import_job(**args)
        st = ctl(base, "/_fake/stats")
        check(r1["JobId"] == r2["JobId"] and st["start_calls"] == 2 and
              st["jobs_created"] == 1, "idempotent ClientToken")
        check(err_code(hl.start_fhir_import_job, **dict(
            args, JobName="other"))[0] == "ValidationException",
            "same ClientToken, other parameters")
        p, seen = wait_job(hl, r1["JobId"])
        print("   statuses seen:", seen)
        st = ctl(base, "/_fake/stats")
        job = st["jobs"][0]
        check(p["JobStatus"] == "COMPLETED" and "EndTime" in p and
              isinstance(p["SubmitTime"], dt.datetime),
              "job COMPLETED, times parsed")
        check(job["resources_imported"] == 4 and job["per_type"] == {
            "Patient": 2, "ExplanationOfBenefit": 1, "Coverage": 1},
            "resource counts %s" % job["per_type"])
        h = s3.head_object(Bucket="bcdad-in",
                           Key="out/%s-manifest.json" % r1["JobId"])
        check(h.get("ServerSideEncryption") == "aws:kms" and
              h.get("SSEKMSKeyId") == KMS, "manifest with SSE-KMS")
        print("   manifest:", s3.get_object(
            Bucket="bcdad-in", Key=job["manifest_key"])["Body"].read()[:200])

        # raw: progress report (Debian botocore drops JobProgressReport)
        c, b = raw(base, "HealthLake.DescribeFHIRImportJob",
                   {"DatastoreId": DS, "JobId": r1["JobId"]})
        rep = b["ImportJobProperties"]["JobProgressReport"]
        check(c == 200 and rep["TotalNumberOfResourcesImported"] == 4 and
              rep["TotalNumberOfScannedFiles"] == 2, "JobProgressReport")

        # customer errors → COMPLETED_WITH_ERRORS
        r = hl.start_fhir_import_job(**dict(
            args, InputDataConfig={"S3Uri": "s3://bcdad-in/bad/"},
            ClientToken="tok-bad"))
        p, _ = wait_job(hl, r["JobId"])
        c, b = raw(base, "HealthLake.DescribeFHIRImportJob",
                   {"DatastoreId": DS, "JobId": r["JobId"]})
        rep = b["ImportJobProperties"]["JobProgressReport"]
        check(p["JobStatus"] == "COMPLETED_WITH_ERRORS" and "Message" in p
              and rep["TotalNumberOfResourcesWithCustomerError"] == 2 and
              rep["TotalNumberOfFilesReadWithCustomerError"] == 1 and
              rep["TotalNumberOfResourcesImported"] == 1,
              "customer errors: %s" % rep)

        # empty prefix → FAILED
        r = hl.start_fhir_import_job(**dict(
            args, InputDataConfig={"S3Uri": "s3://bcdad-in/empty/"},
            ClientToken="tok-empty"))
        p, _ = wait_job(hl, r["JobId"])
        check(p["JobStatus"] == "FAILED", "empty input → FAILED: %s"
              % p.get("Message"))

        # wrong secret / unknown key
        bad = client("healthlake", base, CALLER[0], "wrong")
        check(err_code(bad.describe_fhir_datastore, DatastoreId=DS) ==
              ("InvalidSignatureException", 403), "wrong secret")
        unk = client("healthlake", base, "AKIDUNKNOWN", "x")
        check(err_code(unk.describe_fhir_datastore, DatastoreId=DS) ==
              ("UnrecognizedClientException", 403), "unknown key")
        # skewed clock, wrong service/region via raw
        c, b = raw(base, "HealthLake.DescribeFHIRDatastore",
                   {"DatastoreId": DS},
                   when=dt.datetime.utcnow() - dt.timedelta(minutes=16))
        check((c, b["__type"]) == (403, "InvalidSignatureException") and
              "expired" in b["message"], "X-Amz-Date 16 min old")

        # session tokens
        ctl(base, "/_fake/config", {"callers": {"ASIATEMP": {
            "secret": "tempsecret", "token": "TOKEN123"}}})
        tmpc = client("healthlake", base, "ASIATEMP", "tempsecret",
                      "TOKEN123")
        check(tmpc.describe_fhir_datastore(DatastoreId=DS)[
            "DatastoreProperties"]["DatastoreId"] == DS, "session token ok")
        c, b = raw(base, "HealthLake.DescribeFHIRDatastore",
                   {"DatastoreId": DS}, key="ASIATEMP", secret="tempsecret",
                   token="TOKEN123", sign_token=False)
        check(c == 403, "unsigned X-Amz-Security-Token rejected: %s"
              % b["__type"])
        wrongtok = client("healthlake", base, "ASIATEMP", "tempsecret", "NO")
        check(err_code(wrongtok.describe_fhir_datastore, DatastoreId=DS)[0]
              == "UnrecognizedClientException", "wrong session token")

        # throttling and 5xx
        ctl(base, "/_fake/config", {"throttle_next": 1, "fail_5xx_next": 1})
        check(err_code(hl.describe_fhir_datastore, DatastoreId=DS) ==
              ("ThrottlingException", 400), "throttled")
        check(err_code(hl.describe_fhir_datastore, DatastoreId=DS) ==
              ("InternalServerException", 500), "5xx")
        check(err_code(hl.describe_fhir_datastore, DatastoreId=DS)[0] is None,
              "then ok")

        # FAILED outcome + unknown status first
        ctl(base, "/_fake/config", {"job_outcome": "FAILED",
                                    "unknown_status_first": True})
        r = hl.start_fhir_import_job(**dict(args, ClientToken="tok-fail"))
        p, seen = wait_job(hl, r["JobId"])
        check(p["JobStatus"] == "FAILED" and
              p["Message"].startswith("Import failed:") and
              seen[0] == "QUEUED", "FAILED outcome, statuses %s" % seen)
        ctl(base, "/_fake/config", {"job_outcome": "COMPLETED",
                                    "unknown_status_first": False})

        # validation via raw requests (botocore validates client-side)
        good = {k: v for k, v in args.items()}
        cases = [
            ("missing ClientToken", dict(good, ClientToken=None)),
            ("bad ClientToken", dict(good, ClientToken="a_b")),
            ("bad S3Uri", dict(good, InputDataConfig={"S3Uri": "s3://A/x"})),
            ("unknown member", dict(good, Extra=1)),
            ("union unknown", dict(good, InputDataConfig={"S3Uri":
                                   "s3://bcdad-in/x", "Other": "y"})),
            ("no KmsKeyId", dict(good, JobOutputDataConfig={
                "S3Configuration": {"S3Uri": "s3://bcdad-in/out/"}})),
            ("bad role", dict(good, DataAccessRoleArn="arn:aws:iam::1:x/y")),
            ("JobName too long", dict(good, JobName="x" * 65)),
            ("JobName pattern", dict(good, JobName="a*b")),
        ]
        for what, body in cases:
            body = {k: v for k, v in body.items() if v is not None}
            c, b = raw(base, "HealthLake.StartFHIRImportJob", body)
            check((c, b.get("__type")) == (400, "ValidationException"),
                  "validation: %s (%s)" % (what, b.get("message")))
        c, b = raw(base, "HealthLake.StartFHIRImportJob", dict(
            good, DataAccessRoleArn="arn:aws:iam::123456789012:role/Other",
            ClientToken="tok-role"))
        check((c, b["__type"]) == (403, "AccessDeniedException"),
              "role not allowed")
        c, b = raw(base, "HealthLake.StartFHIRImportJob",
                   dict(good, DatastoreId="ffff", ClientToken="tok-ds"))
        check((c, b["__type"]) == (400, "ResourceNotFoundException"),
              "unknown datastore on start")
        c, b = raw(base, "HealthLake.Nope", {})
        check(b["__type"] == "UnknownOperationException", "unknown target")

        # hold_start_seconds
        ctl(base, "/_fake/config", {"hold_start_seconds": 1.0})
        t0 = time.time()
        r = hl.start_fhir_import_job(**dict(args, ClientToken="tok-hold"))
        check(time.time() - t0 >= 1.0, "hold_start_seconds")
        ctl(base, "/_fake/config", {"datastore_status": "CREATING"})
        check(hl.describe_fhir_datastore(DatastoreId=DS)[
            "DatastoreProperties"]["DatastoreStatus"] == "CREATING",
            "datastore_status")
        st = ctl(base, "/_fake/stats")
        print("   stats:", {k: v for k, v in st.items() if k != "jobs"})
        ctl(base, "/_fake/reset", {})
        st = ctl(base, "/_fake/stats")
        check(st["jobs_created"] == 0 and st["jobs"] == [], "reset")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        print("logs in", tmp)
    print("%d failure(s)" % fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
