"""How refusals look: JSON under /api, a short page everywhere else. Never a traceback."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from portal.web.deps import CsrfRefused, SignInRequired
from portal.web.templating import render

__all__ = ["install_error_handlers"]

_CSRF_TEXT = (
    "This form has expired or did not come from this site. Go back, reload the page and try again."
)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _page(request: Request, status: int, title: str, text: str) -> Response:
    return render(request, "message.html", {"title": title, "text": text}, status_code=status)


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(f"/signin?next={exc.next_path}", status_code=303)


async def _csrf_refused(request: Request, _exc: Exception) -> Response:
    if _is_api(request):
        return JSONResponse(
            {"detail": "Missing or wrong X-CSRF-Token header (see GET /api/me)."},
            status_code=403,
        )
    return _page(request, 403, "Please try again", _CSRF_TEXT)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_api(request):
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
    titles = {404: "Page not found", 405: "Not allowed here"}
    text = exc.detail if exc.status_code != 404 else "There is nothing at this address."
    return _page(request, exc.status_code, titles.get(exc.status_code, "Request refused"), text)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if _is_api(request):
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid")} for e in exc.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)
    return _page(request, 400, "Request not understood", "Some of what was sent is not valid.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
