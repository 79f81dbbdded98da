"""Baseten's default TTS dialect over the WebSocket, as LiveKit's Baseten plugins send
it in their default mode (`baseten.TTS(model_endpoint="wss://...")`, Python and Node):
a JSON config with no `type` (`voice`, `max_tokens`, `buffer_size`, and maybe
`language`, `temperature`), then the text as plain frames as it comes, then
`__END__`; 24 kHz 16-bit mono PCM back, the socket closed after the last audio.

The session tells it from the realtime protocol by its first frame; this module
only reads that frame and maps it onto the Truss's own `session.config`, so the
dialect shares every bound, check and metric of the protocol.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from .contract import DEFAULT_SAMPLE_RATE, validation_errors
from .realtime_protocol import ProtocolError, SessionConfig

END_OF_INPUT = "__END__"
# The config's fields: `voice` and `language` map onto the session's; `temperature` and
# `max_tokens` too where the Truss's config has them (XTTS); `buffer_size` (words per
# chunk the client wants) is accepted and unused: the server chooses its units.
_FIELDS = frozenset({"voice", "language", "temperature", "max_tokens", "buffer_size"})


def baseten_config(raw: str) -> dict[str, Any] | None:
    """The frame's object if it is the dialect's config: a JSON object with no
    `type` and only the dialect's fields; None for anything else."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or "type" in data or not data or not set(data) <= _FIELDS:
        return None
    return data


def default_session(data: dict[str, Any], config_model: type[SessionConfig]) -> SessionConfig:
    """The dialect's config as the Truss's session.config (24 kHz PCM, no word times);
    ProtocolError naming the field for a bad value."""
    fields = {name: data[name] for name in ("voice", "language") if data.get(name) is not None}
    fields |= {
        name: data[name]
        for name in ("temperature", "max_tokens")
        if data.get(name) is not None and name in config_model.model_fields
    }
    try:
        return config_model.model_validate(
            {"type": "session.config", "sample_rate": DEFAULT_SAMPLE_RATE, **fields}
        )
    except ValidationError as exc:
        raise ProtocolError(validation_errors(exc), "config") from None
