"""A streamed answer that is settled before its final event and ends honestly.

`MeteredStream` is the ASGI response of every streamed call. It relays the Router's
stream through the endpoint's `Relay` (`stream_formats`), with the request deadline and
an idle timeout on every chunk, while watching for the client's disconnect. However the
stream ends, the call is settled exactly once, before anything else is sent:

- the upstream finished: usage as reported, then the held final event(s), the usage
  event carrying what the call was charged (`charges`);
- the upstream closed early, stalled, or failed mid-stream: billed for what was
  delivered, then an error event in the API's own format (no `[DONE]`); once a frame was
  relayed, the Router may not retry it or hand it to a fallback (the client would get the
  start of the answer twice, and a second provider the content);
- the client left: the upstream stream is read on (nothing more is sent) until it ends,
  for at most `timeouts.abandoned_read_seconds` (30 s by default) and never past the
  request deadline, so the upstream's own usage report settles it; without one it is
  billed the counted prompt plus the text the upstream sent, by the model's tokenizer;
- the client stops reading (a send to it blocks for `timeouts.stream_idle_seconds`): as
  gone, except that nothing is read on; the upstream is closed at once;
- the server shuts down past its graceful window (uvicorn cancels the request): the
  client gets the API's error event (`gateway_shutdown`), and the call is billed as a
  cut one before the process exits.

Fair to the other calls on the worker: when the upstream is ahead of us, its chunks wait
in the HTTP client's buffer and reading the next one does not suspend, so a long stream
would relay a whole burst back to back, holding the event loop (every other call on the
worker waits) for as long as that takes — seconds for a few thousand chunks. The relay
gives the loop back once it has run `SLICE_SECONDS` without doing so, and gives way to the
other calls while they keep the loop busy (`give_way`): a burst is relayed when the loop
has nothing else to do, and the other calls' steps never wait for more than one slice of
one stream (`loop_lag` measures how long a ready call waits). While other requests are
open, the slices are shorter (`fairness`). Once it has ended and been settled, the chunk
objects LiteLLM kept for it are freed in slices too (`release_kept_chunks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from gateway_plugins import fairness, metrics
from gateway_plugins.call import CALL_ID_HEADER, Call
from gateway_plugins.errors import ErrorBody
from gateway_plugins.litellm_bridge import (
    deployment_of,
    group_of,
    kept_chunks,
    model_id_of,
    stream_delivered,
    upstream_failure,
)
from gateway_plugins.metering import finished_call, unreported_usage, usage_cost_usd
from gateway_plugins.runtime import GatewayRuntime
from gateway_plugins.settlement import settle
from gateway_plugins.stream_formats import RELAYS, Relay
from gateway_plugins.token_counting import output_tokens
from portal.db.base import utcnow
from portal.usage.models import CallStatus

__all__ = [
    "SHUTDOWN",
    "SLICE_SECONDS",
    "MeteredStream",
    "give_way",
    "release_kept_chunks",
    "settled",
    "uncancel",
]

log = logging.getLogger(__name__)

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
SLICE_SECONDS = fairness.LONG_SLICE_SECONDS  # longest a stream relays before giving way
QUIET_ROUND_SECONDS = 0.0002  # a round of the loop this short: nothing else wants to run
GIVE_WAY_ROUNDS = 8
_CUT = ErrorBody(
    502,
    "The upstream provider closed the stream before it finished.",
    type="api_error",
    code="upstream_stream_cut",
)
_STALLED = ErrorBody(
    504, "The upstream provider stopped sending.", type="api_error", code="upstream_timeout"
)
SHUTDOWN = ErrorBody(
    503,
    "The gateway is restarting and cut this answer; what was delivered is billed. Retry.",
    type="api_error",
    code="gateway_shutdown",
)


def _timed_out(error: BaseException) -> bool:
    """Whether a mid-stream failure is the upstream going quiet: LiteLLM's timeout, or the
    HTTP client's read timeout raised as is (`/v1/messages` streams raise
    `httpx.ReadTimeout` unwrapped), which on a busy machine can fire before our idle timer."""
    if isinstance(error, httpx.TimeoutException):
        return True
    return upstream_failure(error).status in (408, 504)


def _no_takeover_from_now() -> bool:
    """The relay has output for the client: from now on a failure of this stream ends it
    with the API's error event, never a retry or fallback spliced into what the client
    already has (`litellm_bridge.stream_recovery`)."""
    stream_delivered()
    return True


class MeteredStream:
    def __init__(
        self,
        runtime: GatewayRuntime,
        call: Call,
        stream: Any,
        *,
        on_end: Callable[[GatewayRuntime, Call], Awaitable[None]],
    ) -> None:
        self.runtime = runtime
        self.call = call
        self.stream = stream
        self.on_end = on_end
        self.relay: Relay = RELAYS[call.kind](call.request.client_wants_usage)
        self.model_id: str | None = None
        self._settling: asyncio.Future[None] | None = None
        self.stopped_reading = False  # a send blocked for `stream_idle_seconds`
        self.bursting = False  # counted by `fairness` as relaying a burst

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def watch() -> None:  # the client leaving does not stop the relay: see _relay
            while (await receive())["type"] != "http.disconnect":
                pass
            self.call.client_left = True

        watcher = asyncio.create_task(watch())
        try:
            headers = [*_HEADERS, (CALL_ID_HEADER.encode(), self.call.call_id.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await self._relay(send)
            if not self.stopped_reading:  # else uvicorn closes the connection unfinished
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Only the server cancels a request: a shutdown past its graceful window.
            uncancel()
            await self._cut_by_shutdown(send)
        finally:
            watcher.cancel()
            try:
                await self._close_upstream()
                await self.on_end(self.runtime, self.call)
                await release_kept_chunks(self.stream)
            finally:
                # Counted as relaying until its kept chunks are freed: the garbage
                # collector's deferral lasts until then (`fairness`).
                if self.bursting:
                    fairness.relay_ended()

    async def _relay(self, send: Any) -> None:
        timeouts = self.runtime.config.plugin.timeouts
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeouts.request_seconds
        idle = timeouts.stream_idle_seconds
        # The idle timer is pushed back in steps of `slack`, not at every chunk (moving a
        # timer per chunk was a measurable share of a stream's CPU): a stream that goes
        # quiet is cut between `idle` and `idle + slack` seconds after its last chunk.
        slack = min(1.0, idle / 10)
        failure: ErrorBody = _CUT
        call, relay = self.call, self.relay
        reading_on = False  # the client left: read on, send nothing, until `deadline`
        sending = False
        delivered = False  # a frame went out: the stream stays on its deployment
        timer = asyncio.timeout(None)
        clock = time.perf_counter
        try:
            async with timer:
                iterator = aiter(self.stream)
                expires = 0.0
                slice_ends = clock() + SLICE_SECONDS
                while True:
                    if call.client_left and not reading_on:
                        reading_on = True
                        deadline = min(deadline, loop.time() + timeouts.abandoned_read_seconds)
                        expires = 0.0
                    if expires < min(loop.time() + idle, deadline):
                        expires = min(loop.time() + idle + slack, deadline)
                        timer.reschedule(expires)
                    try:
                        item = await anext(iterator)
                    except StopAsyncIteration:
                        break
                    frame = relay.feed(item)
                    if frame and not delivered:
                        delivered = _no_takeover_from_now()
                    if frame and not reading_on:
                        sending = True
                        try:
                            await send(
                                {"type": "http.response.body", "body": frame, "more_body": True}
                            )
                        except OSError:  # the connection broke under a send
                            call.client_left = True
                        sending = False
                    if clock() >= slice_ends:  # a burst: let the other calls run
                        if not self.bursting:
                            self.bursting = True
                            fairness.relay_started()
                        await give_way()
                        slice_ends = clock() + fairness.slice_seconds()
        except TimeoutError:
            failure = _STALLED
            if sending:  # the client stopped reading: treated as gone, the upstream closed
                call.client_left = self.stopped_reading = True
        except Exception as exc:  # the upstream broke off mid-stream
            failure = _STALLED if timer.expired() or _timed_out(exc) else _CUT
        self.model_id = model_id_of(self.stream)
        if call.client_left:
            await self._end("client_gone")
            return
        if relay.finished:
            await self._end("complete")
            frames = relay.final_frames()
        else:
            await self._end(failure.code)
            frames = [relay.error_frame(failure)]
        body = b"".join(frames)
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _cut_by_shutdown(self, send: Any) -> None:
        """Settle what was delivered, then the API's error event to a client still there."""
        self.model_id = self.model_id or model_id_of(self.stream)
        await self._end("complete" if self.relay.finished else "shutdown")
        if self.call.client_left:
            return
        frame = b"".join(self.relay.final_frames()) if self.relay.finished else None
        with contextlib.suppress(Exception):
            await send(
                {
                    "type": "http.response.body",
                    "body": frame or self.relay.error_frame(SHUTDOWN),
                    "more_body": False,
                }
            )

    async def _end(self, outcome: str) -> None:
        """Settle once; a cancellation (shutdown) while settling waits for it to commit."""
        if self._settling is None:
            self._settling = asyncio.ensure_future(self._settle(outcome))
        await settled(self._settling)

    async def _settle(self, outcome: str) -> None:
        call, relay = self.call, self.relay
        complete = outcome == "complete"
        if relay.usage_final and relay.usage is not None and relay.usage.total:
            usage = relay.usage  # the upstream's report: completed, incomplete or failed
        else:
            model, _provider = deployment_of(self.runtime.router, self.model_id)
            sent = await output_tokens(model or call.request.model, relay.pieces)
            usage = unreported_usage(call.estimated_prompt_tokens, relay.usage, sent)
        cost = usage_cost_usd(self.runtime.router, self.model_id, usage)
        relay.pieces.clear()  # the text is needed no longer
        model_group = group_of(self.runtime.router, self.model_id, call.request.model)
        record = finished_call(
            self.runtime.config,
            call_id=call.call_id,
            identity=call.identity,
            model_group=model_group,
            usage=usage,
            cost_usd=cost,
            started_at=call.started_at,
            ended_at=utcnow(),
            status=CallStatus.SUCCESS if complete else CallStatus.INCOMPLETE,
            http_status=499 if outcome == "client_gone" else 200,
            error_type=None if complete else outcome[:100],
        )
        relay.charged_units = record.credits  # the final usage event carries it
        await settle(self.runtime.database, self.runtime.spool, record, self.runtime.postgres)
        # Before the final event (the client may go on at once): slot freed, tokens counted.
        await call.slot.release(tokens=usage.total)
        metrics.answered(model_group, usage, call.upstream_since, outcome=outcome)

    async def _close_upstream(self) -> None:
        close = getattr(self.stream, "aclose", None)
        if close is None:
            return
        with contextlib.suppress(Exception):
            await settled(asyncio.ensure_future(close()))


