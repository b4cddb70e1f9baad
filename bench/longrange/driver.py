"""Firn's side of the benchmark: a `firn serve` process with its RSS sampled every second,
ingest over Pyroscope Push (Connect, `application/proto`) from concurrent client threads,
waiting for flushes and compaction to settle, and a sustained-ingest soak.

    Server ──► firn serve --data-dir DIR/firn-data --listen 127.0.0.1:PORT ...
    RssSampler (thread): /proc/PID/status VmRSS every second, tagged with the current phase
    ingest: per segment, its Push requests from N threads, then a barrier until the
            buffer is empty (the segment is in blocks) ─► throughput, ack latencies
    settle: buffer empty, no compaction pending, compactions and block files unchanged
    soak:   the same requests again, paced at a given rate, for N minutes
"""

from __future__ import annotations

import http.client
import json
import mmap
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

PUSH_PATH = "/push.v1.PusherService/Push"
PUSH_HEADERS = {"Content-Type": "application/proto", "Connect-Protocol-Version": "1"}
# Statuses a write is retried on, after its Retry-After (Firn's overload answers).
RETRIED = {429, 503}


class Client:
    """HTTP/1.1 to one node, one keep-alive connection per thread."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "connection", None)
        if c is None:
            c = self._local.connection = http.client.HTTPConnection(self.host, self.port, timeout=600)
        return c

    def request(self, method: str, path: str, params: dict | None = None, body=None, headers: dict | None = None):
        """(status, headers (case-insensitive), body). A keep-alive connection the server
        closed is reopened once; a write sent twice that way would show in the run's checks,
        which count every stored row."""
        if params:
            path = f"{path}?{urllib.parse.urlencode(params)}"
        for attempt in (0, 1):
            c = self._connection()
            try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                return r.status, r.headers, r.read()
            except (OSError, http.client.HTTPException):
                c.close()
                self._local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get_ok(self, path: str, params: dict | None = None) -> bytes:
        status, _, body = self.request("GET", path, params)
        if status != 200:
            raise RuntimeError(f"GET {path} {params}: {status} {body[:500]!r}")
        return body

    def sql(self, statement: str) -> list[list[str]]:
        status, _, body = self.request("POST", "/api/v1/sql", body=statement.encode())
        if status != 200:
            raise RuntimeError(f"SQL {statement!r}: {status} {body[:500]!r}")
        return json.loads(body)["rows"]

    def metrics(self) -> dict[str, float]:
        """`/metrics` as {name{labels}: value}."""
        out = {}
        for line in self.get_ok("/metrics").decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


class Server:
    """One `firn serve` on a free localhost port, its log in `log`."""

    def __init__(self, binary: Path, data_dir: Path, log: Path, flush_interval: int, compaction_interval: int):
        self.binary, self.data_dir, self.log = binary, data_dir, log
        self.flush_interval, self.compaction_interval = flush_interval, compaction_interval
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.client = Client("127.0.0.1", self.port)

    @property
    def command(self) -> list[str]:
        return [
            str(self.binary), "serve",
            "--data-dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.port}",
            "--compaction-interval-secs", str(self.compaction_interval),
            # Compacted-away blocks are deleted soon, so the bytes under objects/ after
            # settling are the live blocks'.
            "--compaction-delete-delay-secs", str(self.compaction_interval),
            "--flush-interval-secs", str(self.flush_interval),
        ]

    def __enter__(self) -> Server:
        """Starts the node and waits until it answers `/ready`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._ready, timeout=120, what=f"firn serve to be ready (log: {self.log})", every=0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"firn serve exited with {self.process.returncode}; see {self.log}")
        try:
            return self.client.request("GET", "/ready")[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM (the node flushes and drains), SIGKILL after a minute."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def block_files(self) -> dict[str, int]:
        """Every file of a block under the object store's directory, with its size."""
        objects = self.data_dir / "objects"
        return {
            str(p.relative_to(objects)): p.stat().st_size
            for p in objects.rglob("*")
            if p.is_file() and "blocks" in p.relative_to(objects).parts
        }


def free_port() -> int:
    """A localhost port free now (the node binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RssSampler(threading.Thread):
    """VmRSS of `pid` every second until stopped; each sample carries the phase the run was
    in (set `phase`)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.phase = "start"
        self.samples: list[tuple[float, int, str]] = []  # (seconds since start, bytes, phase)
        self._done = threading.Event()
        self._start = time.monotonic()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                rss = vm_rss(self.pid)
            except OSError:
                return  # the process is gone
            self.samples.append((time.monotonic() - self._start, rss, self.phase))
            self._done.wait(1.0)

    def stop(self) -> None:
        self._done.set()
        self.join()


def vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for {pid}")


@dataclass
class Ingested:
    """What an ingest (or a soak) sent and how it was answered."""

    requests: int = 0
    bytes: int = 0
    cpu_samples: int = 0
    mem_samples: int = 0
    retries: int = 0
    # Acknowledgement latency of every request, first send to its 200, retries included.
    latencies: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    # Time spent sending (the wall time less the barriers' waits for a flush).
    send_seconds: float = 0.0
    barrier_seconds: float = 0.0

    @property
    def samples(self) -> int:
        return self.cpu_samples + self.mem_samples

    def add(self, entry: list[int], latency: float) -> None:
        """Counts one acknowledged request (an index entry) and its latency."""
        self.requests += 1
        self.bytes += entry[1]
        self.cpu_samples += entry[3]
        self.mem_samples += entry[4]
        self.latencies.append(latency)


class Pack:
    """A segment's pack file, mapped: its Push requests by index entry."""

    def __init__(self, path: str):
        self._file = open(path, "rb")
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)

    def body(self, entry: list[int]) -> bytes:
        offset, length = entry[0], entry[1]
        return self._map[offset : offset + length]

    def close(self) -> None:
        self._map.close()
        self._file.close()


