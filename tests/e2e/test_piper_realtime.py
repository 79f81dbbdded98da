"""piper-realtime served by truss's real server, spoken to with a raw WebSocket
client: the realtime protocol's errors, timeouts, turns, flushes, barge-in and
word times, with second-scale bounds (environment variables) so the timeouts can
be watched."""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import sys
import time
from contextlib import AbstractContextManager

import pytest
import realtime_client
from audio_checks import assert_speech_like, pcm16
from conftest import REPO
from httpx_ws import WebSocketDisconnect, WebSocketSession
from metrics_scrape import scrape, settled, value
from realtime_client import Unit, event, push_words, send, turn
from wsproto.events import BytesMessage
from wsproto.utilities import LocalProtocolError

MODEL = "piper-realtime"
KEY = "rt-0123456789abcdef"
VOICE = "en_US-joe-medium"
CONFIG = {
    "type": "session.config",
    "voice": VOICE,
    "task_type": "Base",
    "language": "Auto",
    "speed": 1.0,
    "response_format": "pcm",
    "stream_audio": True,
    "timestamp_type": "word",
    "timestamp_transport_strategy": "sync",
}
LONG_TEXT = " ".join(["This is a long passage that keeps the synthesizer busy for a while."] * 40)


@pytest.fixture(scope="module")
def realtime(serve):
    return serve(
        "piper-realtime",
        extra_env={
            "TRUSS_SECRET_tts_api_key": KEY,
            "TTS_MAX_STREAMS": "1",  # one slot: a barged-in session must give it back
            "TTS_QUEUE_TIMEOUT_S": "3",
            "TTS_WS_CONFIG_TIMEOUT_S": "2",
            "TTS_WS_IDLE_TIMEOUT_S": "3",
            "TTS_WS_MAX_MESSAGE_BYTES": "65536",
            "TTS_WS_MAX_BUFFERED_CHARS": "3000",
            "TTS_MAX_AHEAD_S": "1",
            "TTS_READ_TIMEOUT_S": "3",
            "TTS_WS_MAX_SESSIONS": "3",
            "TTS_WS_MAX_MESSAGES_PER_S": "100",
            "TTS_WS_MESSAGE_BURST": "300",
            "TTS_WS_MAX_PENDING_UNITS": "48",
        },
    )


def session(server, key: str | None = KEY) -> AbstractContextManager[WebSocketSession]:
    """A session with this server's key unless told otherwise."""
    return realtime_client.session(server, key)


def metric(server, name: str) -> float:
    """The sum of `name`'s series for this Truss (over transports and outcomes)."""
    samples = scrape(server)
    found = [v for (n, labels), v in samples.items() if n == name and ("model", MODEL) in labels]
    assert found, f"{name} not exported"
    return sum(found)


def test_voice_list_answers_before_any_config(realtime):
    with session(realtime) as ws:
        send(ws, type="voice.list")
        assert event(ws) == {"type": "voice.list", "voices": [VOICE], "uploaded_voices": []}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"vocie": VOICE}, "vocie"),
        ({"speed": 3.0}, "speed"),
        ({"sample_rate": 11025}, "sample_rate"),
        ({"voice": "bob"}, "voice"),
        ({"language": "fr"}, "language"),
        ({"max_new_tokens": 100}, "max_new_tokens"),  # a qwen3 field piper has not
    ],
)
def test_a_bad_config_is_an_error_naming_the_field_and_the_session_goes_on(realtime, change, field):
    with session(realtime) as ws:
        send(ws, **{**CONFIG, **change})
        error = event(ws)
        assert error["type"] == "error" and error["field"] == field and field in error["message"]
        if field == "voice":
            assert "'bob'" in error["message"] and VOICE in error["message"]
        send(ws, **CONFIG)
        send(ws, type="input.text", text="Now it works.")
        send(ws, type="input.done")
        units, done = turn(ws)
        assert done["sentences"] == 1 and units[0].seconds > 0.3


@pytest.mark.parametrize(
    "message, field",
    [
        ({"type": "input.text", "text": "Too soon."}, "session.config"),
        ({"type": "input.txt", "text": "typo"}, "type"),
        ({"type": "input.text", "text": "x" * 5000}, "text"),  # over TTS_WS_MAX_BUFFERED_CHARS
    ],
)
def test_protocol_errors_name_what_is_wrong(realtime, message, field):
    with session(realtime) as ws:
        if field != "session.config":
            send(ws, **CONFIG)
        send(ws, **message)
        error = event(ws)
        assert error["type"] == "error" and error["field"] == field, error


