#!/usr/bin/python3
"""Loopback-only fake of AWS HealthLake for bcdad's integration tests.

Wire protocol as in reference/aws.md 1.2 and 1.6: POST / with
Content-Type application/x-amz-json-1.0, X-Amz-Target
HealthLake.StartFHIRImportJob | HealthLake.DescribeFHIRImportJob |
HealthLake.DescribeFHIRDatastore, JSON body; errors are
{"__type": "...", "message": "..."} with the status real AWS uses.

Every call must be SigV4-signed for service "healthlake" and --region by a
known caller (--caller, or "callers" via /_fake/config); the signature is
recomputed with botocore's SigV4Auth (exactly the signed headers, the
request's X-Amz-Date, the body).  X-Amz-Date must be within 15 minutes and,
when present, X-Amz-Security-Token must be signed and match the caller's.

Import jobs go SUBMITTED -> IN_PROGRESS -> final over submitted_seconds and
in_progress_seconds.  On each step the fake lists moto's S3 bucket (whole
bucket, filtered by prefix: moto 5.2.1 mis-verifies Prefix values with '/',
aws.md 8), reads every object under InputDataConfig.S3Uri and counts FHIR
resources (non-empty lines that are JSON objects with a string
"resourceType") per type; objects not ending in .ndjson are "files read with
customer error".  At the end it writes <out-prefix><JobId>-manifest.json
to the output S3Uri with SSE-KMS (the job's KmsKeyId).  Input with no
objects, unreadable input or an unwritable manifest make the job FAILED;
customer errors turn COMPLETED into COMPLETED_WITH_ERRORS.

Control (no auth), under /_fake/:
  POST /_fake/config   JSON merged into the settings, answers them:
      throttle_next N, fail_5xx_next N, job_outcome COMPLETED|FAILED|
      COMPLETED_WITH_ERRORS, submitted_seconds, in_progress_seconds,
      datastore_status, unknown_status_first (true or a status string),
      hold_start_seconds, refuse_start (a message: every
      StartFHIRImportJob is then refused with a ValidationException,
      400, carrying it, as HealthLake refuses a request it will not
      run; null or "" to stop), callers {"AKID": "secret" |
      {"secret": s, "token": t, "expired": bool}}
  GET  /_fake/stats    counters and the jobs
  GET  /_fake/config   the settings (caller secrets not shown)
  POST /_fake/reset    settings, callers, jobs and counters to the start

Usage: healthlake_fake.py --port 0 --portfile FILE --s3-endpoint URL
  --region us-east-1 --access-key ID --secret-key SECRET
  [--caller KEY:SECRET[:TOKEN]]... [--datastore-id ID]...
  [--allowed-role-arn ARN]
Debian /usr/bin/python3 + python3-botocore.  Never logs bodies or headers.
"""

import argparse
import datetime as dt
import hmac
import json
import os
import re
import sys
import threading
import time
import unicodedata
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import botocore.session

DEFAULT_DATASTORE = "0123456789abcdef0123456789abcdef"
ACCOUNT = "123456789012"
DEFAULTS = {
    "throttle_next": 0, "fail_5xx_next": 0, "job_outcome": "COMPLETED",
    "submitted_seconds": 0.5, "in_progress_seconds": 1.5,
    "datastore_status": "ACTIVE", "unknown_status_first": False,
    "hold_start_seconds": 0.0, "refuse_start": None,
}
STATS0 = ("start_calls", "jobs_created", "describe_calls", "datastore_calls",
          "throttled", "failed_5xx", "bad_signatures", "unknown_callers",
          "auth_errors",
          "validation_errors", "access_denied", "not_found")
STATUS = {"ValidationException": 400, "ThrottlingException": 400,
          "AccessDeniedException": 403, "ResourceNotFoundException": 400,
          "InternalServerException": 500, "SerializationException": 400,
          "UnknownOperationException": 400,
          "UnrecognizedClientException": 403,
          "InvalidSignatureException": 403, "IncompleteSignatureException": 400,
          "MissingAuthenticationTokenException": 403,
          "ExpiredTokenException": 403}
