"""AWS on loopback for integration tests: moto_server with signature
checking and IAM enforcement on, an IAM user holding exactly
packaging/iam-policy.json, a bucket and a KMS key; and a recording proxy
in front of moto that counts (and can hold back) requests.

Setup calls use Debian's python3-botocore as an independent client.
"""
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from urllib.parse import urlsplit, parse_qs

import botocore.session
from botocore.config import Config

from harness import REPO, TestFailure, wait_for

REGION = "us-east-1"
BUCKET = "bcdad-exports"
PREFIX = "exports/"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def moto_command():
    exe = shutil.which("moto_server")
    if exe:
        return [exe]
    for py in (os.path.expanduser("~/.pyenv/shims/python3"), "python3"):
        if shutil.which(py) and subprocess.run([py, "-c", "import moto.server"],
                                               capture_output=True).returncode == 0:
            return [py, "-m", "moto.server"]
    raise TestFailure("moto_server not found (moto is part of the machine's Python)")


class Moto:
    """moto_server on 127.0.0.1 with auth on after the admin bootstrap."""

    def __init__(self, workdir):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
        self.log = open(os.path.join(workdir, "moto.log"), "w")
        self.proc = subprocess.Popen(moto_command() + ["-H", "127.0.0.1", "-p", str(self.port)],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._up, 30, "moto_server to listen")
        self.session = botocore.session.Session()
        # The three unauthenticated actions make an administrator.
        iam = self.client("iam", ("bootstrap", "bootstrap"))
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        k = iam.create_access_key(UserName="admin")["AccessKey"]
        self.admin = (k["AccessKeyId"], k["SecretAccessKey"])

    def _up(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def client(self, service, creds=None):
        creds = creds or self.admin
        return self.session.create_client(
            service, region_name=REGION, endpoint_url=self.url,
            aws_access_key_id=creds[0], aws_secret_access_key=creds[1],
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))

    def setup_export_target(self, bucket=BUCKET, prefix=PREFIX, policy_prefix=None):
        """Bucket, KMS key, SNS topic with an SQS queue subscribed, the
        BCDA secret in Secrets Manager, and a 'bcdad' user with exactly the
        shipped policy."""
        s3 = self.client("s3")
        s3.create_bucket(Bucket=bucket)
        key_arn = self.client("kms").create_key(Description="bcdad test")["KeyMetadata"]["Arn"]
        sns = self.client("sns")
        self.topic_arn = sns.create_topic(Name="bcdad-events")["TopicArn"]
        sqs = self.client("sqs")
        self.queue_url = sqs.create_queue(QueueName="bcdad-events")["QueueUrl"]
        qarn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=qarn,
                      Attributes={"RawMessageDelivery": "false"})
        from harness import CLIENT, SECRET
        self.secret_arn = self.client("secretsmanager").create_secret(
            Name="bcdad/A9994", SecretString=json.dumps(
                {"client_id": CLIENT, "client_secret": SECRET}))["ARN"]
        self.role_arn = "arn:aws:iam::123456789012:role/HealthLakeImport"
        self.datastore_arn = ("arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/"
                              "0123456789abcdef0123456789abcdef")
        policy = open(os.path.join(REPO, "packaging", "iam-policy.json")).read()
        for k, v in (("${BUCKET}", bucket),
                     ("${PREFIX}", prefix if policy_prefix is None else policy_prefix),
                     ("${KMS_KEY_ARN}", key_arn), ("${DATASTORE_ARN}", self.datastore_arn),
                     ("${HEALTHLAKE_ROLE_ARN}", self.role_arn),
                     # moto authorizes SNS and Secrets Manager calls
                     # against the resource "*" (moto/core/responses.py
                     # call_action), so an ARN there would deny every
                     # call; the actions stay exactly the shipped ones.
                     ("${SNS_TOPIC_ARN}", "*"),
                     ("${BCDA_SECRET_ARN}", "*")):
            policy = policy.replace(k, v)
        json.loads(policy)
        self.policy = policy        # the shipped policy, filled in
        iam = self.client("iam")
        iam.create_user(UserName="bcdad")
        iam.put_user_policy(UserName="bcdad", PolicyName="bcdad", PolicyDocument=policy)
        k = iam.create_access_key(UserName="bcdad")["AccessKey"]
        return key_arn, (k["AccessKeyId"], k["SecretAccessKey"])

    def objects(self, bucket=BUCKET):
        out = {}
        s3 = self.client("s3")
        token = None
        while True:
            kw = {"Bucket": bucket}
            if token:
                kw["ContinuationToken"] = token
            r = s3.list_objects_v2(**kw)
            for o in r.get("Contents", []):
                out[o["Key"]] = o["Size"]
            if not r.get("IsTruncated"):
                return out
            token = r["NextContinuationToken"]

    def get(self, key, bucket=BUCKET):
        return self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()

    def messages(self, wait=0):
        """SNS notifications delivered to the subscribed queue (parsed)."""
        sqs = self.client("sqs")
        out = []
        while True:
            r = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                    WaitTimeSeconds=wait)
            msgs = r.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            wait = 0

    def uploads_in_progress(self, bucket=BUCKET):
        return self.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def s3_error(status, code, message, prefix=b"", **extra):
    """An answer for Proxy.fail: S3's error document (rest-xml, aws.md
    1.6), as S3 sends it with status (200 for an error found after
    CompleteMultipartUpload's 200 OK, prefix then being the whitespace S3
    sent meanwhile to keep the connection open).  extra: more elements,
    such as UploadId for NoSuchUpload."""
    more = "".join("<%s>%s</%s>" % (k, v, k) for k, v in extra.items())
    body = ('<Error><Code>%s</Code><Message>%s</Message>%s'
            '<RequestId>0123456789ABCDEF</RequestId>'
            '<HostId>aG9zdGlkIG9mIHRoZSBmYWtlIFMzIGVycm9y</HostId></Error>'
            % (code, message, more)).encode()
    return status, b'<?xml version="1.0" encoding="UTF-8"?>\n' + prefix + body


