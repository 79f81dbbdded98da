#!/usr/bin/env python3
"""Stream speech from a TTS Truss and play it, save it, or pipe it.

    python client/call.py "Some text"                 # play through ffplay as it arrives
    python client/call.py "Some text" --out hi.wav    # write a WAV file
    python client/call.py "Some text" --raw | aplay -f S16_LE -r 24000 -c 1
    python client/call.py "Some text" --format opus --out hi.ogg   # compressed: Opus, MP3, FLAC, AAC
    python client/call.py "Some text" --model-id abcd1234   # Baseten (BASETEN_API_KEY)
    python client/call.py --url ws://127.0.0.1:8080         # a *-realtime Truss: text from
                                                            # stdin, spoken line by line as typed

HTTP through `requests` (in the project's environment: scripts/setup), which never
forwards the key to another host or from https to http on a redirect; the
WebSocket side is standard library. The key is refused over plain http:// or
ws:// to any host but this machine, unless --allow-insecure says otherwise.
Timing (time to first audio byte, total) goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import wave
from collections.abc import Iterable, Iterator
from typing import Any

import realtime
import requests

DEFAULT_URL = "http://127.0.0.1:8080"
PREDICT_PATH = "/v1/models/model:predict"

# Compressed formats the Trusses stream (--format): saved, piped and played as sent.
COMPRESSED = ("opus", "mp3", "flac", "aac")

# Exit codes, one per failure a caller may want to tell apart.
EXIT_UNREACHABLE, EXIT_HTTP, EXIT_NO_PLAYER, EXIT_CUT_SHORT = 2, 3, 4, 5


class ClientError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def predict_url(url: str | None, model_id: str | None) -> str:
    """A full predict URL from --url (a base URL or a full URL) or --model-id."""
    if model_id:
        return f"https://model-{model_id}.api.baseten.co/environments/production/predict"
    url = url or DEFAULT_URL
    if urllib.parse.urlsplit(url).path in ("", "/"):
        return url.rstrip("/") + PREDICT_PATH
    return url


def parse_field(item: str) -> tuple[str, object]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--field wants KEY=VALUE, got {item!r}")
    try:
        value: object = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare word is a string
    return key, value


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_key_transport(url: str, api_key: str | None) -> None:
    """A key goes over TLS, or to this machine, or nowhere unless the user says so."""
    parts = urllib.parse.urlsplit(url)
    if api_key and parts.scheme in ("http", "ws") and not loopback(parts.hostname or ""):
        raise ClientError(
            f"refusing to send the API key in the clear to {parts.hostname} ({parts.scheme}://): "
            f"use {parts.scheme}s://, or pass --allow-insecure on a network you trust",
            EXIT_HTTP,
        )


def open_stream(url: str, body: dict[str, Any], api_key: str | None, timeout: float) -> requests.Response:
    headers = {"Accept": "audio/pcm"}
    if api_key:
        headers["Authorization"] = f"Api-Key {api_key}"
    try:
        response = requests.post(url, json=body, headers=headers, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise ClientError(
            f"cannot reach {url}: {exc}. Is the server running? Start the default "
            "one with: python -m local_truss serve piper-streaming",
            EXIT_UNREACHABLE,
        ) from exc
    if response.status_code != 200:
        detail = response.text
        try:
            detail = json.loads(detail).get("error", detail)
        except (json.JSONDecodeError, AttributeError):
            pass
        raise ClientError(f"server answered HTTP {response.status_code}: {detail}", EXIT_HTTP)
    return response


def start_player(sample_rate: int, compressed: bool = False) -> subprocess.Popen[bytes]:
    ffplay = shutil.which("ffplay")
    if ffplay is None:
        raise ClientError(
            "ffplay not found: install FFmpeg (Debian/Ubuntu: sudo apt-get install "
            "ffmpeg; macOS: brew install ffmpeg), or save the audio with --out file.wav",
            EXIT_NO_PLAYER,
        )
    # ffplay exits 0 even when it cannot open an audio device, so its complaints
    # are kept in a file and read afterwards.
    log = tempfile.TemporaryFile()
    player = subprocess.Popen(
        [
            ffplay,
            "-hide_banner",
            "-loglevel",
            "error",
            "-nodisp",
            "-autoexit",
            # raw PCM says nothing of itself; a compressed stream does
            *([] if compressed else ["-f", "s16le", "-ar", str(sample_rate), "-ch_layout", "mono"]),
            "-i",
            "-",
        ],
        stdin=subprocess.PIPE,
        stderr=log,
    )
    player.error_log = log  # type: ignore[attr-defined]
    return player


def player_errors(player: subprocess.Popen[bytes]) -> str:
    log = player.error_log  # type: ignore[attr-defined]
    log.seek(0)
    text = log.read().decode("utf-8", "replace")
    failed = [line for line in text.splitlines() if "failed" in line.lower() or "Failed" in line]
    return failed[-1] if failed else ""


def player_failed(player: subprocess.Popen[bytes]) -> ClientError:
    reason = player_errors(player) or f"exit code {player.returncode}"
    return ClientError(
        f"ffplay could not play ({reason}); no audio output device? "
        "Save the audio with --out file.wav instead",
        EXIT_NO_PLAYER,
    )


class Output:
    """Where the audio goes as it arrives: ffplay, a WAV file (written aside and
    renamed only once complete, so no silently short file is left), raw stdout.
    A compressed format is kept as it came: --out gets the stream's own file."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.received = 0
        self.first_byte: float | None = None
        self.started = time.perf_counter()
        self.rate = args.sample_rate
        self.compressed = args.format in COMPRESSED
        self.player = start_player(args.sample_rate, self.compressed) if args.play else None
        self.wav_tmp: str | None = None
        self.wav_file: wave.Wave_write | None = None
        self.file: Any = None  # a compressed stream's --out, written aside as the WAV is
        self.leftover = b""
        if args.out:
            fd, self.wav_tmp = tempfile.mkstemp(suffix=".wav", dir=os.path.dirname(os.path.abspath(args.out)))
            os.close(fd)

    def open(self, rate: int) -> None:
        self.rate = rate
        if self.wav_tmp and self.compressed:
            self.file = open(self.wav_tmp, "wb")  # noqa: SIM115  (closed in finish or close)
        elif self.wav_tmp and self.wav_file is None:
            self.wav_file = wave.open(self.wav_tmp, "wb")
            self.wav_file.setnchannels(1)
            self.wav_file.setsampwidth(2)
            self.wav_file.setframerate(rate)

    def write(self, chunk: bytes) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter() - self.started
        self.received += len(chunk)
        if self.player is not None:
            assert self.player.stdin is not None  # started with stdin=PIPE
            try:
                self.player.stdin.write(chunk)
                self.player.stdin.flush()
            except BrokenPipeError as exc:
                self.player.wait()
                raise player_failed(self.player) from exc
        if self.args.raw:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        if self.file is not None:
            self.file.write(chunk)
        elif self.wav_file is not None:
            data = self.leftover + chunk
            usable = len(data) - len(data) % 2  # a sample may straddle two reads
            self.wav_file.writeframes(data[:usable])
            self.leftover = data[usable:]

    def finish(self) -> None:
        """The audio is complete: keep the WAV file."""
        if self.leftover:
            raise ClientError("stream ended inside a 16-bit sample", EXIT_CUT_SHORT)
        if self.wav_file is not None or self.file is not None:
            for done in (self.wav_file, self.file):
                if done is not None:
                    done.close()
            self.wav_file = self.file = None
            assert self.wav_tmp is not None
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.wav_tmp, 0o666 & ~umask)  # mkstemp made it private
            os.replace(self.wav_tmp, self.args.out)
            self.wav_tmp = None

    def close(self) -> None:
        for unfinished in (self.wav_file, self.file):
            if unfinished is not None:
                unfinished.close()
        if self.wav_tmp and os.path.exists(self.wav_tmp):
            os.unlink(self.wav_tmp)  # never leave a silently short file behind
        player = self.player
        if player is not None:
            try:
                if player.stdin is not None:
                    player.stdin.close()
            except BrokenPipeError:
                pass
            player.wait()

    def check_player(self) -> None:
        if self.player is not None and (self.player.returncode != 0 or player_errors(self.player)):
            raise player_failed(self.player)

    def report(self) -> None:
        total = time.perf_counter() - self.started
        audio = f"{self.received} bytes" if self.compressed else f"{self.received / 2 / self.rate:.2f} s"
        ttfb = f"{self.first_byte * 1000:.0f} ms" if self.first_byte is not None else "n/a"
        print(
            f"first audio byte: {ttfb}  total: {total * 1000:.0f} ms  "
            f"audio: {audio}" + (f"  saved: {self.args.out}" if self.args.out else ""),
            file=sys.stderr,
        )


