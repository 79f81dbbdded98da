"""Hostile clients of issue-sized scale against fresh servers of a checkout (this one,
or an older one for before/after figures), one case at a time:

    .venv/bin/python bench/hostile.py [--tree PATH] [--out FILE]

1. Punctuation floods: 3 WebSockets each send input.text of 5,000 "." four times a
   second for 6 s (piper-realtime); then 4 POSTs a second of the same text for 6 s
   (piper-streaming). The readiness probe, polled every 50 ms: its worst, idle and
   under each flood.
2. Big frames: 4 sockets each send one 64 MiB text frame (piper-realtime): peak RSS
   growth, and how each socket ended.
3. Unauthenticated bodies: 4 POSTs of 64 MiB at once with no key, to piper-streaming
   with its API key set: their answers, time, peak RSS growth.
4. Slow readers: 3 clients ask for 48 kHz audio and read 1 KB every 3 s, then a
   normal request (piper-streaming, and xtts-streaming on the tiny checkpoint with its
   shipped 2 slots): the normal request's first audio, or its refusal, and when.

Servers run with their config.yaml as shipped. Client tools come from this checkout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import requests
from httpx_ws import connect_ws

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "tools")]

import slow_readers  # noqa: E402
from reliability import PeakRss  # noqa: E402

from local_truss.paths import cache_dir  # noqa: E402
from local_truss.process import free_port  # noqa: E402
from local_truss.server import LocalTrussServer  # noqa: E402

DOTS = "." * 5000
VOICE = {"piper": "en_US-joe-medium", "xtts": "Tiny Speaker A"}
KEY = "k-bench-0123456789"


@contextmanager
def served(tree: Path, truss: str, **env: str) -> Iterator[LocalTrussServer]:
    with LocalTrussServer(tree / truss, port=free_port(), extra_env=env) as server:
        yield server


class Probe:
    """Polls a server's readiness route every 50 ms; `worst()` since the last `reset()`."""

    def __init__(self, server: LocalTrussServer):
        self.url = f"{server.base_url}/v1/models/model"
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            started = time.monotonic()
            try:
                requests.get(self.url, timeout=30)
            except requests.RequestException:
                pass
            self.times.append(time.monotonic() - started)

    def during(self, work: Callable[[], None]) -> dict[str, float]:
        self.times = []
        work()
        times = self.times
        return {"worst_ms": max(times) * 1000, "p50_ms": statistics.median(times) * 1000}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def at_rate(per_s: float, seconds: float, send: Callable[[], None]) -> None:
    """`send` in its own thread `per_s` times a second for `seconds`."""
    threads = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(1 / per_s)
    for thread in threads:
        thread.join(timeout=60)


def ws_flood(server: LocalTrussServer, sockets: int = 3, per_s: float = 4, seconds: float = 6) -> None:
    def one() -> None:
        url = f"{server.base_url}/v1/websocket"
        with httpx.Client(timeout=30) as client, connect_ws(url, client) as ws:
            ws.send_text(json.dumps({"type": "session.config", "voice": VOICE["piper"]}))
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                ws.send_text(json.dumps({"type": "input.text", "text": DOTS}))
                time.sleep(1 / per_s)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(sockets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)


