"""A real gRPC client (grpcio, HTTP/2 over cleartext) and protobuf's reference JSON mapping
against a live `firn serve`.

Usage: grpc_client.py HOST:PORT PPROF_FILE TENANT

The messages are declared at run time with protobuf's descriptor API, field numbers as in
Pyroscope's .proto files, so nothing here shares code with the server. The script pushes
PPROF_FILE with push.v1.PusherService/Push over gRPC (gzip-compressed messages), calls the
querier over gRPC, calls some of it again over Connect JSON and parses the answers with
protobuf's own (strict) JSON parser, provokes errors, and prints a JSON summary that the Rust
test checks.
"""
import json
import sys
import time
import urllib.request

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "string": F.TYPE_STRING,
    "bytes": F.TYPE_BYTES,
    "int64": F.TYPE_INT64,
    "uint64": F.TYPE_UINT64,
    "uint32": F.TYPE_UINT32,
    "int32": F.TYPE_INT32,
    "double": F.TYPE_DOUBLE,
    "bool": F.TYPE_BOOL,
}
POOL = descriptor_pool.DescriptorPool()


def add_file(package, deps, messages, enums=()):
    """messages: [(name, [(field, number, "[repeated|optional] type")])]; a type is a scalar,
    a message as ".pkg.Name", or an enum as "enum .pkg.Name"."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name=package.replace(".", "/") + ".proto", package=package, syntax="proto3"
    )
    fdp.dependency.extend(d.replace(".", "/") + ".proto" for d in deps)
    for name, values in enums:
        e = fdp.enum_type.add(name=name)
        for value_name, number in values:
            e.value.add(name=value_name, number=number)
    for name, fields in messages:
        m = fdp.message_type.add(name=name)
        for field, number, spec in fields:
            words = spec.split()
            f = m.field.add(name=field, number=number, label=F.LABEL_OPTIONAL)
            if words[0] == "repeated":
                f.label = F.LABEL_REPEATED
                words = words[1:]
            elif words[0] == "optional":
                f.proto3_optional = True
                f.oneof_index = len(m.oneof_decl)
                m.oneof_decl.add(name="_" + field)
                words = words[1:]
            if words[0] == "enum":
                f.type = F.TYPE_ENUM
                f.type_name = words[1]
            elif words[0].startswith("."):
                f.type = F.TYPE_MESSAGE
                f.type_name = words[0]
            else:
                f.type = SCALARS[words[0]]
    POOL.Add(fdp)


add_file(
    "types.v1",
    [],
    [
        ("LabelPair", [("name", 1, "string"), ("value", 2, "string")]),
        ("ProfileAnnotation", [("key", 1, "string"), ("value", 2, "string")]),
        (
            "ProfileType",
            [
                ("ID", 1, "string"),
                ("name", 2, "string"),
                ("sample_type", 4, "string"),
                ("sample_unit", 5, "string"),
                ("period_type", 6, "string"),
                ("period_unit", 7, "string"),
            ],
        ),
        ("Labels", [("labels", 1, "repeated .types.v1.LabelPair")]),
        (
            "Series",
            [("labels", 1, "repeated .types.v1.LabelPair"), ("points", 2, "repeated .types.v1.Point")],
        ),
        (
            "Point",
            [
                ("value", 1, "double"),
                ("timestamp", 2, "int64"),
                ("annotations", 3, "repeated .types.v1.ProfileAnnotation"),
            ],
        ),
        (
            "LabelNamesRequest",
            [("matchers", 1, "repeated string"), ("start", 2, "int64"), ("end", 3, "int64")],
        ),
        ("LabelNamesResponse", [("names", 1, "repeated string")]),
        (
            "LabelValuesRequest",
            [
                ("name", 1, "string"),
                ("matchers", 2, "repeated string"),
                ("start", 3, "int64"),
                ("end", 4, "int64"),
            ],
        ),
        ("LabelValuesResponse", [("names", 1, "repeated string")]),
        ("Location", [("name", 1, "string")]),
        ("GoPGO", [("keep_locations", 1, "uint32"), ("aggregate_callees", 2, "bool")]),
        (
            "StackTraceSelector",
            [("call_site", 1, "repeated .types.v1.Location"), ("go_pgo", 2, ".types.v1.GoPGO")],
        ),
    ],
    enums=[
        (
            "TimeSeriesAggregationType",
            [("TIME_SERIES_AGGREGATION_TYPE_SUM", 0), ("TIME_SERIES_AGGREGATION_TYPE_AVERAGE", 1)],
        )
    ],
)
add_file(
    "push.v1",
    ["types.v1"],
    [
        (
            "RawSample",
            [("raw_profile", 1, "bytes"), ("ID", 2, "string")],
        ),
        (
            "RawProfileSeries",
            [
                ("labels", 1, "repeated .types.v1.LabelPair"),
                ("samples", 2, "repeated .push.v1.RawSample"),
                ("annotations", 3, "repeated .types.v1.ProfileAnnotation"),
            ],
        ),
        ("PushRequest", [("series", 1, "repeated .push.v1.RawProfileSeries")]),
        ("PushResponse", []),
    ],
)
add_file(
    "google.v1",
    [],
    [
        ("ValueType", [("type", 1, "int64"), ("unit", 2, "int64")]),
        (
            "Sample",
            [
                ("location_id", 1, "repeated uint64"),
                ("value", 2, "repeated int64"),
                ("label", 3, "repeated .google.v1.Label"),
            ],
        ),
        (
            "Label",
            [("key", 1, "int64"), ("str", 2, "int64"), ("num", 3, "int64"), ("num_unit", 4, "int64")],
        ),
        (
            "Mapping",
            [
                ("id", 1, "uint64"),
                ("memory_start", 2, "uint64"),
                ("memory_limit", 3, "uint64"),
                ("file_offset", 4, "uint64"),
                ("filename", 5, "int64"),
                ("build_id", 6, "int64"),
                ("has_functions", 7, "bool"),
                ("has_filenames", 8, "bool"),
                ("has_line_numbers", 9, "bool"),
                ("has_inline_frames", 10, "bool"),
            ],
        ),
        (
            "Location",
            [
                ("id", 1, "uint64"),
                ("mapping_id", 2, "uint64"),
                ("address", 3, "uint64"),
                ("line", 4, "repeated .google.v1.Line"),
                ("is_folded", 5, "bool"),
            ],
        ),
        ("Line", [("function_id", 1, "uint64"), ("line", 2, "int64")]),
        (
            "Function",
            [
                ("id", 1, "uint64"),
                ("name", 2, "int64"),
                ("system_name", 3, "int64"),
                ("filename", 4, "int64"),
                ("start_line", 5, "int64"),
            ],
        ),
        (
            "Profile",
            [
                ("sample_type", 1, "repeated .google.v1.ValueType"),
                ("sample", 2, "repeated .google.v1.Sample"),
                ("mapping", 3, "repeated .google.v1.Mapping"),
                ("location", 4, "repeated .google.v1.Location"),
                ("function", 5, "repeated .google.v1.Function"),
                ("string_table", 6, "repeated string"),
                ("drop_frames", 7, "int64"),
                ("keep_frames", 8, "int64"),
                ("time_nanos", 9, "int64"),
                ("duration_nanos", 10, "int64"),
                ("period_type", 11, ".google.v1.ValueType"),
                ("period", 12, "int64"),
                ("comment", 13, "repeated int64"),
                ("default_sample_type", 14, "int64"),
            ],
        ),
    ],
)
add_file(
    "querier.v1",
    ["types.v1", "google.v1"],
    [
        ("ProfileTypesRequest", [("start", 1, "int64"), ("end", 2, "int64")]),
        ("ProfileTypesResponse", [("profile_types", 1, "repeated .types.v1.ProfileType")]),
        (
            "SeriesRequest",
            [
                ("matchers", 1, "repeated string"),
                ("label_names", 2, "repeated string"),
                ("start", 3, "int64"),
                ("end", 4, "int64"),
            ],
        ),
        ("SeriesResponse", [("labels_set", 2, "repeated .types.v1.Labels")]),
        (
            "SelectMergeStacktracesRequest",
            [
                ("profile_typeID", 1, "string"),
                ("label_selector", 2, "string"),
                ("start", 3, "int64"),
                ("end", 4, "int64"),
                ("max_nodes", 5, "optional int64"),
                ("format", 6, "enum .querier.v1.ProfileFormat"),
                ("stack_trace_selector", 7, ".types.v1.StackTraceSelector"),
                ("profile_id_selector", 8, "repeated string"),
            ],
        ),
        ("Level", [("values", 1, "repeated int64")]),
        (
            "FlameGraph",
            [
                ("names", 1, "repeated string"),
                ("levels", 2, "repeated .querier.v1.Level"),
                ("total", 3, "int64"),
                ("max_self", 4, "int64"),
            ],
        ),
        (
            "FlameGraphDiff",
            [
                ("names", 1, "repeated string"),
                ("levels", 2, "repeated .querier.v1.Level"),
                ("total", 3, "int64"),
                ("max_self", 4, "int64"),
                ("leftTicks", 5, "int64"),
                ("rightTicks", 6, "int64"),
            ],
        ),
        ("PprofProfile", [("profile", 1, ".google.v1.Profile")]),
        (
            "SelectMergeStacktracesResponse",
            [
                ("flamegraph", 1, ".querier.v1.FlameGraph"),
                ("tree", 2, "bytes"),
                ("pprof", 5, ".querier.v1.PprofProfile"),
            ],
        ),
        (
            "SelectMergeProfileRequest",
            [
                ("profile_typeID", 1, "string"),
                ("label_selector", 2, "string"),
                ("start", 3, "int64"),
                ("end", 4, "int64"),
                ("max_nodes", 5, "optional int64"),
            ],
        ),
        (
            "SelectSeriesRequest",
            [
                ("profile_typeID", 1, "string"),
                ("label_selector", 2, "string"),
                ("start", 3, "int64"),
                ("end", 4, "int64"),
                ("group_by", 5, "repeated string"),
                ("step", 6, "double"),
                ("aggregation", 7, "optional enum .types.v1.TimeSeriesAggregationType"),
                ("limit", 9, "optional int64"),
            ],
        ),
        ("SelectSeriesResponse", [("series", 1, "repeated .types.v1.Series")]),
        (
            "DiffRequest",
            [
                ("left", 1, ".querier.v1.SelectMergeStacktracesRequest"),
                ("right", 2, ".querier.v1.SelectMergeStacktracesRequest"),
            ],
        ),
        ("DiffResponse", [("flamegraph", 1, ".querier.v1.FlameGraphDiff")]),
    ],
    enums=[
        (
            "ProfileFormat",
            [
                ("PROFILE_FORMAT_UNSPECIFIED", 0),
                ("PROFILE_FORMAT_FLAMEGRAPH", 1),
                ("PROFILE_FORMAT_TREE", 2),
                ("PROFILE_FORMAT_DOT", 3),
                ("PROFILE_FORMAT_PPROF", 4),
            ],
        )
    ],
)


def message(full_name):
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


def rpc(channel, service, method, request_type, response_type):
    return channel.unary_unary(
        f"/{service}/{method}",
        request_serializer=message(request_type).SerializeToString,
        response_deserializer=message(response_type).FromString,
    )


def querier(channel, method, request_type, response_type):
    return rpc(
        channel, "querier.v1.QuerierService", method, request_type, response_type
    )


def pprof_total(profile, index=0):
    return sum(s.value[index] for s in profile.sample)


def function_names(profile):
    return sorted({profile.string_table[f.name] for f in profile.function})


def main():
    target, pprof_file, tenant = sys.argv[1], sys.argv[2], sys.argv[3]
    metadata = [("x-scope-orgid", tenant)]
    cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
    now_ms = int(time.time() * 1000)
    start, end = now_ms - 3_600_000, now_ms + 3_600_000
    selector = '{service_name="grpc-app"}'
    out = {}

    with open(pprof_file, "rb") as f:
        raw = f.read()
    Push = message("push.v1.PushRequest")
    push_request = Push(
        series=[
            dict(
                labels=[
                    dict(name="__name__", value="process_cpu"),
                    dict(name="service_name", value="grpc-app"),
                    dict(name="region", value="eu-north"),
                ],
                samples=[dict(raw_profile=raw, ID="grpc-1")],
            )
        ]
    )
    # Push with gzip-compressed messages (flag 1, grpc-encoding: gzip).
    with grpc.insecure_channel(target, compression=grpc.Compression.Gzip) as gz:
        push = rpc(gz, "push.v1.PusherService", "Push", "push.v1.PushRequest", "push.v1.PushResponse")
        push(push_request, metadata=metadata, timeout=10)
        out["push"] = "ok"

    with grpc.insecure_channel(target) as channel:
        ProfileTypesRequest = message("querier.v1.ProfileTypesRequest")
        types = querier(channel, "ProfileTypes", "querier.v1.ProfileTypesRequest", "querier.v1.ProfileTypesResponse")(
            ProfileTypesRequest(start=start, end=end), metadata=metadata, timeout=10
        )
        out["profile_types"] = [t.ID for t in types.profile_types]

        names = querier(channel, "LabelNames", "types.v1.LabelNamesRequest", "types.v1.LabelNamesResponse")(
            message("types.v1.LabelNamesRequest")(matchers=[selector], start=start, end=end),
            metadata=metadata,
        )
        out["label_names"] = list(names.names)

        values = querier(channel, "LabelValues", "types.v1.LabelValuesRequest", "types.v1.LabelValuesResponse")(
            message("types.v1.LabelValuesRequest")(name="region", start=start, end=end),
            metadata=metadata,
        )
        out["region_values"] = list(values.names)

        series = querier(channel, "Series", "querier.v1.SeriesRequest", "querier.v1.SeriesResponse")(
            message("querier.v1.SeriesRequest")(
                matchers=[selector], label_names=["service_name", "__profile_type__"], start=start, end=end
            ),
            metadata=metadata,
        )
        out["series"] = [
            {l.name: l.value for l in labels.labels} for labels in series.labels_set
        ]

        Select = message("querier.v1.SelectMergeStacktracesRequest")
        select = querier(
            channel,
            "SelectMergeStacktraces",
            "querier.v1.SelectMergeStacktracesRequest",
            "querier.v1.SelectMergeStacktracesResponse",
        )
        flame = select(
            Select(profile_typeID=cpu, label_selector=selector, start=start, end=end, max_nodes=100),
            metadata=metadata,
        )
        out["flamegraph_total"] = flame.flamegraph.total
        out["flamegraph_names"] = list(flame.flamegraph.names)
        out["flamegraph_levels"] = [list(l.values) for l in flame.flamegraph.levels]
        as_pprof = select(
            Select(profile_typeID=cpu, label_selector=selector, start=start, end=end, format="PROFILE_FORMAT_PPROF"),
            metadata=metadata,
        )
        out["stacktraces_pprof_total"] = pprof_total(as_pprof.pprof.profile)
        tree = select(
            Select(profile_typeID=cpu, label_selector=selector, start=start, end=end, format="PROFILE_FORMAT_TREE"),
            metadata=metadata,
        )
        out["tree_bytes"] = len(tree.tree)

        merged = querier(channel, "SelectMergeProfile", "querier.v1.SelectMergeProfileRequest", "google.v1.Profile")(
            message("querier.v1.SelectMergeProfileRequest")(
                profile_typeID=cpu, label_selector=selector, start=start, end=end
            ),
            metadata=metadata,
        )
        out["merge_profile_total"] = pprof_total(merged)
        out["merge_profile_functions"] = function_names(merged)

        select_series = querier(
            channel, "SelectSeries", "querier.v1.SelectSeriesRequest", "querier.v1.SelectSeriesResponse"
        )(
            message("querier.v1.SelectSeriesRequest")(
                profile_typeID=cpu,
                label_selector=selector,
                start=start,
                end=end,
                step=60.0,
                group_by=["region"],
                aggregation="TIME_SERIES_AGGREGATION_TYPE_SUM",
            ),
            metadata=metadata,
        )
        out["select_series"] = [
            {
                "labels": {l.name: l.value for l in s.labels},
                "sum": sum(p.value for p in s.points),
            }
            for s in select_series.series
        ]

        diff = querier(channel, "Diff", "querier.v1.DiffRequest", "querier.v1.DiffResponse")(
            message("querier.v1.DiffRequest")(
                left=dict(profile_typeID=cpu, label_selector=selector, start=start, end=end),
                right=dict(profile_typeID=cpu, label_selector='{service_name="nobody"}', start=start, end=end),
            ),
            metadata=metadata,
        )
        out["diff_ticks"] = [diff.flamegraph.leftTicks, diff.flamegraph.rightTicks]

        # Errors: the status code and the message (which names the field).
        errors = {}
        for name, request in [
            ("bad_selector", Select(profile_typeID=cpu, label_selector="{service_name=}", start=start, end=end)),
            ("reversed_range", Select(profile_typeID=cpu, label_selector=selector, start=end, end=start)),
            ("dot", Select(profile_typeID=cpu, label_selector=selector, start=start, end=end, format="PROFILE_FORMAT_DOT")),
        ]:
            try:
                select(request, metadata=metadata)
                errors[name] = ["OK", ""]
            except grpc.RpcError as e:
                errors[name] = [e.code().name, e.details()]
        out["errors"] = errors

        # Another tenant sees nothing.
        other = select(
            Select(profile_typeID=cpu, label_selector=selector, start=start, end=end),
            metadata=[("x-scope-orgid", "someone-else")],
        )
        out["other_tenant_total"] = other.flamegraph.total

    # Connect JSON: requests written and answers read by protobuf's reference JSON mapping,
    # strictly (an unknown or misnamed field fails).
    def connect_json(method, request, response_type):
        body = json_format.MessageToJson(request).encode()
        http = urllib.request.Request(
            f"http://{target}/querier.v1.QuerierService/{method}",
            data=body,
            headers={
                "Content-Type": "application/json",
                "Connect-Protocol-Version": "1",
                "X-Scope-OrgID": tenant,
            },
        )
        with urllib.request.urlopen(http, timeout=10) as r:
            return json_format.Parse(r.read(), message(response_type)(), ignore_unknown_fields=False)

    flame = connect_json(
        "SelectMergeStacktraces",
        Select(profile_typeID=cpu, label_selector=selector, start=start, end=end),
        "querier.v1.SelectMergeStacktracesResponse",
    )
    as_pprof = connect_json(
        "SelectMergeStacktraces",
        Select(profile_typeID=cpu, label_selector=selector, start=start, end=end, format="PROFILE_FORMAT_PPROF"),
        "querier.v1.SelectMergeStacktracesResponse",
    )
    merged = connect_json(
        "SelectMergeProfile",
        message("querier.v1.SelectMergeProfileRequest")(
            profile_typeID=cpu, label_selector=selector, start=start, end=end
        ),
        "google.v1.Profile",
    )
    types = connect_json("ProfileTypes", ProfileTypesRequest(start=start, end=end), "querier.v1.ProfileTypesResponse")
    series = connect_json(
        "Series",
        message("querier.v1.SeriesRequest")(matchers=[selector], start=start, end=end),
        "querier.v1.SeriesResponse",
    )
    points = connect_json(
        "SelectSeries",
        message("querier.v1.SelectSeriesRequest")(
            profile_typeID=cpu,
            label_selector=selector,
            start=start,
            end=end,
            step=60.0,
            aggregation="TIME_SERIES_AGGREGATION_TYPE_AVERAGE",
            limit=5,
        ),
        "querier.v1.SelectSeriesResponse",
    )
    diff = connect_json(
        "Diff",
        message("querier.v1.DiffRequest")(
            left=dict(profile_typeID=cpu, label_selector=selector, start=start, end=end),
            right=dict(profile_typeID=cpu, label_selector=selector, start=start, end=end),
        ),
        "querier.v1.DiffResponse",
    )
    out["json"] = {
        "flamegraph_total": flame.flamegraph.total,
        "flamegraph_levels": [list(l.values) for l in flame.flamegraph.levels],
        "stacktraces_pprof_total": pprof_total(as_pprof.pprof.profile),
        "merge_profile_total": pprof_total(merged),
        "profile_types": [t.ID for t in types.profile_types],
        "series": len(series.labels_set),
        "points_sum": sum(p.value for s in points.series for p in s.points),
        "diff_ticks": [diff.flamegraph.leftTicks, diff.flamegraph.rightTicks],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
