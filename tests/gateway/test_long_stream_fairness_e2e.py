"""Long streams are fair (issue 21): two 5,000-chunk streams on a worker do not starve the
other users' short calls on it.

The fake upstream sends a long answer as fast as it can, so its chunks pile up in the
gateway's HTTP client buffer and a relay that never gives the loop back would hold it for
the whole burst (measured before: other users' p99 12 s with two such streams). Here one
real gateway process (one worker, PostgreSQL + Redis) serves short plain calls alone and
beside two 5,000-chunk streams, in alternating rounds so that a change of load on the
shared machine hits both alike; then:

1. no call waits long for the event loop: the gateway's own watchdog
   (`wfg_gateway_event_loop_wait_seconds`: the CPU of one round of the loop, so the
   machine being busy elsewhere does not count) saw 95% of rounds within 10 ms, 99% within
   50 ms and none of 250 ms while the test ran; the main check, robust on a busy machine;
2. the short calls' p99 beside the streams stays within `P99_RATIO_LIMIT` of their p99
   alone, rounds pooled (compared as a ratio, never as absolute times); the loop
   thread's wait for a CPU (/proc schedstat) is printed beside it;
3. each long stream arrived whole (every chunk, then `[DONE]`).

The figures (ratio, p50/p90/p95/p99, loop rounds, full garbage collections, the streams'
chunks/s) are printed and, with `WFG_FAIRNESS_RECORD=FILE`, appended to FILE as a JSON
line. `test_fairness_ab` (only with `WFG_FAIRNESS_AB=NAMES`) is no check: it measures
this gateway against one with `WFG_FAIRNESS_OFF=NAMES` (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from portal.credits.units import credits_to_units
from portal.db import open_database
from portal.db.migrate import upgrade
from portal.settings import PROJECT_ROOT
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import (
    FundedUser,
    RunningGateway,
    funded_user,
    start_gateway,
    stop_gateway,
)
from tests.fixtures.services import scratch_postgres_database

pytestmark = [pytest.mark.gateway, pytest.mark.postgres, pytest.mark.redis]

MODEL = "gpt-4.1-nano"
LONG_CHUNKS = 5_000
ROUNDS = 3
SHORT_CONNECTIONS = 2
MIN_SAMPLES = 40  # short calls per window at least
# Bucket bounds of loop_lag.WAIT: 95% of the loop's rounds take at most 10 ms of CPU, 99%
# at most 50 ms, none 250 ms. Measured on a 2-core machine at load 7-19: 92-98% within
# 5 ms, 98.2-99.3% within 10 ms, 99.8-100% within 50 ms, the longest being garbage
# collections of LiteLLM's kept chunks (20-100 ms); before the relay gave way: 72-85%
# within 5 ms, 81-89% within 10 ms, 95-96% within 50 ms, holds of 0.25-1 s.
ROUND_P95_LIMIT_SECONDS = 0.01
ROUND_P99_LIMIT_SECONDS = 0.05
ROUND_MAX_SECONDS = 0.25
# Short calls' p99 beside the streams ÷ alone. 2× is the aim, not yet met reliably:
# 1.58-1.94× in paired runs at load 1.6-2.8, 1.6-2.4× for this test alone
# (bench/RESULTS.md, "Long streams", Fairness; 1.9-2.1× before short slices and deferred
# full collections, 11-52× before the relay gave way). One run's ratio moves with the
# shared 2-core machine (5.2× at load 6: a worker busy all along gets the cores later
# than an idle one; its loop thread's wait for a CPU is printed), so the bound is 6×.
P99_RATIO_LIMIT = 6.0
SHORT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 16}
LONG = {
    "model": MODEL,
    "messages": [{"role": "user", "content": f"Go on. [reply with {LONG_CHUNKS} words]"}],
    "max_tokens": 4 * LONG_CHUNKS,
    "stream": True,
}
WAIT_BUCKET = re.compile(
    r'^wfg_gateway_event_loop_wait_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.MULTILINE
)
GC_BUCKET = re.compile(
    r'^wfg_gateway_gc_pause_seconds_bucket\{generation="(\d)",le="([^"]+)"\} (\S+)$', re.MULTILINE
)
# Set to a file path: each run appends its figures there as a JSON line (bench/RESULTS.md,
# "Long streams", Fairness: how the ratio was measured over several runs).
RECORD = os.environ.get("WFG_FAIRNESS_RECORD")
# Set to names for WFG_FAIRNESS_OFF: test_fairness_ab measures this gateway against one
# with them turned off, `AB_ROUNDS` rounds each, alternated.
AB = os.environ.get("WFG_FAIRNESS_AB", "")
AB_ROUNDS = int(os.environ.get("WFG_FAIRNESS_AB_ROUNDS", "6"))


@pytest.fixture(scope="module")
def own_process_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The fake upstream in a process of its own (`python -m tests.fakes.upstream`): in a
    thread of this one it would take the GIL from the client measuring the latencies.
    Yields the environment that points at it."""
    log = tmp_path_factory.mktemp("fair-upstream") / "upstream.log"
    with open(log, "wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.upstream"],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    try:
        assert process.stdout is not None
        text = ""
        while not text.rstrip().endswith("}"):  # it prints its environment, then serves
            line = process.stdout.readline().decode()
            assert line, f"the fake upstream did not start: {log.read_text()}"
            text += line
        yield json.loads(text)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="module")