async def give_way() -> None:
    """Step aside for one round of the loop, and again while the other calls keep it busy
    (a round longer than `QUIET_ROUND_SECONDS`), at most `GIVE_WAY_ROUNDS` times: bulk
    work runs when the loop is otherwise idle, and never starves (wall time, so a round
    the machine stretched counts as busy: at worst a few more rounds stepped aside)."""
    clock = time.perf_counter
    for _ in range(GIVE_WAY_ROUNDS):
        began = clock()
        await asyncio.sleep(0)
        if clock() - began < QUIET_ROUND_SECONDS:
            return


RELEASE_BATCH = 32  # chunk objects freed between two looks at the clock (~0.1 ms)


async def release_kept_chunks(stream: Any) -> None:
    """Free the chunk objects the ended stream kept a slice at a time, giving way between
    slices: all at once, reference counting would hold the loop for 15-20 ms of CPU for a
    5,000-chunk stream (`fairness`). A shutdown's cancellation frees the rest at once."""
    chunks = kept_chunks(stream)
    if not chunks or not fairness.release_chunks_in_slices():
        return
    clock = time.perf_counter
    slice_ends = clock() + fairness.slice_seconds()
    try:
        while chunks:
            del chunks[-RELEASE_BATCH:]
            if chunks and clock() >= slice_ends:
                await give_way()
                slice_ends = clock() + fairness.slice_seconds()
    except asyncio.CancelledError:
        uncancel()
        chunks.clear()


def uncancel() -> None:
    """Take back a cancellation this task chose to absorb (see `settled`)."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def settled(work: asyncio.Future[Any]) -> Any:
    """`work`'s result, awaited to its end even if this task is cancelled meanwhile (a
    shutdown must not stop a settlement half-way); the cancellation is absorbed."""
    while True:
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            if work.done():
                return work.result()
            uncancel()
