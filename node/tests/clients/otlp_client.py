"""An OTLP profiles exporter built on the real `opentelemetry-proto` package (its generated
v1development messages and gRPC stub), with a converter from pprof files to OTLP written here,
as the test's own code: one shared dictionary per request, one OTLP profile per pprof sample
type, string pprof labels as sample attributes.

Usage: otlp_client.py HOST:PORT BASE_URL OUT_DIR TRACE_ID_HEX PPROF_FILE...

The first file goes over gRPC (ProfilesService/Export), the second over OTLP/HTTP as gzipped
protobuf, the rest as OTLP/HTTP JSON. Every sample of the first file carries a link to
TRACE_ID_HEX. Then malformed requests over each transport; prints a JSON summary.
"""
import gzip
import json
import os
import sys
import urllib.error
import urllib.request

from grpc_tools import protoc

proto_root = os.path.join(os.path.dirname(__file__), "..", "..", "proto")
out = sys.argv[3]
# google.rpc.Status, the body of an OTLP/HTTP error (googleapis' definition, without details).
os.makedirs(os.path.join(out, "rpc_proto", "google", "rpc"), exist_ok=True)
with open(os.path.join(out, "rpc_proto", "google", "rpc", "status.proto"), "w") as f:
    f.write('syntax = "proto3"; package google.rpc; '
            'message Status { int32 code = 1; string message = 2; }')
# Its module stays off sys.path, so that it cannot shadow the installed `google` package.
os.makedirs(os.path.join(out, "rpc_out"), exist_ok=True)
for include, proto, dest in [
    (proto_root, "perftools/profiles/profile.proto", out),
    (os.path.join(out, "rpc_proto"), "google/rpc/status.proto", os.path.join(out, "rpc_out")),
]:
    if protoc.main(["protoc", f"-I{include}", f"--python_out={dest}", proto]) != 0:
        sys.exit(f"protoc failed on {proto}")
sys.path.insert(0, out)

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from opentelemetry.proto.collector.profiles.v1development import (  # noqa: E402
    profiles_service_pb2 as service,
    profiles_service_pb2_grpc as service_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2 as common  # noqa: E402
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp  # noqa: E402
from opentelemetry.proto.resource.v1 import resource_pb2 as resource  # noqa: E402
from perftools.profiles import profile_pb2 as pprof  # noqa: E402

import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "status_pb2", os.path.join(out, "rpc_out", "google", "rpc", "status_pb2.py"))
status_pb2 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(status_pb2)

target, base_url, trace_id = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[4])
files = sys.argv[5:]


class Dictionary:
    """OTLP's shared tables; entry 0 of each is the zero value."""

    def __init__(self):
        self.d = otlp.ProfilesDictionary()
        self.d.string_table.append("")
        self.d.mapping_table.add()
        self.d.location_table.add()
        self.d.function_table.add()
        self.d.link_table.add()
        self.d.attribute_table.add()
        self.d.stack_table.add()
        self.strings, self.stacks, self.attributes, self.links = {"": 0}, {}, {}, {}

    def string(self, s):
        if s not in self.strings:
            self.strings[s] = len(self.d.string_table)
            self.d.string_table.append(s)
        return self.strings[s]

    def attribute(self, key, value):
        k = (key, value)
        if k not in self.attributes:
            self.attributes[k] = len(self.d.attribute_table)
            self.d.attribute_table.add(
                key_strindex=self.string(key), value=common.AnyValue(string_value=value))
        return self.attributes[k]

    def link(self, trace, span):
        if (trace, span) not in self.links:
            self.links[(trace, span)] = len(self.d.link_table)
            self.d.link_table.add(trace_id=trace, span_id=span)
        return self.links[(trace, span)]

    def add_pprof(self, p):
        """Copies a pprof's mappings, functions and locations; returns its location map."""
        s = p.string_table
        mappings, functions, locations = {}, {}, {}
        for m in p.mapping:
            mappings[m.id] = len(self.d.mapping_table)
            self.d.mapping_table.add(memory_start=m.memory_start, memory_limit=m.memory_limit,
                                     file_offset=m.file_offset,
                                     filename_strindex=self.string(s[m.filename]))
        for f in p.function:
            functions[f.id] = len(self.d.function_table)
            self.d.function_table.add(name_strindex=self.string(s[f.name]),
                                      system_name_strindex=self.string(s[f.system_name]),
                                      filename_strindex=self.string(s[f.filename]),
                                      start_line=f.start_line)
        for loc in p.location:
            locations[loc.id] = len(self.d.location_table)
            self.d.location_table.add(
                mapping_index=mappings.get(loc.mapping_id, 0), address=loc.address,
                lines=[otlp.Line(function_index=functions[line.function_id], line=line.line)
                       for line in loc.line])
        return locations

    def stack(self, location_indices):
        k = tuple(location_indices)
        if k not in self.stacks:
            self.stacks[k] = len(self.d.stack_table)
            self.d.stack_table.add(location_indices=location_indices)
        return self.stacks[k]


