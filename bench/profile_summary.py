"""Where a process's CPU goes, from py-spy's raw (collapsed-stack) output.

Each sample is attributed to one layer: the innermost frame that belongs to a layer
decides (a library with no layer of its own — pydantic, orjson's caller, the standard
library — counts for the layer that called it). So "ours" is the CPU spent in
`gateway_plugins/` and `portal/` code plus the helpers it calls directly, "LiteLLM"
everything under a LiteLLM frame (its HTTP client included), and so on. A stack with no
layered frame at all is the event loop itself ("event loop, stdlib").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LAYERS", "Profile", "read_profile"]

ROOT = Path(__file__).resolve().parent.parent

# (layer, path fragments); the first match wins, checked innermost frame first.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ours (gateway_plugins + portal)", (f"{ROOT}/gateway_plugins/", f"{ROOT}/portal/")),
    ("LiteLLM proxy server (litellm/proxy/, stock only)", ("/litellm/proxy/",)),
    (
        "LiteLLM (+ its HTTP client)",
        ("/litellm/", "/openai/", "/aiohttp/", "/httpx/", "/httpcore/", "/tiktoken/"),
    ),
    ("HTTP server (uvicorn, starlette)", ("/uvicorn/", "/starlette/", "/fastapi/", "/h11/")),
    ("database (SQLAlchemy, drivers)", ("/sqlalchemy/", "/aiosqlite/", "/asyncpg/")),
    ("Redis, limits", ("/redis/", "/limits/")),
    ("prometheus_client", ("/prometheus_client/",)),
]
EVENT_LOOP = "event loop, stdlib (no caller above)"
# A thread parked in one of these is waiting, not working (py-spy may still report it).
_WAITING = (
    "Condition.wait (",
    "Queue.get (",
    "_worker (",  # concurrent.futures: waiting for a work item
    "Runner.run (",  # the loop's own thread between callbacks (select)
    "BaseEventLoop.run_forever (",
    "Event.wait (",
)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _layer_of(filename: str) -> str | None:
    for layer, fragments in LAYERS:
        if any(fragment in filename for fragment in fragments):
            return layer
    return None


@dataclass
class Profile:
    samples: int = 0
    idle: int = 0  # samples of threads waiting (left out of every share)
    layers: Counter[str] = field(default_factory=Counter)
    ours: Counter[str] = field(default_factory=Counter)  # innermost own function
    litellm_entries: Counter[str] = field(default_factory=Counter)  # who called into LiteLLM

    def fraction(self, layer: str) -> float:
        return self.layers[layer] / self.samples if self.samples else 0.0

    def table(self, cpu_ms_per_request: float, top: int = 12) -> str:
        """Markdown: each layer's share and CPU ms per request, then the top functions."""
        lines = [
            f"{self.samples} samples ({self.idle} of waiting threads left out); "
            f"CPU per request in the profiled run "
            f"{cpu_ms_per_request:.2f} ms",
            "",
            "| layer | share of samples | CPU ms per request |",
            "| --- | ---: | ---: |",
        ]
        for layer, count in self.layers.most_common():
            share = count / self.samples
            lines.append(f"| {layer} | {share:.1%} | {share * cpu_ms_per_request:.2f} |")
        for title, counter in (
            ("our functions (innermost own frame)", self.ours),
            (
                "LiteLLM entry points (outermost LiteLLM frame outside its proxy)",
                self.litellm_entries,
            ),
        ):
            lines += ["", f"| {title} | share | ms/request |", "| --- | ---: | ---: |"]
            for name, count in counter.most_common(top):
                share = count / self.samples
                lines.append(f"| `{name}` | {share:.1%} | {share * cpu_ms_per_request:.3f} |")
        return "\n".join(lines)


def _frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for raw in stack.split(";"):
        match = _FRAME.match(raw.strip())
        if match:
            frames.append((match["function"], match["file"]))
    return frames


def _short(function: str, filename: str) -> str:
    for fragment in ("/gateway_plugins/", "/portal/", "/litellm/"):
        if fragment in filename:
            return f"{fragment.strip('/')}/{filename.split(fragment, 1)[1]}:{function}"
    return f"{Path(filename).name}:{function}"


def read_profile(path: Path) -> Profile:
    """Parse `py-spy record --format raw --full-filenames` output (root frame first)."""
    profile = Profile()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if stack.rsplit(";", 1)[-1].strip().startswith(_WAITING):
            profile.idle += count
            continue
        frames = _frames(stack)
        profile.samples += count
        layer = EVENT_LOOP
        for function, filename in reversed(frames):  # innermost first
            found = _layer_of(filename)
            if found is not None:
                layer = found
                if found == LAYERS[0][0]:
                    profile.ours[_short(function, filename)] += count
                break
        profile.layers[layer] += count
        if layer == LAYERS[2][0]:
            outermost = next(
                (
                    _short(f, name)
                    for f, name in frames
                    if "/litellm/" in name and "/litellm/proxy/" not in name
                ),
                "(LiteLLM's HTTP client, called from the event loop)",
            )
            profile.litellm_entries[outermost] += count
    return profile