class Proxy:
    """A reverse proxy to moto that records every request and can hold
    matching ones back before forwarding (so a kill lands while S3 does not
    yet have them)."""

    def __init__(self, target_port):
        self.records = []       # (method, path, query dict, status)
        self.hold = None        # predicate(method, path, query) -> seconds
        self.hold_answer = None  # the same, after S3 answered: the answer waits
        # predicate(method, path, query) -> status to answer, or
        # (status, body) with an XML body such as s3_error() builds; the
        # request is then not forwarded.
        self.fail = None
        self.epoch = 0          # bumped by release(): held requests are dropped
        self.lock = threading.Lock()
        proxy = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                u = urlsplit(self.path)
                q = parse_qs(u.query, keep_blank_values=True)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                ans = proxy.fail(self.command, u.path, q) if proxy.fail else 0
                status, data = ans if isinstance(ans, tuple) else (ans, b"")
                if status:
                    with proxy.lock:
                        proxy.records.append((self.command, u.path, q, status))
                    self.send_response(status)
                    if data:
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("x-amz-request-id", "0123456789ABCDEF")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    return
                if proxy._held(proxy.hold, self.command, u.path, q):
                    # Its sender was killed meanwhile: S3 never gets it.
                    self.close_connection = True
                    return
                c = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("connection", "expect")}
                c.request(self.command, self.path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                with proxy.lock:
                    proxy.records.append((self.command, u.path, q, r.status))
                if proxy._held(proxy.hold_answer, self.command, u.path, q):
                    # S3 did it, but its sender was killed before hearing so.
                    self.close_connection = True
                    c.close()
                    return
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                c.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _held(self, pred, method, path, q):
        """Holds for pred's seconds; True when release() came meanwhile."""
        delay = pred(method, path, q) if pred else 0
        if not delay:
            return False
        epoch = self.epoch
        time.sleep(delay)
        return epoch != self.epoch

    def release(self):
        """Stops holding; requests still held are dropped, not forwarded,
        and answers still held are never delivered."""
        self.hold = self.hold_answer = None
        self.epoch += 1

    def parts(self):
        """(partNumber, status) of every UploadPart forwarded."""
        with self.lock:
            return [(int(q["partNumber"][0]), st) for m, p, q, st in self.records
                    if m == "PUT" and "partNumber" in q]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def aws_env(env, proxy=False, daemon_extra="", **profile):
    """Wires an Env to moto: starts it, sets up the target, writes the
    config ([aws] + S3 keys) and the daemon's AWS environment."""
    moto = Moto(env.dir)
    env.cleanups.append(moto.stop)
    key_arn, creds = moto.setup_export_target(
        policy_prefix=profile.pop("policy_prefix", None))
    endpoint = moto.url
    px = None
    if proxy:
        px = Proxy(moto.port)
        env.cleanups.append(px.stop)
        endpoint = px.url
    lines = ["s3_bucket = %s" % BUCKET, "s3_prefix = %s" % PREFIX.rstrip("/"),
             "kms_key_id = %s" % key_arn]
    lines += ["%s = %s" % kv for kv in profile.items()]
    env.write_config(profile_extra="\n".join(lines), daemon_extra=daemon_extra,
                     aws_section="region = %s\ns3_endpoint_url = %s" % (REGION, endpoint))
    home = os.path.join(env.dir, "home")
    os.makedirs(home, exist_ok=True)
    env.env_extra.update({
        "AWS_ACCESS_KEY_ID": creds[0], "AWS_SECRET_ACCESS_KEY": creds[1],
        "AWS_EC2_METADATA_DISABLED": "true", "HOME": home,
        "AWS_CONFIG_FILE": os.path.join(home, "none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "none")})
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
              "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        env.env_extra[k] = None
    return moto, key_arn, creds, px


class HealthLake:
    """tests/emulator/healthlake_fake.py, reading the imported files back
    from moto's S3."""

    def __init__(self, workdir, moto, caller):
        import sys
        portfile = os.path.join(workdir, "healthlake.port")
        self.log = open(os.path.join(workdir, "healthlake.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "tests", "emulator", "healthlake_fake.py"),
             "--port", "0", "--portfile", portfile, "--s3-endpoint", moto.url,
             "--region", REGION, "--access-key", moto.admin[0], "--secret-key", moto.admin[1],
             "--caller", "%s:%s" % caller, "--allowed-role-arn", moto.role_arn],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(portfile) and open(portfile).read().strip(), 15,
                 "the HealthLake fake")
        self.url = "http://127.0.0.1:%s" % open(portfile).read().strip()

    def _call(self, path, body=None):
        import urllib.request
        req = urllib.request.Request(self.url + path, method="POST" if body is not None
                                     else "GET",
                                     data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def config(self, **kw):
        return self._call("/_fake/config", kw)

    def stats(self):
        return self._call("/_fake/stats")

    def stop(self):
        self.proc.kill()
        self.proc.wait(5)
        self.log.close()


def pipeline_env(env, sns_proxy=False, secrets=False, **profile):
    """The whole pipeline: moto (S3, SNS+SQS, Secrets Manager), the
    HealthLake fake, and a profile using all of them."""
    moto, key_arn, creds, _ = aws_env(env, **profile)
    moto.bcdad_creds = creds
    hl = HealthLake(env.dir, moto, creds)
    env.cleanups.append(hl.stop)
    sns_url = moto.url
    px = None
    if sns_proxy:
        px = Proxy(moto.port)
        env.cleanups.append(px.stop)
        sns_url = px.url
    text = open(env.conf).read()
    text = text.replace("[aws]\n", "[aws]\nhealthlake_endpoint_url = %s\nsns_endpoint_url = %s\n"
                        "secretsmanager_endpoint_url = %s\n" % (hl.url, sns_url, moto.url))
    extra = ("healthlake_datastore_id = 0123456789abcdef0123456789abcdef\n"
             "healthlake_role_arn = %s\nsns_topic_arn = %s\n" % (moto.role_arn, moto.topic_arn))
    if secrets:
        from harness import CLIENT
        text = text.replace("client_id = %s\n" % CLIENT, "").replace(
            "client_secret_file = %s\n" % env.secret_file, "")
        extra += "bcda_secret_arn = %s\n" % moto.secret_arn
    text = text.replace("s3_bucket = ", extra + "s3_bucket = ")
    open(env.conf, "w").write(text)
    return moto, hl, px
