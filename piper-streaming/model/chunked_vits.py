"""Piper's VITS voice cut in two, so its waveform decoder can stream.

A piper voice is one ONNX graph: text encoder, duration predictor and flow turn
phoneme ids into latent frames `z` (one per 256 samples), then a HiFi-GAN style
decoder turns `z` into audio. The decoder is about two thirds of the time and
purely convolutional, so we cut the graph at its input and decode `z` in chunks:
a small first chunk (first audio after the front half plus a few frames of
decoding), then larger ones. Each chunk is decoded with `context_frames` of
neighbouring frames on both sides, at least the decoder's receptive field
(measured by perturbation: 11 frames), and cropped, so the chunks joined are the
one-shot decode up to float rounding (tests/piper_decoder_check.py proves it).
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import onnx
import onnxruntime
from onnx.utils import Extractor

logger = logging.getLogger(__name__)

# The first node of the decoder in piper's export (module `dec.conv_pre`); its
# input is the masked latent `z`.
DECODER_ENTRY_NODE = "/dec/conv_pre/Conv"
GRAPH_INPUTS = ["input", "input_lengths", "scales"]
# Decoder receptive field is 11 frames each side (perturbation, see module doc).
CONTEXT_FRAMES = 12


def frame_chunks(
    total: int, first: int, growth: float = 2.0, largest: int = 256, smallest_last: int = 0
) -> list[tuple[int, int]]:
    """[start, end) frame ranges: `first`, then each `growth` times larger up to
    `largest`; a last piece shorter than `smallest_last` joins the one before."""
    chunks: list[tuple[int, int]] = []
    start, size = 0, max(1, first)
    while start < total:
        end = min(total, start + size)
        chunks.append((start, end))
        start, size = end, min(largest, max(size + 1, int(size * growth)))
    if len(chunks) > 1 and chunks[-1][1] - chunks[-1][0] < smallest_last:
        last = chunks.pop()
        chunks[-1] = (chunks[-1][0], last[1])
    return chunks


def session_options(threads: int) -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    # Spinning worker threads would burn the cores that concurrent streams need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class ChunkedVits:
    """Runs a piper ONNX voice as front half plus chunked decoder.

    Sessions are built for 1 to `max_threads` intra-op threads (onnxruntime fixes
    a session's thread count), so each run can use as many cores as the caller
    holds. Where the graph has no recognisable decoder entry (a voice exported
    some other way), `streams` is False and `synthesize` runs the whole graph.
    """

    def __init__(self, model_path: str, hop: int, max_threads: int = 1):
        self.hop = hop
        self.max_threads = max(1, max_threads)
        model = onnx.load(model_path)
        entry = next((n for n in model.graph.node if n.name == DECODER_ENTRY_NODE), None)
        self._latent: Optional[str] = entry.input[0] if entry is not None else None
        if self._latent is None:
            logger.warning("%s: no %s node; streaming whole sentences", model_path, DECODER_ENTRY_NODE)
            graphs = {"full": model}
        else:
            extractor = Extractor(model)
            graphs = {
                "front": extractor.extract_model(GRAPH_INPUTS, [self._latent]),
                "decoder": extractor.extract_model([self._latent], [model.graph.output[0].name]),
            }
        self._sessions = {
            (name, threads): onnxruntime.InferenceSession(
                graph.SerializeToString(), sess_options=session_options(threads),
                providers=["CPUExecutionProvider"],
            )
            for name, graph in graphs.items()
            for threads in range(1, self.max_threads + 1)
        }

    def _run(self, name: str, threads: int, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self._sessions[name, min(max(1, threads), self.max_threads)].run(None, feed)[0]

    @property
    def streams(self) -> bool:
        return self._latent is not None

    @staticmethod
    def inputs(phoneme_ids: list[int], scales: tuple[float, float, float]) -> dict[str, np.ndarray]:
        ids = np.array([phoneme_ids], dtype=np.int64)
        return {
            "input": ids,
            "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
            "scales": np.array(scales, dtype=np.float32),
        }

    def synthesize(
        self, phoneme_ids: list[int], scales: tuple[float, float, float], threads: int = 1
    ) -> np.ndarray:
        """The whole utterance in one pass (what piper itself does)."""
        if not self.streams:
            return self._run("full", threads, self.inputs(phoneme_ids, scales)).reshape(-1)
        return self.decode(self.latents(phoneme_ids, scales, threads), 0, None, threads=threads)

    def latents(
        self, phoneme_ids: list[int], scales: tuple[float, float, float], threads: int = 1
    ) -> np.ndarray:
        """The front half: `z`, shape [1, channels, frames]."""
        assert self.streams
        return self._run("front", threads, self.inputs(phoneme_ids, scales))

    def decode(
        self, z: np.ndarray, start: int, end: Optional[int],
        context: int = CONTEXT_FRAMES, threads: int = 1,
    ) -> np.ndarray:
        """Audio of frames [start, end), decoded with `context` frames either side."""
        frames = z.shape[2]
        end = frames if end is None else end
        lo, hi = max(0, start - context), min(frames, end + context)
        audio = self._run("decoder", threads, {self._latent: np.ascontiguousarray(z[:, :, lo:hi])})
        return audio.reshape(-1)[(start - lo) * self.hop : (end - lo) * self.hop]
