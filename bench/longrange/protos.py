"""The protobuf modules the benchmark uses, compiled with grpcio-tools into the run's
directory at start: pprof's `perftools.profiles.Profile` from the repository's copy of
profile.proto, and Pyroscope's Push messages (`push.proto` beside this file)."""

import sys
from pathlib import Path

from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SOURCES = [
    (REPO / "node" / "proto", "perftools/profiles/profile.proto"),
    (HERE, "push.proto"),
]


def compile_into(out: Path) -> None:
    """Compiles both .proto files into `out` and makes their modules importable."""
    out.mkdir(parents=True, exist_ok=True)
    for include, proto in SOURCES:
        if protoc.main(["protoc", f"-I{include}", f"--python_out={out}", proto]) != 0:
            raise RuntimeError(f"protoc failed on {include / proto}")
    sys.path.insert(0, str(out))


def profile_module():
    from perftools.profiles import profile_pb2

    return profile_pb2


def push_module():
    import push_pb2

    return push_pb2
