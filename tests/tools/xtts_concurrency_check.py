"""Concurrent XTTS streams on one shared model: each gets exactly what it gets alone.

Run with the xtts-streaming environment's python on the tiny checkpoint:

    python tests/tools/xtts_concurrency_check.py CHECKPOINT_DIR

Loads the Truss's own adapter (xtts-streaming/model/model.py, `Model.load` as served),
then, for each decoder (incremental, stock), streams each request of STREAMS alone, then
the first 2 and all 4 at once on their own threads (as the server runs them), through
`Model.prepare(req).chunks`: the served path minus HTTP. Voices: two built-in speakers
and two cloned clips (`speaker_wav`), each with its own text and seed.

Also a control: the first 2 streams at once on the shared model itself, with torch's
global RNG seeded per stream, as the adapter ran before streams had their own state.

With the streams' GPT steps batched (xtts_engine/step_batching.py, on here as on a GPU), a
stream's chunks are its alone chunks up to float rounding: the same chunk lengths (the
same tokens) and an SNR per stream; without batching, sample for sample.

Prints one JSON report (last line of stdout): per case, whether every stream's chunks
equal its alone chunks (exactly, and by SNR), how many steps ran in batches of each
size, and whether the streams were in flight together.
"""

import base64
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
TRUSS = REPO / "xtts-streaming"
# The Truss's code is the package `model`; the shared audio helpers are in tests/tools.
sys.path[:0] = [str(TRUSS), str(REPO / "packages"), str(REPO / "tests" / "tools")]
from audio_checks import snr_db, tone, wav_b64  # noqa: E402

TEXTS = ("Hello world, this is a tiny streaming test.", "Another voice says something else entirely.")


def streams() -> list[dict]:
    joe = base64.b64encode((TRUSS / "data/speakers/joe.wav").read_bytes()).decode()
    return [
        {"voice": "Tiny Speaker A", "seed": 1, "text": TEXTS[0]},
        {"speaker_wav": joe, "seed": 2, "text": TEXTS[1]},
        {"voice": "Tiny Speaker B", "seed": 3, "text": TEXTS[1]},
        {"speaker_wav": wav_b64(tone(2.5), 16000), "seed": 4, "text": TEXTS[0]},
    ]


class Slowed:
    """The model's GPT-2 with each call STEP_DELAY_S later. The tiny GPT's step takes about
    a millisecond on the CPU, so concurrent streams' steps rarely meet and batches would form
    by chance; on a GPU a step is where a stream spends its time. Waiting before each call
    (the real model still computes every step) makes steps meet as they would there."""

    def __init__(self, model, delay_s: float):
        self._model, self._delay_s = model, delay_s

    def __call__(self, **kwargs):
        time.sleep(self._delay_s)
        return self._model(**kwargs)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


STEP_DELAY_S = 0.005


def load_adapter(checkpoint: str):
    from model import model as adapter

    os.environ["XTTS_MODEL_DIR"] = checkpoint
    os.environ.setdefault("XTTS_BATCH_STEPS", "1")  # as on a GPU (the default is CUDA only)
    config = yaml.safe_load((TRUSS / "config.yaml").read_text())
    served = adapter.Model(config=config, data_dir=str(TRUSS / "data"))
    served.load()
    return adapter, served


def stream_once(served, body: dict, start: float, out: dict) -> None:
    req = sys.modules[type(served).__module__].XttsRequest(**body)
    chunks, times = [], []
    try:
        for chunk in served.prepare(req).chunks(threading.Event()):
            chunks.append(chunk.copy())
            times.append(time.perf_counter() - start)
    except Exception as exc:  # the control may crash: that is mixing too
        out["error"] = f"{type(exc).__name__}: {exc}"
    out.update(chunks=chunks, times=times)


def run_together(served, bodies: list[dict]) -> list[dict]:
    outs = [{} for _ in bodies]
    start = time.perf_counter()
    threads = [
        threading.Thread(target=stream_once, args=(served, b, start, o))
        for b, o in zip(bodies, outs, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outs


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def chunks_snr_db(a: list[np.ndarray], b: list[np.ndarray]) -> float | None:
    """b against a, where their chunks have the same lengths (else None)."""
    if [len(x) for x in a] != [len(y) for y in b] or not a:
        return None
    return snr_db(np.concatenate(a), np.concatenate(b))


def compare(alone: list[dict], together: list[dict], batches: dict[int, int] | None = None) -> dict:
    firsts = [o["times"][0] for o in together if o.get("times")]
    lasts = [o["times"][-1] for o in together if o.get("times")]
    return {
        "streams": len(together),
        "exact": [same(a["chunks"], o["chunks"]) for a, o in zip(alone, together, strict=True)],
        "snr_db": [chunks_snr_db(a["chunks"], o["chunks"]) for a, o in zip(alone, together, strict=True)],
        "batches": batches or {},
        "errors": [o.get("error") for o in together],
        "chunks": [len(o["chunks"]) for o in together],
        # every stream had audio out before any stream finished: all were in flight together
        "overlapped": len(firsts) == len(together) and max(firsts) < min(lasts),
        "first_chunk_s": firsts,
        "last_chunk_s": lasts,
    }


def main() -> None:
    checkpoint = sys.argv[1]
    torch.set_num_threads(2)
    adapter, served = load_adapter(checkpoint)
    bodies = streams()
    report: dict = {"decoders": {}}
    batcher = served.engine._batcher
    report["batching"] = batcher is not None
    if batcher is not None:
        batcher.transformer = Slowed(batcher.transformer, STEP_DELAY_S)

    def together(group: list[dict]) -> tuple[list[dict], dict[int, int]]:
        """`group` at once, and the batches their steps ran in (by size)."""
        before = dict(batcher.sizes) if batcher is not None else {}
        outs = run_together(served, group)
        after = batcher.sizes if batcher is not None else {}
        return outs, {n: after[n] - before.get(n, 0) for n in after if after[n] > before.get(n, 0)}

    for decoder in ("incremental", "stock"):
        served.engine.stream_decoder = decoder
        alone = [run_together(served, [b])[0] for b in bodies]
        report["decoders"][decoder] = {
            "alone_chunks": [len(a["chunks"]) for a in alone],
            "alone_errors": [a.get("error") for a in alone],
            # four different outputs, so a stream can only match its own
            "alone_all_differ": all(
                not same(a["chunks"], b["chunks"]) for i, a in enumerate(alone) for b in alone[i + 1 :]
            ),
            "together_2": compare(alone[:2], *together(bodies[:2])),
            "together_4": compare(alone, *together(bodies)),
        }
        # the same four with every step alone: sample for sample
        served.engine._batcher = None
        report["decoders"][decoder]["together_4_unbatched"] = compare(alone, run_together(served, bodies))
        served.engine._batcher = batcher
        if decoder == "incremental":
            alone_incremental = alone

    # Control: the shared model itself, global RNG (the adapter before per-stream state).
    served.engine.stream_decoder = "incremental"
    from xtts_engine import engine

    engine.stream_view = lambda model, *_: model
    engine.stream_generator = lambda device, seed: torch.manual_seed(seed)
    report["shared_model_control"] = compare(alone_incremental[:2], run_together(served, bodies[:2]))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
