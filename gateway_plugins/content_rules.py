"""Step 2, inside the body: what a request's messages, content parts and tools may carry.

The top-level fields of each endpoint are allow-listed by `validation`; this module does
the same for what sits inside them, per endpoint and per provider the call may reach
(the requested model group's deployments and its fallbacks). Allowed: text, images
(inline `data:image/...;base64,` data, or `https://` URLs that the upstream fetches
itself), function tools with their calls and results, JSON-schema output, thinking
settings and Anthropic `cache_control` hints. Everything else is refused with a 400 that
names the field (`messages[0].content[1].type`): server-side tools (web search, fetch,
code execution, file search, image generation, MCP, computer use, Gemini grounding),
references to objects stored in the operator's provider accounts (file ids, vector
stores, item references, `gs://` and Files-API URIs), document/file/audio/video parts
whose size cannot be bounded before the call.

The gateway never fetches a URL for a caller: an image URL is refused where LiteLLM
would download it itself (`http://` URLs for Anthropic, every URL for Gemini, which
LiteLLM inlines), and `detail: "high"` on a URL image is refused because LiteLLM's token
counter downloads the image to measure it, synchronously, on the event loop.

`cache_control` is kept only when every deployment the call may reach is Anthropic or
OpenAI (metered prompt caching; LiteLLM drops or maps the hint for OpenAI); for Gemini
it would make LiteLLM create a `cachedContents` holding the prompt in the operator's
Google project, so there it is stripped, not refused (Claude-style clients send it on
every call). `docs/security.md` has the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from portal.errors import GatewayError

__all__ = [
    "CACHE_HINT_PROVIDERS",
    "URL_IMAGE_PROVIDERS",
    "ContentRefused",
    "checked_content",
]

# Providers whose LiteLLM path passes an https image URL on for the upstream to fetch.
URL_IMAGE_PROVIDERS = frozenset({"openai", "anthropic", "openrouter"})
# Providers where an Anthropic cache_control hint costs only what the usage meters.
CACHE_HINT_PROVIDERS = frozenset({"anthropic", "openai"})

_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,")
_IMAGE_MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_FILES_API_HOSTS = ("generativelanguage.googleapis.com", "storage.googleapis.com")
_CACHE_TTLS = frozenset({"5m", "1h"})


class ContentRefused(GatewayError):
    """Same status and body as `validation.InvalidRequest` (400, the field named)."""

    error_code = "invalid_request"

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def _refuse(path: str, why: str) -> NoReturn:
    raise ContentRefused(f"{path!r} is not accepted on this gateway: {why}.", path)


def _only(item: Any, allowed: frozenset[str], path: str) -> Mapping[str, Any]:
    if not isinstance(item, dict):
        _refuse(path, "expected an object")
    for key in item:
        if key not in allowed:
            _refuse(f"{path}.{key}", "not on the allow-list")
    return item


def _type_of(item: Any, path: str) -> str:
    kind = item.get("type") if isinstance(item, dict) else None
    if not isinstance(kind, str):
        _refuse(f"{path}.type", "a content part needs a string type")
    return kind


class _Rules:
    """One request's walk: the providers it may reach, and whether cache hints stay."""

    def __init__(self, providers: frozenset[str]) -> None:
        self.providers = providers
        self.keep_cache = bool(providers) and providers <= CACHE_HINT_PROVIDERS
        self.url_images = bool(providers) and providers <= URL_IMAGE_PROVIDERS

    # ------------------------------------------------------------------ shared pieces

    def cache(self, item: dict[str, Any], path: str) -> dict[str, Any]:
        """`item` with its cache_control checked, or stripped where it would store content."""
        hint = item.get("cache_control")
        if hint is None:
            return item
        hint = _only(hint, frozenset({"type", "ttl"}), f"{path}.cache_control")
        if hint.get("type") != "ephemeral" or hint.get("ttl", "5m") not in _CACHE_TTLS:
            _refuse(f"{path}.cache_control", 'only {"type": "ephemeral", "ttl": "5m" | "1h"}')
        if self.keep_cache:
            return item
        return {k: v for k, v in item.items() if k != "cache_control"}

    def image_url(self, url: Any, detail: Any, path: str) -> None:
        if not isinstance(url, str):
            _refuse(path, "an image URL must be a string")
        if url.startswith("data:"):
            if not _DATA_IMAGE.match(url):
                _refuse(path, "inline images must be data:image/(png|jpeg|gif|webp);base64")
            return
        host = url[8:].split("/")[0]
        if not url.startswith("https://") or any(h in host for h in _FILES_API_HOSTS):
            _refuse(path, "images are inline base64 data or https URLs (no stored-file URIs)")
        if not self.url_images:
            _refuse(path, "this model's provider needs images inline (the gateway fetches no URL)")
        if detail == "high":
            _refuse(f"{path}.detail", 'send the image inline to use detail "high" with a URL')

    def json_format(self, spec: Any, path: str, *, nested: bool) -> None:
        """A response format: text, json_object, or json_schema (chat nests the schema
        under `json_schema`, Responses puts it beside `type`)."""
        kind = _type_of(spec, path)
        if kind in ("text", "json_object"):
            _only(spec, frozenset({"type"}), path)
        elif kind == "json_schema":
            schema_keys = frozenset({"name", "schema", "strict", "description"})
            if nested:
                _only(spec, frozenset({"type", "json_schema"}), path)
                _only(spec.get("json_schema"), schema_keys, f"{path}.json_schema")
            else:
                _only(spec, schema_keys | {"type"}, path)
        else:
            _refuse(f"{path}.type", "only text, json_object and json_schema output")

    # ------------------------------------------------------------------ chat

    _CHAT_MESSAGE = frozenset(
        {
            "role", "content", "name", "tool_calls", "tool_call_id", "refusal",
            "cache_control", "reasoning_content", "thinking_blocks",
        }
    )  # fmt: skip

    def chat(self, params: dict[str, Any]) -> None:
        params["messages"] = [
            self.chat_message(m, f"messages[{i}]") for i, m in enumerate(params["messages"])
        ]
        if "tools" in params:
            tools = enumerate(params["tools"])
            params["tools"] = [self.chat_tool(t, f"tools[{i}]") for i, t in tools]
        choice = params.get("tool_choice")
        if isinstance(choice, str):
            if choice not in ("none", "auto", "required"):
                _refuse("tool_choice", "only none, auto, required or a function")
        elif choice is not None:
            _only(choice, frozenset({"type", "function"}), "tool_choice")
            if choice.get("type") != "function":
                _refuse("tool_choice.type", "only function tools")
            _only(choice.get("function"), frozenset({"name"}), "tool_choice.function")
        if params.get("response_format") is not None:
            self.json_format(params["response_format"], "response_format", nested=True)

    def chat_message(self, item: Any, path: str) -> dict[str, Any]:
        message = dict(_only(item, self._CHAT_MESSAGE, path))
        if message.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            _refuse(f"{path}.role", "only system, developer, user, assistant and tool")
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = [
                self.chat_part(p, f"{path}.content[{j}]") for j, p in enumerate(content)
            ]
        elif content is not None and not isinstance(content, str):
            _refuse(f"{path}.content", "text or a list of content parts")
        for j, call in enumerate(message.get("tool_calls") or ()):
            at = f"{path}.tool_calls[{j}]"
            _only(call, frozenset({"id", "type", "function", "index"}), at)
            if call.get("type", "function") != "function":
                _refuse(f"{at}.type", "only function tool calls")
            _only(call.get("function"), frozenset({"name", "arguments"}), f"{at}.function")
        return self.cache(message, path)

    def chat_part(self, part: Any, path: str) -> dict[str, Any]:
        kind = _type_of(part, path)
        if kind == "text":
            _only(part, frozenset({"type", "text", "cache_control"}), path)
        elif kind == "image_url":
            _only(part, frozenset({"type", "image_url", "cache_control"}), path)
            image = part.get("image_url")
            if isinstance(image, dict):
                _only(image, frozenset({"url", "detail", "format"}), f"{path}.image_url")
                if image.get("detail", "auto") not in ("auto", "low", "high"):
                    _refuse(f"{path}.image_url.detail", "only auto, low or high")
                self.image_url(image.get("url"), image.get("detail"), f"{path}.image_url")
            else:
                self.image_url(image, None, f"{path}.image_url")
        else:
            _refuse(f"{path}.type", f"content of type {kind[:40]!r} (text and images only)")
        return self.cache(part, path)

    def chat_tool(self, tool: Any, path: str) -> dict[str, Any]:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            _refuse(f"{path}.type", "only function tools (no server-side tools)")
        _only(tool, frozenset({"type", "function", "cache_control"}), path)
        function = _only(tool.get("function"), self._FUNCTION, f"{path}.function")
        if not isinstance(function.get("name"), str):
            _refuse(f"{path}.function.name", "a function tool needs a name")
        return self.cache(tool, path)

    _FUNCTION = frozenset({"name", "description", "parameters", "strict"})

    # ------------------------------------------------------------------ messages

    _ANTHROPIC_BLOCKS = frozenset(
        {"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"}
    )

    def messages(self, params: dict[str, Any]) -> None:
        params["messages"] = [
            self.anthropic_message(m, f"messages[{i}]") for i, m in enumerate(params["messages"])
        ]
        system = params.get("system")
        if isinstance(system, list):
            params["system"] = [self.anthropic_block(b, f"system[{i}]", frozenset({"text"}))
                                for i, b in enumerate(system)]  # fmt: skip
        if "tools" in params:
            params["tools"] = [
                self.anthropic_tool(t, f"tools[{i}]") for i, t in enumerate(params["tools"])
            ]
        if params.get("tool_choice") is not None:
            choice = _only(
                params["tool_choice"],
                frozenset({"type", "name", "disable_parallel_tool_use"}),
                "tool_choice",
            )
            if choice.get("type") not in ("auto", "any", "tool", "none"):
                _refuse("tool_choice.type", "only auto, any, tool or none")
        if params.get("thinking") is not None:
            thinking = _only(params["thinking"], frozenset({"type", "budget_tokens"}), "thinking")
            if thinking.get("type") not in ("enabled", "disabled"):
                _refuse("thinking.type", "only enabled or disabled")
            budget = thinking.get("budget_tokens")
            if thinking["type"] == "enabled" and (type(budget) is not int or budget < 1):
                _refuse("thinking.budget_tokens", "a positive integer")

    def anthropic_message(self, item: Any, path: str) -> dict[str, Any]:
        message = dict(_only(item, frozenset({"role", "content"}), path))
        if message.get("role") not in ("user", "assistant"):
            _refuse(f"{path}.role", "only user and assistant")
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = [
                self.anthropic_block(b, f"{path}.content[{j}]", self._ANTHROPIC_BLOCKS)
                for j, b in enumerate(content)
            ]
        elif not isinstance(content, str):
            _refuse(f"{path}.content", "text or a list of content blocks")
        return message

    def anthropic_block(self, block: Any, path: str, allowed: frozenset[str]) -> dict[str, Any]:
        kind = _type_of(block, path)
        if kind not in allowed:
            _refuse(f"{path}.type", f"content of type {kind[:40]!r}")
        keys = {
            "text": {"text", "cache_control", "citations"},
            "image": {"source", "cache_control"},
            "tool_use": {"id", "name", "input", "cache_control"},
            "tool_result": {"tool_use_id", "content", "is_error", "cache_control"},
            "thinking": {"thinking", "signature"},
            "redacted_thinking": {"data"},
        }[kind]
        block = dict(_only(block, frozenset(keys | {"type"}), path))
        if kind == "text" and block.get("citations") is not None:
            _refuse(f"{path}.citations", "citations refer to documents, which are not accepted")
        if kind == "image":
            self.anthropic_image(block.get("source"), f"{path}.source")
        if kind == "tool_result" and isinstance(block.get("content"), list):
            block["content"] = [
                self.anthropic_block(b, f"{path}.content[{j}]", frozenset({"text", "image"}))
                for j, b in enumerate(block["content"])
            ]
        return self.cache(block, path)

    def anthropic_image(self, source: Any, path: str) -> None:
        kind = _type_of(source, path)
        if kind == "base64":
            _only(source, frozenset({"type", "media_type", "data"}), path)
            if source.get("media_type") not in _IMAGE_MEDIA_TYPES:
                _refuse(f"{path}.media_type", "only png, jpeg, gif or webp")
        elif kind == "url":
            _only(source, frozenset({"type", "url"}), path)
            self.image_url(source.get("url"), None, f"{path}.url")
        else:
            _refuse(f"{path}.type", "images are inline base64 data or https URLs (no file ids)")

    def anthropic_tool(self, tool: Any, path: str) -> dict[str, Any]:
        keys = frozenset({"type", "name", "description", "input_schema", "cache_control"})
        if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
            _refuse(f"{path}.type", "only client tools (no server-side tools)")
        _only(tool, keys, path)
        if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
            _refuse(path, "a tool needs a name and an input_schema")
        return self.cache(tool, path)

    # ------------------------------------------------------------------ responses

    def responses(self, params: dict[str, Any]) -> None:
        if isinstance(params["input"], list):
            params["input"] = [
                self.responses_item(item, f"input[{i}]") for i, item in enumerate(params["input"])
            ]
        for i, tool in enumerate(params.get("tools") or ()):
            at = f"tools[{i}]"
            if not isinstance(tool, dict) or tool.get("type") != "function":
                _refuse(f"{at}.type", "only function tools (no server-side tools)")
            _only(tool, self._FUNCTION | {"type"}, at)
        choice = params.get("tool_choice")
        if isinstance(choice, str):
            if choice not in ("none", "auto", "required"):
                _refuse("tool_choice", "only none, auto, required or a function")
        elif choice is not None:
            _only(choice, frozenset({"type", "name"}), "tool_choice")
            if choice.get("type") != "function":
                _refuse("tool_choice.type", "only function tools")
        if params.get("text") is not None:
            text = _only(params["text"], frozenset({"format", "verbosity"}), "text")
            if text.get("format") is not None:
                self.json_format(text["format"], "text.format", nested=False)
            if text.get("verbosity", "medium") not in ("low", "medium", "high"):
                _refuse("text.verbosity", "only low, medium or high")
        if params.get("reasoning") is not None:
            reasoning = _only(params["reasoning"], frozenset({"effort", "summary"}), "reasoning")
            if reasoning.get("effort", "medium") not in ("minimal", "low", "medium", "high"):
                _refuse("reasoning.effort", "only minimal, low, medium or high")
            if reasoning.get("summary", "auto") not in ("auto", "concise", "detailed"):
                _refuse("reasoning.summary", "only auto, concise or detailed")

    _RESPONSES_PARTS = frozenset({"input_text", "output_text", "input_image", "refusal"})

    def responses_item(self, item: Any, path: str) -> Any:
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message":
            _only(item, frozenset({"type", "role", "content", "id", "status"}), path)
            if item.get("role") not in ("system", "developer", "user", "assistant"):
                _refuse(f"{path}.role", "only system, developer, user and assistant")
            content = item.get("content")
            if isinstance(content, list):
                for j, part in enumerate(content):
                    self.responses_part(part, f"{path}.content[{j}]")
            elif not isinstance(content, str):
                _refuse(f"{path}.content", "text or a list of content parts")
        elif kind == "function_call":
            _only(item, frozenset({"type", "call_id", "name", "arguments", "id", "status"}), path)
        elif kind == "function_call_output":
            _only(item, frozenset({"type", "call_id", "output", "id", "status"}), path)
            if not isinstance(item.get("output"), str):
                _refuse(f"{path}.output", "a function's output is text")
        else:
            _refuse(f"{path}.type", f"input items of type {str(kind)[:40]!r} (stored, server-side)")
        return item

    def responses_part(self, part: Any, path: str) -> None:
        kind = _type_of(part, path)
        if kind not in self._RESPONSES_PARTS:
            _refuse(f"{path}.type", f"content of type {kind[:40]!r} (text and images only)")
        if kind == "input_image":
            _only(part, frozenset({"type", "image_url", "detail"}), path)
            if part.get("detail", "auto") not in ("auto", "low", "high"):
                _refuse(f"{path}.detail", "only auto, low or high")
            self.image_url(part.get("image_url"), part.get("detail"), f"{path}.image_url")
        elif kind == "output_text":
            _only(part, frozenset({"type", "text", "annotations", "logprobs"}), path)
        elif kind == "refusal":
            _only(part, frozenset({"type", "refusal"}), path)
        else:
            _only(part, frozenset({"type", "text"}), path)


def checked_content(kind: str, params: dict[str, Any], providers: Iterable[str]) -> None:
    """Check (and where documented, rewrite) `params` in place for endpoint `kind`, for a
    call that may reach deployments of `providers`; ContentRefused names the field."""
    rules = _Rules(frozenset(providers))
    walk = {"chat": rules.chat, "messages": rules.messages, "count_tokens": rules.messages,
            "responses": rules.responses}.get(kind)  # fmt: skip
    if walk is not None:
        walk(params)
