"""CORS for the API routes (`/v1/...`), for browsers and Electron renderers on the
origins config.yaml names (`workforce_gateway.cors.allowed_origins`; none by default,
and then no CORS header is ever sent). Preflights are answered by Starlette's
`CORSMiddleware`; the token travels in a header, never a cookie, so credentials mode is
off. The origins are read from the runtime at the first request (the lifespan builds it).
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway_plugins.call import CALL_ID_HEADER
from gateway_plugins.charges import COST_HEADER

__all__ = ["ApiCors"]

_EXPOSED = [CALL_ID_HEADER, COST_HEADER, "retry-after"]


class ApiCors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cors: ASGIApp | None = None
        self._built = False

    def _build(self, scope: Scope) -> ASGIApp | None:
        runtime = getattr(scope["app"].state, "runtime", None)
        if runtime is None:  # no lifespan (in-process tests): no origins known
            return None
        self._built = True
        origins = runtime.config.plugin.cors.allowed_origins
        if origins:
            self._cors = CORSMiddleware(
                self.app,
                allow_origins=origins,
                allow_methods=["GET", "POST"],
                allow_headers=["*"],
                allow_credentials=False,
                expose_headers=_EXPOSED,
                max_age=600,
            )
        return self._cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            cors = self._cors if self._built else self._build(scope)
            if cors is not None:
                await cors(scope, receive, send)
                return
        await self.app(scope, receive, send)
