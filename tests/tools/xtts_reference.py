"""The tiny XTTS checkpoint's test sentence and voice, and its in-process reference
audio (xtts_inprocess.py, run in the Truss's environment) for comparing with what
the served Truss streams."""

from __future__ import annotations

from pathlib import Path

from reports import run_report

TEXT = "Hello world, this is a tiny streaming test."
VOICE = "Tiny Speaker A"
CHUNK = 20  # stream_chunk_size: GPT tokens per streamed chunk, as served by default
INPROCESS = Path(__file__).resolve().parent / "xtts_inprocess.py"


def in_process_pcm(python: Path, checkpoint: Path, out: Path, seed: int, decoder: str) -> tuple[bytes, int]:
    """What `decoder` streams for TEXT in VOICE with `seed`, in-process: the PCM
    bytes, and in how many chunks."""
    report = run_report(python, INPROCESS, checkpoint, VOICE, seed, TEXT, out, "--decoder", decoder)
    return out.read_bytes(), len(report["chunk_samples"])
