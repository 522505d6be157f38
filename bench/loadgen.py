"""A small closed-loop load generator: `connections` clients, each sending its next
request as soon as the previous answer has been read to its last byte.

A plain call counts as answered when it is HTTP 200 with a JSON body that has choices; a
stream when it is HTTP 200 and its last event is `data: [DONE]`. Latency is from sending
the request to the answer's last byte. The same code drives every target, so what
differs between targets is the server alone.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx
import orjson

__all__ = ["LoadResult", "run_load"]

_DONE = b"data: [DONE]\n\n"


@dataclass
class LoadResult:
    answered: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    frames: int = 0  # SSE data frames received, all streams together
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # why calls failed, counted
    timed_out: bool = False  # the phase hit its time ceiling before `requests`

    def failed_because(self, reason: str) -> None:
        self.failed += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def failure_summary(self) -> str:
        return ", ".join(f"{reason} x{count}" for reason, count in sorted(self.failures.items()))

    @property
    def rps(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_load(
    url: str,
    body: dict[str, object],
    tokens: list[str],
    *,
    requests: int,
    connections: int,
    max_seconds: float,
) -> LoadResult:
    """Send `requests` POSTs of `body` over `connections` kept-alive connections; client i
    authenticates with `tokens[i % len(tokens)]`. Stops early after `max_seconds`."""
    stream = bool(body.get("stream"))
    payload = orjson.dumps(body)
    result = LoadResult()
    remaining = requests
    deadline = time.perf_counter() + max_seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(headers: dict[str, str]) -> None:
            started = time.perf_counter()
            ok = False
            if stream:
                async with client.stream("POST", url, content=payload, headers=headers) as answer:
                    data = b"".join([part async for part in answer.aiter_bytes()])
                    status = answer.status_code
                ok = status == 200 and data.endswith(_DONE)
                result.frames += data.count(b"data: ")
            else:
                answer = await client.post(url, content=payload, headers=headers)
                status = answer.status_code
                ok = status == 200 and bool(orjson.loads(answer.content).get("choices"))
            elapsed = (time.perf_counter() - started) * 1000
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if ok:
                result.answered += 1
                result.latencies_ms.append(elapsed)
            elif status == 200:
                result.failed_because("HTTP 200, incomplete" if stream else "HTTP 200, no choices")
            else:
                result.failed_because(f"HTTP {status}")

        async def client_loop(index: int) -> None:
            nonlocal remaining
            headers = {
                "authorization": f"Bearer {tokens[index % len(tokens)]}",
                "content-type": "application/json",
            }
            while remaining > 0:
                if time.perf_counter() > deadline:
                    result.timed_out = True
                    return
                remaining -= 1
                try:
                    await one(headers)
                except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
                    result.failed_because(type(exc).__name__)

        started = time.perf_counter()
        await asyncio.gather(*(client_loop(i) for i in range(connections)))
        result.seconds = time.perf_counter() - started
    return result