def push(client: Client, body: bytes, result: Ingested, lock: threading.Lock) -> float:
    """Sends one Push until it is acknowledged; its latency, retries included."""
    started = time.perf_counter()
    while True:
        status, headers, answer = client.request("POST", PUSH_PATH, body=body, headers=PUSH_HEADERS)
        if status == 200:
            return time.perf_counter() - started
        if status not in RETRIED:
            raise RuntimeError(f"Push answered {status}: {answer[:500]!r}")
        with lock:
            result.retries += 1
        time.sleep(float(headers.get("Retry-After", "0.5")))


def ingest(client: Client, segments: list[dict], clients: int, log) -> Ingested:
    """Every segment's requests from `clients` threads, then a barrier until the buffer is
    empty, so that each segment is flushed into blocks of its own before the next begins."""
    result = Ingested()
    started = time.monotonic()
    for seg in segments:
        requests = seg["requests"]
        if not requests:
            continue
        sending = time.monotonic()
        send_segment(client, seg, clients, result)
        sent = time.monotonic()
        wait_until(lambda: client.metrics()["firn_buffer_samples"] == 0, timeout=600, what="the buffer to flush")
        flushed = time.monotonic()
        result.send_seconds += sent - sending
        result.barrier_seconds += flushed - sent
        log(
            f"segment {seg['segment'] + 1}/{len(segments)}: {len(requests)} requests in "
            f"{sent - sending:.1f} s, flushed {flushed - sent:.1f} s later"
        )
    result.wall_seconds = time.monotonic() - started
    return result


def send_segment(client: Client, seg: dict, clients: int, result: Ingested) -> None:
    """A segment's requests from `clients` threads, each taking the next in time order."""
    requests = seg["requests"]
    pack = Pack(seg["pack"])
    lock = threading.Lock()
    pending = iter(requests)

    def worker() -> None:
        while True:
            with lock:
                entry = next(pending, None)
            if entry is None:
                return
            latency = push(client, pack.body(entry), result, lock)
            with lock:
                result.add(entry, latency)

    try:
        run_threads(worker, clients)
    finally:
        pack.close()


def run_threads(target, n: int) -> None:
    """Runs `target` on `n` threads and re-raises the first failure."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as e:  # noqa: BLE001 - re-raised below, in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=guarded) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def wait_until(condition, timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def settle(server: Server, not_before_ns: int, log) -> dict:
    """Waits until the buffer is empty, no compaction job is pending, and neither the
    compaction count nor the block files changed over three compaction rounds. Waits first
    until `not_before_ns` (wall clock), when the last complete hour window of the data can
    be compacted. Returns the last metrics."""
    client = server.client
    wait_s = (not_before_ns - time.time_ns()) / 1e9
    if wait_s > 0:
        log(f"waiting {wait_s:.0f} s until the last full hour of data may be compacted")
        time.sleep(wait_s)
    quiet_for = 3 * server.compaction_interval
    last = None
    quiet_since = time.monotonic()
    started = time.monotonic()
    while True:
        m = client.metrics()
        state = (m["firn_compactions_total"], tuple(sorted(server.block_files().items())))
        idle = m["firn_buffer_samples"] == 0 and m["firn_compaction_pending_jobs"] == 0
        if state != last or not idle:
            last, quiet_since = state, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_for:
            log(f"settled after {time.monotonic() - started:.0f} s: {m['firn_compactions_total']:.0f} compactions, {m['firn_blocks']:.0f} blocks")
            return m
        if time.monotonic() - started > 3600:
            raise TimeoutError("compaction did not settle within an hour")
        time.sleep(1.0)


def soak(client: Client, segments: list[dict], clients: int, samples_per_s: float, minutes: float, log) -> Ingested:
    """Sends the workload's requests again, in order and looping, paced so that samples go
    out at `samples_per_s`, for `minutes`. Each thread takes the next request and waits for
    its scheduled time; if the node falls behind, requests go as fast as it answers, and
    whatever is still due at the end is not sent (the achieved rate tells)."""
    result = Ingested()
    lock = threading.Lock()
    flat = [(seg["pack"], e) for seg in segments for e in seg["requests"]]
    packs = {seg["pack"]: Pack(seg["pack"]) for seg in segments if seg["requests"]}
    start = time.monotonic()
    stop_at = start + minutes * 60
    state = {"k": 0, "due": 0.0}

    def worker() -> None:
        while True:
            with lock:
                pack, entry = flat[state["k"] % len(flat)]
                state["k"] += 1
                due = start + state["due"]
                state["due"] += (entry[3] + entry[4]) / samples_per_s
            if due >= stop_at or time.monotonic() >= stop_at:
                return
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            latency = push(client, packs[pack].body(entry), result, lock)
            with lock:
                result.add(entry, latency)

    log(f"soak: {minutes:g} min at {samples_per_s:,.0f} samples/s")
    try:
        run_threads(worker, clients)
    finally:
        for p in packs.values():
            p.close()
    result.wall_seconds = result.send_seconds = time.monotonic() - start
    return result
