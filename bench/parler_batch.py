"""Benchmark parler-batch: throughput of batched synthesis vs the same items one by one.

Serves parler-batch with the real truss server on the tiny random Parler-TTS of the
tests (tests/fixtures/tiny_parler.py, built in the Truss's own environment) and,
over real HTTP, measures audio seconds produced per wall-clock second:

  batched     one request {"items": [...B items]}
  one by one  the same B items (same seeds, so the same audio) as B sequential requests

for B = 1, 4, 16, --runs times each (the two modes alternate, so load drift hits
both), and reports median and p95 of each and of their ratio per run.

    .venv/bin/python bench/parler_batch.py [--runs 7] [--batch-sizes 1 4 16] [--eos-logit 0]

--eos-logit 0 (default): every item runs to the tiny model's 28-frame cap, so each
item is the same work and the ratio isolates batching. --eos-logit 2 gives items of
different lengths (a batch then runs until its longest item ends).
Writes bench/results/parler_batch.json and prints a table.
"""

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from stats import summary  # noqa: E402

from local_truss.paths import cache_dir  # noqa: E402
from local_truss.server import LocalTrussServer  # noqa: E402

logger = logging.getLogger("bench.parler_batch")

DESCRIPTION = (
    "A female speaker delivers a slightly expressive and animated speech with a moderate speed and pitch."
)
# Short sentences: all fall in the first prompt bucket, so a batch is one generate() call.
TEXTS = [
    "Hey, how are you doing today?",
    "Good morning, sir. How can I help you?",
    "This is a test of the text to speech service.",
    "The quick brown fox jumps over the lazy dog.",
    "Can you hear me now?",
    "Thank you very much for listening.",
    "Open the door and turn on the light.",
    "The meeting has been moved to Thursday.",
]


def items(batch_size: int, run: int) -> list[dict]:
    return [
        {"text": TEXTS[i % len(TEXTS)], "description": DESCRIPTION, "seed": 1000 * run + i}
        for i in range(batch_size)
    ]


def post(url: str, body: dict) -> dict:
    r = requests.post(url, json=body, timeout=1800)
    r.raise_for_status()
    return r.json()


def batched(url: str, batch: list[dict]) -> tuple[float, float]:
    """(audio seconds, wall seconds) for one request carrying the whole batch."""
    start = time.perf_counter()
    results = post(url, {"items": batch})["items"]
    return sum(r["duration_s"] for r in results), time.perf_counter() - start


def one_by_one(url: str, batch: list[dict]) -> tuple[float, float]:
    start = time.perf_counter()
    audio = sum(post(url, item)["duration_s"] for item in batch)
    return audio, time.perf_counter() - start


def build_checkpoint(python: Path, eos_logit: float) -> Path:
    out = cache_dir() / "models" / f"tiny-parler-eos{eos_logit:g}-s0"
    subprocess.run(
        [str(python), str(REPO / "tests/fixtures/tiny_parler.py"), str(out), "--eos-logit", str(eos_logit)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--eos-logit", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=8282)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    results_dir = REPO / "bench" / "results"
    results_dir.mkdir(exist_ok=True)
    server = LocalTrussServer(
        REPO / "parler-batch", port=args.port, log_path=results_dir / "parler-batch-server.log"
    )
    python = server.prepare()
    server.stop()
    checkpoint = build_checkpoint(python, args.eos_logit)
    server.extra_env = {"PARLER_MODEL_DIR": str(checkpoint), "HF_HUB_OFFLINE": "1"}

    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_start": os.getloadavg(),
        },
        "model": f"tiny random Parler-TTS ({checkpoint.name}), CPU",
        "runs": args.runs,
        "cells": [],
    }
    with server:
        url = server.predict_url
        for size in args.batch_sizes:
            batched(url, items(size, 0))  # warm-up: first use of this batch shape
            rows = []
            for run in range(1, args.runs + 1):
                batch = items(size, run)
                audio_b, wall_b = batched(url, batch)
                audio_s, wall_s = one_by_one(url, batch)
                rows.append(
                    {
                        "batched": audio_b / wall_b,
                        "one_by_one": audio_s / wall_s,
                        "audio_s": audio_b,
                        "wall_batched_s": wall_b,
                        "wall_one_by_one_s": wall_s,
                    }
                )
                rows[-1]["ratio"] = rows[-1]["batched"] / rows[-1]["one_by_one"]
                logger.info("batch %d run %d: ratio %.2f", size, run, rows[-1]["ratio"])
            results["cells"].append(
                {
                    "batch_size": size,
                    "batched": summary([r["batched"] for r in rows]),
                    "one_by_one": summary([r["one_by_one"] for r in rows]),
                    "ratio": summary([r["ratio"] for r in rows]),
                    "runs": rows,
                }
            )
    results["machine"]["load_average_at_end"] = os.getloadavg()

    out = results_dir / "parler_batch.json"
    out.write_text(json.dumps(results, indent=2))
    m = results["machine"]
    print(
        f"\nparler-batch on {results['model']}, {args.runs} runs per row, {m['cpus']} CPUs, "
        f"load average {m['load_average_at_start'][0]:.1f} -> {m['load_average_at_end'][0]:.1f}"
    )
    print("audio seconds per wall-clock second (higher is better): p50 / p95 over runs")
    print("| batch size | batched | one by one | batched / one by one |")
    print("|---|---|---|---|")
    for c in results["cells"]:
        print(
            f"| {c['batch_size']} | {c['batched']['p50']:.3f} / {c['batched']['p95']:.3f} "
            f"| {c['one_by_one']['p50']:.3f} / {c['one_by_one']['p95']:.3f} "
            f"| {c['ratio']['p50']:.2f}x / {c['ratio']['p95']:.2f}x |"
        )
    print(f"\nraw results: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
