"""The `workforce_gateway:` section of config.yaml. Unknown keys are errors, so a typo
never silently falls back to a default."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from portal.config.billing_settings import BillingSettings

__all__ = [
    "ConnectSettings",
    "CorsSettings",
    "CreditSettings",
    "DependencySettings",
    "LimitSettings",
    "PlanLimits",
    "PluginSettings",
    "RetentionSettings",
    "TimeoutSettings",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DEFAULT_IMAGE_TOKENS: dict[str, int] = {
    # gpt-4o-mini, OpenAI's dearest image in tokens: 2,833 + 5,667 per 512-px tile, at most
    # 8 tiles (fit in 2048 x 2048, shortest side scaled to 768); gpt-4o's is 85 + 170 x 8.
    "openai": 48_169,
    "openrouter": 48_169,  # OpenAI models through OpenRouter are billed as OpenAI bills
    # Claude: width x height / 750, images scaled to at most ~1.15 megapixels: ~1,600.
    "anthropic": 1_600,
    # Gemini: 258 per 768-px tile, images scaled to fit 3072 x 3072: 16 tiles.
    "gemini": 4_128,
}
# An image sent with `detail: "low"`, where the provider bills a fixed amount for it:
# OpenAI's tile-based models (gpt-4o-mini 2,833, the dearest; gpt-4o 85). Providers left
# out ignore `detail`: their `DEFAULT_IMAGE_TOKENS` entry applies.
DEFAULT_LOW_DETAIL_IMAGE_TOKENS: dict[str, int] = {"openai": 2_833, "openrouter": 2_833}


class CreditSettings(_Strict):
    usd_per_credit: Decimal = Field(default=Decimal("1"), gt=0)
    """What one credit is worth in US dollars of upstream cost (before markup)."""
    markup: Decimal = Field(default=Decimal("1"), gt=0)
    """Multiplier applied to the upstream cost when debiting."""
    default_max_tokens: int = Field(default=4096, gt=0)
    """Output tokens reserved for a request that does not set max_tokens."""
    reservation_ttl_seconds: int = Field(default=300, gt=0)
    """Upper bound on how long a hold lives; the gateway uses the smaller of this and the
    request deadline, so the holds of a process that died expire by themselves."""
    input_estimate_factor: Decimal = Field(default=Decimal("1.25"), ge=1)
    """Prompt tokens are reserved × this: LiteLLM's tokenizer only approximates other
    providers' counts (the overspend bound is stated in gateway_plugins/reservation.py)."""
    low_balance_credits: Decimal = Field(default=Decimal("1"), ge=0)
    image_tokens: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_IMAGE_TOKENS)
    )
    """Input tokens reserved per image a request carries (by URL or inline), keyed by
    provider or by model group (a group's own entry wins; it must then cover its
    fallbacks): each provider's documented maximum for one image (docs/security.md).
    Entries given replace the defaults; providers left out keep them."""

    low_detail_image_tokens: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_LOW_DETAIL_IMAGE_TOKENS)
    )
    """Input tokens reserved per image sent with `detail: "low"`, keyed like
    `image_tokens`: what the provider bills for one at most. A key missing here takes its
    `image_tokens` entry (a model group's own `image_tokens` entry wins over a provider's
    low-detail one: a patch-based model such as gpt-4.1-nano bills by size whatever the
    detail). Entries given replace the defaults; providers left out keep them."""

    @field_validator("image_tokens", mode="after")
    @classmethod
    def _keep_default_image_tokens(cls, value: dict[str, int]) -> dict[str, int]:
        return {**DEFAULT_IMAGE_TOKENS, **value}

    @field_validator("low_detail_image_tokens", mode="after")
    @classmethod
    def _keep_default_low_detail_image_tokens(cls, value: dict[str, int]) -> dict[str, int]:
        return {**DEFAULT_LOW_DETAIL_IMAGE_TOKENS, **value}


class PlanLimits(_Strict):
    """Per-user limits of one plan; a missing value means no limit of that kind."""

    rpm: int | None = Field(default=None, gt=0)
    """Requests per minute."""
    tpm: int | None = Field(default=None, gt=0)
    """Tokens (in + out) per minute."""
    max_parallel_requests: int | None = Field(default=None, gt=0)
    """Calls in flight at once."""


