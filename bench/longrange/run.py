#!/usr/bin/env python3
"""The long-range benchmark (issue 7): seven days of back-dated profiles pushed into a real
`firn serve`, then merges of one service over 1 h, 24 h and 7 days against DuckDB and chDB over
the same samples as Parquet, and `go tool pprof` over the raw files. See README.md here.

    python3 bench/longrange/run.py --firn-bin PATH --out DIR [--scale small|full] [--seed N]

    generate ─► firn serve ─► ingest, segment by segment ─► settle (flushes, compaction)
      ─► checks (stored times and rows; Firn, DuckDB, chDB and go tool pprof agree)
      ─► interleaved query rounds ─► go tool pprof ─► [soak] ─► DIR/results.md and plots
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import driver
import peers
import protos
import report
import workload
from workload import DAY, HOUR, SECOND

SELECTOR = 'process_cpu:cpu:nanoseconds:cpu:nanoseconds{{service_name="{service}"}}'
RANGES = [("1h", HOUR), ("24h", DAY), ("7d", 7 * DAY)]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--firn-bin", type=Path, required=True, help="the firn binary (a release build for real figures)")
    p.add_argument("--out", type=Path, required=True, help="directory for the data, the store, logs and results")
    p.add_argument("--scale", choices=sorted(workload.SCALES), default="small")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--clients", type=int, default=8, help="concurrent ingest threads")
    p.add_argument("--runs", type=int, default=7, help="timed rounds of every query (p50 and p90 over them)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes generating the workload")
    p.add_argument("--flush-interval-secs", type=int, default=1, help="firn serve's flush interval: a segment's barrier waits about this long")
    p.add_argument("--compaction-interval-secs", type=int, default=5)
    p.add_argument("--go", default="go", help="the go command, for go tool pprof")
    p.add_argument("--pprof-timeout", type=float, default=900, help="seconds one go tool pprof merge may take; longer is reported as not feasible")
    p.add_argument("--pprof-runs", type=int, default=3, help="timed go tool pprof merges of the last hour (the last day gets at most 2)")
    p.add_argument("--rss-minutes", type=float, default=0, help="after the queries, keep ingesting at the measured rate for this long (the issue asks for 30)")
    p.add_argument(
        "--rss-budget-mib",
        type=int,
        default=2560,
        help="RSS the node should stay under; default: its configured bounds (1 GiB buffer, 256 MiB in-flight writes, "
        "1 GiB query pool, 256 MiB compaction job)",
    )
    return p.parse_args()


class Log:
    """Progress lines on stdout and in DIR/run.log."""

    def __init__(self, path: Path):
        self.file = open(path, "a")
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:7.1f} s] {message}"
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def main() -> None:
    args = parse_args()
    out = args.out.resolve()
    for used in (out / "data", out / "firn-data"):
        if used.exists():
            sys.exit(f"{used} exists: give each run a fresh --out")
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "run.log")
    protos.compile_into(out / "pb")
    pb = protos.profile_module()

    end = time.time_ns() // SECOND * SECOND
    w = workload.Workload(args.scale, args.seed, end, pb)
    log(f"generating the {args.scale} workload (seed {args.seed}) into {out / 'data'}")
    started = time.monotonic()
    segments = workload.generate(w, pb, out / "data", args.workers)
    generation_s = time.monotonic() - started
    for seg in (segments[0], segments[-1]):
        workload.check_request(w, pb, seg)
    log(f"generated {sum(len(s['requests']) for s in segments):,} requests in {generation_s:.0f} s")

    server = driver.Server(args.firn_bin.resolve(), out / "firn-data", out / "firn.log", args.flush_interval_secs, args.compaction_interval_secs)
    with server:
        rss = driver.RssSampler(server.pid)
        rss.start()
        try:
            client = server.client
            # The default tenant limit (64 MiB/s) would cap a release build's ingest.
            limits = {"ingestion_rate_bytes": 1 << 40, "ingestion_burst_bytes": 1 << 40}
            status, _, body = client.request("PUT", "/api/v1/admin/limits", body=json.dumps(limits))
            if status != 200:
                raise RuntimeError(f"raising the ingest limit: {status} {body!r}")

            rss.phase = "ingest"
            log(f"ingesting {len(segments)} segments with {args.clients} clients")
            ingested = driver.ingest(client, segments, args.clients, log)
            rss.phase = "settle"
            settled = driver.settle(server, (end // HOUR * HOUR) + 5 * 60 * SECOND + SECOND, log)
            storage = stored(server, client)

            rss.phase = "checks"
            duck = peers.DuckDB(out / "data" / "parquet")
            ch = peers.ChDB(out / "data" / "parquet")
            checks = verify(client, w, pb, segments, ingested, duck, ch, log)

            rss.phase = "queries"
            compactions_before = client.metrics()["firn_compactions_total"]
            timings = query_rounds(client, w, duck, ch, args.runs, log)
            compactions_during = client.metrics()["firn_compactions_total"] - compactions_before

            rss.phase = "go tool pprof"
            go = go_pprof(args, w, pb, out, segments, checks, log)

            soaked = soak_puts = None
            soak_rate = ingested.samples / ingested.send_seconds
            if args.rss_minutes > 0:
                rss.phase = "soak"
                soaked, soak_puts = puts_during(
                    client, lambda: driver.soak(client, segments, args.clients, soak_rate, args.rss_minutes, log)
                )
                soak_puts["shards"] = shards(client)
                soak_puts["flush_interval_secs"] = args.flush_interval_secs
            rss.phase = "end"
            final_metrics = client.metrics()
        finally:
            rss.stop()

    results = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": environment(args, duck, ch),
        "clients": args.clients,
        "workload": describe(w, segments, duck),
        "generation_seconds": generation_s,
        "ingest": summary(ingested),
        "settled_metrics": {k: v for k, v in settled.items() if k.startswith(("firn_compaction", "firn_flushes", "firn_blocks"))},
        "final_metrics": {k: v for k, v in final_metrics.items() if k.startswith(("firn_compaction", "firn_flushes", "firn_blocks", "firn_query_blocks_summed"))},
        "storage": storage,
        "checks": checks,
        "queries": timings,
        "compactions_during_queries": compactions_during,
        "go_pprof": go,
        "soak": summary(soaked) if soaked else None,
        "soak_target": soak_rate,
        "soak_puts": soak_puts,
        "rss": {"budget_bytes": args.rss_budget_mib << 20, "samples": rss.samples},
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    report.write(out, results)
    log(f"wrote {out / 'results.md'}, {out / 'latency.png'} and {out / 'rss.png'}")


def stored(server: driver.Server, client: driver.Client) -> dict:
    """Block bytes under objects/ (and how much of them is the Parquet row groups, the rest
    being symbols, footers and page indexes), the rows stored by profile type, and the bytes of
    each type: its row groups (a block's row group holds one profile type), plus its share by
    rows of its files' other bytes."""
    files = server.block_files()
    objects = server.data_dir / "objects"
    row_groups = 0
    type_bytes: dict[str, float] = {}
    type_rows: dict[str, int] = {}
    mixed = 0
    for f, size in files.items():
        if not f.endswith(".parquet"):
            continue
        meta = pq.ParquetFile(objects / f).metadata
        column = meta.schema.to_arrow_schema().get_field_index("profile_type")
        groups = []
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            stats = group.column(column).statistics
            kind = stats.min if stats is not None and stats.has_min_max and stats.min == stats.max else None
            if kind is None:
                mixed += 1
            groups.append((kind, group.num_rows, sum(group.column(j).total_compressed_size for j in range(group.num_columns))))
        in_groups = sum(g[2] for g in groups)
        row_groups += in_groups
        rows_in_file = sum(g[1] for g in groups) or 1
        for kind, rows, size_of in groups:
            kind = kind if isinstance(kind, str) else (kind.decode() if kind is not None else "mixed")
            type_rows[kind] = type_rows.get(kind, 0) + rows
            type_bytes[kind] = type_bytes.get(kind, 0) + size_of + (size - in_groups) * rows / rows_in_file
    rows = {t: int(n) for t, n in client.sql("SELECT profile_type, count(*) FROM samples GROUP BY profile_type")}
    return {
        "block_bytes": sum(files.values()),
        "row_group_bytes": row_groups,
        "files": len(files),
        "blocks": len({Path(f).parent for f in files}),
        "rows": rows,
        "type_bytes": {t: round(b) for t, b in type_bytes.items()},
        "type_rows": type_rows,
        "mixed_row_groups": mixed,
    }


def shards(client: driver.Client) -> int:
    """The node's shards: its Raft groups other than the meta group."""
    return sum(1 for k in client.metrics() if k.startswith("firn_raft_role{") and 'role="leader"' in k and 'group="meta"' not in k)


def puts_during(client: driver.Client, run) -> tuple[object, dict]:
    """Runs `run()` and counts the block PUTs, flushes and compactions meanwhile."""
    names = ("firn_block_puts_total", "firn_flushes_total", "firn_compactions_total")
    before = client.metrics()
    result = run()
    after = client.metrics()
    return result, {k: after.get(k, 0) - before.get(k, 0) for k in names}


def verify(client, w, pb, segments, ingested, duck, ch, log) -> dict:
    """Checks that Firn stored what was sent at the profiles' own (back-dated) times and that
    every system answers the same sums; returns the figures checked."""
    times = [e[2] for s in segments for e in s["requests"]]
    spans = {
        t: (int(n), int(lo), int(hi))
        for t, n, lo, hi in client.sql("SELECT profile_type, count(*), min(time_nanos), max(time_nanos) FROM samples GROUP BY profile_type")
    }
    cpu = spans["process_cpu:cpu:nanoseconds:cpu:nanoseconds"]
    expected = (ingested.cpu_samples, min(times), max(times))
    log(f"stored CPU rows, first and last time: {cpu}; sent: {expected}")
    if cpu != expected:
        raise AssertionError(f"Firn stored CPU rows {cpu}, the workload sent {expected}")
    for profile_type, sent in (
        ("process_cpu:samples:count:cpu:nanoseconds", ingested.cpu_samples),
        ("memory:alloc_space:bytes:space:bytes", ingested.mem_samples),
    ):
        if spans[profile_type][0] != sent:
            raise AssertionError(f"Firn stored {spans[profile_type][0]} rows of {profile_type}, the workload sent {sent}")

    totals = {}
    for name, span in RANGES:
        lo, hi = w.end - span, w.end
        flame = json.loads(client.get_ok("/api/v1/merge", merge_params(w, lo, hi, "flamegraph")))
        duck_sums = duck.sums(duck.run(w.queried, lo, hi))
        ch_sums = ch.sums(ch.run(w.queried, lo, hi))
        totals[name] = {"firn": flame["root"]["total"], "duckdb": sum(duck_sums.values()), "chdb": sum(ch_sums.values())}
        log(f"{name} total CPU ns of {w.queried}: {totals[name]}")
        if len(set(totals[name].values())) != 1 or duck_sums != ch_sums:
            raise AssertionError(f"{name}: the systems disagree: {totals[name]}")
        if name == "1h":
            by_stack = pprof_stacks(pb, client.get_ok("/api/v1/merge", merge_params(w, lo, hi, "pprof")))
            expected_stacks = {stack_frames(w, s): v for s, v in duck_sums.items()}
            if by_stack != expected_stacks:
                raise AssertionError(f"1h: Firn's pprof differs from DuckDB's sums by stack ({len(by_stack)} vs {len(expected_stacks)} stacks)")
            log(f"1h: Firn's pprof and DuckDB agree on all {len(by_stack)} stacks")
        if name == "24h":
            series = json.loads(client.get_ok("/api/v1/series", series_params(w, lo, hi)))
            points = sum(v for s in series["series"] for _, v in s["points"])
            if points != totals[name]["firn"]:
                raise AssertionError(f"24h: series by pod sum to {points}, the merge to {totals[name]['firn']}")
    return {"stored_cpu_rows": cpu[0], "first_time": cpu[1], "last_time": cpu[2], "totals": totals}


def merge_params(w, lo: int, hi: int, fmt: str) -> dict:
    return {"query": SELECTOR.format(service=w.queried), "from": lo, "until": hi, "format": fmt}


def series_params(w, lo: int, hi: int) -> dict:
    return {"query": SELECTOR.format(service=w.queried), "from": lo, "until": hi, "group_by": "pod", "step": 60}


def stack_frames(w, stack_id: int) -> tuple[str, ...]:
    """A Parquet stack id's function names, root first."""
    service = w.services[stack_id // workload.STACK_ID_STRIDE]
    return tuple(service.functions[f] for f in service.stacks[stack_id % workload.STACK_ID_STRIDE])


def pprof_stacks(pb, body: bytes, sample_type: str = "cpu") -> dict[tuple[str, ...], int]:
    """A gzipped pprof's values of `sample_type` by stack (function names, root first)."""
    p = pb.Profile.FromString(gzip.decompress(body))
    column = [p.string_table[t.type] for t in p.sample_type].index(sample_type)
    names = {f.id: p.string_table[f.name] for f in p.function}
    frames = {loc.id: [names[line.function_id] for line in reversed(loc.line)] for loc in p.location}
    out: Counter = Counter()
    for s in p.sample:
        stack = tuple(name for loc in reversed(s.location_id) for name in frames[loc])
        out[stack] += s.value[column]
    return {k: v for k, v in out.items() if v}


def query_rounds(client, w, duck, ch, runs: int, log) -> list[dict]:
    """Every query once untimed (warm-up), then `runs` rounds, each in a fresh seeded order,
    so that Firn's and the peers' runs interleave and share the machine's noise."""
    cases = []
    for name, span in RANGES:
        lo, hi = w.end - span, w.end
        cases += [
            ("merge", name, "Firn (pprof)", lambda lo=lo, hi=hi: client.get_ok("/api/v1/merge", merge_params(w, lo, hi, "pprof"))),
            ("merge", name, "Firn (flame graph)", lambda lo=lo, hi=hi: client.get_ok("/api/v1/merge", merge_params(w, lo, hi, "flamegraph"))),
            ("merge", name, duck.name, lambda lo=lo, hi=hi: duck.run(w.queried, lo, hi)),
            ("merge", name, ch.name, lambda lo=lo, hi=hi: ch.run(w.queried, lo, hi)),
        ]
    day, week = (w.end - DAY, w.end), {"from": w.end - 7 * DAY, "until": w.end}
    cases += [
        (f"`/api/v1/series` of {w.queried} by pod, step 60 s", "24h", "Firn", lambda: client.get_ok("/api/v1/series", series_params(w, *day))),
        ("`/api/v1/labels/pod/values`", "7d", "Firn", lambda: client.get_ok("/api/v1/labels/pod/values", week)),
    ]
    for *_, run in cases:
        run()
    seconds: list[list[float]] = [[] for _ in cases]
    rng = np.random.default_rng(w.seed)
    for r in range(runs):
        for i in rng.permutation(len(cases)).tolist():
            started = time.perf_counter()
            cases[i][3]()
            seconds[i].append(time.perf_counter() - started)
        log(f"query round {r + 1}/{runs} done")
    return [{"query": q, "range": rg, "system": s, "seconds": t} for (q, rg, s, _), t in zip(cases, seconds)]


def go_pprof(args, w, pb, out: Path, segments, checks, log) -> list[dict]:
    """`go tool pprof -proto` merging the queried service's raw CPU profiles of the last hour
    (`--pprof-runs` times), then of the last day (at most twice, if a merge finishes within
    `--pprof-timeout`); each merged profile must total what Firn answered for its range."""
    raw_dir = out / "data" / "raw"
    files = sorted(f for s in segments for f in s["raw"])
    results = []
    for name, span, runs in (("1h", HOUR, args.pprof_runs), ("24h", DAY, min(2, args.pprof_runs))):
        lo = w.end - span
        chosen = [f for f in files if int(f.split("-", 1)[0]) >= lo]
        merged = out / f"go-pprof-{name}.pb.gz"
        seconds = []
        for r in range(runs):
            t = peers.go_pprof_merge(args.go, raw_dir, chosen, merged, args.pprof_timeout)
            if t is None:
                log(f"go tool pprof over {name} ({len(chosen)} files) took longer than {args.pprof_timeout:.0f} s")
                break
            seconds.append(t)
            log(f"go tool pprof over {name} ({len(chosen)} files): {t:.1f} s")
        total = sum(pprof_stacks(pb, merged.read_bytes()).values()) if seconds else None
        if total is not None and total != checks["totals"][name]["firn"]:
            raise AssertionError(f"{name}: go tool pprof totals {total}, Firn {checks['totals'][name]['firn']}")
        results.append({"range": name, "files": len(chosen), "seconds": seconds, "total": total, "timeout": args.pprof_timeout})
    return results


def summary(i: driver.Ingested) -> dict:
    lat = np.array(i.latencies)
    return {
        "requests": i.requests,
        "bytes": i.bytes,
        "samples": i.samples,
        "cpu_samples": i.cpu_samples,
        "mem_samples": i.mem_samples,
        "retries": i.retries,
        "wall_seconds": i.wall_seconds,
        "send_seconds": i.send_seconds,
        "barrier_seconds": i.barrier_seconds,
        "ack_p50": float(np.percentile(lat, 50)),
        "ack_p99": float(np.percentile(lat, 99)),
        "ack_max": float(lat.max()),
    }


def describe(w, segments, duck) -> dict:
    """What the data is: per tier (its own time range) the pods, profiles and samples; per
    query range, the queried service's CPU profiles and samples."""
    d = w.describe()
    entries = np.array([e[2:5] for s in segments for e in s["requests"]], dtype=np.int64)
    bounds = [0] + [t.span for t in w.scale.tiers]
    for tier, near, far in zip(d["tiers"], bounds, bounds[1:]):
        lo, hi = w.end - far * SECOND, w.end - near * SECOND
        chosen = entries[(entries[:, 0] >= lo) & (entries[:, 0] < hi)]
        tier.update(cycles=len(chosen), cpu_samples=int(chosen[:, 1].sum()), mem_samples=int(chosen[:, 2].sum()))
    d["queried"] = {}
    for name, span in RANGES:
        profiles, samples = duck.connection.execute(
            f"SELECT count(DISTINCT (pod, time_nanos)), count(*) FROM {duck.files} "
            f"WHERE service = '{w.queried}' AND time_nanos >= {w.end - span} AND time_nanos <= {w.end}"
        ).fetchone()
        d["queried"][name] = {"cpu_profiles": profiles, "cpu_samples": samples}
    d["requests"] = len(entries)
    d["cpu_samples"] = int(entries[:, 1].sum())
    d["mem_samples"] = int(entries[:, 2].sum())
    return d


def environment(args, duck, ch) -> dict:
    firn_version = subprocess.run([str(args.firn_bin), "--version"], capture_output=True, text=True).stdout.strip()
    repo = protos.REPO
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    return {
        "commit": f"{commit}{' with uncommitted changes' if dirty else ''}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "machine": platform.platform(),
        "firn": f"{args.firn_bin} ({firn_version or 'no --version'})",
        "python": platform.python_version(),
        "duckdb": duck.version,
        "chdb": ch.version,
        "go": peers.go_version(args.go),
    }


if __name__ == "__main__":
    main()
