"""Benchmark several XTTS streams per replica: shared weights vs one model instance per stream.

    .venv/bin/python bench/xtts_concurrency.py [--streams 1 2 4] [--repeats 3] [--checkpoint DIR]
                                               [--decoder incremental|stock] [--skip-served]

Runs the Truss's own adapter (xtts-streaming/model/model.py, as served, minus HTTP) in its
environment's python, one fresh process per configuration:

* shared: one loaded model, N streams at once on their own threads, each with its own
  view (packages/xtts_engine/stream_state.py), their GPT steps batched across streams
  (packages/xtts_engine/step_batching.py) -- what TTS_MAX_STREAMS=N serves;
* unbatched: the same with every GPT step run alone (XTTS_BATCH_STEPS=0);
* instances: N loaded models, one stream each, at once -- one stream per instance, what
  N replicas (or N processes) would do, here in one process;
* served (unless --skip-served): the shared rows again over HTTP through the real truss
  server (TTS_MAX_STREAMS = the largest N), first chunk = first body bytes.

Each round starts N streams together (one sentence each, its own seed); per configuration:
aggregate audio seconds per wall-clock second (p50 / p95 over rounds), time to each stream's
first chunk (p50 / p95 over all streams of all rounds), memory after load, and peak memory
while streaming (process RSS, its high-water mark reset after load; on CUDA also torch's
allocated bytes). Without --checkpoint: the tiny random XTTS-v2 (tests/fixtures/tiny_xtts.py:
tiny GPT, real HiFi-GAN and speaker encoder). CUDA is used when present, so the same command
measures a GPU (with --checkpoint pointing at real XTTS-v2 weights).

Writes bench/results/xtts_concurrency.json (xtts_concurrency_stock.json with --decoder stock)
and prints a table.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEXT = "Hello world, this is a tiny streaming test."
VOICES = ("Tiny Speaker A", "Tiny Speaker B")


# ---- worker: runs in the Truss's environment python ----------------------------


def _memory() -> dict:
    import torch

    status = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
    )
    mem = {
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
        "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
    }
    if torch.cuda.is_available():
        mem["cuda_allocated_mb"] = torch.cuda.memory_allocated() / 2**20
        mem["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return mem


def _reset_peaks() -> None:
    import torch

    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def run_round(stream, n: int, seed: int) -> dict:
    """n streams started together; stream(i, body, start) -> (first chunk s, end s, audio s)."""
    outs: list = [None] * n
    bodies = [{"text": TEXT, "voice": VOICES[i % len(VOICES)], "seed": seed + i} for i in range(n)]
    start = time.perf_counter()

    def one(i: int) -> None:
        outs[i] = stream(i, bodies[i], start)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "wall_s": max(o[1] for o in outs),
        "audio_s": sum(o[2] for o in outs),
        "first_chunk_s": [o[0] for o in outs],
    }


def _in_process_stream(models: list):
    def stream(i: int, body: dict, start: float):
        served = models[i % len(models)]
        req = sys.modules[type(served).__module__].XttsRequest(**body)
        first, samples = None, 0
        for chunk in served.prepare(req).chunks(threading.Event()):
            first = first if first is not None else time.perf_counter() - start
            samples += len(chunk)
        return first, time.perf_counter() - start, samples / 24000

    return stream


def worker(args) -> None:
    sys.path.insert(0, str(REPO / "tests" / "tools"))
    from xtts_concurrency_check import load_adapter

    if args.mode == "unbatched":
        os.environ["XTTS_BATCH_STEPS"] = "0"  # the setting, read as the model loads
    instances = args.streams if args.mode == "instances" else 1
    models = [load_adapter(args.checkpoint)[1] for _ in range(instances)]
    for served in models:
        served.engine.stream_decoder = args.decoder
    stream = _in_process_stream(models)
    run_round(stream, args.streams, 0)  # warm-up: every thread and model once
    loaded = _memory()
    _reset_peaks()
    rounds = [run_round(stream, args.streams, 100 + 10 * r) for r in range(args.repeats)]
    print(
        json.dumps(
            {
                "mode": args.mode,
                "streams": args.streams,
                "device": str(models[0].engine.device),
                "after_load": loaded,
                "streaming": _memory(),
                "rounds": rounds,
            }
        ),
        flush=True,
    )


# ---- host: the bench venv ---------------------------------------------------------


def summary(values):
    sys.path.insert(0, str(REPO / "bench"))
    from stats import summary as s

    return s(values)


def _http_stream(url: str):
    import requests

    def stream(i: int, body: dict, start: float):
        first, size = None, 0
        with requests.post(url, json=body, stream=True, timeout=600) as r:
            r.raise_for_status()
            for chunk in r.iter_content(chunk_size=None):
                first = first if first is not None else time.perf_counter() - start
                size += len(chunk)
        return first, time.perf_counter() - start, size / 2 / 24000

    return stream


def _proc_memory(pid: int) -> dict:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
        "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
    }


def served_rows(server, streams: list[int], repeats: int) -> list[dict]:
    """The same rounds over HTTP through the real truss server (one model, TTS_MAX_STREAMS slots)."""
    stream = _http_stream(server.predict_url)
    pid = server.process.pid
    run_round(stream, max(streams), 0)  # warm-up
    loaded = _proc_memory(pid)
    rows = []
    for n in streams:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        rounds = [run_round(stream, n, 100 + 10 * r) for r in range(repeats)]
        rows.append(row("served", n, "server", rounds, loaded, _proc_memory(pid)))
    return rows


def row(mode: str, n: int, device: str, rounds: list[dict], after_load: dict, streaming: dict) -> dict:
    return {
        "mode": mode,
        "streams": n,
        "device": device,
        "audio_s_per_s": summary([r["audio_s"] / r["wall_s"] for r in rounds]),
        "first_chunk_ms": summary([t * 1000 for r in rounds for t in r["first_chunk_s"]]),
        "audio_s_per_stream": rounds[0]["audio_s"] / n,
        "after_load": after_load,
        "streaming": streaming,
    }


def main() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from machine import machine_facts

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["shared", "unbatched", "instances"], help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4], help="concurrent streams")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per configuration")
    parser.add_argument("--checkpoint", help="XTTS-v2 checkpoint directory (default: the tiny random one)")
    parser.add_argument("--decoder", choices=["incremental", "stock"], default="incremental")
    parser.add_argument("--port", type=int, default=8192)
    parser.add_argument("--skip-served", action="store_true", help="in-process rows only")
    args = parser.parse_args()
    if args.worker:
        args.streams = args.streams[0]
        return worker(args)

    sys.path[:0] = [str(REPO), str(REPO / "packages")]
    from local_truss.paths import cache_dir
    from local_truss.server import LocalTrussServer

    began = time.perf_counter()
    python = LocalTrussServer(REPO / "xtts-streaming").prepare()
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = str(cache_dir() / "models" / "tiny-xtts")
        subprocess.run(
            [str(python), str(REPO / "tests/fixtures/tiny_xtts.py"), checkpoint],
            check=True,
            capture_output=True,
        )
    model_name = "tiny random XTTS-v2 (2-layer GPT, real HiFi-GAN)" if args.checkpoint is None else checkpoint
    rows = []
    for n in args.streams:
        for mode in ("shared", "unbatched", "instances") if n > 1 else ("shared",):
            print(f"xtts concurrency bench: {mode}, {n} streams ...", file=sys.stderr, flush=True)
            out = subprocess.run(
                [
                    str(python),
                    str(Path(__file__).resolve()),
                    "--worker",
                    "--mode",
                    mode,
                    "--streams",
                    str(n),
                    "--repeats",
                    str(args.repeats),
                    "--checkpoint",
                    checkpoint,
                    "--decoder",
                    args.decoder,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            raw = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row(mode, n, raw["device"], raw["rounds"], raw["after_load"], raw["streaming"]))
    if not args.skip_served:
        print(f"xtts concurrency bench: served, {args.streams} streams ...", file=sys.stderr, flush=True)
        env = {
            "XTTS_MODEL_DIR": checkpoint,
            "TTS_MAX_STREAMS": str(max(args.streams)),
            "TTS_QUEUE_TIMEOUT_S": "600",
            "XTTS_STREAM_DECODER": args.decoder,
        }
        with LocalTrussServer(
            REPO / "xtts-streaming",
            port=args.port,
            extra_env=env,
            log_path=REPO / "bench" / "results" / "xtts-concurrency-server.log",
        ) as server:
            rows += served_rows(server, args.streams, args.repeats)
    single = next((r for r in rows if r["streams"] == 1 and r["mode"] == "shared"), None)
    served_single = next((r for r in rows if r["streams"] == 1 and r["mode"] == "served"), None)
    for r in rows:
        if r["mode"] == "served" and served_single and r["streams"] > 1:
            r["mb_per_extra_stream"] = (
                r["streaming"]["peak_rss_mb"] - served_single["streaming"]["peak_rss_mb"]
            ) / (r["streams"] - 1)
        elif r["mode"] != "served" and single and r["streams"] > 1:
            extra = r["streams"] - 1
            key = "peak_rss_mb" if r["mode"] != "instances" else "rss_mb"
            part = "streaming" if r["mode"] != "instances" else "after_load"
            # shared: extra peak memory while streaming per extra stream; instances: extra loaded
            # model per stream
            r["mb_per_extra_stream"] = (r[part][key] - single[part][key]) / extra
            if "cuda_peak_allocated_mb" in r["streaming"]:
                ck = "cuda_peak_allocated_mb" if r["mode"] != "instances" else "cuda_allocated_mb"
                r["cuda_mb_per_extra_stream"] = (r[part][ck] - single[part][ck]) / extra

    results = {
        "machine": machine_facts(),
        "model": model_name,
        "decoder": args.decoder,
        "text": TEXT,
        "repeats": args.repeats,
        "rows": rows,
        "wall_s": time.perf_counter() - began,
    }
    suffix = "" if args.decoder == "incremental" else f"_{args.decoder}"
    out_path = REPO / "bench" / "results" / f"xtts_concurrency{suffix}.json"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2))

    device = rows[0]["device"]
    print(
        f"\nxtts-streaming, several streams per replica: {model_name} on {device} ({os.cpu_count()} CPUs), "
        f"{args.decoder} decoder, {args.repeats} rounds per row, one sentence "
        f"({rows[0]['audio_s_per_stream']:.2f} s "
        "of audio) per stream; p50 / p95"
    )
    cuda = "cuda_mb_per_extra_stream" in rows[-1]
    print(
        "| weights | streams | audio s per s | first chunk ms | RSS after load MB | peak RSS streaming MB "
        "| MB per extra stream |" + (" CUDA MB per extra stream |" if cuda else "")
    )
    print("|---|---|---|---|---|---|---|" + ("---|" if cuda else ""))
    for r in rows:
        a, f = r["audio_s_per_s"], r["first_chunk_ms"]
        extra = f"{r['mb_per_extra_stream']:.0f}" if "mb_per_extra_stream" in r else ""
        label = {
            "shared": "shared, GPT steps batched",
            "unbatched": "shared, each GPT step alone",
            "instances": "one instance per stream",
            "served": "shared, served (HTTP)",
        }
        line = (
            f"| {label[r['mode']]} | {r['streams']} "
            f"| {a['p50']:.2f} / {a['p95']:.2f} | {f['p50']:.0f} / {f['p95']:.0f} "
            f"| {r['after_load']['rss_mb']:.0f} | {r['streaming']['peak_rss_mb']:.0f} | {extra} |"
        )
        if cuda:
            line += f" {r.get('cuda_mb_per_extra_stream', 0):.0f} |"
        print(line)
    print(f"\nraw results: {out_path.relative_to(REPO)}; wall time {results['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
