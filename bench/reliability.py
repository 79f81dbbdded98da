"""Hostile clients against freshly started servers: memory and time stay bounded.

    .venv/bin/python bench/reliability.py [--hold-s 60] [--only piper|xtts]

1. piper-streaming, fresh server: 8 clients POST 5000 characters (speed 0.5,
   48 kHz) and read nothing for --hold-s seconds; server RSS growth (peak).
2. xtts-streaming on the tiny random checkpoint, fresh server: a 3 s reference
   clip at 44101 Hz, then at 96001 Hz; time to the whole answer and peak RSS
   growth (sampled every 50 ms).
3. piper-streaming: a 64 MB body; status and time to the answer.
Each case is followed by a normal request that must still stream (200 with audio).
Writes bench/results/reliability.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "tools")]

from audio_checks import tone, wav_b64  # noqa: E402
from raw_http import open_unread  # noqa: E402

from local_truss.paths import cache_dir  # noqa: E402
from local_truss.server import LocalTrussServer  # noqa: E402

LONG_TEXT = ("This sentence is repeated to make a long request for the server. " * 80)[:5000]


def rss(server: LocalTrussServer) -> int:
    assert server.process is not None
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class PeakRss:
    """Samples a server's RSS every 50 ms in the background."""

    def __init__(self, server: LocalTrussServer):
        self.server, self.base, self.peak = server, rss(server), rss(server)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss(self.server))

    def growth_mb(self) -> float:
        self._stop.set()
        self._thread.join()
        return (self.peak - self.base) / 2**20


def still_streams(server: LocalTrussServer, body: dict) -> bool:
    r = requests.post(server.predict_url, json=body, timeout=300)
    return r.status_code == 200 and len(r.content) > 0


def unread_piper_streams(hold_s: float) -> dict:
    with LocalTrussServer(REPO / "piper-streaming", port=18231) as server:
        still_streams(server, {"text": "Warm up."})
        peak = PeakRss(server)
        socks = [
            open_unread(server.predict_url, {"text": LONG_TEXT, "speed": 0.5, "sample_rate": 48000})
            for _ in range(8)
        ]
        time.sleep(hold_s)
        for sock in socks:
            sock.close()
        growth = peak.growth_mb()
        time.sleep(1)
        ok = still_streams(server, {"text": "Still streaming."})
        started = time.monotonic()
        body = b'{"text": "' + b"a" * (64 * 2**20) + b'"}'
        r = requests.post(server.predict_url, data=body, timeout=120)
        big = {
            "status": r.status_code,
            "seconds": time.monotonic() - started,
            "then_streams": still_streams(server, {"text": "Still streaming."}),
        }
    return {
        "unread_streams": {"streams": 8, "hold_s": hold_s, "rss_growth_mb": growth, "then_streams": ok},
        "body_64mb": big,
    }


def odd_rate_clips() -> list[dict]:
    python = LocalTrussServer(REPO / "xtts-streaming").prepare()
    checkpoint = cache_dir() / "models" / "tiny-xtts"
    subprocess.run([str(python), str(REPO / "tests/fixtures/tiny_xtts.py"), str(checkpoint)], check=True)
    results = []
    for rate in (44101, 96001):
        with LocalTrussServer(
            REPO / "xtts-streaming", port=18232, extra_env={"XTTS_MODEL_DIR": str(checkpoint)}
        ) as server:

            def clone(clip_rate: int) -> tuple[int, float]:
                started = time.monotonic()
                r = requests.post(
                    server.predict_url,
                    json={
                        "text": "Hello world.",
                        "speaker_wav": wav_b64(tone(3, clip_rate), clip_rate),
                        "seed": 1,
                    },
                    timeout=600,
                )
                return r.status_code, time.monotonic() - started

            peak = PeakRss(server)
            status, seconds = clone(rate)
            growth = peak.growth_mb()
            _, common = clone(16000)  # the same request with a clip at a common rate
            results.append(
                {
                    "rate": rate,
                    "status": status,
                    "seconds": seconds,
                    "seconds_at_16k": common,
                    "rss_growth_mb": growth,
                    "then_streams": still_streams(server, {"text": "Hello world.", "seed": 2}),
                }
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hold-s", type=float, default=60)
    parser.add_argument("--only", choices=["piper", "xtts"], help="run one part")
    args = parser.parse_args()
    results: dict = {}
    if args.only != "xtts":
        results.update(unread_piper_streams(args.hold_s))
    if args.only != "piper":
        results["odd_rate_clips"] = odd_rate_clips()
    out = REPO / "bench" / "results" / "reliability.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print("| case | result | then a normal request |\n|---|---|---|")
    if "unread_streams" in results:
        u, b = results["unread_streams"], results["body_64mb"]
        print(
            f"| piper, 8 unread 5000-char streams for {u['hold_s']:g} s | RSS +{u['rss_growth_mb']:.0f} MB "
            f"| {'streams' if u['then_streams'] else 'FAILS'} |"
        )
        print(
            f"| piper, 64 MB body | {b['status']} in {b['seconds']:.2f} s "
            f"| {'streams' if b['then_streams'] else 'FAILS'} |"
        )
    for c in results.get("odd_rate_clips", []):
        print(
            f"| xtts (tiny), 3 s clip at {c['rate']} Hz | {c['status']} in {c['seconds']:.2f} s "
            f"(a 16 kHz clip: {c['seconds_at_16k']:.2f} s), "
            f"peak RSS +{c['rss_growth_mb']:.0f} MB | {'streams' if c['then_streams'] else 'FAILS'} |"
        )


if __name__ == "__main__":
    main()
