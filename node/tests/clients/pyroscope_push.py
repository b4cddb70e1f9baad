"""Profiles a busy loop with the real Pyroscope Python SDK (pyroscope-io >= 1.0, which uses
push.v1.PusherService/Push) against the server at argv[1], for argv[2] seconds."""
import sys
import time

import pyroscope

pyroscope.configure(
    application_name="pyapp",
    server_address=sys.argv[1],
    sample_rate=100,
    upload_interval=1,
    tags={"region": "eu-north"},
    tenant_id="py-tenant",
)


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
