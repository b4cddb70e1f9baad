"""`results.md` (every figure, the ratios and the issue's targets beside them), `latency.png`
(merge latency against the time range, log scale) and `rss.png` (the node's RSS over the run)
from the results `run.py` gathered."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402

# Hours of each query range, for the latency plot's x axis.
RANGE_HOURS = {"1h": 1, "24h": 24, "7d": 168}
# The issue's latency targets for a merge of one service (p50).
MERGE_TARGETS = {"1h": 0.5, "7d": 5.0}
BYTES_PER_SAMPLE_TARGET = 1.5
SPEEDUP_TARGET = 50
FIRN_MERGES = ("Firn (pprof)", "Firn (flame graph)")
PEERS = ("DuckDB", "chDB")


def p50(xs: list[float]) -> float:
    return float(np.percentile(xs, 50))


def p90(xs: list[float]) -> float:
    return float(np.percentile(xs, 90))


def secs(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def n(x: float) -> str:
    return f"{x:,.0f}"


def mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def write(out: Path, r: dict) -> None:
    timings = {(q["query"], q["range"], q["system"]): q["seconds"] for q in r["queries"]}
    (out / "results.md").write_text("\n".join(markdown(r, timings)) + "\n")
    latency_plot(out / "latency.png", r, timings)
    rss_plot(out / "rss.png", r)


def markdown(r: dict, timings: dict) -> list[str]:
    env = r["environment"]
    lines = [
        "# Long-range benchmark (issue 7)",
        "",
        f"`{r['command']}`",
        "",
        f"{env['date']}, {env['cores']} cores ({env['machine']}); {env['firn']}, repository at {env['commit']}; "
        f"DuckDB {env['duckdb']}, chDB {env['chdb']}, {env['go']}, Python {env['python']}. The clients, DuckDB, "
        "chDB and go tool pprof share the machine with the node.",
    ]
    for section in (workload_section, ingest_section, storage_section, queries_section, rss_section, checks_section):
        lines += [""] + section(r, timings)
    return lines


def workload_section(r: dict, _timings: dict) -> list[str]:
    w = r["workload"]
    lines = [
        "## Workload",
        "",
        f"Scale `{w['scale']}`, seed {w['seed']}: services {', '.join(w['services'])}; {w['processes']} processes "
        "(pods) labelled `service_name`, `pod`, `version` (2 values) and `region` (3). Each service has "
        f"{w['functions_per_service']} functions (shared runtime, net/http, gRPC and encoding frames near the root, "
        f"its own below and always at the leaf) and {w['cpu_stacks_per_service']:,} stacks 20-60 frames deep, "
        f"grown as a trie along a call graph, with Zipf popularity (exponent 1.1); {w['mem_stacks_per_service']} "
        "of them are allocation sites (exponent 1.2). Each cycle (the gap drawn from the tier's interval) a "
        "process pushes one Push request with two series: its CPU profile (`samples/count` and "
        "`cpu/nanoseconds`, period type `cpu/nanoseconds`, period 10 ms, 10 s; about 1,000 ticks per core "
        "used, drawn over the stacks, load varying over the day) and its memory profile (`alloc_space/bytes`, "
        "`inuse_space/bytes`, period type `space/bytes`). Each is gzipped pprof holding its service's whole "
        "symbol table (dense ids, as Go writes them) and its own time: the data ends when the run starts and "
        "covers the 7 days before. A sample is one pprof sample (a stack and its values); Firn stores one row "
        "per sample and value type (zero `inuse_space` values are not stored).",
        "",
        "| tier (its own time range) | services x pods | interval | cycles (requests) | CPU samples | memory samples |",
        "|---|---|---|---|---|---|",
    ]
    spans = ["the last 1 h", "24 h to 1 h before the end", "7 d to 24 h before the end"]
    for tier, span in zip(w["tiers"], spans):
        lo, hi = tier["interval_s"]
        lines.append(
            f"| {tier['tier']}: {span} | {tier['services']} x {tier['pods_per_service']} | {lo:g}-{hi:g} s | "
            f"{n(tier['cycles'])} | {n(tier['cpu_samples'])} | {n(tier['mem_samples'])} |"
        )
    reads = ", ".join(f"{k}: {n(v['cpu_profiles'])} profiles, {n(v['cpu_samples'])} samples" for k, v in w["queried"].items())
    return lines + [
        f"| all | {w['processes']} processes | | {n(w['requests'])} | {n(w['cpu_samples'])} | {n(w['mem_samples'])} |",
        "",
        f"A merge of `{w['queried_service']}` reads its CPU profiles in the range: {reads}. The same CPU samples "
        "are in Parquet for DuckDB and chDB, one row each (service, pod, version, region, time_nanos, stack_id, "
        "value = CPU nanoseconds), one file per segment, rows sorted by (service, pod, time, stack), zstd, row "
        "groups of 1 Mi rows: only the CPU nanoseconds values, where Firn's blocks hold all four value types.",
        "",
        f"The driver ingests the data oldest first in {w['segments']} segments (UTC days until 25 h before the "
        "end, UTC hours after: the windows Firn's compaction merges) and after each waits until the node's "
        "buffer is empty, so that no block straddles a window, as on a node that has been running for the "
        f"week. Generating the workload took {secs(r['generation_seconds'])}.",
    ]


def ingest_section(r: dict, _timings: dict) -> list[str]:
    return [
        "## Ingest",
        "",
        f"{r['environment']['firn']} over Pyroscope Push (Connect, `application/proto`), {r['clients']} client "
        "threads, each request acknowledged (written to the fsynced Raft log).",
        "",
        "| measure | value |",
        "|---|---|",
    ] + ingest_rows(r["ingest"])


CPU_TYPE = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"


def storage_section(r: dict, _timings: dict) -> list[str]:
    st = r["storage"]
    cpu_rows = st["rows"].get(CPU_TYPE, 0)
    all_rows = sum(st["rows"].values())
    all_in = st["block_bytes"] / cpu_rows
    per_row = st["block_bytes"] / all_rows
    cpu_bytes = st["type_bytes"].get(CPU_TYPE, 0)
    per_cpu = cpu_bytes / max(st["type_rows"].get(CPU_TYPE, 0), 1)
    # `name:sample_type:...` rows by their sample type.
    by_type = ", ".join(f"{t.split(':')[1]} {n(c)}" for t, c in sorted(st["rows"].items()))
    per_type = ", ".join(
        f"{t.split(':')[1]} {st['type_bytes'][t] / max(st['type_rows'][t], 1):.2f}" for t in sorted(st["type_bytes"])
    )
    return [
        "## Storage after compaction",
        "",
        "Block bytes: every file of a block under the data directory's `objects/` once compaction has "
        "settled (no job pending, compacted-away blocks deleted); of them, the Parquet row groups (column "
        "chunks, from each file's footer), the rest being the blocks' symbols, footers and page indexes. CPU samples: rows of "
        f"`{CPU_TYPE}` (`SELECT profile_type, count(*) FROM samples GROUP BY "
        "profile_type`), one per pprof CPU sample. A block's row group holds one profile type, so a type's "
        "bytes are its row groups' plus, by its share of each file's rows, the file's symbols, footer and page "
        "indexes: bytes per CPU sample. The same blocks also hold each CPU sample's `samples:count` row (another "
        "profile type, as in Pyroscope and Parca) and the memory profiles'; charging every byte of every type "
        "to the CPU rows gives the all-in figure.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| block bytes ({st['blocks']} blocks, {st['files']} files) | {n(st['block_bytes'])} | |",
        f"| of which Parquet row groups / symbols, footers, page indexes | {n(st['row_group_bytes'])} / "
        f"{n(st['block_bytes'] - st['row_group_bytes'])} | |",
        f"| CPU samples stored (`cpu:nanoseconds` rows) | {n(cpu_rows)} | |",
        f"| bytes of the `cpu:nanoseconds` type | {n(cpu_bytes)} | |",
        f"| **bytes per CPU sample** | **{per_cpu:.2f}** | <= {BYTES_PER_SAMPLE_TARGET}: {met(per_cpu <= BYTES_PER_SAMPLE_TARGET)} |",
        f"| bytes per sample, by type | {per_type} | |",
        f"| rows of every type | {n(all_rows)} ({by_type}) | |",
        f"| block bytes per row (every type) | {per_row:.2f} | |",
        f"| all-in: every block byte per CPU sample | {all_in:.2f} | |",
        f"| row groups mixing types (none expected) | {n(st['mixed_row_groups'])} | |",
        f"| compactions when settled | {n(r['settled_metrics'].get('firn_compactions_total', 0))} | |",
    ]


def ingest_rows(ing: dict) -> list[str]:
    mb = ing["bytes"] / 1e6
    return [
        f"| requests (one process's CPU and memory profile each) | {n(ing['requests'])} |",
        f"| bytes (Push bodies, gzipped pprof inside) | {mb:,.0f} MB |",
        f"| pprof samples (CPU + memory) | {n(ing['samples'])} ({n(ing['cpu_samples'])} + {n(ing['mem_samples'])}) |",
        f"| wall time | {ing['wall_seconds']:.0f} s ({ing['send_seconds']:.0f} s sending, {ing['barrier_seconds']:.0f} s waiting for segment flushes) |",
        f"| **throughput while sending** | **{n(ing['samples'] / ing['send_seconds'])} samples/s, {mb / ing['send_seconds']:.1f} MB/s, "
        f"{ing['requests'] / ing['send_seconds']:,.0f} requests/s** |",
        f"| throughput over the wall time | {n(ing['samples'] / ing['wall_seconds'])} samples/s, {mb / ing['wall_seconds']:.1f} MB/s |",
        f"| **acknowledgement latency p50 / p99 / max** | **{secs(ing['ack_p50'])} / {secs(ing['ack_p99'])}** / {secs(ing['ack_max'])} |",
        f"| requests retried after 429/503 | {n(ing['retries'])} |",
    ]


def queries_section(r: dict, timings: dict) -> list[str]:
    w = r["workload"]
    runs = len(next(iter(timings.values())))
    lines = [
        "## Queries",
        "",
        f"Merge of `{w['queried_service']}`'s CPU time (`/api/v1/merge?query=process_cpu:cpu:nanoseconds:cpu:nanoseconds"
        f"{{service_name=\"{w['queried_service']}\"}}&from=&until=`, `format=pprof` and `format=flamegraph`) over the "
        "last 1 h, 24 h and 7 d of the data, against DuckDB and chDB running `SELECT stack_id, sum(value) ... "
        "WHERE service = ... AND time_nanos BETWEEN ... GROUP BY stack_id` over the Parquet files (each in-process, "
        "answer fetched into Python). Firn is timed over HTTP from request to the last byte of the answer, which "
        "also resolves the stacks' symbols and builds the pprof or the flame graph. Every query ran once untimed, "
        f"then {runs} timed rounds, each round in a fresh seeded order so that the systems' runs interleave; "
        "p50 and p90 are over those runs (linear interpolation). Ratios are Firn's p50 over the peer's: "
        "at most 1 means Firn is at least as fast.",
        "",
        "| range | CPU samples in it | Firn pprof p50 / p90 | Firn flame graph p50 / p90 | DuckDB p50 / p90 | chDB p50 / p90 | Firn / DuckDB (pprof, flame graph) | Firn / chDB (pprof, flame graph) | targets |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rg in RANGE_HOURS:
        t = {s: timings[("merge", rg, s)] for s in FIRN_MERGES + PEERS}
        cells = [f"{secs(p50(t[s]))} / {secs(p90(t[s]))}" for s in FIRN_MERGES + PEERS]
        ratios = []
        targets = []
        for peer in PEERS:
            rs = [p50(t[f]) / p50(t[peer]) for f in FIRN_MERGES]
            ratios.append(f"{rs[0]:.2f}, {rs[1]:.2f}")
            targets.append(f"<= 1 vs {peer}: {met(max(rs) <= 1)}")
        if rg in MERGE_TARGETS:
            worst = max(p50(t[f]) for f in FIRN_MERGES)
            targets.insert(0, f"p50 < {secs(MERGE_TARGETS[rg])}: {met(worst < MERGE_TARGETS[rg])}")
        lines.append(f"| {rg} | {n(w['queried'][rg]['cpu_samples'])} | " + " | ".join(cells + ratios) + " | " + "; ".join(targets) + " |")
    lines += [
        "",
        "| other Firn query | range | p50 / p90 |",
        "|---|---|---|",
    ]
    for (query, rg, _), t in timings.items():
        if query != "merge":
            lines.append(f"| {query} | {rg} | {secs(p50(t))} / {secs(p90(t))} |")
    if r["compactions_during_queries"]:
        lines += ["", f"Compaction ran {r['compactions_during_queries']:.0f} job(s) during the query rounds (a window came due)."]
    lines += [
        "",
        "### go tool pprof",
        "",
        f"`go tool pprof -proto FILES > merged.pb.gz` over the raw CPU pprof files of `{w['queried_service']}` "
        "(the very files pushed to Firn), against Firn's merge into pprof over the same range.",
        "",
        "| range | files | go tool pprof (runs) | Firn pprof p50 | go tool pprof / Firn | target |",
        "|---|---|---|---|---|---|",
    ]
    for g in r["go_pprof"]:
        firn = p50(timings[("merge", g["range"], "Firn (pprof)")])
        if g["seconds"]:
            go = p50(g["seconds"])
            lines.append(
                f"| {g['range']} | {n(g['files'])} | {secs(go)} ({', '.join(secs(s) for s in g['seconds'])}) | {secs(firn)} | "
                f"{go / firn:,.0f}x | >= {SPEEDUP_TARGET}x: {met(go / firn >= SPEEDUP_TARGET)} |"
            )
        else:
            lines.append(f"| {g['range']} | {n(g['files'])} | not feasible: over {g['timeout']:.0f} s | {secs(firn)} | > {g['timeout'] / firn:,.0f}x | |")
    return lines


def rss_section(r: dict, _timings: dict) -> list[str]:
    samples, budget = r["rss"]["samples"], r["rss"]["budget_bytes"]
    phases: dict[str, list[int]] = {}
    for _, b, phase in samples:
        phases.setdefault(phase, []).append(b)
    peak = max(b for _, b, _ in samples)
    lines = [
        "## Memory",
        "",
        f"`VmRSS` of the `firn serve` process every second for the whole run ({len(samples)} samples; `rss.png`). "
        f"Budget: {mib(budget)} (`--rss-budget-mib`).",
        "",
        "| phase | peak RSS | median RSS |",
        "|---|---|---|",
    ]
    for phase, bs in phases.items():
        lines.append(f"| {phase} | {mib(max(bs))} | {mib(float(np.median(bs)))} |")
    lines.append(f"| **whole run** | **{mib(peak)}** | under budget: {met(peak <= budget)} |")
    soak = r["soak"]
    if soak:
        lines += [
            "",
            f"Soak (`--rss-minutes`): the workload's requests sent again in order, looping (each pass "
            "stores its samples once more, at their own times, so every compaction window gets new blocks), "
            f"paced at the ingest's rate while sending, {n(r['soak_target'])} samples/s: {n(soak['requests'])} "
            f"requests, {n(soak['samples'] / soak['wall_seconds'])} samples/s achieved over "
            f"{soak['wall_seconds'] / 60:.1f} min, acknowledgements p50 {secs(soak['ack_p50'])}, p99 "
            f"{secs(soak['ack_p99'])}, {n(soak['retries'])} retried; peak RSS {mib(max(phases.get('soak', [0])))}.",
        ]
        puts = r.get("soak_puts")
        if puts:
            intervals = soak["wall_seconds"] / puts["flush_interval_secs"]
            flush_puts = puts["firn_block_puts_total"] - puts["firn_compactions_total"]
            rate = flush_puts / (intervals * max(puts["shards"], 1))
            lines += [
                "",
                "Object-store writes in the soak (steady ingest): "
                f"{n(puts['firn_block_puts_total'])} block PUTs (`firn_block_puts_total`): {n(flush_puts)} of "
                f"{n(puts['firn_flushes_total'])} flushes and {n(puts['firn_compactions_total'])} compaction outputs, over "
                f"{n(intervals)} flush intervals of {puts['flush_interval_secs']} s on {puts['shards']} shard(s): "
                f"**{rate:.2f} PUTs per shard per flush interval** (target at most 1: {met(rate <= 1)}).",
            ]
    else:
        lines += ["", "No soak in this run (`--rss-minutes N` keeps ingesting at the measured rate for N minutes)."]
    return lines


def checks_section(r: dict, _timings: dict) -> list[str]:
    c = r["checks"]
    lines = [
        "## Checks",
        "",
        f"- Firn stored {n(c['stored_cpu_rows'])} CPU rows, every CPU sample sent, from {c['first_time']} to "
        f"{c['last_time']} ns: the first and last profiles' own times (7 days back-dated); and as many "
        "`samples:count` rows, and a row for every `alloc_space` sample.",
        "- Total CPU nanoseconds of the merged service, Firn's flame graph against DuckDB and chDB "
        "(and the two peers' sums by stack against each other):",
    ]
    for rg, t in c["totals"].items():
        lines.append(f"  - {rg}: Firn {n(t['firn'])}, DuckDB {n(t['duckdb'])}, chDB {n(t['chdb'])}")
    lines += [
        "- 1 h: Firn's pprof holds exactly DuckDB's sum for every stack (frames by function name).",
        "- 24 h: the series by pod sum to the merge's total.",
    ]
    for g in r["go_pprof"]:
        if g["total"] is not None:
            lines.append(f"- {g['range']}: `go tool pprof`'s merged profile totals {n(g['total'])} CPU nanoseconds, as Firn's.")
    return lines


def latency_plot(path: Path, r: dict, timings: dict) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.5))
    hours = list(RANGE_HOURS.values())
    for system, style in zip(FIRN_MERGES + PEERS, ("o-", "s-", "^--", "v--")):
        ts = [timings[("merge", rg, system)] for rg in RANGE_HOURS]
        mid = [p50(t) for t in ts]
        up = [p90(t) - m for t, m in zip(ts, mid)]
        ax.errorbar(hours, mid, yerr=[[0] * len(mid), up], fmt=style, capsize=3, label=system)
    go = [(RANGE_HOURS[g["range"]], p50(g["seconds"])) for g in r["go_pprof"] if g["seconds"]]
    if go:
        ax.plot(*zip(*go), "kx:", label="go tool pprof")
    targets = [(RANGE_HOURS[rg], t) for rg, t in MERGE_TARGETS.items()]
    ax.plot(*zip(*targets), "r_", markersize=20, linestyle="none", label="target (p50)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(hours, list(RANGE_HOURS))
    ax.set_xlabel("time range of the merge")
    ax.set_ylabel("seconds (p50; bar to p90)")
    ax.set_title(f"Merge of one service's CPU time ({r['workload']['scale']} scale)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rss_plot(path: Path, r: dict) -> None:
    samples = r["rss"]["samples"]
    fig, ax = plt.subplots(figsize=(9, 4))
    phases = list(dict.fromkeys(p for _, _, p in samples))
    for phase in phases:
        pts = [(t, b / 2**20) for t, b, p in samples if p == phase]
        ax.plot(*zip(*pts), ".", markersize=3, label=phase)
    ax.axhline(r["rss"]["budget_bytes"] / 2**20, color="r", linestyle="--", label="budget")
    ax.set_xlabel("seconds since firn serve started")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("firn serve RSS")
    ax.grid(True, alpha=0.3)
    ax.legend(markerscale=4, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