@contextlib.contextmanager
def delivered(args: argparse.Namespace) -> Iterator[Output]:
    """An Output for the body of the `with` to write into. If the body raises, the
    output is closed and nothing kept; if it ends, the audio is kept, then the player
    checked and the timings reported."""
    output = Output(args)
    try:
        yield output
        output.finish()
    finally:
        output.close()
    output.check_player()
    output.report()


def model_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.voice:
        fields["voice"] = args.voice
    if args.language:
        fields["language"] = args.language
    fields.update(dict(args.field))
    return fields


def api_key_for(url: str, args: argparse.Namespace) -> str | None:
    api_key: str | None = args.api_key or os.environ.get("BASETEN_API_KEY")
    if "api.baseten.co" in url and not api_key:
        raise ClientError("Baseten needs an API key: set BASETEN_API_KEY or pass --api-key", EXIT_HTTP)
    if not args.allow_insecure:
        check_key_transport(url, api_key)
    return api_key


def stream(args: argparse.Namespace) -> int:
    if args.text is None:
        raise ClientError("give the text to say (text from stdin needs a ws:// or wss:// URL)", EXIT_HTTP)
    url = predict_url(args.url, args.model_id)
    body: dict[str, Any] = {"text": args.text, "format": args.format, "sample_rate": args.sample_rate}
    body.update(model_fields(args))
    api_key = api_key_for(url, args)
    with delivered(args) as output, open_stream(url, body, api_key, args.timeout) as response:
        output.open(int(response.headers.get("X-Sample-Rate") or args.sample_rate))
        try:
            for chunk in response.iter_content(chunk_size=None):  # as it arrives
                output.write(chunk)
        except requests.RequestException as exc:  # an incomplete chunked body, a reset
            raise ClientError(
                f"stream cut short after {output.received} bytes ({exc.__class__.__name__}): "
                "the server failed mid-stream or the connection dropped",
                EXIT_CUT_SHORT,
            ) from exc
    return 0


