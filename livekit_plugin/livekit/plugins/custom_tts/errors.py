from __future__ import annotations

from livekit.agents import APIConnectionError, APIError, APIStatusError, APITimeoutError


def final(err: APIError) -> APIError:
    """The same error, marked not retryable (audio already reached the listener, or
    our own retries are spent)."""
    if not err.retryable:
        return err
    new: APIError
    if isinstance(err, APIStatusError):
        new = APIStatusError(
            err.message,
            status_code=err.status_code,
            request_id=err.request_id,
            body=err.body,
            retryable=False,
        )
    elif isinstance(err, APITimeoutError):
        new = APITimeoutError(err.message, retryable=False)
    elif isinstance(err, APIConnectionError):
        new = APIConnectionError(err.message, retryable=False)
    else:
        new = APIError(err.message, body=err.body, retryable=False)
    new.__cause__ = err.__cause__ or err
    return new
