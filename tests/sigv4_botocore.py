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

With --serialize, it shows instead what a botocore client would send
for whole API calls (tests/unit/test_awsapi.c compares bodies with it):
stdin: a JSON list of calls, each
    {"service": "sns", "operation": "Publish", "params": {...},
     "region": "us-east-1", "endpoint_url": null}
stdout: one JSON object per line,
    {"method": ..., "url": ..., "headers": {"Content-Type": ...,
     "X-Amz-Target": ...}, "body_hex": ...}
The request is captured before it is sent (nothing goes on the network)
and answered with an empty success.

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


def serialize(call):
    """The request a botocore client makes for one call, taken at
    before-send and answered there, so nothing leaves the process."""
    import botocore.session
    session = botocore.session.get_session()
    client = session.create_client(
        call["service"], region_name=call["region"],
        endpoint_url=call.get("endpoint_url"),
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x",
        config=botocore.config.Config(retries={"max_attempts": 1}))
    protocol = client.meta.service_model.metadata["protocol"]
    seen = []

    class Raw:
        def __init__(self, body):
            self.body = body

        def stream(self, **kwargs):
            yield self.body

    def before_send(request, **kwargs):
        seen.append(request)
        if protocol == "query":
            name = call["operation"]
            body = ("<%sResponse><%sResult/></%sResponse>"
                    % (name, name, name)).encode()
        else:
            body = b"{}"
        return botocore.awsrequest.AWSResponse(request.url, 200, {},
                                               Raw(body))

    client.meta.events.register("before-send", before_send)
    method = client.meta.method_to_api_mapping
    py_name = {v: k for k, v in method.items()}[call["operation"]]
    getattr(client, py_name)(**call["params"])
    request = seen[-1]
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = {}
    for name in ("Content-Type", "X-Amz-Target"):
        value = request.headers.get(name)
        if value is not None:
            headers[name] = value.decode() if isinstance(value, bytes) \
                else value
    return {"method": request.method, "url": request.url,
            "headers": headers, "body_hex": body.hex()}


def main():
    if sys.argv[1:] == ["--serialize"]:
        for call in json.load(sys.stdin):
            sys.stdout.write(json.dumps(serialize(call)) + "\n")
        return 0
    shapes = json.load(sys.stdin)
    for shape in shapes:
        auth, creq = sign(shape)
        sys.stdout.write("%s\t%s\n" % (auth, json.dumps(creq)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
