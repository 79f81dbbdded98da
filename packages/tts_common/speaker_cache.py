"""A bounded, thread-safe LRU of speaker conditioning, keyed by reference-audio hash.

A voice sent again (the same clip, byte for byte) is not recomputed; the least
recently used entry is dropped once `max_entries` is reached, so device memory
stays bounded however many voices callers send.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SpeakerCache(Generic[T]):
    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_compute(self, key: str, compute: Callable[[], T]) -> tuple[T, bool]:
        """Return (value, was_cached). `compute` runs outside the lock."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key], True
        value = compute()
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value, False