def fair_gateway(
    redis_url: str,
    upstream: FakeUpstream,
    own_process_upstream: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    with scratch_postgres_database("wfg_test_fair") as url:
        upgrade(url)
        running = start_gateway(
            database_url=url,
            upstream=upstream,  # not called: own_process_upstream's environment wins
            work_dir=tmp_path_factory.mktemp("fair-gateway"),
            extra_env={**own_process_upstream, "REDIS_URL": redis_url, "GATEWAY_WORKERS": "1"},
        )
        try:
            yield running
        finally:
            stop_gateway(running)


@pytest.fixture
async def users(fair_gateway: RunningGateway) -> AsyncIterator[list[FundedUser]]:
    database = open_database(fair_gateway.database_url)
    try:
        yield [await funded_user(database, units=credits_to_units("50")) for _ in range(8)]
    finally:
        await database.dispose()


def wait_counts(gateway: RunningGateway) -> tuple[dict[float, float], dict[float, float]]:
    """Cumulative watchdog samples per bucket bound (`le`), and full collections'."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=60).text
    counts = {float(le): float(n) for le, n in WAIT_BUCKET.findall(text)}
    assert counts, "the gateway does not export wfg_gateway_event_loop_wait_seconds"
    # full collections' buckets; generation 1's as negative bounds (reported apart)
    gcs = {float(le) * (1 if g == "2" else -1): float(n) for g, le, n in GC_BUCKET.findall(text)}
    return counts, gcs


def bucket_summary(counts: dict[float, float]) -> str:
    return ", ".join(f"≤{le * 1000:g} ms: {n:.0f}" for le, n in sorted(counts.items()))


class CpuWait:
    """Time the gateway's event-loop thread ran and waited for a CPU (/proc schedstat),
    summed over the windows measured: (ran + waited) ÷ ran is how much the machine
    stretched the loop's work in them."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/task/{pid}/schedstat")
        self.ran = self.waited = 0

    def _read(self) -> tuple[int, int]:
        ran, waited, _slices = self.path.read_text().split()
        return int(ran), int(waited)

    @contextlib.contextmanager
    def window(self) -> Iterator[None]:
        ran, waited = self._read()
        yield
        now_ran, now_waited = self._read()
        self.ran += now_ran - ran
        self.waited += now_waited - waited

    @property
    def stretch(self) -> float:
        return (self.ran + self.waited) / self.ran if self.ran else 1.0


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def p99(samples: list[float]) -> float:
    return quantile(samples, 0.99)


class Load:
    def __init__(self, gateway: RunningGateway, users: list[FundedUser]) -> None:
        self.url = f"{gateway.url}/v1/chat/completions"
        self.users = users
        self.sent = 0
        self.stream_seconds: dict[str, list[float]] = {"alone": [], "beside": []}
        self.client = httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=8))

    def _headers(self) -> dict[str, str]:
        self.sent += 1
        return {"authorization": f"Bearer {self.users[self.sent % len(self.users)].token}"}

    async def short_call(self) -> float:
        started = time.perf_counter()
        answer = await self.client.post(self.url, json=SHORT, headers=self._headers())
        elapsed = time.perf_counter() - started
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]
        return elapsed

    async def short_calls(self, count: int) -> list[float]:
        latencies: list[float] = []

        async def one_connection() -> None:
            while len(latencies) < count:
                latencies.append(await self.short_call())

        await asyncio.gather(*(one_connection() for _ in range(SHORT_CONNECTIONS)))
        return latencies

    async def long_stream(self, started: asyncio.Event) -> int:
        """Content chunks of one long stream, read to its end (which must be [DONE]);
        counted once it has ended (parsing each event as it comes would take the client's
        CPU from the short calls it times)."""
        parts: list[bytes] = []
        async with self.client.stream("POST", self.url, json=LONG, headers=self._headers()) as r:
            assert r.status_code == 200
            started.set()
            async for part in r.aiter_bytes():
                parts.append(part)
        body = b"".join(parts)
        assert body.endswith(b"data: [DONE]\n\n")
        return body.count(b'"content":"word')

    async def beside_two_long_streams(self) -> tuple[list[float], list[int]]:
        """Short calls' latencies while both long streams run (those that ended while
        both still ran), and the content chunks each stream delivered."""
        began = [asyncio.Event(), asyncio.Event()]
        since = time.perf_counter()
        streams = [asyncio.create_task(self.long_stream(event)) for event in began]
        latencies: list[float] = []
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in began)), timeout=120)

            async def one_connection() -> None:
                while not any(stream.done() for stream in streams):
                    latency = await self.short_call()
                    if not any(stream.done() for stream in streams):
                        latencies.append(latency)

            await asyncio.gather(*(one_connection() for _ in range(SHORT_CONNECTIONS)))
            delivered = list(await asyncio.wait_for(asyncio.gather(*streams), timeout=600))
            self.stream_seconds["beside"].append(time.perf_counter() - since)
        finally:
            for stream in streams:
                stream.cancel()
        return latencies, delivered

    async def two_long_streams(self) -> None:
        """Both long streams with nothing else on the worker (their own speed, timed)."""
        since = time.perf_counter()
        began = [asyncio.Event(), asyncio.Event()]
        delivered = await asyncio.gather(*(self.long_stream(event) for event in began))
        self.stream_seconds["alone"].append(time.perf_counter() - since)
        assert delivered == [LONG_CHUNKS, LONG_CHUNKS]


