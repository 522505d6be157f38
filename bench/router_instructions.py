"""Instructions per LiteLLM Router call, with and without a bridge speed patch: an A/B that
the machine's load does not move (valgrind counts instructions, not seconds).

CPU time per call moves ±15–25% between runs on the shared 2-core VM, which hides a patch
worth 5%; this VM has no hardware counters (`perf stat` says "not supported"). So: N
`Router.acompletion` calls in one process, the Router built as the gateway builds it
(config.yaml, every bridge patch in unless `WFG_BRIDGE_WITHOUT` names it), against the fake
upstream (its own process), after 30 warm-up calls and `gc.freeze()`, under
`valgrind --tool=callgrind --instr-atstart=no`; instrumentation is switched on and off
around the measured calls by valgrind's client requests (a 3-line C helper compiled with
gcc at run time). Repeat runs agree within 0.5%.

    .venv/bin/python -m bench.router_instructions                          # every patch in
    .venv/bin/python -m bench.router_instructions --without remember_model_info --calls 60
    .venv/bin/python -m bench.router_instructions --mode stream --without build_each_stream_once
    .venv/bin/python -m bench.router_instructions --without NAME --keep /tmp/cg  # + the dumps
    .venv/bin/python -m bench.router_instructions --mode stream --chunks 1000 --calls 4

`--keep PATH` keeps the measured callgrind dumps (PATH.with, PATH.without) for
`callgrind_annotate --inclusive=yes` (C functions only: Python 3.11's frames are no symbols).

`--chunks N` asks the fake for an N-chunk stream (`[reply with N words]`, as
`bench/long_streams.py`) and prints instructions per chunk too, the Router's stream relayed
into the gateway's own relay (`stream_formats.ChatRelay.feed`, per chunk as the gateway
does): the A/B of a patch of the per-chunk path. The warm-up is then 30 short calls and
a long one; each long stream is read once the fake has sent all of it. Caveat: for long
streams the count is not yet reproducible (1.4–2.4 M per chunk for the same code,
bench/RESULTS.md "Long streams"): run each side several times.

It measures the Router alone (~75–80% of a gateway plain call), not the gateway: a saving
here is an upper bound of the call's. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from portal.settings import PROJECT_ROOT

_HELPER_C = """#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_DUMP_STATS_AT("measured"); CALLGRIND_STOP_INSTRUMENTATION; }
"""
_TOTALS = re.compile(r"^totals:\s+(\d+)", re.MULTILINE)
_MEASURED = "Client Request: measured"  # the dump `cg_stop` asks for (the exit's is not it)
WARM_UP_CALLS = 30
# A long stream is read once the fake has sent all of it (it waits in the socket buffers):
# read as it arrives, the chunks come one or a few per read depending on how busy the
# machine is, and the instructions per chunk moved by 40% between runs.
LONG_STREAM_WAIT_SECONDS = 0.5


def _helper(work: Path) -> Path:
    source, library = work / "cgctl.c", work / "cgctl.so"
    source.write_text(_HELPER_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", str(source), "-o", str(library)], check=True)
    return library


def _start_upstream() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.upstream"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    text = ""
    while not text.rstrip().endswith("}"):  # it prints its environment, then serves
        line = process.stdout.readline().decode()
        if not line:
            raise RuntimeError("the fake upstream did not start")
        text += line
    return process, json.loads(text)


def _measured_loop(calls: int, mode: str, helper: str, chunks: int = 0) -> None:
    """Runs inside valgrind: the Router as the gateway builds it, `calls` measured calls
    (`chunks`: that many chunks per stream, each fed to the gateway's chat relay)."""
    import ctypes

    import yaml

    from gateway_plugins.server import prepare_environment

    prepare_environment()
    from gateway_plugins import litellm_bridge
    from gateway_plugins.litellm_bridge.request_setup import run_request_setup_inline
    from gateway_plugins.stream_formats import ChatRelay

    raw = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())
    litellm_bridge.apply_litellm_settings(raw.get("litellm_settings") or {})
    router = litellm_bridge.build_router(raw["model_list"], raw.get("router_settings") or {})
    params: dict[str, Any] = {
        "model": "gpt-4.1-nano",
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16,
    }
    if mode == "stream":
        params |= {"stream": True, "stream_options": {"include_usage": True}}
    long = params | {
        "messages": [
            {"role": "user", "content": f"Write a long answer. [reply with {chunks} words]"}
        ],
        "max_tokens": 4 * chunks,  # room for every chunk: nothing is cut short
    }
    control = ctypes.CDLL(helper)

    async def one(call: dict[str, Any] = params) -> None:
        answer = await router.acompletion(**call, litellm_call_id=str(uuid.uuid4()))
        if call is long:
            await asyncio.sleep(LONG_STREAM_WAIT_SECONDS)
        if mode == "stream":
            relay = ChatRelay(client_wants_usage=True)
            async for chunk in answer:
                relay.feed(chunk)
            if chunks and not (relay.finished and relay.usage_final):
                raise RuntimeError("a long stream ended without its finish or usage")

    async def run() -> None:
        run_request_setup_inline(asyncio.get_running_loop(), router)
        for _ in range(WARM_UP_CALLS):
            await one()
        if chunks:
            await one(long)
        gc.collect()
        gc.freeze()
        control.cg_start()
        for _ in range(calls):
            await one(long if chunks else params)
        control.cg_stop()

    asyncio.run(run())


