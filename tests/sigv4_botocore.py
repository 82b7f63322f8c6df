#!/usr/bin/python3
"""Signs request shapes with botocore, the reference SigV4 signer.

tests/unit/test_sigv4.c runs this with Debian's /usr/bin/python3 (package
python3-botocore) and compares each Authorization header with lib/sigv4.c's,
byte for byte.

stdin: a JSON list of shapes, each
    {"method": "PUT", "url": "https://host[:port]/path?query",
     "headers": [["Name", "value"], ...],   # every header to sign except
                                            # Host (botocore derives it from
                                            # the URL) and X-Amz-Date
     "body_hex": "...", "region": "us-east-1", "service": "s3",
     "time": "20260115T120000Z",
     "access_key_id": "...", "secret_access_key": "...", "token": null,
     "s3": true,                  # S3SigV4Auth, else SigV4Auth
     "unsigned_payload": false}   # S3 only: X-Amz-Content-SHA256 UNSIGNED-PAYLOAD
stdout: one line per shape, "<Authorization>\t<canonical request as JSON>".
Exit status 2 if botocore cannot be imported.
"""
import contextlib
import datetime
import json
import sys
import types
from unittest import mock

try:
    import botocore
    import botocore.auth
    import botocore.awsrequest
    import botocore.config
    import botocore.credentials
except ImportError as e:
    sys.stderr.write("sigv4_botocore.py: cannot import botocore (%s); "
                     "install python3-botocore (make deps)\n" % e)
    sys.exit(2)


def fixed_clock(stamp):
    """A stand-in for botocore.auth's datetime module whose utcnow() is
    the given X-Amz-Date; SigV4Auth.add_auth reads the clock itself."""
    when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")

    class FixedDatetime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return when

        @classmethod
        def now(cls, tz=None):
            return when if tz is None else when.replace(tzinfo=tz)

    return types.SimpleNamespace(datetime=FixedDatetime,
                                 timezone=datetime.timezone,
                                 timedelta=datetime.timedelta)


def sign(shape):
    creds = botocore.credentials.Credentials(
        shape["access_key_id"], shape["secret_access_key"],
        shape.get("token"))
    request = botocore.awsrequest.AWSRequest(
        method=shape["method"], url=shape["url"],
        data=bytes.fromhex(shape.get("body_hex", "")))
    for name, value in shape["headers"]:
        # HTTPHeaders appends on assignment, so duplicates are kept in order.
        request.headers[name] = value
    if shape.get("s3"):
        signer = botocore.auth.S3SigV4Auth(creds, shape["service"],
                                           shape["region"])
        if shape.get("unsigned_payload"):
            request.context["client_config"] = botocore.config.Config(
                s3={"payload_signing_enabled": False})
    else:
        signer = botocore.auth.SigV4Auth(creds, shape["service"],
                                         shape["region"])
    # Keep the canonical request add_auth computes, for diagnostics.
    creqs = []
    real_creq = signer.canonical_request
    signer.canonical_request = lambda r: creqs.append(real_creq(r)) or creqs[-1]
    clock = fixed_clock(shape["time"])
    with contextlib.ExitStack() as stack:
        # botocore 1.29 calls datetime.datetime.utcnow(); newer releases
        # call botocore.compat.get_current_datetime(), imported into auth.
        stack.enter_context(mock.patch.object(botocore.auth, "datetime", clock))
        if hasattr(botocore.auth, "get_current_datetime"):
            stack.enter_context(mock.patch.object(
                botocore.auth, "get_current_datetime",
                clock.datetime.utcnow))
        signer.add_auth(request)
    return request.headers["Authorization"], creqs[-1]


def main():
    shapes = json.load(sys.stdin)
    for shape in shapes:
        auth, creq = sign(shape)
        sys.stdout.write("%s\t%s\n" % (auth, json.dumps(creq)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
