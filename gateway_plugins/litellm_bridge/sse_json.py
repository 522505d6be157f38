"""Patch: a stream's SSE lines decoded by orjson, as the standard library decodes them.

Every chunk of an OpenAI-format stream (OpenAI and the OpenAI-compatible providers) goes
through `BaseModelResponseIterator._string_to_dict_parser`: the `data:` prefix stripped,
then `json.loads`, the pure-Python scanner's share ~4% of a long stream's CPU per chunk.
orjson decodes the same text to the same values several times faster. Where it refuses
what the standard library accepts (`NaN`/`Infinity`, lone surrogates) and where it
would decode differently (an integer beyond 64 bits becomes a float: a line with 19
digits in a row) the line is decoded by `json.loads` as before, and a line neither
accepts is `None` as before. Figures: bench/RESULTS.md ("Long streams").
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
from litellm.llms.base_llm.base_model_iterator import BaseModelResponseIterator

__all__ = ["decode_sse_with_orjson"]

_parse = BaseModelResponseIterator.__dict__["_string_to_dict_parser"]
_strip = CustomStreamWrapper.strip_sse_data_from_chunk
_LONG_NUMBER = re.compile(r"\d{19}")  # may not fit 64 bits: orjson would make it a float
_LONG_NUMBER_BYTES = re.compile(rb"\d{19}")


def _decoded(str_line: str) -> Any:
    stripped = _strip(str_line)
    if stripped is None:
        return None
    if isinstance(stripped, str):
        long_number = _LONG_NUMBER.search(stripped)
    elif isinstance(stripped, bytes):
        long_number = _LONG_NUMBER_BYTES.search(stripped)
    else:
        long_number = True  # not text: `json.loads` says what it says
    if long_number is None:
        try:
            return orjson.loads(stripped)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        return None


def decode_sse_with_orjson() -> None:
    BaseModelResponseIterator._string_to_dict_parser = staticmethod(_decoded)  # type: ignore[method-assign]
