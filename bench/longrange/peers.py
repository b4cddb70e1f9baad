"""The peers, on the same data as Firn: DuckDB and chDB run the same aggregation (the sum of
the CPU value by stack for one service over a time range) over the flat Parquet files, and
`go tool pprof -proto` merges the service's raw pprof files, as someone without a profile
store would."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import chdb
import duckdb

# The aggregation both engines run; `{files}` is read by each engine's own Parquet reader.
AGGREGATION = (
    "SELECT stack_id, sum(value) AS value FROM {files} "
    "WHERE service = '{service}' AND time_nanos >= {lo} AND time_nanos <= {hi} "
    "GROUP BY stack_id"
)


class DuckDB:
    name = "DuckDB"

    def __init__(self, parquet_dir: Path):
        self.files = f"read_parquet('{parquet_dir}/*.parquet')"
        self.connection = duckdb.connect()
        self.version = duckdb.__version__

    def run(self, service: str, lo: int, hi: int):
        """The engine's answer, as it returns it (timed by the caller)."""
        sql = AGGREGATION.format(files=self.files, service=service, lo=lo, hi=hi)
        return self.connection.execute(sql).fetchall()

    @staticmethod
    def sums(answer) -> dict[int, int]:
        return {int(stack): int(value) for stack, value in answer}


class ChDB:
    name = "chDB"

    def __init__(self, parquet_dir: Path):
        self.files = f"file('{parquet_dir}/*.parquet', Parquet)"
        self.version = chdb.__version__

    def run(self, service: str, lo: int, hi: int):
        sql = AGGREGATION.format(files=self.files, service=service, lo=lo, hi=hi)
        return chdb.query(sql, "CSV")

    @staticmethod
    def sums(answer) -> dict[int, int]:
        out = {}
        for line in answer.bytes().decode().splitlines():
            stack, value = line.split(",")
            out[int(stack)] = int(value)
        return out


def go_version(go: str) -> str:
    return subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout.strip()


def go_pprof_merge(go: str, raw_dir: Path, files: list[str], out: Path, timeout: float) -> float | None:
    """Seconds `go tool pprof -proto` takes to merge `files` (names in `raw_dir`) into
    `out`; None if it took longer than `timeout`."""
    started = time.perf_counter()
    try:
        with open(out, "wb") as f:
            subprocess.run(
                [go, "tool", "pprof", "-proto", *files],
                cwd=raw_dir,
                stdout=f,
                stderr=subprocess.DEVNULL,
                check=True,
                timeout=timeout,
            )
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - started
