"""Uploaded voices, scoped to their caller: who may use, list, replace or delete
a voice is the scope it was added in, never another's.

A scope is a string the transport derives from the caller (the WebSocket
transport's `Caller.scope`): one per API key, one per session, or one shared by
everyone where the operator says so. Each voice gets an id of its own (the name
its engine pins it under) so two scopes may use one name. Bounds, each enforced
on the event loop with no await between check and reserve, so concurrent adds
cannot overshoot: `per_caller` voices per scope, `total` in the replica (a clone
in progress holds its place), and `ttl_s` since a voice was last used, after
which it is dropped, so no caller can fill the replica for good.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .contract import FieldError

ID_PREFIX = "upload:"  # engine-side names of uploaded voices; never a client's voice name


@dataclass
class _Voice:
    scope: str
    name: str
    used_at: float


class VoiceStore:
    def __init__(self, per_caller: int, total: int, ttl_s: float, unpin: Callable[[str], None]):
        """`unpin(id)` frees a dropped voice's engine state."""
        self.per_caller, self.total, self.ttl_s = per_caller, total, ttl_s
        self._unpin = unpin
        self._ids: dict[tuple[str, str], str] = {}  # (scope, name) -> id
        self._voices: dict[str, _Voice] = {}  # id -> voice, reservations included

    def reserve(self, scope: str, name: str) -> str:
        """A new id for `name` in `scope` (replacing its voice there once committed);
        FieldError naming `name` when the caller's or the replica's cap is reached."""
        self.expire()
        replacing = (scope, name) in self._ids
        mine = sum(1 for v in self._voices.values() if v.scope == scope)
        if not replacing and mine >= self.per_caller:
            raise FieldError("name", f"{mine} voices are yours already; at most {self.per_caller}")
        if not replacing and len(self._voices) >= self.total:
            raise FieldError("name", f"this replica holds {self.total} voices; retry later")
        voice_id = f"{ID_PREFIX}{uuid.uuid4().hex}"
        self._voices[voice_id] = _Voice(scope, name, time.monotonic())
        return voice_id

    def commit(self, voice_id: str) -> None:
        voice = self._voices[voice_id]
        old = self._ids.get((voice.scope, voice.name))
        self._ids[(voice.scope, voice.name)] = voice_id
        if old is not None:
            self._drop(old)

    def abandon(self, voice_id: str) -> None:
        """A reservation whose clone failed."""
        self._voices.pop(voice_id, None)

    def lookup(self, scope: str, name: str) -> str | None:
        voice_id = self._ids.get((scope, name))
        if voice_id is not None:
            self._voices[voice_id].used_at = time.monotonic()
        return voice_id

    def names(self, scope: str) -> list[str]:
        self.expire()
        return sorted(name for (owner, name) in self._ids if owner == scope)

    def delete(self, scope: str, name: str) -> bool:
        voice_id = self._ids.get((scope, name))
        if voice_id is None:
            return False
        self._drop(voice_id)
        return True

    def drop_scope(self, scope: str) -> None:
        for (owner, _), voice_id in list(self._ids.items()):
            if owner == scope:
                self._drop(voice_id)

    def expire(self) -> None:
        cutoff = time.monotonic() - self.ttl_s
        for voice_id in list(self._ids.values()):  # a clone in progress is not committed yet
            if self._voices[voice_id].used_at < cutoff:
                self._drop(voice_id)

    def __len__(self) -> int:
        return len(self._voices)

    def _drop(self, voice_id: str) -> None:
        voice = self._voices.pop(voice_id, None)
        if voice is not None and self._ids.get((voice.scope, voice.name)) == voice_id:
            del self._ids[(voice.scope, voice.name)]
        self._unpin(voice_id)