S3URI = re.compile(r"s3://[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9](/.*)?", re.S)
KMS = re.compile(r"(arn:aws((-us-gov)|(-iso)|(-iso-b)|(-cn))?:kms:)?"
                 r"([a-z]{2}-[a-z]+(-[a-z]+)?-\d:)?(\d{12}:)?"
                 r"(((key/)?[a-zA-Z0-9_-]+)|(alias/[a-zA-Z0-9:/_-]+))")
ROLE = re.compile(r"arn:aws(-[^:]+)?:iam::[0-9]{12}:role/.+", re.S)
TOKEN = re.compile(r"^[a-zA-Z0-9-]+$")
AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*"
                  r"SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$")
JOB_SPEC = {"JobName", "InputDataConfig", "JobOutputDataConfig", "DatastoreId",
            "DataAccessRoleArn", "ClientToken", "ValidationLevel"}


class ApiError(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind, self.message = kind, message


def name_ok(s):
    """^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-%@]*)$ without the regex module."""
    return all(unicodedata.category(c)[0] in "LZN" or c in "_.:/=+-%@"
               for c in s)


def check_str(value, member, lo, hi, pattern=None, fn=None, required=True):
    if value is None:
        if required:
            raise ApiError("ValidationException", "1 validation error "
                           "detected: Value null at '%s' failed to satisfy "
                           "constraint: Member must not be null" % member)
        return
    if not isinstance(value, str):
        raise ApiError("SerializationException",
                       "Unexpected type for member %s" % member)
    pre = "1 validation error detected: Value '%s' at '%s' failed to " \
          "satisfy constraint: Member must " % (value[:200], member)
    if not lo <= len(value) <= hi:
        raise ApiError("ValidationException", pre + "have length between "
                       "%d and %d" % (lo, hi))
    if (pattern is not None and not pattern.fullmatch(value)) or \
            (fn is not None and not fn(value)):
        raise ApiError("ValidationException", pre + "satisfy regular "
                       "expression pattern: %s" % (
                           pattern.pattern if pattern else
                           r"^([\p{L}\p{Z}\p{N}_.:/=+\-%@]*)$"))


def check_struct(value, member, allowed, union=False):
    if value is None:
        raise ApiError("ValidationException", "1 validation error detected: "
                       "Value null at '%s' failed to satisfy constraint: "
                       "Member must not be null" % member)
    if not isinstance(value, dict):
        raise ApiError("SerializationException",
                       "Unexpected type for member %s" % member)
    extra = sorted(set(value) - set(allowed))
    if extra:
        raise ApiError("ValidationException", "Unknown member(s) %s in %s"
                       % (", ".join(extra), member))
    if union and len([v for v in value.values() if v is not None]) != 1:
        raise ApiError("ValidationException", "%s must have exactly one "
                       "member set (union)" % member)


def split_s3(uri):
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.gen = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.gen += 1
            self.cfg = dict(DEFAULTS)
            self.callers = {}
            for c in self.args.caller:
                akid, secret, token = (c.split(":", 2) + [None])[:3]
                self.callers[akid] = {"secret": secret, "token": token}
            self.stats = {k: 0 for k in STATS0}
            self.jobs, self.by_token, self.order = {}, {}, []

    def configure(self, upd):
        with self.lock:
            for k, v in upd.items():
                if k == "callers":
                    for akid, c in v.items():
                        c = {"secret": c} if isinstance(c, str) else dict(c)
                        self.callers[akid] = c
                elif k in DEFAULTS:
                    self.cfg[k] = v
                else:
                    raise ValueError("unknown setting %r" % k)
            return dict(self.cfg, callers=sorted(self.callers))

    def take_fault(self):
        with self.lock:
            if self.cfg["throttle_next"] > 0:
                self.cfg["throttle_next"] -= 1
                self.stats["throttled"] += 1
                raise ApiError("ThrottlingException", "Rate exceeded")
            if self.cfg["fail_5xx_next"] > 0:
                self.cfg["fail_5xx_next"] -= 1
                self.stats["failed_5xx"] += 1
                raise ApiError("InternalServerException",
                               "Internal server error (injected)")

    def count(self, key):
        with self.lock:
            self.stats[key] += 1

    def snapshot(self):
        with self.lock:
            out = dict(self.stats)
            out["jobs"] = [{
                "JobId": j["JobId"], "ClientToken": j["ClientToken"],
                "JobName": j["JobName"], "status": j["status"],
                "DatastoreId": j["DatastoreId"],
                "InputS3Uri": j["InputS3Uri"],
                "OutputS3Uri": j["OutputS3Uri"], "KmsKeyId": j["KmsKeyId"],
                "DataAccessRoleArn": j["DataAccessRoleArn"],
                "resources_imported": j["report"][
                    "TotalNumberOfResourcesImported"],
                "per_type": dict(j["per_type"]), "Message": j["Message"],
                "manifest_key": j["manifest_key"]}
                for j in (self.jobs[i] for i in self.order)]
            return out

    # --- SigV4 -------------------------------------------------------------
    def verify(self, handler, body):
        auth = handler.headers.get("Authorization")
        if not auth:
            raise ApiError("MissingAuthenticationTokenException",
                           "Missing Authentication Token")
        m = AUTH.match(auth.strip())
        if not m:
            raise ApiError("IncompleteSignatureException",
                           "Authorization header requires 'Credential', "
                           "'Signature' and 'SignedHeaders' parameters")
        cred, signed, sig = m.groups()
        parts = cred.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise ApiError("IncompleteSignatureException",
                           "Credential must have exactly 5 slash-delimited "
                           "elements, e.g. keyid/date/region/service/term")
        akid, day, region, service = parts[:4]
        amz_date = handler.headers.get("X-Amz-Date")
        if not amz_date:
            raise ApiError("IncompleteSignatureException", "Authorization "
                           "header requires existence of either a "
                           "'X-Amz-Date' or a 'Date' header.")
        try:
            when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=dt.timezone.utc)
        except ValueError:
            raise ApiError("IncompleteSignatureException",
                           "Invalid X-Amz-Date '%s'" % amz_date)
        bad = "InvalidSignatureException"
        if service != "healthlake":
            raise ApiError(bad, "Credential should be scoped to correct "
                           "service: 'healthlake'.")
        if region != self.args.region:
            raise ApiError(bad, "Credential should be scoped to a valid "
                           "region, not '%s'." % region)
        if day != amz_date[:8]:
            raise ApiError(bad, "Date in Credential scope does not match "
                           "YYYYMMDD from ISO-8601 version of date from "
                           "HTTP: '%s' != '%s'" % (day, amz_date[:8]))
        now = dt.datetime.now(dt.timezone.utc)
        if abs((now - when).total_seconds()) > 900:
            raise ApiError(bad, "Signature expired: %s is now earlier than "
                           "%s (%s - 15 min.)" % (
                               amz_date, (now - dt.timedelta(minutes=15))
                               .strftime("%Y%m%dT%H%M%SZ"),
                               now.strftime("%Y%m%dT%H%M%SZ")))
        names = signed.split(";")
        if "host" not in names:
            raise ApiError(bad, "'Host' or ':authority' must be a "
                           "'SignedHeader' in the AWS Authorization.")
        token = handler.headers.get("X-Amz-Security-Token")
        if token is not None and "x-amz-security-token" not in names:
            raise ApiError(bad, "'X-Amz-Security-Token' must be a "
                           "'SignedHeader' in the AWS Authorization.")
        with self.lock:
            caller = dict(self.callers.get(akid) or {})
        if not caller or (caller.get("token") or None) != token:
            raise ApiError("UnrecognizedClientException", "The security "
                           "token included in the request is invalid.")
        req = botocore.awsrequest.AWSRequest(
            method=handler.command, url="http://localhost" + handler.path,
            data=body)
        for n in names:
            vals = handler.headers.get_all(n)
            if vals is None:
                raise ApiError(bad, "The request signature we calculated "
                               "does not match the signature you provided. "
                               "Signed header '%s' is missing." % n)
            for v in vals:
                req.headers[n] = v
        req.context["timestamp"] = amz_date
        signer = ExactSigner(botocore.credentials.Credentials(
            akid, caller["secret"], token), "healthlake", self.args.region)
        creq = signer.canonical_request(req)
        expect = signer.signature(signer.string_to_sign(req, creq), req)
        if not hmac.compare_digest(expect, sig):
            raise ApiError(bad, "The request signature we calculated does "
                           "not match the signature you provided. Check "
                           "your AWS Secret Access Key and signing method. "
                           "Consult the service documentation for details.")
        if caller.get("expired"):
            raise ApiError("ExpiredTokenException", "The security token "
                           "included in the request is expired")

    # --- operations --------------------------------------------------------
    def datastore(self, ds_id):
        if ds_id not in self.args.datastore_id:
            raise ApiError("ResourceNotFoundException", "Datastore with id "
                           "%s does not exist" % ds_id)

    def op_datastore(self, req):
        check_struct(req, "DescribeFHIRDatastoreRequest", {"DatastoreId"})
        ds = req.get("DatastoreId")
        check_str(ds, "datastoreId", 1, 32, fn=name_ok)
        self.datastore(ds)
        with self.lock:
            status = self.cfg["datastore_status"]
        r = self.args.region
        return {"DatastoreProperties": {
            "DatastoreId": ds,
            "DatastoreArn": "arn:aws:healthlake:%s:%s:datastore/fhir/%s"
                            % (r, ACCOUNT, ds),
            "DatastoreName": "bcdad-test-" + ds[:8],
            "DatastoreStatus": status, "CreatedAt": self.args.started,
            "DatastoreTypeVersion": "R4",
            "DatastoreEndpoint": "https://healthlake.%s.amazonaws.com/"
                                 "datastore/%s/r4/" % (r, ds)}}

    def op_start(self, req):
        check_struct(req, "StartFHIRImportJobRequest", JOB_SPEC)
        check_str(req.get("JobName"), "jobName", 1, 64, fn=name_ok,
                  required=False)
        inp = req.get("InputDataConfig")
        check_struct(inp, "inputDataConfig", {"S3Uri"}, union=True)
        check_str(inp.get("S3Uri"), "inputDataConfig.s3Uri", 1, 1024, S3URI)
        out = req.get("JobOutputDataConfig")
        check_struct(out, "jobOutputDataConfig", {"S3Configuration"},
                     union=True)
        s3c = out.get("S3Configuration")
        check_struct(s3c, "jobOutputDataConfig.s3Configuration",
                     {"S3Uri", "KmsKeyId"})
        check_str(s3c.get("S3Uri"), "jobOutputDataConfig.s3Configuration."
                  "s3Uri", 1, 1024, S3URI)
        check_str(s3c.get("KmsKeyId"), "jobOutputDataConfig.s3Configuration."
                  "kmsKeyId", 1, 400, KMS)
        ds = req.get("DatastoreId")
        check_str(ds, "datastoreId", 1, 32, fn=name_ok)
        role = req.get("DataAccessRoleArn")
        check_str(role, "dataAccessRoleArn", 20, 2048, ROLE)
        tok = req.get("ClientToken")
        check_str(tok, "clientToken", 1, 64, TOKEN)
        vl = req.get("ValidationLevel")
        if vl is not None and vl not in ("strict", "structure-only",
                                         "minimal"):
            raise ApiError("ValidationException", "1 validation error "
                           "detected: Value '%s' at 'validationLevel' failed "
                           "to satisfy constraint: Member must satisfy enum "
                           "value set: [strict, structure-only, minimal]"
                           % vl)
        self.datastore(ds)
        allowed = self.args.allowed_role_arn
        if allowed and role != allowed:
            raise ApiError("AccessDeniedException", "Access denied: HealthLake"
                           " cannot assume role %s" % role)
        params = {k: v for k, v in req.items() if k != "ClientToken"}
        with self.lock:
            if self.cfg["refuse_start"]:
                raise ApiError("ValidationException",
                               str(self.cfg["refuse_start"]))
            if self.cfg["datastore_status"] != "ACTIVE":
                raise ApiError("ValidationException", "Datastore %s is not in "
                               "ACTIVE state" % ds)
            old = self.by_token.get(tok)
            if old is not None:
                job = self.jobs[old]
                if job["params"] != params:
                    raise ApiError("ValidationException", "ClientToken %s was "
                                   "already used with different parameters"
                                   % tok)
                return {"JobId": old, "JobStatus": job["status"],
                        "DatastoreId": ds}, 0
            job_id = uuid.uuid4().hex
            job = {"JobId": job_id, "JobName": req.get("JobName"),
                   "ClientToken": tok, "params": params, "DatastoreId": ds,
                   "InputDataConfig": inp, "JobOutputDataConfig": out,
                   "InputS3Uri": inp["S3Uri"], "OutputS3Uri": s3c["S3Uri"],
                   "KmsKeyId": s3c["KmsKeyId"], "DataAccessRoleArn": role,
                   "status": "SUBMITTED", "SubmitTime": time.time(),
                   "EndTime": None, "Message": None, "per_type": {},
                   "report": self.progress(None, False),
                   "manifest_key": None,
                   "outcome": self.cfg["job_outcome"],
                   "t_sub": float(self.cfg["submitted_seconds"]),
                   "t_prog": float(self.cfg["in_progress_seconds"]),
                   "unknown_first": self.cfg["unknown_status_first"]}
            self.jobs[job_id] = job
            self.by_token[tok] = job_id
            self.order.append(job_id)
            self.stats["jobs_created"] += 1
            hold = float(self.cfg["hold_start_seconds"])
            gen = self.gen
        threading.Thread(target=self.run_job, args=(job, gen),
                         daemon=True).start()
        return {"JobId": job_id, "JobStatus": "SUBMITTED",
                "DatastoreId": ds}, hold

    def op_describe(self, req):
        check_struct(req, "DescribeFHIRImportJobRequest",
                     {"DatastoreId", "JobId"})
        check_str(req.get("DatastoreId"), "datastoreId", 1, 32, fn=name_ok)
        check_str(req.get("JobId"), "jobId", 1, 32, fn=name_ok)
        self.datastore(req["DatastoreId"])
        with self.lock:
            job = self.jobs.get(req["JobId"])
            if job is None or job["DatastoreId"] != req["DatastoreId"]:
                raise ApiError("ResourceNotFoundException", "Import job %s "
                               "not found" % req["JobId"])
            status = job["status"]
            if job["unknown_first"]:
                u = job["unknown_first"]
                status = u if isinstance(u, str) else "QUEUED"
                job["unknown_first"] = False
            p = {"JobId": job["JobId"], "JobStatus": status,
                 "SubmitTime": job["SubmitTime"],
                 "DatastoreId": job["DatastoreId"],
                 "InputDataConfig": job["InputDataConfig"],
                 "JobOutputDataConfig": job["JobOutputDataConfig"],
                 "DataAccessRoleArn": job["DataAccessRoleArn"],
                 "JobProgressReport": dict(job["report"])}
            for k in ("JobName", "EndTime", "Message"):
                if job[k] is not None:
                    p[k] = job[k]
        return {"ImportJobProperties": p}

    # --- job worker --------------------------------------------------------
    @staticmethod
    def progress(scan, imported):
        s = scan or {"files": 0, "ndjson": 0, "bytes": 0, "lines": 0,
                     "good": 0, "bad": 0, "bad_files": 0}
        return {"TotalNumberOfScannedFiles": s["files"],
                "TotalSizeOfScannedFilesInMB": round(s["bytes"] / 1048576, 6),
                "TotalNumberOfImportedFiles": s["ndjson"] if imported else 0,
                "TotalNumberOfResourcesScanned": s["lines"],
                "TotalNumberOfResourcesImported": s["good"] if imported else 0,
                "TotalNumberOfResourcesWithCustomerError": s["bad"],
                "TotalNumberOfFilesReadWithCustomerError": s["bad_files"],
                "Throughput": 0.0}

    def s3(self):
        session = botocore.session.Session()
        return session.create_client(
            "s3", endpoint_url=self.args.s3_endpoint,
            region_name=self.args.region,
            aws_access_key_id=self.args.access_key,
            aws_secret_access_key=self.args.secret_key,
            config=botocore.config.Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 3}))

    def scan(self, s3, uri):
        bucket, prefix = split_s3(uri)
        keys, kw = [], {"Bucket": bucket}
        while True:    # whole bucket, no Prefix (aws.md section 8)
            page = s3.list_objects_v2(**kw)
            keys += [o["Key"] for o in page.get("Contents", [])
                     if o["Key"].startswith(prefix)
                     and not o["Key"].endswith("/")]
            if not page.get("IsTruncated"):
                break
            kw["ContinuationToken"] = page["NextContinuationToken"]
        s = {"files": 0, "ndjson": 0, "bytes": 0, "lines": 0, "good": 0,
             "bad": 0, "bad_files": 0, "per_type": {}}
        for key in keys:
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            s["files"] += 1
            s["bytes"] += len(data)
            if not key.endswith(".ndjson"):
                s["bad_files"] += 1
                continue
            s["ndjson"] += 1
            for line in data.split(b"\n"):
                if not line.strip():
                    continue
                s["lines"] += 1
                try:
                    obj = json.loads(line)
                    rt = obj.get("resourceType")
                except (ValueError, AttributeError):
                    rt = None
                if isinstance(rt, str) and rt:
                    s["good"] += 1
                    s["per_type"][rt] = s["per_type"].get(rt, 0) + 1
                else:
                    s["bad"] += 1
        return s

    def run_job(self, job, gen):
        try:
            s3 = self.s3()
        except Exception:
            s3 = None       # every S3 call below then fails: job FAILED
        time.sleep(job["t_sub"])
        scan = err = None
        try:
            scan = self.scan(s3, job["InputS3Uri"])
        except Exception as e:
            err = e
        with self.lock:
            if gen != self.gen:
                return
            job["status"] = "IN_PROGRESS"
            job["report"] = self.progress(scan, False)
        time.sleep(job["t_prog"])
        err = None
        try:
            scan = self.scan(s3, job["InputS3Uri"])
        except Exception as e:
            err = e
        outcome, msg = job["outcome"], None
        if err is not None:
            outcome, msg = "FAILED", "Import failed: unable to read input " \
                "data from %s: %s" % (job["InputS3Uri"], err)
        elif scan["files"] == 0:
            outcome, msg = "FAILED", "Import failed: no input files found " \
                "under %s" % job["InputS3Uri"]
        elif outcome == "FAILED":
            msg = "Import failed: simulated failure (fake job_outcome)"
        elif outcome == "COMPLETED" and (scan["bad"] or scan["bad_files"]):
            outcome = "COMPLETED_WITH_ERRORS"
        if outcome == "COMPLETED_WITH_ERRORS" and msg is None:
            msg = "Import completed with errors: %d resources and %d files " \
                  "with customer error" % (scan["bad"], scan["bad_files"])
        imported = outcome != "FAILED"
        bucket, prefix = split_s3(job["OutputS3Uri"])
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        mkey = "%s%s-manifest.json" % (prefix, job["JobId"])
        manifest = {"JobId": job["JobId"], "JobStatus": outcome,
                    "InputS3Uri": job["InputS3Uri"],
                    "success": {"files": scan["ndjson"] if scan else 0,
                                "resources": scan["good"]
                                if scan and imported else 0,
                                "per_type": scan["per_type"]
                                if scan and imported else {}},
                    "failure": {"files": scan["bad_files"] if scan else 0,
                                "resources": scan["bad"] if scan else 0}}
        with self.lock:
            if gen != self.gen:
                return      # reset meanwhile: leave S3 alone
        try:
            s3.put_object(Bucket=bucket, Key=mkey,
                          Body=json.dumps(manifest, indent=1).encode(),
                          ContentType="application/json",
                          ServerSideEncryption="aws:kms",
                          SSEKMSKeyId=job["KmsKeyId"])
        except Exception as e:
            mkey, imported, outcome = None, False, "FAILED"
            msg = "Import failed: unable to write output to %s: %s" % (
                job["OutputS3Uri"], e)
        with self.lock:
            if gen != self.gen:
                return
            job["status"], job["Message"] = outcome, msg
            job["EndTime"] = time.time()
            job["report"] = self.progress(scan, imported)
            job["per_type"] = dict(scan["per_type"]) \
                if scan and imported else {}
            job["manifest_key"] = mkey


