"""Embeddings: ``POST {base}/embeddings`` (OpenAI, also OpenRouter).

``input`` is a string, a list of strings, a token array or a list of token arrays.
Each item gets a small deterministic unit vector (``dimensions`` floats, default
``EMBEDDING_DIMENSIONS``) derived from its text, so equal inputs embed equally.
``encoding_format: "base64"`` (what the openai SDK asks for by default) returns each
vector as base64 of little-endian float32s, which decodes to exactly the float list.

Usage: ``prompt_tokens`` = ``total_tokens`` = words (or ints of a token array) over
all items, with no per-item overhead; ``usage_extra`` does not apply.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .core import UpstreamCore
from .openai_chat import begin
from .tokens import item_text, item_tokens, prompt_items
from .wire import OPENROUTER_ID, Provider, error_response

EMBEDDING_DIMENSIONS = 8
_MAX_DIMENSIONS = 4096


def embedding_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The unit vector the fake returns for ``text`` (exactly representable as float32)."""
    raw = b""
    block = 0
    while len(raw) < 2 * dimensions:
        raw += hashlib.sha256(f"{block}:{text}".encode()).digest()
        block += 1
    values = [(int.from_bytes(raw[2 * i : 2 * i + 2], "big") - 32767.5) for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{dimensions}f", packed))


def _encode(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


async def embeddings(up: UpstreamCore, provider: Provider, request: Request) -> Response:
    body, error = await begin(up, provider, request, "input")
    if error is not None:
        return error
    items = prompt_items(body["input"])
    if not items or any(item in ("", []) for item in items):
        return error_response(
            provider,
            400,
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
        )
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        return error_response(
            provider,
            400,
            f"Invalid value: '{encoding_format}'. Supported values are: 'float' and 'base64'.",
            param="encoding_format",
        )
    dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
    if not isinstance(dimensions, int) or not 1 <= dimensions <= _MAX_DIMENSIONS:
        return error_response(provider, 400, "Invalid 'dimensions'.", param="dimensions")
    if refused := await up.admit(provider, request, item_text(items[-1])):
        return refused
    tokens = sum(item_tokens(i) for i in items)
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": _encode(embedding_vector(item_text(item), dimensions), encoding_format),
        }
        for index, item in enumerate(items)
    ]
    payload: dict[str, Any] = {
        "object": "list",
        "data": data,
        "model": str(body.get("model", "")),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    if provider == "openrouter":
        payload = {"id": OPENROUTER_ID, **payload, "provider": "OpenAI"}
    up.served()
    return JSONResponse(payload, headers={"openai-processing-ms": "1"})
