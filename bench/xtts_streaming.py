"""Benchmark xtts-streaming's decoders: the incremental decode (packages/xtts_engine/streaming_decode.py,
the Truss's default) against stock ``Xtts.inference_stream``, and served against in-process.

    .venv/bin/python bench/xtts_streaming.py [--repeats 5] [--lengths 30 90 150]

On a tiny random XTTS-v2 (tests/fixtures/tiny_xtts.py: tiny GPT, the real HiFi-GAN
decoder, so decode cost is the real model's; CPU). Two parts:

1. In-process, stock vs ours, sentence lengths fixed with ``max_new_tokens`` (a checkpoint
   allowing 250 tokens, built once into the cache): time to first chunk, total time, and
   per chunk time (GPT + decode since the previous chunk, and decode alone) against the
   chunk's position in the sentence. Stock and ours alternate within each repeat.
2. The default path through the real truss server (LocalTrussServer, XTTS_MODEL_DIR = the
   60-token tiny checkpoint) vs the same call in-process: time to first chunk and total.

Every figure is a median (p50) and p95 over --repeats runs; ratios are from the same run.
Writes bench/results/xtts_streaming.json and prints tables.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "tools"))
from xtts_reference import CHUNK, TEXT, VOICE  # noqa: E402

LONG_MAX_AUDIO_TOKENS = 253  # 250 generated tokens: 12+ chunks at stream_chunk_size 20


# ---- worker: runs in the Truss's environment python ----------------------------


def _timed_stream(model, impl: str, seed: int, max_tokens, decode_log: list):
    import torch
    from xtts_inprocess import default_kwargs, stream_of

    speaker = model.speaker_manager.speakers[VOICE]
    kwargs = default_kwargs(model)
    if max_tokens:
        kwargs["max_new_tokens"] = max_tokens  # passed through to the GPT's generate, in both paths
    stream = stream_of(model, impl)
    torch.manual_seed(seed)
    decode_log.clear()
    arrivals, samples, decode_ms = [], [], []
    start = time.perf_counter()
    with torch.inference_mode():
        for chunk in stream(TEXT, "en", speaker["gpt_cond_latent"], speaker["speaker_embedding"], **kwargs):
            chunk.float().cpu().numpy()
            arrivals.append(time.perf_counter() - start)
            samples.append(len(chunk))
            decode_ms.append(sum(decode_log) * 1000)
            decode_log.clear()
    gaps = [arrivals[0]] + [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    return {
        "impl": impl,
        "ttfa": arrivals[0],
        "total": arrivals[-1],
        "audio_s": sum(samples) / 24000,
        "chunk_gap_ms": [g * 1000 for g in gaps],
        "chunk_decode_ms": decode_ms,
        "chunk_samples": samples,
    }


def worker(args) -> None:
    if args.build_long:
        sys.path.insert(0, str(REPO / "tests" / "fixtures"))
        import tiny_xtts

        tiny_xtts.GPT_MAX_AUDIO_TOKENS = LONG_MAX_AUDIO_TOKENS
        tiny_xtts.build_tiny_xtts(Path(args.build_long))
        return
    from xtts_inprocess import load

    model = load(args.checkpoint)
    decode_log: list = []
    generator = model.hifigan_decoder.waveform_decoder
    forward = generator.forward

    def timed_forward(*a, **k):  # the HiFi-GAN generator: the decode cost, in both paths
        t = time.perf_counter()
        out = forward(*a, **k)
        decode_log.append(time.perf_counter() - t)
        return out

    generator.forward = timed_forward
    impls = args.impls.split(",")
    for impl in impls:  # warm-up
        _timed_stream(model, impl, 0, 20, decode_log)
    for length in args.lengths or [None]:
        for r in range(args.repeats):
            order = impls if r % 2 == 0 else impls[::-1]
            for impl in order:
                row = _timed_stream(model, impl, 100 + r, length, decode_log)
                row.update({"length": length, "repeat": r})
                print(json.dumps(row), flush=True)


# ---- host: the bench venv ---------------------------------------------------------


def summary(values):
    sys.path.insert(0, str(REPO / "bench"))
    from stats import summary as s

    return s(values)


def run_worker(python: Path, *argv: str) -> list[dict]:
    out = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--worker", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def served_request(url: str, seed: int) -> dict:
    import requests

    start = time.perf_counter()
    first, size = None, 0
    with requests.post(url, json={"text": TEXT, "voice": VOICE, "seed": seed}, stream=True, timeout=600) as r:
        r.raise_for_status()
        for chunk in r.iter_content(chunk_size=None):
            if first is None:
                first = time.perf_counter() - start
            size += len(chunk)
    return {"ttfa": first, "total": time.perf_counter() - start, "audio_s": size / 2 / 24000}


def per_index(series: list[list[float]]) -> list[dict]:
    return [summary([s[i] for s in series if i < len(s)]) for i in range(max(len(s) for s in series))]


def main() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from machine import machine_facts

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build-long", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--impls", default="stock,incremental", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[30, 90, 150], help="GPT tokens per sentence"
    )
    parser.add_argument("--port", type=int, default=8191)
    parser.add_argument("--skip-served", action="store_true")
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    sys.path[:0] = [str(REPO), str(REPO / "packages")]
    from local_truss.paths import cache_dir
    from local_truss.server import LocalTrussServer

    began = time.perf_counter()
    python = LocalTrussServer(REPO / "xtts-streaming").prepare()
    tiny = cache_dir() / "models" / "tiny-xtts"
    long_ckpt = cache_dir() / "models" / f"tiny-xtts-long{LONG_MAX_AUDIO_TOKENS}"
    subprocess.run(
        [str(python), str(REPO / "tests/fixtures/tiny_xtts.py"), str(tiny)], check=True, capture_output=True
    )
    run_worker(python, "--build-long", str(long_ckpt))
    print(
        f"xtts-streaming bench: tiny random XTTS-v2 (real HiFi-GAN decoder), CPU, {os.cpu_count()} CPUs, "
        f"{args.repeats} repeats per cell (few: keeps the run under ~10 min)",
        file=sys.stderr,
    )

    # 1. in-process: stock vs ours
    rows = run_worker(
        python,
        "--checkpoint",
        str(long_ckpt),
        "--repeats",
        str(args.repeats),
        "--lengths",
        *map(str, args.lengths),
    )
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "xtts_streaming_runs.json").write_text(json.dumps(rows))
    inproc = []
    for length in args.lengths:
        cell = {"length_tokens": length}
        for impl in ("stock", "incremental"):
            rs = [r for r in rows if r["length"] == length and r["impl"] == impl]
            cell[impl] = {
                "ttfa_ms": summary([r["ttfa"] * 1000 for r in rs]),
                "total_ms": summary([r["total"] * 1000 for r in rs]),
                "decode_ms": summary([sum(r["chunk_decode_ms"]) for r in rs]),
                "audio_s": rs[0]["audio_s"],
                # per chunk index: p50 / p95 over the repeats that reached it (the GPT may stop early)
                "chunk_gap_ms": per_index([r["chunk_gap_ms"] for r in rs]),
                "chunk_decode_ms": per_index([r["chunk_decode_ms"] for r in rs]),
                "chunk_samples": max((r["chunk_samples"] for r in rs), key=len),
            }
            cell[impl]["chunks"] = len(cell[impl]["chunk_samples"])
        pairs = {r["repeat"]: {} for r in rows if r["length"] == length}
        for r in rows:
            if r["length"] == length:
                pairs[r["repeat"]][r["impl"]] = r
        cell["total_ratio_stock_over_ours"] = summary(
            [p["stock"]["total"] / p["incremental"]["total"] for p in pairs.values()]
        )
        cell["ttfa_ratio_stock_over_ours"] = summary(
            [p["stock"]["ttfa"] / p["incremental"]["ttfa"] for p in pairs.values()]
        )
        inproc.append(cell)

    # 2. served vs in-process, the default (incremental) path
    served = None
    if not args.skip_served:
        server = LocalTrussServer(
            REPO / "xtts-streaming",
            port=args.port,
            extra_env={"XTTS_MODEL_DIR": str(tiny), "TTS_QUEUE_TIMEOUT_S": "600"},
            log_path=REPO / "bench" / "results" / "xtts-server.log",
        )
        with server:
            served_request(server.predict_url, 0)  # warm-up
            served_runs = [served_request(server.predict_url, 100 + r) for r in range(args.repeats)]
        local_runs = run_worker(
            python,
            "--checkpoint",
            str(tiny),
            "--repeats",
            str(args.repeats),
            "--impls",
            "incremental",
            "--lengths",
            "0",
        )  # 0: until the GPT stops (the 60-token cap), as served
        served = {
            "served": {
                "ttfa_ms": summary([r["ttfa"] * 1000 for r in served_runs]),
                "total_ms": summary([r["total"] * 1000 for r in served_runs]),
                "audio_s": served_runs[0]["audio_s"],
            },
            "in_process": {
                "ttfa_ms": summary([r["ttfa"] * 1000 for r in local_runs]),
                "total_ms": summary([r["total"] * 1000 for r in local_runs]),
                "audio_s": local_runs[0]["audio_s"],
            },
        }

    results = {
        "machine": machine_facts(),
        "model": "tiny random XTTS-v2 (tests/fixtures/tiny_xtts.py): 2-layer GPT, real HiFi-GAN decoder; CPU",
        "repeats": args.repeats,
        "stream_chunk_size": CHUNK,
        "in_process": inproc,
        "served_vs_in_process": served,
        "audio_s_by_length": {c["length_tokens"]: c["incremental"]["audio_s"] for c in inproc},
        "wall_s": time.perf_counter() - began,
    }
    out = REPO / "bench" / "results" / "xtts_streaming.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))

    print(
        f"\nxtts-streaming, tiny XTTS-v2 on CPU ({os.cpu_count()} CPUs), stream_chunk_size {CHUNK}, "
        f"{args.repeats} repeats per cell, p50 / p95 (ms); ratios stock / ours per repeat"
    )
    print(
        "| tokens | audio s | stock first chunk | ours first chunk | first-chunk ratio | stock "
        "total | ours total | total ratio | stock decode | ours decode |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in inproc:
        s, o = c["stock"], c["incremental"]
        print(
            f"| {c['length_tokens']} | {s['audio_s']:.2f} "
            f"| {s['ttfa_ms']['p50']:.0f} / {s['ttfa_ms']['p95']:.0f} | {o['ttfa_ms']['p50']:.0f} "
            f"/ {o['ttfa_ms']['p95']:.0f} "
            f"| {c['ttfa_ratio_stock_over_ours']['p50']:.2f}x "
            f"| {s['total_ms']['p50']:.0f} / {s['total_ms']['p95']:.0f} | "
            f"{o['total_ms']['p50']:.0f} / {o['total_ms']['p95']:.0f} "
            f"| {c['total_ratio_stock_over_ours']['p50']:.2f}x "
            f"| {s['decode_ms']['p50']:.0f} | {o['decode_ms']['p50']:.0f} |"
        )
    c = inproc[-1]
    print(
        f"\nper chunk, {c['length_tokens']} tokens: HiFi-GAN decode ms (GPT + decode ms since the "
        "previous chunk), p50; "
        "stock decodes at 20, 40, ... tokens and the end; ours at 8, 28, 48, ... and the end"
    )
    print("| chunk | stock decode (gap) | stock samples | ours decode (gap) | ours samples |")
    print("|---|---|---|---|---|")
    s, o = c["stock"], c["incremental"]
    for i in range(max(s["chunks"], o["chunks"])):

        def col(x, i=i):
            if i >= x["chunks"]:
                return "", ""
            return (
                f"{x['chunk_decode_ms'][i]['p50']:.0f} ({x['chunk_gap_ms'][i]['p50']:.0f})",
                str(x["chunk_samples"][i]),
            )

        (sd_, ss), (od, os_) = col(s), col(o)
        print(f"| {i + 1} | {sd_} | {ss} | {od} | {os_} |")
    if served:
        sv, ip = served["served"], served["in_process"]
        print(
            "\ndefault (incremental) path, 60-token tiny checkpoint: served (truss server, HTTP) "
            "vs in-process"
        )
        print("| | first chunk p50 / p95 | total p50 / p95 |")
        print("|---|---|---|")
        print(
            f"| served | {sv['ttfa_ms']['p50']:.0f} / {sv['ttfa_ms']['p95']:.0f} | "
            f"{sv['total_ms']['p50']:.0f} / {sv['total_ms']['p95']:.0f} |"
        )
        print(
            f"| in-process | {ip['ttfa_ms']['p50']:.0f} / {ip['ttfa_ms']['p95']:.0f} | "
            f"{ip['total_ms']['p50']:.0f} / {ip['total_ms']['p95']:.0f} |"
        )
        print(
            f"| ratio | {sv['ttfa_ms']['p50'] / ip['ttfa_ms']['p50']:.2f}x | "
            f"{sv['total_ms']['p50'] / ip['total_ms']['p50']:.2f}x |"
        )
    print(f"\nraw results: {out.relative_to(REPO)}; wall time {results['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
