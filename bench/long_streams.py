"""The long-stream phase of `bench.gateway_overhead`: CPU per stream chunk, side by side.

Each target streams `--long-stream-chunks` content chunks per call (the fake upstream
answers a prompt containing `[reply with N words]` with N one-word chunks,
`tests/fakes/upstream/tokens.LONG_REPLY`), a few calls on two connections, after one
warm-up call. Reported per target: server CPU ms per stream and per chunk (all of the
stream's CPU divided by its chunks), and the marginal CPU per chunk — (long stream −
short stream of the main phase) ÷ (chunks more) — which leaves out the per-call work.
Then stock ÷ ours per chunk (target ≥ 2×: issue 21, "long streams are cheap").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "LongStream",
    "long_stream_body",
    "long_stream_json",
    "long_stream_lines",
    "long_stream_phase",
]

LONG_STREAMS = 6  # measured calls per target
LONG_CONNECTIONS = 2
PER_CHUNK_TARGET = 2.0  # stock CPU per chunk ÷ ours
SHORT_STREAM_CHUNKS = 5  # content chunks of the main phase's streams (the fake's reply)


class _Phase(Protocol):
    target: str
    mode: str
    cpu_seconds: float

    @property
    def cpu_ms_per_request(self) -> float: ...


@dataclass
class LongStream:
    target: str
    chunks: int
    phase: Any  # gateway_overhead.Phase of the long streams

    @property
    def answered(self) -> int:
        return int(self.phase.load.answered)

    @property
    def cpu_ms_per_stream(self) -> float:
        return float(self.phase.cpu_ms_per_request)

    @property
    def cpu_ms_per_chunk(self) -> float:
        return self.cpu_ms_per_stream / self.chunks

    def marginal_ms_per_chunk(self, short: _Phase | None) -> float:
        if short is None:
            return float("nan")
        extra = self.cpu_ms_per_stream - short.cpu_ms_per_request
        return extra / (self.chunks - SHORT_STREAM_CHUNKS)


def long_stream_body(model: str, chunks: int) -> dict[str, Any]:
    prompt = f"Write a long answer. [reply with {chunks} words]"
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 4 * chunks,  # room for every chunk's tokens: nothing is cut short
        "stream": True,
    }


def long_stream_phase(
    servers: Sequence[Any],
    model: str,
    chunks: int,
    measure: Callable[[Any, dict[str, Any], int, int], Any],
) -> list[LongStream]:
    """`measure(server, body, requests, connections)` → a Phase; one warm-up call each."""
    results = []
    body = long_stream_body(model, chunks)
    for server in servers:
        measure(server, body, 1, 1)  # warm-up: the first long stream's one-off work
        phase = measure(server, body, LONG_STREAMS, LONG_CONNECTIONS)
        results.append(LongStream(server.name, chunks, phase))
        print(
            f"long streams {server.name:32} {phase.load.answered} × {chunks} chunks"
            f" {phase.cpu_ms_per_request:8.1f} ms CPU/stream,"
            f" {phase.cpu_ms_per_request / chunks:.3f} ms/chunk, {phase.load.failed} failed"
            + (f" ({phase.load.failure_summary()})" if phase.load.failures else ""),
            flush=True,
        )
    return results


def long_stream_lines(
    results: Sequence[LongStream], short_streams: Sequence[_Phase], stock: str, fake: str
) -> list[str]:
    """The report's section: a table, then stock ÷ ours per chunk for each of ours."""
    short = {p.target: p for p in short_streams}
    lines = [
        "| target | streams answered | CPU ms / stream | CPU ms / chunk (all-in) "
        "| marginal CPU ms / chunk | frames / stream |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        load = result.phase.load
        frames = load.frames / load.answered if load.answered else float("nan")
        lines.append(
            f"| {result.target} | {result.answered} / {result.answered + load.failed} "
            f"| {result.cpu_ms_per_stream:.1f} | {result.cpu_ms_per_chunk:.3f} "
            f"| {result.marginal_ms_per_chunk(short.get(result.target)):.3f} | {frames:.0f} |"
        )
    by_target = {r.target: r for r in results}
    base = by_target.get(stock)
    for result in results:
        if base is None or result.target in (stock, fake):
            continue
        ratio = base.cpu_ms_per_chunk / result.cpu_ms_per_chunk
        verdict = "meets" if ratio >= PER_CHUNK_TARGET else "MISSES"
        lines.append(
            f"- per chunk, {result.target}: stock {base.cpu_ms_per_chunk:.3f} ms / ours "
            f"{result.cpu_ms_per_chunk:.3f} ms = **{ratio:.2f}×** "
            f"({verdict} the ≥ {PER_CHUNK_TARGET:g}× target)"
        )
    return lines


def long_stream_json(results: Sequence[LongStream]) -> list[dict[str, Any]]:
    return [
        {
            "target": r.target,
            "chunks": r.chunks,
            "answered": r.answered,
            "cpu_ms_per_stream": r.cpu_ms_per_stream,
            "cpu_ms_per_chunk": r.cpu_ms_per_chunk,
        }
        for r in results
    ]
