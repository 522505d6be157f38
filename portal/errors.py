"""The domain's exception tree. Each error knows the HTTP status and the OpenAI-style
error `type`/`code` it maps to, so gateway and portal translate them in one place.

    GatewayError
    ├── AuthenticationFailed (401)
    │   ├── InvalidToken
    │   ├── TokenRevoked
    │   └── TokenExpired
    ├── AccountNotAllowed (403)
    │   ├── AccountSuspended
    │   └── EmailNotVerified
    ├── InsufficientCredits (402)
    │   └── TokenLimitReached     the token's spending limit, not the balance
    ├── ModelNotPriced (400)
    ├── UnknownModel (404)
    ├── RateLimited (429)
    └── NotFound (404)

Messages never include request content: they are shown to clients and may be logged.
"""

from __future__ import annotations

from datetime import datetime

__all__ = [
    "AccountNotAllowed",
    "AccountSuspended",
    "AuthenticationFailed",
    "EmailNotVerified",
    "GatewayError",
    "InsufficientCredits",
    "InvalidToken",
    "ModelNotPriced",
    "NotFound",
    "RateLimited",
    "TokenExpired",
    "TokenLimitReached",
    "TokenRevoked",
    "UnknownModel",
]


class GatewayError(Exception):
    status_code = 400
    error_type = "invalid_request_error"
    error_code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthenticationFailed(GatewayError):
    status_code = 401
    error_type = "authentication_error"
    error_code = "invalid_api_key"


class InvalidToken(AuthenticationFailed):
    pass


class TokenRevoked(AuthenticationFailed):
    error_code = "token_revoked"


class TokenExpired(AuthenticationFailed):
    error_code = "token_expired"


class AccountNotAllowed(GatewayError):
    status_code = 403
    error_type = "permission_error"
    error_code = "account_not_allowed"


class AccountSuspended(AccountNotAllowed):
    error_code = "account_suspended"


class EmailNotVerified(AccountNotAllowed):
    error_code = "email_not_verified"


class InsufficientCredits(GatewayError):
    status_code = 402
    error_type = "insufficient_quota"
    error_code = "insufficient_credits"


class TokenLimitReached(InsufficientCredits):
    """The call would take the token past its spending limit. `details` are the figures
    the 402 body carries beside the message (credits as decimal strings, and units)."""

    error_code = "token_limit_reached"

    def __init__(
        self, message: str, *, limit_units: int, used_units: int, resets_at: datetime | None
    ) -> None:
        super().__init__(message)
        self.limit_units = limit_units
        self.used_units = used_units
        self.resets_at = resets_at


class ModelNotPriced(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"
    error_code = "model_not_priced"


class UnknownModel(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    error_code = "model_not_found"


class RateLimited(GatewayError):
    status_code = 429
    error_type = "rate_limit_error"
    error_code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds, sent as Retry-After


class NotFound(GatewayError):
    status_code = 404
    error_type = "not_found_error"
    error_code = "not_found"