def test_binary_messages_are_refused_and_an_oversized_one_closes_the_socket(realtime):
    with session(realtime) as ws:
        ws.send_bytes(b"\x00\x01")
        assert event(ws)["field"] == "message"
        before = scrape(realtime)
        send(ws, type="voice.list", padding="x" * 70000)
        error = event(ws)
        assert error["field"] == "message" and "at most 65536" in error["message"] and error["fatal"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive(timeout=5)
        assert closed.value.code == 1009

    def rejected(samples) -> float:
        return value(samples, "tts_sessions_total", MODEL, outcome="rejected")

    after = settled(realtime, lambda s: rejected(s) > rejected(before))
    assert rejected(after) == rejected(before) + 1


def test_sessions_past_the_replicas_bound_are_refused_with_1013(realtime):
    """Bound: TTS_WS_MAX_SESSIONS (3 here)."""
    before = scrape(realtime)
    with contextlib.ExitStack() as held:
        for _ in range(3):
            ws = held.enter_context(session(realtime))
            send(ws, type="voice.list")
            assert event(ws)["type"] == "voice.list"  # open and served
        assert metric(realtime, "tts_sessions_open") == 3
        with session(realtime) as ws:
            error = event(ws)
            assert error["fatal"] and "3 sessions open" in error["message"], error
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive(timeout=5)
            assert closed.value.code == 1013
    after = settled(realtime, lambda s: metric_in(s, "tts_sessions_open") == 0)
    assert value(after, "tts_sessions_total", MODEL, outcome="busy") == (
        value(before, "tts_sessions_total", MODEL, outcome="busy") + 1
    )
    with session(realtime) as ws:  # room again
        send(ws, type="voice.list")
        assert event(ws)["type"] == "voice.list"


def test_a_socket_sending_past_the_message_rate_is_closed(realtime):
    """Bound: TTS_WS_MAX_MESSAGES_PER_S (100 here) in bursts of TTS_WS_MESSAGE_BURST (300)."""
    with session(realtime) as ws:
        sent = 0
        with contextlib.suppress(LocalProtocolError):  # the server closed first
            for _ in range(2000):
                send(ws, **CONFIG)  # no answer: nothing to read meanwhile
                sent += 1
        error = event(ws)
        assert error["fatal"] and error["field"] == "message" and "100 messages a second" in error["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive(timeout=5)
        assert closed.value.code == 1008
    assert sent >= 300


def test_pending_units_are_bounded_and_the_session_goes_on(realtime):
    """Bound: TTS_WS_MAX_PENDING_UNITS (48 here): past it, input.text and input.done are
    refused until the session catches up (flooding input.done grew its queue for good)."""
    with session(realtime) as ws:
        send(ws, **CONFIG)
        send(ws, type="input.text", text=" ".join(["One short sentence."] * 60))
        refused = []
        for _ in range(50):
            send(ws, type="input.done")
        while len(refused) < 1:
            message = ws.receive(timeout=15)
            if not isinstance(message, BytesMessage) and '"error"' in message.data:
                refused.append(message.data)
        assert "at most 48" in refused[0] and '"fatal":false' in refused[0].replace(" ", ""), refused
        send(ws, type="session.close")


def metric_in(samples, name: str) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and ("model", MODEL) in labels)


def test_an_empty_flush_is_answered_at_once(realtime):
    with session(realtime) as ws:
        for _ in range(2):  # before and after the config: the plugin's keepalive
            started = time.monotonic()
            send(ws, type="input.done")
            assert event(ws, timeout=3) == {"type": "session.done", "sentences": 0}
            assert time.monotonic() - started < 1.0
            send(ws, **CONFIG)


def test_synthesis_starts_before_the_flush(realtime):
    with session(realtime) as ws:
        send(ws, **CONFIG)
        push_words(ws, "The first sentence is complete. And the second one is still")
        start = event(ws)  # no input.done yet
        assert start["type"] == "audio.start" and start["text"] == "The first sentence is complete."
        send(ws, type="input.text", text="arriving.")
        send(ws, type="input.done")
        units, done = turn(ws, units=[Unit(start)])
        assert done["sentences"] == 2  # the first unit, then the rest flushed
        assert units[-1].start["text"] == "And the second one is still arriving."


def test_two_turns_on_one_socket_with_word_times(realtime):
    texts = [
        "Hello there, my friend. It costs $42.50 on Jan. 3rd, of the year.",
        "A second turn, on the same socket.",
    ]
    with session(realtime) as ws:
        send(ws, **CONFIG)
        for text in texts:
            push_words(ws, text)
            send(ws, type="input.done")
            units, done = turn(ws)
            assert done["sentences"] == len(units) >= 1
            assert [u.start["sentence_index"] for u in units] == list(range(len(units)))
            assert {u.start["sample_rate"] for u in units} == {24000}
            words: list[str] = []
            for unit in units:
                assert unit.done is not None and unit.seconds > 0.2
                assert unit.done["audio_seconds"] == pytest.approx(unit.seconds, abs=0.01)
                alignment = unit.done["timestamp_info"]["word_alignment"]
                starts, ends = alignment["word_start_times_seconds"], alignment["word_end_times_seconds"]
                assert len(starts) == len(ends) == len(alignment["words"])
                assert all(s < e for s, e in zip(starts, ends, strict=True))
                assert all(e <= s for e, s in zip(ends, starts[1:], strict=False))
                assert 0 <= starts[0] and ends[-1] <= unit.seconds
                words += alignment["words"]
            assert words == text.split()  # the words as sent, "$42.50" and "Jan." included


def test_no_word_times_unless_asked(realtime):
    with session(realtime) as ws:
        send(ws, **{**CONFIG, "timestamp_type": "none"})
        send(ws, type="input.text", text="No times here.")
        send(ws, type="input.done")
        units, _ = turn(ws)
        assert units[0].done is not None and "timestamp_info" not in units[0].done


@pytest.mark.parametrize("how", ["session.close", "socket closed"])
def test_barge_in_frees_the_slot_at_once(realtime, how):
    with session(realtime) as ws:
        send(ws, **CONFIG)
        send(ws, type="input.text", text=LONG_TEXT)
        send(ws, type="input.done")
        assert event(ws)["type"] == "audio.start"
        assert isinstance(ws.receive(timeout=10), BytesMessage)
        if how == "session.close":
            send(ws, type="session.close")
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:  # what was already in flight may still arrive
                    ws.receive(timeout=5)
            assert closed.value.code == 1000
    # 40 sentences would hold the only slot for seconds; freed, the next session is
    # served well within the 3 s queue timeout (else its unit is refused as busy).
    with session(realtime) as ws:
        send(ws, **CONFIG)
        send(ws, type="input.text", text="Right after the interruption.")
        send(ws, type="input.done")
        units, _ = turn(ws)
        assert units[0].seconds > 0.5
    assert metric(realtime, "tts_streams_in_flight") == 0


def test_the_first_config_must_come_within_the_timeout(realtime):
    with session(realtime) as ws:
        started = time.monotonic()
        error = event(ws, timeout=10)
        assert error["type"] == "error" and "session.config" in error["message"] and error["fatal"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive(timeout=5)
        assert closed.value.code == 1008
        assert 1.5 < time.monotonic() - started < 5


def test_the_first_config_limit_holds_whatever_else_the_socket_sends(realtime):
    """Frames that are not a valid session.config (non-JSON, voice.list) each get
    their answer, and do not extend the 2 s first-config limit."""
    with session(realtime) as ws:
        started = time.monotonic()
        answers: list[dict] = []
        frames = ["not json", '{"type": "voice.list"}']
        while not any(a.get("fatal") for a in answers) and time.monotonic() - started < 10:
            try:
                ws.send_text(frames[len(answers) % 2])
            except LocalProtocolError:  # the server closed first: its error waits to be read
                answers.append(event(ws, timeout=5))
                break
            answers.append(event(ws, timeout=5))
            with contextlib.suppress(queue.Empty):  # the fatal error, once the limit has passed
                answers.append(event(ws, timeout=0.2))
        fatal = [a for a in answers if a.get("fatal")]
        assert len(fatal) == 1 and "session.config" in fatal[0]["message"]
        assert 1.5 < time.monotonic() - started < 4
        assert {"error", "voice.list"} <= {a["type"] for a in answers}
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive(timeout=5)
        assert closed.value.code == 1008


def test_an_idle_session_is_closed_and_keepalives_keep_it(realtime):
    with session(realtime) as ws:
        send(ws, **CONFIG)
        for _ in range(3):  # 4.5 s in all, past the 3 s idle timeout
            time.sleep(1.5)
            send(ws, type="input.done")
            assert event(ws, timeout=3)["type"] == "session.done"
        started = time.monotonic()
        error = event(ws, timeout=10)
        assert error["type"] == "error" and "no message for 3 s" in error["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive(timeout=5)
        assert closed.value.code == 1000
        assert 2.5 < time.monotonic() - started < 5


@pytest.mark.parametrize("key", [None, "wrong"])
def test_the_api_key_is_checked_at_the_handshake(realtime, key):
    with session(realtime, key=key) as ws:
        error = event(ws)
        assert error["type"] == "error" and error["field"] == "authorization" and KEY not in error["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive(timeout=5)
        assert closed.value.code == 1008


def test_sessions_their_outcomes_and_auth_refusals_are_counted(realtime):
    """After a whole session, one whose client drops the connection after its first
    audio and one refused for a missing key, /metrics counts each session by how it
    ended, each unit as an utterance, and the first audio of the units."""
    sys.path.insert(0, str(REPO / "client"))
    from realtime import WebSocket  # a raw socket: it can drop without a close frame

    def count(samples, name: str, **labels: str) -> float:
        return value(samples, name, MODEL, **labels)

    before = scrape(realtime)
    with session(realtime) as ws:
        send(ws, **CONFIG)
        push_words(ws, "Counted once.")
        send(ws, type="input.done")
        turn(ws)
        send(ws, type="session.close")
    url = realtime.base_url.replace("http://", "ws://") + "/v1/websocket"
    dropped = WebSocket(url, {"Authorization": f"Api-Key {KEY}"}, timeout=30)
    dropped.send_json(CONFIG)
    dropped.send_json({"type": "input.text", "text": LONG_TEXT[:600]})
    dropped.send_json({"type": "input.done"})
    while dropped.recv()[0] != 0x2:  # up to the first binary frame: audio
        pass
    dropped._sock.close()  # no close frame: the client is gone
    with session(realtime, key=None) as ws:
        assert event(ws)["field"] == "authorization"

    def delta(samples, name: str, **labels: str) -> float:
        return count(samples, name, **labels) - count(before, name, **labels)

    after = settled(
        realtime,
        lambda s: (
            delta(s, "tts_sessions_total", outcome="client_gone") >= 1
            and delta(s, "tts_utterances_total", transport="websocket", outcome="cancelled") >= 1
        ),
    )
    sessions = {
        o: delta(after, "tts_sessions_total", outcome=o) for o in ("ok", "client_gone", "unauthorized")
    }
    assert sessions == {"ok": 1, "client_gone": 1, "unauthorized": 1}
    assert delta(after, "tts_sessions_total", outcome="error") == 0
    assert delta(after, "tts_utterances_total", transport="websocket", outcome="ok") >= 1
    assert delta(after, "tts_utterances_total", transport="websocket", outcome="cancelled") == 1
    assert delta(after, "tts_time_to_first_audio_seconds_count", transport="websocket") >= 2
    assert delta(after, "tts_audio_seconds_total", transport="websocket") > 0
    assert count(after, "tts_streams_in_flight") == 0


def test_a_client_that_reads_nothing_is_cut_and_synthesis_stays_bounded(realtime):
    """A raw socket (client/realtime.py's) that never reads: synthesis pauses once
    about a second of audio plus the socket buffers wait, and after the 3 s read
    timeout the session is cut and its slot freed."""
    sys.path.insert(0, str(REPO / "client"))
    from realtime import WebSocket  # client/call.py's standard-library WebSocket client

    before = metric(realtime, "tts_audio_seconds_total")
    url = realtime.base_url.replace("http://", "ws://") + "/v1/websocket"
    ws = WebSocket(url, {"Authorization": f"Api-Key {KEY}"}, timeout=30)
    try:
        ws.send_json(CONFIG)
        ws.send_json({"type": "input.text", "text": LONG_TEXT})  # about 150 s of speech
        ws.send_json({"type": "input.done"})
        time.sleep(10)
        produced = metric(realtime, "tts_audio_seconds_total") - before
        assert 1 < produced < 20, produced
        assert metric(realtime, "tts_streams_in_flight") == 0
        assert "took nothing for 3 s" in realtime.log_path.read_text(errors="replace")
    finally:
        ws.close()


# client/call.py with a ws:// URL, as a user runs it: text from stdin, line by line.

CALL = [sys.executable, str(REPO / "client" / "call.py")]


def test_the_client_speaks_each_line_as_it_is_typed(realtime):
    url = realtime.base_url.replace("http://", "ws://")
    client = subprocess.Popen(
        [*CALL, "--url", url, "--api-key", KEY, "--raw"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert client.stdin is not None
    client.stdin.write(b"The first line, typed.\n")
    client.stdin.flush()
    time.sleep(3)  # the second line comes later
    out, err = client.communicate(b"And a second line after a pause.\n", timeout=60)
    assert client.returncode == 0, err.decode()
    assert_speech_like(pcm16(out), 24000, words=11)
    first_audio_ms = float(re.search(r"first audio byte: (\d+) ms", err.decode()).group(1))
    assert first_audio_ms < 3000  # the first line was heard before the second was typed


def test_the_client_reports_the_servers_error(realtime):
    url = realtime.base_url.replace("http://", "ws://") + "/v1/websocket"
    result = subprocess.run(
        [*CALL, "Hi.", "--url", url, "--api-key", KEY, "--voice", "bob", "--raw"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 3 and not result.stdout
    assert "voice: unknown voice 'bob'" in result.stderr.decode()
