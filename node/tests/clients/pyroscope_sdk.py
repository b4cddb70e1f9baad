"""Profiles a busy loop with the real Pyroscope Python SDK against the server at argv[1] for
argv[2] seconds, as application argv[3], authenticating with the token argv[4] (as the Basic
auth password) when given. pyroscope-io >= 1.0 uses push.v1.PusherService/Push (and takes
upload_interval); 0.8.x uses /ingest every 10 s."""
import inspect
import sys
import time

import pyroscope

options = dict(
    application_name=sys.argv[3],
    server_address=sys.argv[1],
    sample_rate=100,
    tags={"region": "eu-north"},
    tenant_id="py-tenant",
)
if len(sys.argv) > 4:
    options["basic_auth_username"] = "123456"
    options["basic_auth_password"] = sys.argv[4]
if "upload_interval" in inspect.signature(pyroscope.configure).parameters:
    options["upload_interval"] = 1
pyroscope.configure(**options)


def hot_python_function(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def cold_function():
    time.sleep(0.001)


deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    with pyroscope.tag_wrapper({"phase": "busy"}):
        hot_python_function(200_000)
    cold_function()

pyroscope.shutdown()
