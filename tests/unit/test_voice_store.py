"""Uploaded voices scoped to their caller (tts_common.voice_store): caps held by
clones in progress, replacement, deletion, expiry, and what is freed."""

import time

import pytest

from tts_common.contract import FieldError
from tts_common.voice_store import ID_PREFIX, VoiceStore


def store(per_caller: int = 2, total: int = 3, ttl_s: float = 60.0) -> tuple[VoiceStore, list[str]]:
    unpinned: list[str] = []
    return VoiceStore(per_caller, total, ttl_s, unpinned.append), unpinned


def add(voices: VoiceStore, scope: str, name: str) -> str:
    voice_id = voices.reserve(scope, name)
    voices.commit(voice_id)
    return voice_id


def test_scopes_do_not_see_each_others_voices():
    voices, _ = store()
    mine = add(voices, "a", "alice")
    theirs = add(voices, "b", "alice")
    assert mine != theirs and mine.startswith(ID_PREFIX)
    assert voices.lookup("a", "alice") == mine and voices.lookup("b", "alice") == theirs
    assert voices.lookup("c", "alice") is None and voices.names("c") == []


def test_reservations_count_against_both_caps_before_the_clone_is_done():
    voices, _ = store(per_caller=2, total=3)
    voices.reserve("a", "one")
    voices.reserve("a", "two")  # two clones in flight, neither committed
    with pytest.raises(FieldError, match="at most 2") as mine:
        voices.reserve("a", "three")
    assert mine.value.field == "name"
    voices.reserve("b", "one")
    with pytest.raises(FieldError, match="holds 3"):
        voices.reserve("c", "one")


def test_replacing_and_deleting_free_the_old_voice():
    voices, unpinned = store()
    old = add(voices, "a", "alice")
    new = add(voices, "a", "alice")  # replacing takes no new place
    assert unpinned == [old] and voices.lookup("a", "alice") == new and len(voices) == 1
    assert voices.delete("a", "alice") and not voices.delete("a", "alice")
    assert unpinned == [old, new] and len(voices) == 0


def test_a_failed_clone_gives_its_place_back():
    voices, unpinned = store(per_caller=1)
    voices.abandon(voices.reserve("a", "one"))
    add(voices, "a", "two")
    assert voices.names("a") == ["two"] and unpinned == []


def test_unused_voices_expire_and_a_session_scope_is_dropped_whole():
    voices, unpinned = store(ttl_s=0.2)
    kept, dropped = add(voices, "a", "kept"), add(voices, "a", "dropped")
    time.sleep(0.15)
    voices.lookup("a", "kept")  # use keeps a voice
    time.sleep(0.1)
    assert voices.names("a") == ["kept"] and unpinned == [dropped]
    voices.drop_scope("a")
    assert voices.names("a") == [] and unpinned == [dropped, kept]
