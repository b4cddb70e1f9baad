"""The cardinality sweep of issue 10: the same samples, spread over 10 to 1,000,000 distinct
series, pushed into a fresh `firn serve` per step, with the costs a series store pays per
series measured at each step, and DuckDB running the same queries over the same samples.

    step N   series i = {pod = i % 10, thread_id = (i // 10) % 100, customer_id = c-<i>}
             (pprof sample labels, as Go's pprof.Do writes them: each is a series label),
             and every sample a trace_id out of 10,000,000 (a link, not a series label)
      ├─► Push requests of one CPU profile each (K samples, sample j in series j % N),
      │   back-dated evenly over the 24 hours before the run
      ├─► firn serve: ingest throughput, buffer bytes per sample while ingesting, stored
      │   bytes per sample once flushed and compacted, peak RSS
      ├─► queries (p50 of R rounds): label names, label values of customer_id (first page),
      │   series over 24 h grouped by pod, a merge filtered on one customer_id
      └─► DuckDB: the same samples as Parquet, the same three aggregations

Usage: run.py --firn-bin PATH --out DIR [--scale small|full] [--steps 10,1000,...]
Writes DIR/results.md, results.json and cardinality.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "longrange"))

import driver  # noqa: E402
import protos  # noqa: E402
import workload  # noqa: E402

SECOND = 10**9
DAY = 86400 * SECOND
CPU_PERIOD = 10_000_000
PODS = 10
THREADS = 100
TRACE_IDS = 10_000_000
SERVICE = "cardinality"
CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

SCALES = {
    # samples per step, samples per profile, query rounds
    "full": dict(samples=4_000_000, per_profile=4_000, rounds=7, steps=[10, 1_000, 100_000, 1_000_000]),
    # Every step of the full sweep, with a quarter of its samples (each series still present).
    "medium": dict(samples=1_000_000, per_profile=4_000, rounds=5, steps=[10, 1_000, 100_000, 1_000_000]),
    "small": dict(samples=200_000, per_profile=2_000, rounds=3, steps=[10, 1_000, 100_000]),
    # The pipeline end to end in a minute, with a debug build.
    "check": dict(samples=20_000, per_profile=1_000, rounds=1, steps=[10, 1_000]),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--firn-bin", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--scale", choices=sorted(SCALES), default="small")
    p.add_argument("--steps", help="series counts, comma-separated (default: the scale's)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--clients", type=int, default=8)
    return p.parse_args()


def customer(i: int) -> str:
    return f"c-{i:07d}"


class Profiles:
    """The step's CPU profiles as Push request bodies. Each profile is one service's symbol
    header (the long-range workload's stacks, 20 to 60 frames) and its own samples, each with
    its series' labels and a trace id, the strings they need appended to the string table."""

    def __init__(self, series: int, scale: dict, seed: int, pb, push_pb):
        self.series, self.scale, self.pb, self.push_pb = series, scale, pb, push_pb
        shape = workload.SCALES["small"]
        self.service = workload.Service(0, shape, seed, pb)
        header = pb.Profile.FromString(self.service.cpu_header)
        self.strings_before = len(header.string_table)
        self.locations = [packed(1, ids) for ids in self.service.location_ids]
        self.rng = np.random.default_rng([seed, series])
        self.count = scale["samples"] // scale["per_profile"]
        self.end = time.time_ns()

    def body(self, k: int) -> tuple[bytes, dict]:
        """Profile k: its Push request and what it holds (for the Parquet copy). The samples
        are encoded by hand (a million labelled samples through protobuf's Python objects
        take minutes): each is `Profile.sample` (field 2) holding its locations (1), values
        (2) and four labels (3), every part a length-delimited field."""
        n = self.scale["per_profile"]
        first = k * n
        series = (first + np.arange(n)) % self.series
        stacks = self.rng.choice(len(self.service.stacks), size=n, p=self.service.cpu_weights)
        ticks = self.rng.integers(1, 4, size=n)
        traces = self.rng.integers(0, TRACE_IDS, size=n)
        strings: list[str] = []
        index: dict[str, int] = {}

        def s(text: str) -> bytes:
            i = index.get(text)
            if i is None:
                i = index[text] = self.strings_before + len(strings)
                strings.append(text)
            return varint(i)

        keys = [b"\x08" + s(key) + b"\x10" for key in ("pod", "thread_id", "customer_id", "trace_id")]
        when = self.end - DAY + (DAY * k) // self.count
        pods = [f"pod-{i % PODS}" for i in series.tolist()]
        threads = [str((i // PODS) % THREADS) for i in series.tolist()]
        customers = [customer(i) for i in series.tolist()]
        trace_ids = [f"{t:032x}" for t in traces.tolist()]
        parts = []
        for stack, tick, pod, thread, cust, trace in zip(stacks.tolist(), ticks.tolist(), pods, threads, customers, trace_ids):
            body = self.locations[stack] + VALUES[tick]
            for key, value in zip(keys, (pod, thread, cust, trace)):
                label = key + s(value)
                body += b"\x1a" + varint(len(label)) + label
            parts.append(b"\x12" + varint(len(body)) + body)
        own = self.pb.Profile(time_nanos=when, duration_nanos=10 * SECOND)
        own.string_table.extend(strings)
        raw = workload.gzip(self.service.cpu_header + b"".join(parts) + own.SerializeToString())
        request = self.push_pb.PushRequest()
        series_pb = request.series.add()
        for name, value in [("__name__", "process_cpu"), ("service_name", SERVICE)]:
            series_pb.labels.add(name=name, value=value)
        series_pb.samples.add(raw_profile=raw)
        rows = {
            "customer_id": customers,
            "pod": pods,
            "thread_id": threads,
            "trace_id": trace_ids,
            "stack": stacks,
            "value": ticks * CPU_PERIOD,
            "time": np.full(n, when, dtype=np.int64),
        }
        return request.SerializeToString(), rows


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def packed(field: int, numbers) -> bytes:
    """A packed repeated varint field."""
    body = b"".join(varint(x) for x in numbers)
    return bytes([field << 3 | 2]) + varint(len(body)) + body


# A sample's values field for 1, 2 and 3 ticks: (samples, cpu nanoseconds).
VALUES = {t: packed(2, (t, t * CPU_PERIOD)) for t in (1, 2, 3)}


def p50(timings: list[float]) -> float:
    return sorted(timings)[len(timings) // 2]


def timed(rounds: int, call) -> tuple[float, object]:
    """The p50 of `rounds` calls after one untimed, in ms, and the last answer."""
    answer = call()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        answer = call()
        times.append((time.perf_counter() - t) * 1000)
    return p50(times), answer


def run_step(args, scale: dict, series: int, pb, push_pb, log) -> dict:
    out = args.out / f"step-{series}"
    out.mkdir(parents=True)
    profiles = Profiles(series, scale, args.seed, pb, push_pb)
    log(f"step {series:,} series: generating {profiles.count} profiles of {scale['per_profile']} samples")
    bodies, tables = [], []
    for k in range(profiles.count):
        body, rows = profiles.body(k)
        bodies.append(body)
        tables.append(pa.table(rows))
    parquet = out / "samples.parquet"
    pq.write_table(pa.concat_tables(tables), parquet)
    del tables

    server = driver.Server(args.firn_bin, out / "firn-data", out / "firn.log", flush_interval=1, compaction_interval=10)
    with server:
        client = server.client
        # The sweep measures what series cost, not the per-tenant limit on them (1,000,000
        # active series by default, and each CPU profile is two profile types).
        status, _, answer = client.request(
            "PUT", "/api/v1/admin/limits", body=json.dumps({"max_active_series": 0}).encode(),
            headers={"Content-Type": "application/json"},
        )
        if status != 200:
            raise RuntimeError(f"lifting max_active_series: {status} {answer[:300]!r}")
        rss = driver.RssSampler(server.pid)
        rss.start()
        rss.phase = "ingest"
        result = driver.Ingested()
        lock = threading.Lock()
        pending = iter(range(len(bodies)))
        buffer_ratios: list[tuple[float, float]] = []
        sampling = threading.Event()

        def record_buffer() -> None:
            m = client.metrics()
            if m.get("firn_buffer_samples", 0) > 0:
                buffer_ratios.append((m["firn_buffer_samples"], m["firn_buffer_bytes"] / m["firn_buffer_samples"]))

        def sample_buffer() -> None:
            while not sampling.is_set():
                record_buffer()
                sampling.wait(0.5)

        def worker() -> None:
            while True:
                with lock:
                    k = next(pending, None)
                if k is None:
                    return
                latency = driver.push(client, bodies[k], result, lock)
                with lock:
                    result.add([0, len(bodies[k]), 0, scale["per_profile"], 0], latency)

        sampler = threading.Thread(target=sample_buffer, daemon=True)
        sampler.start()
        started = time.monotonic()
        driver.run_threads(worker, args.clients)
        wall = time.monotonic() - started
        sampling.set()
        sampler.join()
        record_buffer()
        log(f"  ingested {result.samples:,} samples in {wall:.1f} s ({result.samples / wall:,.0f}/s)")
        rss.phase = "settle"
        metrics = driver.settle(server, 0, log)
        stored = sum(server.block_files().values())
        rss.phase = "queries"
        lo, hi = str(profiles.end - DAY - 60 * SECOND), str(profiles.end + 60 * SECOND)
        selector = f'{CPU}{{service_name="{SERVICE}"}}'
        target = customer(123_456 % series)
        figures = {}
        figures["label_names_ms"], names = timed(scale["rounds"], lambda: json.loads(client.get_ok("/api/v1/labels", {"query": selector, "from": lo, "until": hi})))
        figures["label_values_ms"], values = timed(
            scale["rounds"],
            lambda: client.get_ok("/api/v1/labels/customer_id/values", {"query": selector, "from": lo, "until": hi, "limit": 1000}),
        )
        figures["label_values_bytes"] = len(values)
        values = json.loads(values)
        figures["label_values_returned"] = len(values["values"])
        figures["series_ms"], grouped = timed(
            scale["rounds"],
            lambda: json.loads(client.get_ok("/api/v1/series", {"query": selector, "from": lo, "until": hi, "group_by": "pod", "step": "1h"})),
        )
        figures["merge_one_customer_ms"], merged = timed(
            scale["rounds"],
            lambda: client.get_ok("/api/v1/merge", {"query": f'{CPU}{{service_name="{SERVICE}",customer_id="{target}"}}', "from": lo, "until": hi, "format": "folded"}),
        )
        rss.stop()

    import duckdb

    db = duckdb.connect()
    src = f"read_parquet('{parquet}')"
    duck = {}
    duck["label_values_ms"], _ = timed(scale["rounds"], lambda: db.execute(f"SELECT DISTINCT customer_id FROM {src} ORDER BY 1 LIMIT 1000").fetchall())
    duck["series_ms"], _ = timed(
        scale["rounds"],
        lambda: db.execute(f"SELECT pod, time // {3600 * SECOND} AS h, sum(value) FROM {src} GROUP BY ALL").fetchall(),
    )
    duck["merge_one_customer_ms"], expected = timed(
        scale["rounds"],
        lambda: db.execute(f"SELECT stack, sum(value) FROM {src} WHERE customer_id = '{target}' GROUP BY stack").fetchall(),
    )
    expected_total = sum(v for _, v in expected)
    got_total = sum(int(line.rsplit(" ", 1)[1]) for line in merged.decode().splitlines() if line.strip())
    if got_total != expected_total:
        raise AssertionError(f"merge for {target}: Firn {got_total}, DuckDB {expected_total}")
    if len(grouped["series"]) != min(series, PODS):
        raise AssertionError(f"series by pod: {len(grouped['series'])}")

    samples = result.samples
    peak_ratio = max(buffer_ratios, default=(0, 0.0))[1]
    return {
        "series": series,
        "samples": samples,
        "ingest_samples_per_s": samples / wall,
        "ack_p50_ms": p50(result.latencies) * 1000,
        "buffer_bytes_per_sample": peak_ratio,
        "stored_bytes_per_sample": stored / samples,
        "stored_bytes": stored,
        "blocks": metrics.get("firn_blocks", 0),
        "peak_rss_mib": max((b for _, b, _ in rss.samples), default=0) / 2**20,
        "label_names": len(names["names"]),
        "firn": figures,
        "duckdb": duck,
        "merge_total": got_total,
    }


def report(args, scale: dict, steps: list[dict]) -> None:
    first = steps[0]
    lines = [
        "# Cardinality sweep",
        "",
        f"`{' '.join(sys.argv)}`: {scale['samples']:,} CPU samples per step over 24 hours, "
        f"{scale['per_profile']:,} per profile, every sample with a trace_id of {TRACE_IDS:,}; p50 of "
        f"{scale['rounds']} rounds after one untimed.",
        "",
        "| series | ingest samples/s | vs first | buffer B/sample | vs first | stored B/sample | vs first | peak RSS MiB | label names ms | label values ms (values, bytes) | series ms | merge 1 customer ms | DuckDB values / series / merge ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        f, d = s["firn"], s["duckdb"]
        lines.append(
            f"| {s['series']:,} | {s['ingest_samples_per_s']:,.0f} | {s['ingest_samples_per_s'] / first['ingest_samples_per_s']:.2f} "
            f"| {s['buffer_bytes_per_sample']:.1f} | {s['buffer_bytes_per_sample'] / max(first['buffer_bytes_per_sample'], 1e-9):.2f} "
            f"| {s['stored_bytes_per_sample']:.2f} | {s['stored_bytes_per_sample'] / first['stored_bytes_per_sample']:.2f} "
            f"| {s['peak_rss_mib']:,.0f} | {f['label_names_ms']:.1f} | {f['label_values_ms']:.1f} ({f['label_values_returned']:,}, {f['label_values_bytes']:,}) "
            f"| {f['series_ms']:.1f} | {f['merge_one_customer_ms']:.1f} | {d['label_values_ms']:.1f} / {d['series_ms']:.1f} / {d['merge_one_customer_ms']:.1f} |"
        )
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(steps, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs = [s["series"] for s in steps]
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        a.plot(xs, [s["ingest_samples_per_s"] / first["ingest_samples_per_s"] for s in steps], "o-", label="ingest throughput")
        a.plot(xs, [s["buffer_bytes_per_sample"] / max(first["buffer_bytes_per_sample"], 1e-9) for s in steps], "o-", label="buffer bytes/sample")
        a.plot(xs, [s["stored_bytes_per_sample"] / first["stored_bytes_per_sample"] for s in steps], "o-", label="stored bytes/sample")
        a.set_xscale("log")
        a.set_xlabel("distinct series")
        a.set_ylabel(f"relative to {first['series']:,} series")
        a.legend()
        for key, label in [("label_values_ms", "label values"), ("series_ms", "series by pod"), ("merge_one_customer_ms", "merge, one customer")]:
            b.plot(xs, [s["firn"][key] for s in steps], "o-", label=f"Firn {label}")
            if key in steps[0]["duckdb"]:
                b.plot(xs, [s["duckdb"][key] for s in steps], "x--", label=f"DuckDB {label}")
        b.set_xscale("log")
        b.set_yscale("log")
        b.set_xlabel("distinct series")
        b.set_ylabel("p50 ms")
        b.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.out / "cardinality.png", dpi=110)
    except ImportError:
        pass


def main() -> None:
    args = parse_args()
    scale = SCALES[args.scale]
    args.out.mkdir(parents=True, exist_ok=False)
    protos.compile_into(args.out / "pb")
    pb, push_pb = protos.profile_module(), protos.push_module()
    log_file = open(args.out / "run.log", "a")
    started = time.monotonic()

    def log(message: str) -> None:
        line = f"[{time.monotonic() - started:7.1f} s] {message}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    counts = [int(x) for x in args.steps.split(",")] if args.steps else scale["steps"]
    steps = []
    for n in counts:
        steps.append(run_step(args, scale, n, pb, push_pb, log))
        log(f"  {json.dumps(steps[-1])}")
        report(args, scale, steps)
    log(f"done: {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