class LimitSettings(_Strict):
    max_request_tokens: int = Field(default=200_000, gt=0)
    """Refuse a request whose max_tokens exceeds this (bounds a single reservation); a
    model whose own output limit is lower is capped at that."""
    max_choices: int = Field(default=8, gt=0)
    """Largest `n` accepted; the reservation covers every choice."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """Largest request body accepted (413 is not used: the body is refused with 400)."""
    max_input_characters: int = Field(default=3_000_000, gt=0, le=4_000_000)
    """Most characters of text (messages, system, tools, prompt, input) one request may
    carry, refused with 400 before counting: LiteLLM's token counter samples (estimates)
    text beyond 4,000,000 characters, and the reservation needs an exact count."""
    max_messages: int = Field(default=2_000, gt=0)
    """Most messages / input items one request may carry (refused with 400 beyond)."""
    max_connections: int = Field(default=1_000, gt=0)
    """Open connections (and requests in progress) per gateway worker; beyond it a new
    request is answered 503 at once (uvicorn's `limit_concurrency`)."""
    plans: dict[str, PlanLimits] = {}
    """Rate limits keyed by `users.plan` (set by billing); shared by every gateway
    instance and worker through Redis (`gateway_plugins.rate_limits`)."""
    default_plan: str = "free"
    """Limits for a user whose plan has no entry under `plans`."""
    expected_instances: int = Field(default=1, gt=0)
    """Gateway processes (instances × workers) expected to share the limits. While Redis
    is unreachable each one enforces its share of every limit on its own: ⌊limit ÷
    expected_instances⌋, at least 1, never unlimited (`gateway_plugins.rate_limits`)."""

    def local_share(self, limits: PlanLimits) -> PlanLimits:
        """`limits` as one process enforces them without Redis."""

        def share(value: int | None) -> int | None:
            return None if value is None else max(1, value // self.expected_instances)

        return PlanLimits(
            rpm=share(limits.rpm),
            tpm=share(limits.tpm),
            max_parallel_requests=share(limits.max_parallel_requests),
        )

    def for_plan(self, plan: str) -> PlanLimits:
        return self.plans.get(plan) or self.plans.get(self.default_plan) or PlanLimits()


class TimeoutSettings(_Strict):
    """One deadline per request covers every retry and fallback the Router makes."""

    request_seconds: int = Field(default=300, gt=0)
    first_byte_seconds: int = Field(default=60, gt=0)
    """A stream must have answered within this (retries and fallbacks included)."""
    stream_idle_seconds: int = Field(default=60, gt=0)
    """A stream that sends nothing for this long ends with an error event."""
    abandoned_read_seconds: int = Field(default=30, gt=0)
    """A stream whose client left is read on for at most this long (and never past the
    request deadline) to get the usage the upstream reports (`gateway_plugins.streaming`)."""
    header_seconds: float = Field(default=10, gt=0)
    """A request's headers must arrive within this of the connection opening (or of the
    previous response on it), else the connection is closed (`gateway_plugins.sockets`)."""
    body_seconds: float = Field(default=30, gt=0)
    """A request's body must arrive within this once the gateway starts reading it, else
    HTTP 408 and the connection is closed (`validation.read_body`)."""
    keep_alive_seconds: int = Field(default=5, gt=0)
    """An idle keep-alive connection is closed after this (uvicorn's `timeout_keep_alive`)."""


class DependencySettings(_Strict):
    """Deadlines and circuit breakers of the gateway's own dependencies
    (`gateway_plugins.breaker`; docs/operations.md, "Deadlines, breakers and fallbacks")."""

    database_seconds: float = Field(default=2.0, gt=0, le=60)
    """Each per-call database operation (token check, hold, settlement) must finish within
    this: past it the call gets 503 (admission) or its settlement is spooled."""
    redis_budget_seconds: float = Field(default=0.25, gt=0, le=5)
    """Everything Redis does for one call (admission, auth-cache fill, freeing the slot)
    together; past it the call goes on with the local fallback (database token check,
    per-process limits)."""
    breaker_failures: int = Field(default=3, gt=0)
    """Consecutive failures or timeouts after which a dependency's breaker opens."""
    breaker_probe_seconds: float = Field(default=5.0, gt=0)
    """How long a breaker stays open before one call is let through as a probe."""


class RetentionSettings(_Strict):
    """What `gateway-admin retention run` keeps, and for how long (`portal.retention`)."""

    usage_days: int = Field(default=400, gt=0)
    """Usage records older than this are anonymised or deleted."""
    usage_action: Literal["anonymise", "delete"] = "anonymise"
    ledger_years: int = Field(default=10, gt=0)
    """The legal window for ledger (accounting) rows; older ones lose their link to a person."""
    token_grace_days: int = Field(default=30, ge=0)
    """Revoked or expired gateway tokens are deleted this long after revocation/expiry."""
    sign_in_failure_days: int = Field(default=1, gt=0)
    email_log_days: int = Field(default=400, gt=0)


class CorsSettings(_Strict):
    """Browsers (or an Electron renderer) on these origins may call the API routes with a
    gateway token in a header; no cookies or credentials mode are involved. None by
    default: no CORS headers at all."""

    allowed_origins: list[Annotated[str, Field(pattern=r"^(\*|https?://[^/\s]+)$")]] = []


class ConnectSettings(_Strict):
    """Connecting an app (`docs/connect.md`). Loopback callbacks (http://127.0.0.1:<port>/,
    http://[::1]:<port>/, http://localhost:<port>/) are always accepted."""

    https_callback_urls: tuple[str, ...] = ()
    """Further callbacks an app may return to, each an exact https URL."""

    @field_validator("https_callback_urls")
    @classmethod
    def _https_only(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.hostname or parts.fragment:
                raise ValueError(f"{url!r} is not an https URL (without a #fragment)")
        return urls


class PluginSettings(_Strict):
    cors: CorsSettings = CorsSettings()
    credits: CreditSettings = CreditSettings()
    limits: LimitSettings = LimitSettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    dependencies: DependencySettings = DependencySettings()
    retention: RetentionSettings = RetentionSettings()
    billing: BillingSettings = BillingSettings()
    connect: ConnectSettings = ConnectSettings()