class ExactSigner(botocore.auth.SigV4Auth):
    """SigV4Auth over exactly the headers the request put in SignedHeaders
    (botocore would otherwise drop user-agent, expect, x-amzn-trace-id)."""

    def headers_to_sign(self, request):
        h = botocore.awsrequest.HTTPHeaders()
        for name, value in request.headers.items():
            h[name.lower()] = value
        return h


OPS = {"HealthLake.StartFHIRImportJob": ("op_start", "start_calls"),
       "HealthLake.DescribeFHIRImportJob": ("op_describe", "describe_calls"),
       "HealthLake.DescribeFHIRDatastore": ("op_datastore", "datastore_calls")}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "healthlake-fake/1"
    state = None        # set in main()

    def log_message(self, fmt, *args):
        pass

    def log_line(self, status, what):
        sys.stderr.write("healthlake_fake: %s %s %s -> %s\n" % (
            self.command, self.path.split("?")[0], what, status))
        sys.stderr.flush()

    def send(self, status, obj, what="", ctype="application/x-amz-json-1.0"):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if status >= 400 and "__type" in obj:
            self.send_header("x-amzn-ErrorType", obj["__type"])
        self.end_headers()
        self.wfile.write(data)
        self.log_line(status, what)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self):
        st = self.state
        if self.path == "/_fake/stats":
            return self.send(200, st.snapshot(), "stats", "application/json")
        if self.path == "/_fake/config":
            with st.lock:
                cfg = dict(st.cfg, callers=sorted(st.callers))
            return self.send(200, cfg, "config", "application/json")
        self.send(404, {"__type": "UnknownOperationException",
                        "message": "Not found"}, "GET")

    def do_POST(self):
        st = self.state
        body = self.body()
        if self.path.startswith("/_fake/"):
            try:
                if self.path == "/_fake/reset":
                    st.reset()
                    return self.send(200, {"ok": True}, "reset",
                                     "application/json")
                if self.path == "/_fake/config":
                    upd = json.loads(body or b"{}")
                    if not isinstance(upd, dict):
                        raise ValueError("config must be a JSON object")
                    return self.send(200, st.configure(upd), "config",
                                     "application/json")
            except (ValueError, AttributeError, TypeError) as e:
                return self.send(400, {"error": str(e)}, "control",
                                 "application/json")
            return self.send(404, {"error": "no such control"}, "control",
                             "application/json")
        target = self.headers.get("X-Amz-Target", "")
        what = target.rpartition(".")[2] or "-"
        try:
            try:
                st.verify(self, body)
            except ApiError as e:
                st.count({"InvalidSignatureException": "bad_signatures",
                          "UnrecognizedClientException": "unknown_callers"}
                         .get(e.kind, "auth_errors"))
                raise
            if self.path != "/" or target not in OPS:
                raise ApiError("UnknownOperationException",
                               "Unknown operation %s" % target)
            ctype = (self.headers.get("Content-Type") or "").split(";")[0]
            if ctype.strip().lower() != "application/x-amz-json-1.0":
                raise ApiError("SerializationException", "Content-Type must "
                               "be application/x-amz-json-1.0")
            method, counter = OPS[target]
            st.count(counter)
            st.take_fault()
            try:
                req = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise ApiError("SerializationException",
                               "Request body is not valid JSON")
            if not isinstance(req, dict):
                raise ApiError("SerializationException",
                               "Request body must be a JSON object")
            res = getattr(st, method)(req)
            if method == "op_start":
                res, hold = res
                if hold > 0:
                    time.sleep(hold)
            self.send(200, res, what)
        except ApiError as e:
            key = {"ValidationException": "validation_errors",
                   "AccessDeniedException": "access_denied",
                   "ResourceNotFoundException": "not_found"}.get(e.kind)
            if key:
                st.count(key)
            self.send(STATUS[e.kind], {"__type": e.kind,
                                       "message": e.message},
                      "%s %s" % (what, e.kind))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--portfile")
    ap.add_argument("--s3-endpoint", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--caller", action="append", default=[],
                    help="KEY:SECRET[:SESSION_TOKEN], repeatable")
    ap.add_argument("--datastore-id", action="append", default=[])
    ap.add_argument("--allowed-role-arn")
    args = ap.parse_args()
    args.datastore_id = args.datastore_id or [DEFAULT_DATASTORE]
    args.started = time.time()
    for var in ("NO_PROXY", "no_proxy"):
        os.environ[var] = ",".join(filter(None, [os.environ.get(var),
                                                 "127.0.0.1", "localhost"]))
    Handler.state = State(args)
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    if args.portfile:
        tmp = args.portfile + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.portfile)
    sys.stderr.write("healthlake_fake: listening on 127.0.0.1:%d\n" % port)
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
