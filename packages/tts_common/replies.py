"""HTTP error replies, the same for every Truss.

Every answer carries its request id (`X-Request-Id`, and `request_id` in error
JSON; `connection.request_id`). Server logs name the same id, so a 500's
traceback is found from what the client saw, while the client sees no internals.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .auth import REFUSAL
from .connection import REQUEST_ID_HEADER
from .contract import RequestError
from .metrics import Transport
from .slots import Busy, ClientGone
from .synthesis import Lease, SynthesisCore

logger = logging.getLogger(__name__)


def json_error(
    status: int,
    error: str,
    rid: str,
    field: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "field": field, "request_id": rid}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(status_code=status, content=body, headers={**(headers or {}), REQUEST_ID_HEADER: rid})


def request_error(exc: RequestError, rid: str) -> JSONResponse:
    """A 4xx naming the field(s) at fault."""
    logger.info("[%s] rejected request (%s): %s", rid, exc.status, exc)
    return json_error(exc.status, str(exc), rid, exc.errors[0]["field"], exc.errors)


def busy(message: str, rid: str) -> JSONResponse:
    return json_error(503, message, rid, headers={"Retry-After": "1"})


def internal_error(what: str, rid: str) -> JSONResponse:
    """A 500 in words that leak nothing; the log holds the traceback under `rid`."""
    return json_error(500, f"{what}; the server log has details under request id {rid}", rid)


def unauthorized(rid: str) -> JSONResponse:
    """The 401 for a request without the API key (auth.py)."""
    return json_error(
        401, REFUSAL, rid, field="authorization", headers={"WWW-Authenticate": 'Bearer realm="tts"'}
    )


def client_gone(rid: str) -> Response:
    """499 (nginx's "client closed request"): nobody reads it; it names the outcome in logs."""
    return Response(status_code=499, headers={REQUEST_ID_HEADER: rid})


class Replies:
    """How a surface answers a request it refuses before any audio; these are
    our contract's shapes (a surface with its own, as OpenAI's, overrides them)."""

    def unauthorized(self, rid: str) -> Response:
        return unauthorized(rid)

    def request_error(self, exc: RequestError, rid: str) -> Response:
        return request_error(exc, rid)

    def busy(self, message: str, rid: str) -> Response:
        return busy(message, rid)

    def internal_error(self, what: str, rid: str) -> Response:
        return internal_error(what, rid)


CONTRACT = Replies()


async def admit(
    core: SynthesisCore,
    request: Request,
    rid: str,
    replies: Replies = CONTRACT,
    transport: Transport = Transport.http,
) -> Lease | Response:
    """A slot for an HTTP request, or the answer of one that never started: 503
    (busy or overloaded) or 499 (its client left while it waited)."""
    try:
        return await core.admit(transport, rid, gone=request.is_disconnected)
    except Busy as exc:
        return replies.busy(str(exc), rid)
    except ClientGone:
        return client_gone(rid)
