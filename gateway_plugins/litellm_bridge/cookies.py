"""Patch (a defect): upstream clients keep no cookie.

The httpx clients LiteLLM builds for the OpenAI SDK (`BaseOpenAILLM._get_async_http_client`:
embeddings, text completions, chat where the SDK path is taken) keep a cookie jar, so a
cookie one upstream answer sets (api.openai.com's Cloudflare front sets `__cf_bm`) is sent
with every later call on that shared client, whoever makes it. They get a cookie store
that keeps nothing. LiteLLM's own clients (`AsyncHTTPHandler`) block cookies by their
own policy (`blocked_cookie_jar`); the pin checks they still do.
"""

from __future__ import annotations

from typing import Any

import httpx
import litellm
from litellm.llms.openai.common_utils import BaseOpenAILLM

__all__ = ["keep_no_upstream_cookies"]


class _NoCookies(httpx.Cookies):
    """A client's cookie store that keeps nothing an answer sets, so it sends none."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def __bool__(self) -> bool:  # nothing to merge into a request
        return False


_build_openai_http_client = BaseOpenAILLM._get_async_http_client


def _cookieless_openai_http_client(shared_session: Any = None) -> Any:
    client: Any = _build_openai_http_client(shared_session=shared_session)
    if client is not None and client is not litellm.aclient_session:
        client._cookies = _NoCookies()
    return client


def keep_no_upstream_cookies() -> None:
    BaseOpenAILLM._get_async_http_client = staticmethod(_cookieless_openai_http_client)  # type: ignore[method-assign]
