"""The seeded long-range workload: services with deep Go-like stacks, their pods' CPU and memory
profiles as gzipped pprof, back-dated over the seven days before `end`, and the same CPU samples
as flat Parquet for the peers.

    Service    functions (shared library frames near the root, its own below), a trie of
               stacks 20-60 frames deep, Zipf popularity; every profile carries its symbols
    Process    a pod of a service (pod, version, region labels) with its own CPU load
    Tier       a time range and the pods active in it (every pod in the last hour, fewer
               further back): the older the data, the fewer pods, so 7 days stay cheap
    Segment    a compaction window of the data (a UTC hour in the last 25 hours, a UTC day
               before): the driver ingests one segment at a time and waits for its flush,
               so no block straddles a window, as on a node that ran for the whole week
      ├─► segments/NNNN.pack   one Push request per process per interval: CPU + memory pprof
      ├─► parquet/NNNN.parquet one row per CPU sample (service, pod, version, region,
      │                        time_nanos, stack_id, value = cpu nanoseconds)
      └─► raw/                 the queried service's CPU pprof files of the last 24 h, for
                               `go tool pprof -proto`

Everything is drawn from `numpy` generators seeded by (seed, what, index), so a segment's
bytes do not depend on how many workers generate them.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import protos

HOUR = 3600 * 10**9
DAY = 24 * HOUR
SECOND = 10**9
CPU_PERIOD = 10_000_000  # 10 ms: 100 Hz
PROFILE_DURATION = 10 * SECOND  # of every profile, CPU and memory
MEM_PERIOD = 512 * 1024  # Go's default heap sampling rate
# A Parquet row's stack_id is the service's index times this plus the stack's index.
STACK_ID_STRIDE = 1_000_000

SERVICE_NAMES = [
    "checkout", "cart", "catalog", "payments", "search", "accounts", "shipping", "recommend",
]
VERSIONS = ["v1.41.0", "v1.42.0"]
REGIONS = ["us-east-1", "eu-west-1", "ap-south-1"]

# Library frames every Go service shares, near the root: how goroutines start.
ROOT_CHAINS = [
    (
        "runtime.goexit",
        "net/http.(*conn).serve",
        "net/http.serverHandler.ServeHTTP",
        "net/http.(*ServeMux).ServeHTTP",
        "net/http.HandlerFunc.ServeHTTP",
        "github.com/prometheus/client_golang/prometheus/promhttp.InstrumentHandlerCounter.func1",
        "net/http.HandlerFunc.ServeHTTP",
    ),
    (
        "runtime.goexit",
        "google.golang.org/grpc.(*Server).serveStreams.func1.1",
        "google.golang.org/grpc.(*Server).handleStream",
        "google.golang.org/grpc.(*Server).processUnaryRPC",
        "google.golang.org/grpc.chainUnaryInterceptors.func1",
        "go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc.UnaryServerInterceptor.func1",
    ),
    (
        "runtime.goexit",
        "golang.org/x/sync/errgroup.(*Group).Go.func1",
    ),
]
# Library frames in the middle of a service's stacks that call back into service code.
CALLBACK_CHAINS = [
    (
        "encoding/json.Marshal",
        "encoding/json.(*encodeState).marshal",
        "encoding/json.(*encodeState).reflectValue",
        "encoding/json.structEncoder.encode",
        "encoding/json.sliceEncoder.encode",
        "encoding/json.arrayEncoder.encode",
        "encoding/json.addrMarshalerEncoder",
    ),
    (
        "encoding/json.Unmarshal",
        "encoding/json.(*decodeState).unmarshal",
        "encoding/json.(*decodeState).value",
        "encoding/json.(*decodeState).object",
    ),
    ("sort.Sort", "sort.pdqsort", "sort.insertionSort"),
    ("sync.(*Once).Do", "sync.(*Once).doSlow"),
    ("html/template.(*Template).Execute", "text/template.(*state).walk", "text/template.(*state).evalCommand", "text/template.(*state).evalCall", "reflect.Value.Call", "reflect.Value.call"),
    ("context.(*cancelCtx).propagateCancel.func2",),
]
# The services' own code: packages of this module, functions named from these words.
OWN_MODULE = "github.com/acme/"
PACKAGES = [
    "api", "store", "cache", "pricing", "inventory", "auth", "session", "index", "codec",
    "queue", "ledger", "rules", "geo", "render", "client", "metrics",
]
TYPES = ["Server", "Handler", "Repo", "Cache", "Client", "Engine", "Planner", "Encoder", "Pool", "Worker"]
VERBS = ["Get", "List", "Put", "Load", "Apply", "Resolve", "Build", "Encode", "Decode", "Score", "Check", "Merge", "Fetch", "Sync"]
NOUNS = ["Order", "Item", "Price", "Cart", "User", "Token", "Rule", "Batch", "Page", "Quote", "Rate", "Entry"]


@dataclass(frozen=True)
class Tier:
    """The pods active over the `span` before the end: the first `services` services, the
    first `pods` pods of each, one profile every `interval` seconds (drawn uniformly)."""

    name: str
    span: int  # seconds
    services: int
    pods: int
    interval: tuple[float, float]


@dataclass(frozen=True)
class Scale:
    """The shape of a workload."""

    services: int
    pods: int
    # Service functions per service (library frames come on top).
    functions: int
    cpu_stacks: int
    mem_stacks: int
    # CPU a process uses, in cores (its 10 s profile holds about cores * 1,000 ticks).
    cores: tuple[float, float]
    # Sampled allocations per memory profile.
    allocs: tuple[float, float]
    # Shortest span first; each tier's pods include the next one's.
    tiers: tuple[Tier, ...]


SCALES = {
    "full": Scale(
        services=8,
        pods=6,
        functions=400,
        cpu_stacks=2000,
        mem_stacks=300,
        cores=(0.2, 0.8),
        allocs=(40, 120),
        tiers=(
            Tier("1h", 3600, services=8, pods=6, interval=(10, 15)),
            Tier("24h", 24 * 3600, services=8, pods=1, interval=(10, 15)),
            Tier("7d", 7 * 24 * 3600, services=2, pods=1, interval=(10, 15)),
        ),
    ),
    # For checking the pipeline with a debug build: the same shape, fewer pods, smaller
    # profiles, and sparser profiles in the older tiers.
    "small": Scale(
        services=3,
        pods=3,
        functions=200,
        cpu_stacks=600,
        mem_stacks=100,
        cores=(0.1, 0.3),
        allocs=(20, 40),
        tiers=(
            Tier("1h", 3600, services=3, pods=3, interval=(10, 15)),
            Tier("24h", 24 * 3600, services=3, pods=1, interval=(60, 90)),
            Tier("7d", 7 * 24 * 3600, services=2, pods=1, interval=(300, 450)),
        ),
    ),
}


def rng_for(seed: int, *what: int | str) -> np.random.Generator:
    """A generator for one part of the workload, independent of every other part."""
    key = [seed] + [zlib.crc32(w.encode()) if isinstance(w, str) else w for w in what]
    return np.random.default_rng(key)


def zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities proportional to 1 / rank^exponent, ranks in a random order."""
    w = 1.0 / np.arange(1, n + 1) ** exponent
    rng.shuffle(w)
    return w / w.sum()