def stdin_lines() -> Iterator[str]:
    """Each line as it is typed (or piped), with its line break: a line is a unit."""
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        yield line


def stream_realtime(args: argparse.Namespace) -> int:
    """A ws:// or wss:// URL (or --realtime): the realtime protocol, text as it comes."""
    url = realtime.websocket_url(args.url, args.model_id)
    api_key = api_key_for(url, args)
    headers = {"Authorization": f"Api-Key {api_key}"} if api_key else {}
    config = {"type": "session.config", "sample_rate": args.sample_rate, **model_fields(args)}
    pieces: Iterable[str] = [args.text] if args.text is not None else stdin_lines()

    def on_event(event: dict[str, Any]) -> None:
        if event.get("type") == "audio.start" and event.get("sample_rate") != args.sample_rate:
            raise ClientError(
                f"the server sends {event.get('sample_rate')} Hz, not {args.sample_rate}", EXIT_HTTP
            )

    with delivered(args) as output:
        output.open(args.sample_rate)
        try:
            realtime.speak(url, headers, config, pieces, output.write, on_event, args.timeout)
        except realtime.WebSocketError as exc:
            raise ClientError(str(exc), EXIT_CUT_SHORT if output.received else EXIT_HTTP) from exc
        except OSError as exc:
            raise ClientError(f"cannot reach {url}: {exc}. Is the server running?", EXIT_UNREACHABLE) from exc
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "text", nargs="?", help="what to say (with a ws:// or wss:// URL: stdin, line by line, when omitted)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        help=f"server base URL or full predict URL (default {DEFAULT_URL}); ws:// or wss:// speaks the "
        "realtime protocol (a base URL gets /v1/websocket)",
    )
    where.add_argument("--model-id", help="Baseten model id (production environment)")
    parser.add_argument(
        "--api-key",
        help="API key: Baseten's, or a self-hosted server's tts_api_key secret (default: $BASETEN_API_KEY)",
    )
    parser.add_argument("--voice")
    parser.add_argument("--language")
    parser.add_argument("--sample-rate", type=int, default=24000)
    parser.add_argument(
        "--field",
        type=parse_field,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra model field, value parsed as JSON if it can be",
    )
    parser.add_argument(
        "--format",
        choices=["pcm", *COMPRESSED],
        default="pcm",
        help="what the server streams (HTTP only): raw PCM, or a compressed stream kept as sent",
    )
    parser.add_argument(
        "--out", help="write a WAV file (with --format opus and the like: that stream's file)"
    )
    parser.add_argument(
        "--raw", action="store_true", help="write the stream to stdout (raw s16le PCM by default)"
    )
    parser.add_argument(
        "--play",
        action="store_true",
        help="play through ffplay (the default when neither --out nor --raw is given)",
    )
    parser.add_argument(
        "--realtime", action="store_true", help="with --model-id: the model's WebSocket (a *-realtime Truss)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for data")
    parser.add_argument(
        "--allow-insecure",
        action="store_true",
        help="send the API key over plain http:// or ws:// to a host other than this machine",
    )
    args = parser.parse_args(argv)
    if not args.out and not args.raw:
        args.play = True
    if args.format != "pcm" and (args.realtime or (args.url or "").startswith(("ws://", "wss://"))):
        parser.error("--format: the realtime protocol streams PCM only")
    try:
        if args.realtime or (args.url or "").startswith(("ws://", "wss://")):
            return stream_realtime(args)
        return stream(args)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        return 0  # the reader of --raw went away
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