def floods(tree: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with served(tree, "piper-realtime") as server:
        probe = Probe(server)
        results["ws_idle"] = probe.during(lambda: time.sleep(3))
        results["ws_flood"] = probe.during(lambda: ws_flood(server))
        probe.stop()
    with served(tree, "piper-streaming") as server:
        probe = Probe(server)
        results["http_idle"] = probe.during(lambda: time.sleep(3))

        def post() -> None:
            try:
                requests.post(server.predict_url, json={"text": DOTS}, timeout=60).close()
            except requests.RequestException:
                pass

        results["http_flood"] = probe.during(lambda: at_rate(4, 6, post))
        probe.stop()
    return results


def big_frames(tree: Path) -> dict[str, Any]:
    frame = json.dumps({"type": "input.text", "text": "a" * (64 * 2**20)})
    endings: list[str] = []

    def one(url: str) -> None:
        try:
            with httpx.Client(timeout=120) as client, connect_ws(url, client) as ws:
                ws.send_text(json.dumps({"type": "session.config", "voice": VOICE["piper"]}))
                ws.send_text(frame)
                while True:
                    message = ws.receive(timeout=60)
                    endings.append(str(getattr(message, "data", message))[:80])
        except Exception as exc:  # how the socket ended
            endings.append(f"{type(exc).__name__}: {getattr(exc, 'code', '')}")

    with served(tree, "piper-realtime") as server:
        peak = PeakRss(server)
        threads = [
            threading.Thread(target=one, args=(f"{server.base_url}/v1/websocket",), daemon=True)
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        growth = peak.growth_mb()
    return {"sockets": 4, "frame_mb": 64, "rss_growth_mb": growth, "endings": endings}


def unauthenticated(tree: Path) -> dict[str, Any]:
    body = b'{"text": "' + b"a" * (64 * 2**20) + b'"}'
    answers: list[int] = []

    def post(url: str) -> None:
        try:
            answers.append(requests.post(url, data=body, timeout=120).status_code)
        except requests.RequestException as exc:
            answers.append(-1)
            print(f"unauthenticated POST failed: {exc}", file=sys.stderr)

    with served(tree, "piper-streaming", TRUSS_SECRET_tts_api_key=KEY) as server:
        peak = PeakRss(server)
        probe = Probe(server)
        started = time.monotonic()

        def flood() -> None:
            threads = [threading.Thread(target=post, args=(server.predict_url,)) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        readiness = probe.during(flood)
        seconds = time.monotonic() - started
        probe.stop()
        growth = peak.growth_mb()
    return {
        "bodies": 4,
        "body_mb": 64,
        "answers": answers,
        "seconds": seconds,
        "rss_growth_mb": growth,
        **readiness,
    }


def first_audio(server: LocalTrussServer, voice: str) -> dict[str, Any]:
    started = time.monotonic()
    with requests.post(
        server.predict_url,
        json={"text": "Hello there, how are you?", "voice": voice},
        stream=True,
        timeout=120,
    ) as r:
        if r.status_code != 200:
            return {"status": r.status_code, "after_s": time.monotonic() - started}
        next(r.iter_content(chunk_size=None))
        return {"status": 200, "after_s": time.monotonic() - started}


def slow_reader_wait(tree: Path) -> dict[str, Any]:
    results = {}
    checkpoint = cache_dir() / "models" / "tiny-xtts"
    python = LocalTrussServer(tree / "xtts-streaming").prepare()
    subprocess.run([str(python), str(REPO / "tests/fixtures/tiny_xtts.py"), str(checkpoint)], check=True)
    text = " ".join(["A slow listener should never hold a synthesis slot for long."] * 6)
    for name, truss, env in (
        ("piper", "piper-streaming", {}),
        ("xtts", "xtts-streaming", {"XTTS_MODEL_DIR": str(checkpoint)}),
    ):
        with served(tree, truss, **env) as server:
            first_audio(server, VOICE[name])  # warm
            body = {"text": text, "voice": VOICE[name], "sample_rate": 48000}
            readers = [slow_readers.http(server.predict_url, body, {}) for _ in range(3)]
            time.sleep(2)
            results[name] = first_audio(server, VOICE[name])
            for reader in readers:
                reader.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout whose Trusses are served")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "hostile.json")
    args = parser.parse_args()
    tree = args.tree.resolve()
    results = {
        "tree": str(tree),
        "commit": subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "floods": floods(tree),
        "big_frames": big_frames(tree),
        "unauthenticated": unauthenticated(tree),
        "slow_readers": slow_reader_wait(tree),
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    f, b, u, s = (results[k] for k in ("floods", "big_frames", "unauthenticated", "slow_readers"))
    print(f"tree {tree} at {results['commit']}")
    print("| case | figure |\n|---|---|")
    for case in ("ws_idle", "ws_flood", "http_idle", "http_flood"):
        worst, p50 = f[case]["worst_ms"], f[case]["p50_ms"]
        print(f"| readiness, {case.replace('_', ' ')} | worst {worst:.0f} ms (p50 {p50:.0f}) |")
    print(f"| 4 x 64 MiB frames | RSS +{b['rss_growth_mb']:.0f} MB; {sorted(set(b['endings']))} |")
    answers, growth = u["answers"], u["rss_growth_mb"]
    print(
        f"| 4 x 64 MiB unauthenticated POSTs | {answers} in {u['seconds']:.1f} s, RSS +{growth:.0f} MB, "
        f"readiness worst {u['worst_ms']:.0f} ms |"
    )
    for name, r in s.items():
        print(
            f"| {name}, a request beside 3 slow 48 kHz readers | {r['status']} after {r['after_s']:.1f} s |"
        )


if __name__ == "__main__":
    main()
