"""The OpenAI surface beside our own contract, and what the compressed encoders cost.

1. First audio: one sentence, one request at a time, rounds interleaved so each
   variant sees the same conditions: our contract's PCM on piper-streaming, and
   piper-openai's /v1/audio/speech as pcm, opus and mp3 (and pcm as SSE). First
   audio is the first body byte; for Opus that is the Ogg headers' page, so the
   first byte holding audio is timed too (the first chunk after the headers).
   Both Trusses run at once, as served, on the same machine.
2. Encoder CPU per audio second, in process: a speech-like signal at piper's
   22,050 Hz fed in piper-sized chunks through the streaming encoder of each
   format (resampled to 24 kHz, as served), CPU time of the calling thread.

    .venv/bin/python bench/openai_surface.py [--rounds 30]

Writes bench/results/openai_surface.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "packages")]
from machine import machine_facts  # noqa: E402
from stats import summary  # noqa: E402

from local_truss.process import free_port  # noqa: E402
from local_truss.server import LocalTrussServer  # noqa: E402
from tts_common.audio import StreamEncoder  # noqa: E402
from tts_common.contract import AudioFormat  # noqa: E402

SENTENCE = "This is a test of the real-time text-to-speech synthesis system."
OGG_PAGE = b"OggS"


def first_audio(url: str, body: dict[str, Any], fmt: str) -> dict[str, float]:
    """Seconds to the first body byte, and to the first byte of audio proper."""
    started = time.perf_counter()
    first = audio = None
    seen = b""
    with requests.post(url, json=body, stream=True, timeout=60) as response:
        response.raise_for_status()
        for chunk in response.iter_content(chunk_size=None):
            now = time.perf_counter() - started
            first = now if first is None else first
            seen += chunk
            # Opus in Ogg: two header pages (OpusHead, OpusTags) before the first audio page
            if audio is None and (fmt != "opus" or seen.count(OGG_PAGE) >= 3):
                audio = now
    assert first is not None and audio is not None
    return {"first_byte": first, "first_audio": audio}


def variants(contract_url: str, openai_url: str) -> dict[str, tuple[str, dict[str, Any], str]]:
    speech = {"model": "tts-1", "voice": "alloy", "input": SENTENCE}
    return {
        "contract pcm": (contract_url, {"text": SENTENCE, "format": "pcm"}, "pcm"),
        "openai pcm": (openai_url, {**speech, "response_format": "pcm"}, "pcm"),
        "openai pcm, sse": (openai_url, {**speech, "response_format": "pcm", "stream_format": "sse"}, "pcm"),
        "openai opus": (openai_url, {**speech, "response_format": "opus"}, "opus"),
        "openai mp3": (openai_url, {**speech, "response_format": "mp3"}, "mp3"),
        "contract opus": (contract_url, {"text": SENTENCE, "format": "opus"}, "opus"),
        "contract mp3": (contract_url, {"text": SENTENCE, "format": "mp3"}, "mp3"),
    }


def measure_first_audio(rounds: int) -> dict[str, Any]:
    logs = REPO / "bench" / "results"
    contract = LocalTrussServer(REPO / "piper-streaming", port=free_port(), log_path=logs / "contract.log")
    surface = LocalTrussServer(REPO / "piper-openai", port=free_port(), log_path=logs / "openai.log")
    with contract, surface:
        cases = variants(contract.predict_url, f"{surface.base_url}/v1/audio/speech")
        for url, body, fmt in cases.values():  # warm both servers and every encoder
            first_audio(url, body, fmt)
        times: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (url, body, fmt) in cases.items():
                times[name].append(first_audio(url, body, fmt))
    out = {
        name: {key: summary([t[key] * 1000 for t in runs]) for key in ("first_byte", "first_audio")}
        for name, runs in times.items()
    }
    base = out["contract pcm"]["first_audio"]["p50"]
    for cell in out.values():
        cell["first_audio_minus_contract_ms"] = cell["first_audio"]["p50"] - base
    return out


def speechlike(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    voiced = 0.3 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (voiced + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def measure_encoders(rounds: int, seconds: float = 10.0) -> dict[str, Any]:
    signal = speechlike(seconds, 22050)
    # piper's chunk schedule: 20, 40, 80, ... frames of 256 samples, then about 1 s each
    sizes = [256 * 20 * 2**i for i in range(4)]
    cuts, at = [], 0
    while at < len(signal):
        at += sizes[min(len(cuts), len(sizes) - 1)]
        cuts.append(at)
    chunks = np.split(signal, cuts[:-1])
    cpu: dict[str, list[float]] = {}
    for _ in range(rounds):
        for fmt in ("pcm", "opus", "mp3", "flac", "aac"):
            start = time.thread_time()
            encoder = StreamEncoder(22050, 24000, AudioFormat(fmt))
            for chunk in chunks:
                encoder.encode(chunk)
            encoder.finish()
            cpu.setdefault(fmt, []).append((time.thread_time() - start) * 1000 / seconds)
    out: dict[str, Any] = {fmt: summary(v) for fmt, v in cpu.items()}
    for fmt in out:
        out[fmt]["added_ms_per_audio_s"] = out[fmt]["p50"] - out["pcm"]["p50"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    results = {
        "machine": machine_facts(),
        "rounds": args.rounds,
        "first_audio_ms": measure_first_audio(args.rounds),
        "encoder_cpu_ms_per_audio_s": measure_encoders(args.rounds),
    }
    (REPO / "bench" / "results" / "openai_surface.json").write_text(json.dumps(results, indent=2))
    print(f"\nFirst audio, one sentence, {args.rounds} rounds (ms; p50 / p95)")
    print("| variant | first byte | first audio | first audio vs contract pcm (p50) |")
    print("|---|---|---|---|")
    for name, cell in results["first_audio_ms"].items():
        b, a = cell["first_byte"], cell["first_audio"]
        print(
            f"| {name} | {b['p50']:.0f} / {b['p95']:.0f} | {a['p50']:.0f} / {a['p95']:.0f} | "
            f"{cell['first_audio_minus_contract_ms']:+.0f} |"
        )
    print("\nEncoder CPU per second of audio (ms; p50 / p95; 22,050 Hz in, 24 kHz out)")
    print("| format | CPU | added over pcm (p50) |")
    print("|---|---|---|")
    for fmt, cell in results["encoder_cpu_ms_per_audio_s"].items():
        print(f"| {fmt} | {cell['p50']:.2f} / {cell['p95']:.2f} | {cell['added_ms_per_audio_s']:+.2f} |")


if __name__ == "__main__":
    main()