def measure(
    calls: int, mode: str, without: str, keep: Path | None = None, chunks: int = 0
) -> float:
    """Instructions per Router call (`without`: WFG_BRIDGE_WITHOUT for this run; `keep`:
    where to copy the measured callgrind dump, for `callgrind_annotate --inclusive=yes`;
    `chunks`: a long stream of that many chunks per call)."""
    with tempfile.TemporaryDirectory(prefix="wfg-instr-") as directory:
        work = Path(directory)
        helper = _helper(work)
        upstream, upstream_env = _start_upstream()
        try:
            env = {**os.environ, **upstream_env, "WFG_BRIDGE_WITHOUT": without}
            out = work / "callgrind.out"
            child = (
                "from bench.router_instructions import _measured_loop; "
                f"_measured_loop({calls}, {mode!r}, {str(helper)!r}, {chunks})"
            )
            subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    f"--callgrind-out-file={out}",
                    sys.executable,
                    "-c",
                    child,
                ],
                cwd=PROJECT_ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            dumps = [path.read_text() for path in work.glob("callgrind.out*")]
            measured = [d for d in dumps if _MEASURED in d]
            totals = [int(m.group(1)) for d in measured for m in _TOTALS.finditer(d)]
            if len(totals) != 1:
                raise RuntimeError(f"expected one measured dump from callgrind, found {totals}")
            if keep is not None:
                keep.write_text(measured[0])
            return totals[0] / calls
        finally:
            upstream.terminate()
            upstream.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=60, help="measured calls (default 60)")
    parser.add_argument("--mode", choices=("plain", "stream"), default="plain")
    parser.add_argument("--without", default="", help="a speed patch to A/B (bridge_switches)")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the measured callgrind dumps as KEEP.with (and KEEP.without)",
    )
    parser.add_argument(
        "--chunks", type=int, default=0, help="stream mode: chunks per stream (a long stream)"
    )
    args = parser.parse_args()
    if args.chunks and args.mode != "stream":
        parser.error("--chunks needs --mode stream")
    keep_with = args.keep and args.keep.with_name(args.keep.name + ".with")
    keep_without = args.keep and args.keep.with_name(args.keep.name + ".without")

    def show(label: str, per_call: float) -> str:
        line = f"{args.mode}, {label}: {per_call / 1e6:.2f} M instructions per Router call"
        if args.chunks:
            line += f", {per_call / args.chunks / 1e3:.1f} k per chunk ({args.chunks} chunks)"
        return line

    with_all = measure(args.calls, args.mode, "", keep_with, args.chunks)
    print(show("every patch in", with_all))
    if args.without:
        left_out = measure(args.calls, args.mode, args.without, keep_without, args.chunks)
        saved = 1 - with_all / left_out
        print(show(f"without {args.without}", left_out) + f" ({saved:+.1%} saved)")


if __name__ == "__main__":
    main()
