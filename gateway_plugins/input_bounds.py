"""Input by reference, bounded: what an image costs is reserved at its ceiling.

An image URL is fetched by the upstream, never by the gateway, so its size is unknown
before the call; LiteLLM's counter estimates a URL image at 85 tokens (the low-detail
rate), while a provider bills up to thousands (gpt-4o-mini bills a low-detail image as
2,833 tokens). So every image part a request carries — by URL or inline — adds the
provider's documented maximum for one image (`credits.image_tokens`, per provider or
per model group; docs/security.md gives the numbers and their sources) to the prompt
tokens reserved. The prompt's text is still counted by `token_counting`; the upstream's
own usage report is what is billed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from portal.config.plugin_settings import CreditSettings

__all__ = ["image_ceiling", "image_parts", "reserved_image_tokens"]

_IMAGE_TYPES = frozenset({"image_url", "image", "input_image"})  # chat, messages, responses
_CONTENT_FIELDS = ("messages", "input", "system")


def image_parts(params: Mapping[str, Any]) -> int:
    """Image parts anywhere in the request's messages / input items (tool results too)."""
    return sum(_images(params.get(field)) for field in _CONTENT_FIELDS)


def _images(value: Any) -> int:
    if isinstance(value, list):
        return sum(_images(item) for item in value)
    if isinstance(value, dict):
        own = 1 if value.get("type") in _IMAGE_TYPES else 0
        return own + sum(_images(item) for item in value.values() if isinstance(item, list))
    return 0


def image_ceiling(credits: CreditSettings, model_group: str, providers: Iterable[str]) -> int:
    """Tokens reserved per image for a call to `model_group` that may reach `providers`:
    the group's own entry in `credits.image_tokens` if it has one, else the largest of
    those providers' entries, else the largest of all."""
    ceilings = credits.image_tokens
    if model_group in ceilings:
        return ceilings[model_group]
    known = [ceilings[p] for p in providers if p in ceilings]
    return max(known) if known else max(ceilings.values(), default=0)


def reserved_image_tokens(
    params: Mapping[str, Any], credits: CreditSettings, model_group: str, providers: Iterable[str]
) -> int:
    """The tokens to reserve for the request's images, beyond its counted text."""
    count = image_parts(params)
    return count * image_ceiling(credits, model_group, providers) if count else 0