def rss_mb(pid: int) -> float:
    """The process's resident memory now (MB), from /proc."""
    found = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    assert found
    return round(int(found[1]) / 1024, 1)


def record(path: str, figures: dict[str, object]) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(figures) + "\n")


class Measure:
    """The rounds run on one gateway, and what they add up to."""

    def __init__(self, gateway: RunningGateway, users: list[FundedUser], off: str) -> None:
        self.gateway, self.off = gateway, off
        self.load = Load(gateway, users)
        self.alone: list[float] = []
        self.beside: list[float] = []
        self.cpu_alone = CpuWait(gateway.process.pid)
        self.cpu_beside = CpuWait(gateway.process.pid)
        self.seconds = 0.0
        self.wait: dict[float, float] = {}
        self.full_gcs: dict[float, float] = {}
        self.round_ratios: list[float] = []

    async def warm(self) -> None:
        await self.load.short_calls(20)  # connections, first-call work
        await self.load.beside_two_long_streams()
        self.load.stream_seconds["beside"].clear()

    async def round(self) -> None:
        """Short calls beside both long streams, as many alone, then both streams alone."""
        wait_before, gc_before = wait_counts(self.gateway)
        started = time.perf_counter()
        with self.cpu_beside.window():
            latencies, delivered = await self.load.beside_two_long_streams()
        assert delivered == [LONG_CHUNKS, LONG_CHUNKS]
        self.beside += latencies
        with self.cpu_alone.window():
            alone = await self.load.short_calls(max(MIN_SAMPLES, len(latencies)))
        self.alone += alone
        self.round_ratios.append(p99(latencies) / p99(alone))
        await self.load.two_long_streams()
        self.seconds += time.perf_counter() - started
        wait_after, gc_after = wait_counts(self.gateway)
        for counts, after, before in (
            (self.wait, wait_after, wait_before),
            (self.full_gcs, gc_after, gc_before),
        ):
            for le, n in after.items():
                counts[le] = counts.get(le, 0) + n - before.get(le, 0)

    @property
    def ratio(self) -> float:
        return p99(self.beside) / p99(self.alone)

    def report(self) -> dict[str, object]:
        """Printed, and appended to `WFG_FAIRNESS_RECORD` if set."""
        alone, beside = self.alone, self.beside
        figures = {
            "fairness_off": self.off,
            "ratio": round(self.ratio, 3),
            "p99_alone_ms": round(p99(alone) * 1000, 1),
            "p99_beside_ms": round(p99(beside) * 1000, 1),
            "p50_alone_ms": round(quantile(alone, 0.5) * 1000, 1),
            "p50_beside_ms": round(quantile(beside, 0.5) * 1000, 1),
            "p90_alone_ms": round(quantile(alone, 0.9) * 1000, 1),
            "p90_beside_ms": round(quantile(beside, 0.9) * 1000, 1),
            "p95_alone_ms": round(quantile(alone, 0.95) * 1000, 1),
            "p95_beside_ms": round(quantile(beside, 0.95) * 1000, 1),
            "round_ratios": [round(r, 2) for r in self.round_ratios],
            "rss_mb": rss_mb(self.gateway.process.pid),
            "calls_alone": len(alone),
            "calls_beside": len(beside),
            "stretch_alone": round(self.cpu_alone.stretch, 2),
            "stretch_beside": round(self.cpu_beside.stretch, 2),
            "seconds": round(self.seconds, 1),
            # both streams' content chunks per second of wall time, alone and beside
            "stream_chunks_per_s": {
                side: round(2 * LONG_CHUNKS * len(times) / sum(times))
                for side, times in self.load.stream_seconds.items()
                if times
            },
            "loop_rounds": {str(le): n for le, n in sorted(self.wait.items())},
            "full_gcs": {str(le): n for le, n in sorted(self.full_gcs.items()) if le > 0},
            "gen1_gcs": {str(-le): n for le, n in sorted(self.full_gcs.items()) if le < 0},
            "load": os.getloadavg()[0],
        }
        print(
            f"\n[WFG_FAIRNESS_OFF={self.off!r}] short calls' p99 alone {p99(alone) * 1000:.0f} ms "
            f"({len(alone)} calls), beside two long streams {p99(beside) * 1000:.0f} ms "
            f"({len(beside)}), ratio {self.ratio:.2f}; the machine stretched the loop's thread "
            f"{self.cpu_alone.stretch:.1f}× / {self.cpu_beside.stretch:.1f}×; loop rounds "
            f"(CPU): {bucket_summary(self.wait)}; full garbage collections (CPU): "
            f"{bucket_summary({le: n for le, n in self.full_gcs.items() if le > 0})}; "
            f"long streams' chunks/s: "
            f"{figures['stream_chunks_per_s']}"
        )
        if RECORD:
            record(RECORD, figures)
        return figures


