"""What the LiveKit plugin adds to time to first audio: `synthesize()` to the first
emitted frame, vs a direct aiohttp request's first body byte, same piper server.

    .venv-agent/bin/python bench/plugin_overhead.py [--runs 30] [--url http://127.0.0.1:8080 [--api-key KEY]]

Needs .venv-agent (scripts/setup_agent_env) and, unless --url is given, .venv
(scripts/setup): it then serves piper-streaming itself on a free port. Runs alternate
plugin/direct so drift hits both alike; each figure is a median (p50) and p95 over
--runs requests. Writes bench/results/plugin_overhead.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import aiohttp

from livekit.agents import APIConnectOptions
from livekit.plugins import custom_tts

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from stats import summary  # noqa: E402

sys.path.insert(0, str(REPO))
from local_truss.process import ServedTruss  # noqa: E402

logger = logging.getLogger("plugin_overhead")

TEXT = "This is a test of the real-time text-to-speech synthesis system."
NO_RETRY = APIConnectOptions(max_retry=0, timeout=30)


async def plugin_first_frame(tts: custom_tts.TTS) -> float:
    started = time.perf_counter()
    stream = tts.synthesize(TEXT, conn_options=NO_RETRY)
    try:
        await stream.__anext__()
        first = time.perf_counter() - started
        async for _ in stream:  # drain, so the server is idle before the next run
            pass
    finally:
        await stream.aclose()
    return first


async def direct_first_byte(session: aiohttp.ClientSession, url: str, api_key: str | None) -> float:
    body = {"text": TEXT, "language": "en", "format": "pcm", "sample_rate": 24000}
    headers = {"Authorization": f"Api-Key {api_key}"} if api_key else {}
    started = time.perf_counter()
    async with session.post(url, json=body, headers=headers) as resp:
        resp.raise_for_status()
        await resp.content.readany()
        first = time.perf_counter() - started
        await resp.read()
    return first


async def measure(base_url: str, runs: int, warmup: int, api_key: str | None) -> dict[str, list[float]]:
    async with aiohttp.ClientSession() as session:
        tts = custom_tts.TTS(api_url=base_url, api_key=api_key, http_session=session)
        for _ in range(warmup):
            await plugin_first_frame(tts)
            await direct_first_byte(session, tts.url, api_key)
        times: dict[str, list[float]] = {"plugin": [], "direct": []}
        for _ in range(runs):
            times["plugin"].append(await plugin_first_frame(tts))
            times["direct"].append(await direct_first_byte(session, tts.url, api_key))
        await tts.aclose()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--url", help="an already running server (default: start piper)")
    parser.add_argument("--api-key", help="the --url server's API key (its tts_api_key secret, or Baseten's)")
    args = parser.parse_args()
    if args.runs < 20:
        parser.error("--runs must be at least 20 for a meaningful p95")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    server = None
    url = args.url
    if url is None:
        logger.info("starting piper-streaming ...")
        server = ServedTruss("piper-streaming").start()
        url = server.base_url
    try:
        times = asyncio.run(measure(url, args.runs, args.warmup, args.api_key))
    finally:
        if server is not None:
            server.stop()

    stats = {name: summary(values) for name, values in times.items()}
    ratio = {q: stats["plugin"][q] / stats["direct"][q] for q in ("p50", "p95")}
    added_ms = {q: 1000 * (stats["plugin"][q] - stats["direct"][q]) for q in ("p50", "p95")}

    print(f"\ntime to first audio, piper-streaming, {args.runs} runs each, text: {TEXT!r}")
    print(f"{'path':<34}{'p50 ms':>10}{'p95 ms':>10}")
    print(
        f"{'direct aiohttp, first body byte':<34}"
        f"{1000 * stats['direct']['p50']:>10.1f}{1000 * stats['direct']['p95']:>10.1f}"
    )
    print(
        f"{'plugin synthesize(), first frame':<34}"
        f"{1000 * stats['plugin']['p50']:>10.1f}{1000 * stats['plugin']['p95']:>10.1f}"
    )
    print(f"{'plugin / direct':<34}{ratio['p50']:>10.2f}{ratio['p95']:>10.2f}")
    print(f"{'added by the plugin (ms)':<34}{added_ms['p50']:>10.1f}{added_ms['p95']:>10.1f}")

    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "plugin_overhead.json").write_text(
        json.dumps(
            {
                "command": "bench/plugin_overhead.py " + " ".join(sys.argv[1:]),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                "text": TEXT,
                "seconds": stats,
                "ratio_plugin_over_direct": ratio,
                "added_ms": added_ms,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
