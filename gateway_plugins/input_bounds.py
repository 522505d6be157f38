"""Input by reference, bounded: what an image costs is reserved at its ceiling.

An image URL is fetched by the upstream, never by the gateway, so its size is unknown
before the call; LiteLLM's counter estimates a URL image at 85 tokens (the low-detail
rate), while a provider bills up to thousands (gpt-4o-mini bills a low-detail image as
2,833 tokens). So every image part a request carries — by URL or inline — adds the
provider's documented maximum for one image to the prompt tokens reserved, at the image's
detail level: `credits.image_tokens` for any image, `credits.low_detail_image_tokens` for
one sent with `detail: "low"` where the provider bills that a fixed amount (OpenAI), per
provider or per model group (docs/security.md gives the numbers and their sources). The
image itself is never looked at (no size read, nothing fetched). The prompt's text is
still counted by `token_counting`; the upstream's own usage report is what is billed.
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
    return _low_detail_images(params)[0]


def _low_detail_images(params: Mapping[str, Any]) -> tuple[int, int]:
    """(images at any detail, of which sent with `detail: "low"`)."""
    found = [0, 0]
    for field in _CONTENT_FIELDS:
        _count_images(params.get(field), found)
    return found[0] + found[1], found[1]


def _count_images(value: Any, found: list[int]) -> None:
    if isinstance(value, list):
        for item in value:
            _count_images(item, found)
    elif isinstance(value, dict):
        if value.get("type") in _IMAGE_TYPES:
            found[1 if _detail(value) == "low" else 0] += 1
        for item in value.values():
            if isinstance(item, list):
                _count_images(item, found)


def _detail(part: Mapping[str, Any]) -> Any:
    """An image part's `detail`: on the part (Responses `input_image`) or inside its
    `image_url` object (chat); Anthropic image blocks have none."""
    url = part.get("image_url")
    return url.get("detail") if isinstance(url, dict) else part.get("detail")


def image_ceiling(
    credits: CreditSettings, model_group: str, providers: Iterable[str], *, low: bool = False
) -> int:
    """Tokens reserved per image for a call to `model_group` that may reach `providers`:
    the group's own entry if it has one, else the largest of those providers' entries,
    else the largest of all. `low`: an image sent with `detail: "low"`, where a
    `low_detail_image_tokens` entry (the group's, else each provider's) replaces the
    `image_tokens` one."""
    ceilings = credits.image_tokens
    low_ceilings = credits.low_detail_image_tokens if low else {}
    for table in (low_ceilings, ceilings):
        if model_group in table:
            return table[model_group]
    known = [low_ceilings.get(p, ceilings.get(p)) for p in providers]
    reached = [tokens for tokens in known if tokens is not None]
    return max(reached) if reached else max(ceilings.values(), default=0)


def reserved_image_tokens(
    params: Mapping[str, Any], credits: CreditSettings, model_group: str, providers: Iterable[str]
) -> int:
    """The tokens to reserve for the request's images, beyond its counted text."""
    count, low = _low_detail_images(params)
    if not count:
        return 0
    providers = tuple(providers)
    reserved = low * image_ceiling(credits, model_group, providers, low=True) if low else 0
    if count > low:
        reserved += (count - low) * image_ceiling(credits, model_group, providers)
    return reserved
