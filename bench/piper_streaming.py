"""Benchmark piper-streaming: time to first audio and real-time factor, served
through the real truss server vs the same synthesis in-process.

    .venv/bin/python bench/piper_streaming.py [--requests 20] [--concurrency 1 2 4]

Writes bench/results/piper_streaming.json and prints a table. Every figure is a
median (p50) and p95 over --requests requests per cell; ratios are served over
in-process, measured in the same run.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from local_truss.server import LocalTrussServer, server_environment  # noqa: E402
from stats import summary  # noqa: E402

TEXTS = {
    "sentence": "This is a test of the real-time text-to-speech synthesis system.",
    "paragraph": (
        "The quick brown fox jumps over the lazy dog. Voice agents need speech that "
        "starts quickly, and keeps flowing. This paragraph has three sentences."
    ),
}


def served_request(url: str, text: str) -> dict:
    start = time.perf_counter()
    first = None
    size = 0
    with requests.post(url, json={"text": text}, stream=True, timeout=300) as r:
        r.raise_for_status()
        for chunk in r.iter_content(chunk_size=None):
            if first is None:
                first = time.perf_counter() - start
            size += len(chunk)
    total = time.perf_counter() - start
    return {"ttfa": first, "total": total, "audio_s": size / 2 / 24000}


def run_served(url: str, text: str, concurrency: int, count: int) -> list[dict]:
    for _ in range(2):
        served_request(url, text)  # warm-up
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: served_request(url, text), range(count)))


def run_inprocess(server: LocalTrussServer, python: Path, text: str, concurrency: int, count: int) -> list[dict]:
    env = server_environment(server.tree, server.port, server.host)
    out = subprocess.run(
        [str(python), str(REPO / "bench" / "piper_inprocess.py"), text, str(concurrency), str(count)],
        cwd=server.tree.app_dir, env=env, capture_output=True, text=True, check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def cell(results: list[dict]) -> dict:
    return {
        "ttfa_ms": summary([r["ttfa"] * 1000 for r in results]),
        "rtf": summary([r["total"] / r["audio_s"] for r in results]),
        "audio_s": summary([r["audio_s"] for r in results]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--port", type=int, default=8181)
    args = parser.parse_args()

    server = LocalTrussServer(REPO / "piper-streaming", port=args.port, log_path=REPO / "bench" / "results" / "piper-server.log")
    python = server.prepare()
    server.stop()
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "processor": platform.processor() or platform.machine()},
               "requests_per_cell": args.requests, "cells": []}
    with server:
        for name, text in TEXTS.items():
            for c in args.concurrency:
                served = cell(run_served(server.predict_url, text, c, args.requests))
                inproc = cell(run_inprocess(server, python, text, c, args.requests))
                results["cells"].append({"text": name, "concurrency": c, "served": served, "in_process": inproc})
                print(f"{name:9s} c={c}: served ttfa p50 {served['ttfa_ms']['p50']:.0f} ms", file=sys.stderr)

    out = REPO / "bench" / "results" / "piper_streaming.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\npiper-streaming, {args.requests} requests per cell, {results['machine']['cpus']} CPUs")
    print("| text | conc. | served TTFA p50 / p95 (ms) | in-process TTFA p50 / p95 (ms) | TTFA ratio | served RTF p50 / p95 | in-process RTF p50 | RTF ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for row in results["cells"]:
        s, i = row["served"], row["in_process"]
        print(
            f"| {row['text']} | {row['concurrency']} "
            f"| {s['ttfa_ms']['p50']:.0f} / {s['ttfa_ms']['p95']:.0f} "
            f"| {i['ttfa_ms']['p50']:.0f} / {i['ttfa_ms']['p95']:.0f} "
            f"| {s['ttfa_ms']['p50'] / i['ttfa_ms']['p50']:.2f}x "
            f"| {s['rtf']['p50']:.3f} / {s['rtf']['p95']:.3f} "
            f"| {i['rtf']['p50']:.3f} "
            f"| {s['rtf']['p50'] / i['rtf']['p50']:.2f}x |"
        )
    print(f"\nraw results: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