def to_otlp(path, link=None):
    """One pprof file as an ExportProfilesServiceRequest."""
    p = pprof.Profile()
    p.ParseFromString(gzip.decompress(open(path, "rb").read()))
    s = p.string_table
    d = Dictionary()
    locations = d.add_pprof(p)
    link_index = d.link(link, bytes.fromhex("00f067aa0ba902b7")) if link else 0
    scope = otlp.ScopeProfiles(scope=common.InstrumentationScope(name="firn-test-converter"))
    for k, sample_type in enumerate(p.sample_type):
        profile = scope.profiles.add(
            sample_type=otlp.ValueType(type_strindex=d.string(s[sample_type.type]),
                                       unit_strindex=d.string(s[sample_type.unit])),
            period_type=otlp.ValueType(type_strindex=d.string(s[p.period_type.type]),
                                       unit_strindex=d.string(s[p.period_type.unit])),
            period=p.period, time_unix_nano=p.time_nanos, duration_nano=p.duration_nanos)
        for sample in p.sample:
            if sample.value[k] == 0:
                continue
            attributes = [d.attribute(s[label.key], s[label.str])
                          for label in sample.label if label.str]
            profile.samples.add(
                stack_index=d.stack([locations[i] for i in sample.location_id]),
                attribute_indices=attributes, link_index=link_index, values=[sample.value[k]])
    request = service.ExportProfilesServiceRequest(dictionary=d.d)
    request.resource_profiles.add(
        resource=resource.Resource(attributes=[
            common.KeyValue(key="service.name", value=common.AnyValue(string_value="otel-go")),
            common.KeyValue(key="deployment.environment",
                            value=common.AnyValue(string_value="test")),
        ]),
        scope_profiles=[scope])
    return request


def http(body, content_type, encoding=None):
    request = urllib.request.Request(
        f"{base_url}/v1development/profiles", data=body, method="POST",
        headers={"Content-Type": content_type, **({"Content-Encoding": encoding} if encoding else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def hex_ids(value):
    """OTLP/JSON writes trace and span ids as hex, not protobuf JSON's base64."""
    import base64
    if isinstance(value, dict):
        return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "profileId")
                    else hex_ids(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [hex_ids(v) for v in value]
    return value


def status_of(fn):
    try:
        fn()
        return {"code": "OK"}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details()}


stub = service_grpc.ProfilesServiceStub(grpc.insecure_channel(target))
summary = {"sent": []}
for i, path in enumerate(files):
    request = to_otlp(path, trace_id if i == 0 else None)
    if i == 0:
        stub.Export(request, timeout=30)
        summary["sent"].append({"via": "grpc"})
    elif i == 1:
        status, ctype, body = http(gzip.compress(request.SerializeToString()),
                                   "application/x-protobuf", "gzip")
        reply = service.ExportProfilesServiceResponse()
        reply.ParseFromString(body)
        summary["sent"].append({"via": "http-proto", "status": status, "type": ctype})
    else:
        body = json.dumps(hex_ids(json_format.MessageToDict(request))).encode()
        status, ctype, reply = http(body, "application/json")
        summary["sent"].append({"via": "http-json", "status": status, "type": ctype,
                                "reply": json.loads(reply)})

# Malformed: index 0 of a table that is not the zero value; an index past its table; garbage.
bad_zero = to_otlp(files[0])
bad_zero.dictionary.string_table[0] = "not empty"
bad_index = to_otlp(files[0])
bad_index.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].stack_index = 10**6
summary["grpc_bad_zero"] = status_of(lambda: stub.Export(bad_zero, timeout=30))
status, ctype, body = http(bad_index.SerializeToString(), "application/x-protobuf")
rpc_status = status_pb2.Status()
rpc_status.ParseFromString(body)
summary["http_bad_index"] = {"status": status, "type": ctype, "code": rpc_status.code,
                             "message": rpc_status.message}
status, ctype, body = http(b"\xff\xff\xff not protobuf", "application/x-protobuf")
summary["http_garbage"] = {"status": status}
status, ctype, body = http(b'{"resourceProfiles": 7}', "application/json")
summary["http_bad_json"] = {"status": status, "type": ctype, "body": json.loads(body)}
status, ctype, body = http(b"", "text/plain")
summary["http_bad_type"] = {"status": status}
# Still serving after the refusals.
summary["again"] = status_of(lambda: stub.Export(service.ExportProfilesServiceRequest(),
                                                 timeout=30))
print(json.dumps(summary))