async def test_two_long_streams_leave_short_calls_their_speed(
    fair_gateway: RunningGateway,
    users: list[FundedUser],
    record_property: Callable[[str, object], None],
) -> None:
    measure = Measure(fair_gateway, users, os.environ.get("WFG_FAIRNESS_OFF", ""))
    try:
        await measure.warm()
        for _ in range(ROUNDS):
            await measure.round()
    finally:
        await measure.load.client.aclose()
    record_property("fairness", measure.report())
    wait, beside, alone = measure.wait, measure.beside, measure.alone
    rounds = wait[float("inf")]
    summary = bucket_summary(wait)
    ratio = measure.ratio
    assert rounds > 0
    assert wait[ROUND_P95_LIMIT_SECONDS] >= 0.95 * rounds, f"loop rounds: {summary}"
    assert wait[ROUND_P99_LIMIT_SECONDS] >= 0.99 * rounds, f"loop rounds: {summary}"
    assert wait[ROUND_MAX_SECONDS] == rounds, f"loop rounds: {summary}"
    assert len(beside) >= MIN_SAMPLES, f"only {len(beside)} short calls beside the streams"
    assert ratio <= P99_RATIO_LIMIT, (
        f"short calls' p99 {p99(beside) * 1000:.0f} ms beside two long streams vs "
        f"{p99(alone) * 1000:.0f} ms alone ({ratio:.2f}×; {len(beside)} / {len(alone)} "
        f"calls; loop rounds: {summary})"
    )


@pytest.mark.skipif(not AB, reason="an A/B for bench/RESULTS.md: set WFG_FAIRNESS_AB")
@pytest.mark.timeout(300 + 150 * AB_ROUNDS)
async def test_fairness_ab(
    fair_gateway: RunningGateway,
    users: list[FundedUser],
    redis_url: str,
    upstream: FakeUpstream,
    own_process_upstream: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Not a check: this gateway (`WFG_FAIRNESS_OFF` as the environment has it) against a
    second one with `WFG_FAIRNESS_OFF=$WFG_FAIRNESS_AB`, on the same database, rounds
    alternated (ABBA...) so that the shared machine's load hits both alike."""
    other = start_gateway(
        database_url=fair_gateway.database_url,
        upstream=upstream,
        work_dir=tmp_path_factory.mktemp("fair-gateway-b"),
        extra_env={
            **own_process_upstream,
            "REDIS_URL": redis_url,
            "GATEWAY_WORKERS": "1",
            "WFG_FAIRNESS_OFF": AB,
        },
    )
    a = Measure(fair_gateway, users, os.environ.get("WFG_FAIRNESS_OFF", ""))
    b = Measure(other, users, AB)
    try:
        await a.warm()
        await b.warm()
        for i in range(AB_ROUNDS):
            for measure in (a, b) if i % 2 == 0 else (b, a):
                await measure.round()
        a.report()
        b.report()
    finally:
        await a.load.client.aclose()
        await b.load.client.aclose()
        stop_gateway(other)