def source_file(function: str) -> str:
    """A plausible source path for a Go function name: its package's directory in the
    service's tree, the module cache or GOROOT."""
    package = function[: function.index(".", function.rfind("/") + 1)]
    last = package.rsplit("/", 1)[-1]
    if package.startswith(OWN_MODULE):
        return f"/build/{package.removeprefix(OWN_MODULE)}/{last}.go"
    if "." in package.split("/")[0]:  # github.com/..., google.golang.org/...
        return f"/go/pkg/mod/{package}/{last}.go"
    return f"/usr/local/go/src/{package}/{last}.go"


class Service:
    """One service's code: its functions (library then its own), a trie of stacks, and how
    often each stack is on CPU or allocates; and its pprof symbol table, serialised once."""

    def __init__(self, index: int, scale: Scale, seed: int, pb):
        self.index = index
        self.name = SERVICE_NAMES[index]
        rng = rng_for(seed, "service", index)
        library = sorted({f for chain in ROOT_CHAINS + CALLBACK_CHAINS for f in chain})
        own = self._own_functions(scale.functions, rng)
        self.functions = library + own
        fid = {f: i for i, f in enumerate(self.functions)}
        first_own = len(library)
        # A call graph over the service's functions: each calls a few others, so stacks
        # follow paths and share prefixes as real code does.
        callees = rng.integers(first_own, len(self.functions), size=(len(self.functions), 4))
        entries = rng.integers(first_own, len(self.functions), size=12)
        stacks: list[tuple[int, ...]] = []
        seen: set[tuple[int, ...]] = set()
        while len(stacks) < scale.cpu_stacks:
            depth = int(rng.integers(20, 61))
            if stacks and rng.random() < 0.9:
                # Grow from a prefix of an existing stack (older stacks more often).
                base = stacks[int(len(stacks) * rng.random() ** 2)]
                frames = list(base[: int(rng.integers(len(ROOT_CHAINS[0]) // 2, min(len(base), depth)))])
            else:
                frames = [fid[f] for f in ROOT_CHAINS[int(rng.integers(len(ROOT_CHAINS)))]]
                frames.append(int(entries[int(rng.integers(len(entries)))]))
            while len(frames) < depth:
                here = frames[-1]
                if rng.random() < 0.04 and len(frames) < depth - 8:
                    chain = CALLBACK_CHAINS[int(rng.integers(len(CALLBACK_CHAINS)))]
                    frames.extend(fid[f] for f in chain)
                    frames.append(int(rng.integers(first_own, len(self.functions))))
                elif here >= first_own and rng.random() < 0.9:
                    frames.append(int(callees[here][min(int(rng.exponential(1.0)), 3)]))
                else:
                    frames.append(int(rng.integers(first_own, len(self.functions))))
            if frames[-1] < first_own:  # a leaf is always the service's own code
                frames[-1] = int(rng.integers(first_own, len(self.functions)))
            stack = tuple(frames)
            if stack not in seen:
                seen.add(stack)
                stacks.append(stack)
        self.stacks = stacks
        self.cpu_weights = zipf_weights(len(stacks), 1.1, rng)
        # Allocation sites: a subset of the stacks, with their own popularity, a typical
        # sampled size and the share still live when the profile is taken.
        self.mem_stacks = np.sort(rng.choice(len(stacks), size=scale.mem_stacks, replace=False))
        self.mem_weights = zipf_weights(scale.mem_stacks, 1.2, rng)
        self.mem_bytes = (MEM_PERIOD * rng.lognormal(0.0, 1.0, scale.mem_stacks)).astype(np.int64) + 16
        self.mem_live = rng.choice([0.0, 0.0, 0.1, 0.3, 0.6, 1.0], size=scale.mem_stacks)
        # pprof location ids are the function's index + 1 (dense, as Go writes them), and a
        # sample lists its locations leaf first.
        self.location_ids = [[f + 1 for f in reversed(s)] for s in stacks]
        self.cpu_header, self.mem_header = self._headers(pb, rng)

    def _own_functions(self, n: int, rng: np.random.Generator) -> list[str]:
        names: set[str] = set()
        module = f"{OWN_MODULE}{self.name}"
        while len(names) < n:
            pkg = PACKAGES[int(rng.integers(len(PACKAGES)))]
            typ = TYPES[int(rng.integers(len(TYPES)))]
            verb = VERBS[int(rng.integers(len(VERBS)))]
            noun = NOUNS[int(rng.integers(len(NOUNS)))]
            if rng.random() < 0.2:
                names.add(f"{module}/internal/{pkg}.{verb.lower()}{noun}.func{int(rng.integers(1, 4))}")
            else:
                names.add(f"{module}/internal/{pkg}.(*{typ}).{verb}{noun}")
        return sorted(names)

    def _headers(self, pb, rng: np.random.Generator) -> tuple[bytes, bytes]:
        """The serialised parts of a CPU and a memory profile that every profile of this
        service shares: sample and period types, the mapping, functions, locations and
        strings. A profile is its header followed by its own samples and times (protobuf
        concatenation merges messages: repeated fields append, scalars take the last)."""
        strings = [""]
        index: dict[str, int] = {}

        def s(text: str) -> int:
            if text not in index:
                index[text] = len(strings)
                strings.append(text)
            return index[text]

        symbols = pb.Profile()
        symbols.mapping.add(
            id=1,
            memory_start=0x400000,
            memory_limit=0x400000 + 64 * len(self.functions) + 0x10000,
            filename=s(f"/app/{self.name}"),
            build_id=s(rng.bytes(20).hex()),
            has_functions=True,
            has_filenames=True,
            has_line_numbers=True,
        )
        for i, name in enumerate(self.functions):
            start = int(rng.integers(20, 2000))
            symbols.function.add(id=i + 1, name=s(name), system_name=s(name), filename=s(source_file(name)), start_line=start)
            location = symbols.location.add(id=i + 1, mapping_id=1, address=0x401000 + 64 * i)
            location.line.add(function_id=i + 1, line=start + int(rng.integers(1, 40)))
        cpu = pb.Profile(
            sample_type=[pb.ValueType(type=s("samples"), unit=s("count")), pb.ValueType(type=s("cpu"), unit=s("nanoseconds"))],
            period_type=pb.ValueType(type=s("cpu"), unit=s("nanoseconds")),
            period=CPU_PERIOD,
        )
        mem = pb.Profile(
            sample_type=[pb.ValueType(type=s("alloc_space"), unit=s("bytes")), pb.ValueType(type=s("inuse_space"), unit=s("bytes"))],
            period_type=pb.ValueType(type=s("space"), unit=s("bytes")),
            period=MEM_PERIOD,
        )
        symbols.string_table.extend(strings)
        shared = symbols.SerializeToString()
        return cpu.SerializeToString() + shared, mem.SerializeToString() + shared

    def cpu_profile(self, pb, time_nanos: int, counts: np.ndarray) -> tuple[bytes, np.ndarray]:
        """A gzipped CPU profile of `counts` ticks per stack; also the stacks it holds."""
        stacks = np.flatnonzero(counts)
        own = pb.Profile(time_nanos=time_nanos, duration_nanos=PROFILE_DURATION)
        add = own.sample.add
        for i, c in zip(stacks.tolist(), counts[stacks].tolist()):
            add(location_id=self.location_ids[i], value=(c, c * CPU_PERIOD))
        return gzip(self.cpu_header + own.SerializeToString()), stacks

    def mem_profile(self, pb, time_nanos: int, counts: np.ndarray) -> tuple[bytes, int]:
        """A gzipped memory profile of `counts` sampled allocations per allocation site;
        also how many samples it holds."""
        sites = np.flatnonzero(counts)
        own = pb.Profile(time_nanos=time_nanos, duration_nanos=PROFILE_DURATION)
        add = own.sample.add
        alloc = counts * self.mem_bytes
        inuse = (alloc * self.mem_live).astype(np.int64)
        for j in sites.tolist():
            add(location_id=self.location_ids[self.mem_stacks[j]], value=(int(alloc[j]), int(inuse[j])))
        return gzip(self.mem_header + own.SerializeToString()), len(sites)


def gzip(raw: bytes) -> bytes:
    """gzip at the fastest level, as Go's runtime/pprof writes profiles."""
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    return c.compress(raw) + c.flush()


@dataclass(frozen=True)
class Process:
    """One pod of a service: its labels, CPU load and allocation rate, and when it runs."""

    index: int
    service: int
    pod: str
    version: str
    region: str
    cores: float
    allocs: float
    # Per tier holding it, widest first, (start in ns, interval in s): from its start the
    # process profiles at that interval.
    phases: tuple[tuple[int, tuple[float, float]], ...]

    @property
    def start(self) -> int:
        return self.phases[0][0]

    def labels(self, service_name: str) -> list[tuple[str, str]]:
        return [("service_name", service_name), ("pod", self.pod), ("version", self.version), ("region", self.region)]


class Workload:
    """The whole workload for one (scale, seed, end): its services, processes, segments and
    the time of every profile. `generate` writes it to disk."""

    def __init__(self, scale_name: str, seed: int, end: int, pb):
        self.scale_name = scale_name
        self.scale = scale = SCALES[scale_name]
        self.seed = seed
        self.end = end
        self.services = [Service(i, scale, seed, pb) for i in range(scale.services)]
        self.queried = self.services[0].name
        self.processes = self._processes()
        self.start = min(p.start for p in self.processes)
        self.segments = self._segments()
        self.times = [self._times(p) for p in self.processes]

    def _processes(self) -> list[Process]:
        scale = self.scale
        rng = rng_for(self.seed, "processes")
        processes = []
        for s in range(scale.services):
            template = rng.bytes(5).hex()[:9]
            for i in range(scale.pods):
                # Tiers, widest first, that hold this pod; each starts where the wider ended.
                tiers = [t for t in reversed(scale.tiers) if s < t.services and i < t.pods]
                if not tiers:
                    continue
                phases = tuple((self.end - t.span * SECOND, t.interval) for t in tiers)
                processes.append(
                    Process(
                        index=len(processes),
                        service=s,
                        pod=f"{SERVICE_NAMES[s]}-{template}-{rng.bytes(3).hex()[:5]}",
                        version=VERSIONS[i % len(VERSIONS)],
                        region=REGIONS[(i // len(VERSIONS)) % len(REGIONS)],
                        cores=float(rng.uniform(*scale.cores)),
                        allocs=float(rng.uniform(*scale.allocs)),
                        phases=phases,
                    )
                )
        return processes

    def _times(self, p: Process) -> np.ndarray:
        """The start of every profile of `p`, in ns: a seeded phase, then gaps drawn from the
        interval of the tier each falls in; the last profile ends by `end`."""
        rng = rng_for(self.seed, "times", p.index)
        times = []
        t = p.start + int(rng.uniform(0, p.phases[0][1][1]) * SECOND)
        limit = self.end - PROFILE_DURATION
        bounds = [start for start, _ in p.phases[1:]] + [self.end]
        for (_, interval), until in zip(p.phases, bounds):
            while t < until and t <= limit:
                times.append(t)
                t += int(rng.uniform(*interval) * 1000) * 10**6  # ms resolution
        return np.array(times, dtype=np.int64)

    def _segments(self) -> list[tuple[int, int]]:
        """Compaction windows over the data: UTC days until 25 hours before the end, UTC
        hours after, so every segment lies inside the window compaction will give it."""
        hourly_from = (self.end - 25 * HOUR) // HOUR * HOUR
        bounds = [self.start]
        day = (self.start // DAY + 1) * DAY
        while day < hourly_from:
            bounds.append(day)
            day += DAY
        hour = hourly_from
        while hour < self.end:
            if hour > bounds[-1]:
                bounds.append(hour)
            hour += HOUR
        bounds.append(self.end + 1)
        return list(zip(bounds[:-1], bounds[1:]))

    def describe(self) -> dict:
        """What the data is, for the report."""
        tiers = [
            {"tier": t.name, "services": t.services, "pods_per_service": t.pods, "interval_s": list(t.interval)}
            for t in self.scale.tiers
        ]
        return {
            "scale": self.scale_name,
            "seed": self.seed,
            "end_nanos": self.end,
            "start_nanos": self.start,
            "services": [s.name for s in self.services],
            "queried_service": self.queried,
            "processes": len(self.processes),
            "functions_per_service": len(self.services[0].functions),
            "cpu_stacks_per_service": self.scale.cpu_stacks,
            "mem_stacks_per_service": self.scale.mem_stacks,
            "segments": len(self.segments),
            "tiers": tiers,
        }


# The workload and the compiled protos of the generating process, inherited by the pool's
# forked workers.
_WORKLOAD: Workload | None = None
_PB = None


def generate(workload: Workload, pb, out: Path, workers: int) -> list[dict]:
    """Writes every segment (pack, Parquet, raw files) under `out` with `workers` forked
    processes; returns the segments' indexes, also saved as `out/segments.json`."""
    global _WORKLOAD, _PB
    _WORKLOAD, _PB = workload, pb
    for d in ("segments", "parquet", "raw"):
        (out / d).mkdir(parents=True, exist_ok=True)
    # The largest segments first, so that no worker is left with a big one at the end.
    sizes = [sum(int(((t >= a) & (t < b)).sum()) for t in workload.times) for a, b in workload.segments]
    jobs = [(i, out) for i in sorted(range(len(sizes)), key=lambda i: -sizes[i])]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        indexes = sorted(pool.imap_unordered(_generate_segment, jobs), key=lambda x: x["segment"])
    (out / "segments.json").write_text(json.dumps(indexes))
    return indexes


def _generate_segment(job: tuple[int, Path]) -> dict:
    """One segment: every profile of every process active in it, in time order."""
    n, out = job
    w, pb = _WORKLOAD, _PB
    assert w is not None and pb is not None
    push = protos.push_module()
    seg_start, seg_end = w.segments[n]
    # (time, process) of every cycle in the segment, in time order.
    cycles = []
    for p in w.processes:
        times = w.times[p.index]
        cycles.extend((t, p.index) for t in times[(times >= seg_start) & (times < seg_end)].tolist())
    cycles.sort()
    rngs = {i: rng_for(w.seed, "profiles", n, i) for i in {i for _, i in cycles}}
    columns: dict[str, list[np.ndarray]] = {"process": [], "time_nanos": [], "stack_id": [], "value": []}
    entries, raw = [], []
    pack = out / "segments" / f"{n:04d}.pack"
    with open(pack, "wb") as f:
        for t, i in cycles:
            p, rng = w.processes[i], rngs[i]
            service = w.services[p.service]
            load = diurnal(t)
            ticks = rng.multinomial(rng.poisson(p.cores * 1000 * load), service.cpu_weights)
            cpu, stacks = service.cpu_profile(pb, t, ticks)
            allocs = rng.multinomial(rng.poisson(p.allocs * load), service.mem_weights)
            mem, mem_samples = service.mem_profile(pb, t, allocs)
            # What an agent pushes after each cycle: both profiles of the process, one
            # series each (`__name__` names the profile type).
            labels = p.labels(service.name)
            request = push.PushRequest(
                series=[
                    push.RawProfileSeries(
                        labels=[push.LabelPair(name=k, value=v) for k, v in [("__name__", name)] + labels],
                        samples=[push.RawSample(raw_profile=profile)],
                    )
                    for name, profile in (("process_cpu", cpu), ("memory", mem))
                ]
            ).SerializeToString()
            entries.append([f.tell(), len(request), t, len(stacks), mem_samples])
            f.write(request)
            columns["process"].append(np.full(len(stacks), i, dtype=np.int32))
            columns["time_nanos"].append(np.full(len(stacks), t, dtype=np.int64))
            columns["stack_id"].append(stacks.astype(np.int64) + service.index * STACK_ID_STRIDE)
            columns["value"].append(ticks[stacks].astype(np.int64) * CPU_PERIOD)
            if service.name == w.queried and t >= w.end - DAY:
                name = f"{t}-{p.pod}.pb.gz"
                (out / "raw" / name).write_bytes(cpu)
                raw.append(name)
    rows = write_parquet(w, columns, out / "parquet" / f"{n:04d}.parquet")
    return {
        "segment": n,
        "start": seg_start,
        "end": seg_end,
        "pack": str(pack),
        # [offset, length, time, CPU samples, memory samples] per request, in time order.
        "requests": entries,
        "cpu_rows": rows,
        "raw": sorted(raw),
    }


def diurnal(t: int) -> float:
    """Load over the day: 0.7x at 03:00 UTC, 1.3x at 15:00."""
    hours = (t % DAY) / HOUR
    return 1.0 + 0.3 * math.sin(2 * math.pi * (hours - 9) / 24)


def write_parquet(w: Workload, columns: dict[str, list[np.ndarray]], path: Path) -> int:
    """The segment's CPU samples, one row each, sorted by (service, pod, time, stack) as
    Firn's blocks are, so the peers can skip row groups by their statistics too."""
    if not columns["process"]:
        return 0
    process = np.concatenate(columns["process"])
    time_nanos = np.concatenate(columns["time_nanos"])
    stack_id = np.concatenate(columns["stack_id"])
    value = np.concatenate(columns["value"])
    procs = w.processes

    def per_process(values: list[str], of) -> np.ndarray:
        return np.array([values.index(of(p)) for p in procs], dtype=np.int32)[process]

    service = per_process(SERVICE_NAMES, lambda p: SERVICE_NAMES[p.service])
    order = np.lexsort((stack_id, time_nanos, process, service))

    def dictionary(codes: np.ndarray, values: list[str]) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(codes[order]), pa.array(values))

    pods = [p.pod for p in procs]
    table = pa.table(
        {
            "service": dictionary(service, SERVICE_NAMES),
            "pod": dictionary(per_process(pods, lambda p: p.pod), pods),
            "version": dictionary(per_process(VERSIONS, lambda p: p.version), VERSIONS),
            "region": dictionary(per_process(REGIONS, lambda p: p.region), REGIONS),
            "time_nanos": time_nanos[order],
            "stack_id": stack_id[order],
            "value": value[order],
        }
    )
    pq.write_table(table, path, compression="zstd", row_group_size=1 << 20)
    return len(value)


def check_request(workload: Workload, pb, index: dict) -> None:
    """Decodes a segment's first request with the compiled protos and checks that it says
    what the generator meant: real pprof with its own time, sample types and samples."""
    push = protos.push_module()
    offset, length, t, cpu_samples, mem_samples = index["requests"][0]
    with open(index["pack"], "rb") as f:
        f.seek(offset)
        request = push.PushRequest.FromString(f.read(length))
    for series, samples, sample_types in zip(
        request.series, (cpu_samples, mem_samples), (["samples", "cpu"], ["alloc_space", "inuse_space"])
    ):
        labels = {l.name: l.value for l in series.labels}
        service = next(s for s in workload.services if s.name == labels["service_name"])
        profile = pb.Profile.FromString(zlib.decompress(series.samples[0].raw_profile, 31))
        names = [profile.string_table[v.type] for v in profile.sample_type]
        assert names == sample_types, names
        assert profile.time_nanos == t, (profile.time_nanos, t)
        assert len(profile.sample) == samples, (len(profile.sample), samples)
        depths = [len(s.location_id) for s in profile.sample]
        assert 20 <= min(depths) and max(depths) <= 60, (min(depths), max(depths))
        assert len(profile.function) == len(service.functions)
