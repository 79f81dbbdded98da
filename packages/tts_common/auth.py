"""Optional API key for self-hosted Trusses.

When the truss secret `tts_api_key` is set (`TRUSS_SECRET_tts_api_key`, or a file
`/secrets/tts_api_key` as a Kubernetes Secret mounts it), every predict request
must carry `Authorization: Api-Key <key>` or `Authorization: Bearer <key>`, or is
answered 401 before its body is read. Unset, nothing is checked: on Baseten the
platform checks its own API keys in front of the model, and leave this unset there
(the platform's key arrives in the same header). Readiness and `/metrics` stay
open for probes and scrapers: keep them off the public network.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Final

logger = logging.getLogger(__name__)

API_KEY_SECRET: Final = "tts_api_key"
_SCHEMES: Final = ("api-key", "bearer")
REFUSAL: Final = (
    "missing or wrong API key: send 'Authorization: Api-Key <key>' or 'Authorization: Bearer <key>'"
)


def api_key(secrets: Mapping[str, str] | None) -> str | None:
    """The configured key, or None when the secret is absent or blank (truss's
    secrets raise for a declared secret nobody set)."""
    if secrets is None:
        return None
    try:
        value = secrets[API_KEY_SECRET]
    except Exception:  # truss's SecretNotFound, or KeyError
        return None
    return value.strip() or None


class ApiKeyCheck:
    def __init__(self, key: str | None):
        self._key = key.encode() if key else None

    @staticmethod
    def key_id(headers: Mapping[str, str]) -> str | None:
        """A stable, non-reversible id of the key a caller presented (checked here,
        or by the platform in front, as Baseten checks its own); None if it presented
        none. Only who holds the key can present it again."""
        token = _credentials(headers)[1]
        return hashlib.sha256(token.encode()).hexdigest()[:32] if token else None

    def accepts(self, headers: Mapping[str, str], rid: str) -> bool:
        """Whether a request's (or a WebSocket handshake's) headers carry the key, if one is set."""
        if self._key is None:
            return True
        scheme, token = _credentials(headers)
        # Compared in constant time, whatever the scheme, so timing tells nothing.
        matches = hmac.compare_digest(token.encode(), self._key)
        if matches and scheme.lower() in _SCHEMES:
            return True
        logger.info("[%s] refused: %s API key", rid, "wrong" if token else "no")
        return False


def _credentials(headers: Mapping[str, str]) -> tuple[str, str]:
    """`Authorization: <scheme> <token>` as (scheme, token); empty strings where absent."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    return scheme, token.strip()
