"""Piper's VITS voice cut in three, so it streams within a sentence.

A piper voice is one ONNX graph: the text encoder and duration predictor (the
"prior") turn phoneme ids into prior latents `z_p`, one frame per 256 samples;
the flow turns `z_p` into `z`; a HiFi-GAN style decoder turns `z` into audio.
Piper runs it whole, once per sentence. Flow and decoder are convolutions along
time, so we cut the graph at their inputs and run them chunk by chunk: the first
audio costs the prior plus a few frames of flow and decoder, and no single run
is long enough to hold up other streams for long (cpu_lanes.py schedules runs).

Each chunk is computed with neighbouring frames as context, at least the stage's
receptive field (measured by perturbation: flow 32 frames each side, decoder
11), and cropped, so the chunks joined are the one-shot graph's output up to
float rounding (tests/piper_decoder_check.py proves it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime
from onnx.utils import Extractor

logger = logging.getLogger(__name__)

GRAPH_INPUTS = ["input", "input_lengths", "scales"]
# Where piper's export (node names follow the PyTorch modules) is cut: the
# flow's first node takes `z_p`; the decoder's first node takes `z`, computed
# by a Mul of the flow's output with the frame mask.
FLOW_PREFIX = "/flow/"
DECODER_ENTRY_NODE = "/dec/conv_pre/Conv"
# Context either side of a chunk: receptive field plus one frame.
FLOW_CONTEXT_FRAMES = 33
DECODER_CONTEXT_FRAMES = 12
# After its first run the flow runs ahead of the decoder by at least this many
# frames at a time, so its 2 x 33 frames of context are paid less often.
FLOW_MIN_RUN_FRAMES = 96


def session_options(threads: int) -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    # Spinning worker threads would burn the cores that concurrent streams need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


@dataclass
class Latents:
    """One sentence in flight: its prior, and the flow's output so far."""

    prior: np.ndarray  # z_p, [1, channels, frames]
    mask: np.ndarray  # [1, 1, frames]
    z: np.ndarray  # valid for frames [0, ready)
    ready: int = 0
    # Frames per phoneme id, as the duration predictor decided them in this run (they
    # sum to `frames`); None where the graph has no single Ceil to read them from.
    durations: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return int(self.prior.shape[2])


@dataclass(frozen=True)
class _Cut:
    prior: str  # z_p
    mask: str
    latent: str  # z
    durations: str | None  # w_ceil: frames per phoneme id


def _durations(model: onnx.ModelProto) -> str | None:
    """The duration predictor's rounded output (`w_ceil`, frames per phoneme id): the
    graph's one Ceil, as piper's own patch_voice_with_alignment finds it."""
    ceils = [n.output[0] for n in model.graph.node if n.op_type == "Ceil"]
    return ceils[0] if len(ceils) == 1 else None


def _find_cut(model: onnx.ModelProto) -> _Cut | None:
    nodes = model.graph.node
    entry = next((n for n in nodes if n.name == DECODER_ENTRY_NODE), None)
    flow = next((n for n in nodes if n.name.startswith(FLOW_PREFIX)), None)
    if entry is None or flow is None:
        return None
    latent = entry.input[0]
    masking = next((n for n in nodes if latent in n.output), None)
    if masking is None or masking.op_type != "Mul":
        return None
    flow_output = next(
        (n for n in nodes if n.name.startswith(FLOW_PREFIX) and n.output[0] in masking.input), None
    )
    if flow_output is None:
        return None
    mask = [i for i in masking.input if i not in flow_output.output]
    if len(mask) != 1:
        return None
    return _Cut(prior=flow.input[0], mask=mask[0], latent=latent, durations=_durations(model))


class ChunkedVits:
    """Runs a piper ONNX voice as prior, then flow and decoder chunk by chunk.

    Sessions are built for 1 to `max_threads` intra-op threads (onnxruntime fixes
    a session's thread count), so each run can use as many cores as the caller
    holds. Where the graph cannot be cut (a voice exported some other way),
    `streams` is False and `synthesize` runs the whole graph.
    """

    def __init__(self, model_path: str, hop: int, max_threads: int = 1):
        self.hop = hop
        self.max_threads = max(1, max_threads)
        self.flow_context = FLOW_CONTEXT_FRAMES
        self.decoder_context = DECODER_CONTEXT_FRAMES
        self.flow_min_frames = FLOW_MIN_RUN_FRAMES
        model = onnx.load(model_path)
        self._cut = _find_cut(model)
        if self._cut is None:
            logger.warning("%s: no flow/decoder cut found; streaming whole sentences", model_path)
            graphs = {"full": model}
        else:
            cut, extractor = self._cut, Extractor(model)
            graphs = {
                "prior": extractor.extract_model(
                    GRAPH_INPUTS, [cut.prior, cut.mask, *([cut.durations] if cut.durations else [])]
                ),
                "flow": extractor.extract_model([cut.prior, cut.mask], [cut.latent]),
                "decoder": extractor.extract_model([cut.latent], [model.graph.output[0].name]),
            }
        self._sessions = {
            (name, threads): onnxruntime.InferenceSession(
                graph.SerializeToString(),
                sess_options=session_options(threads),
                providers=["CPUExecutionProvider"],
            )
            for name, graph in graphs.items()
            for threads in range(1, self.max_threads + 1)
        }

    def _run(self, name: str, threads: int, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs: list[np.ndarray] = self._sessions[name, min(max(1, threads), self.max_threads)].run(
            None, feed
        )
        return outputs

    @property
    def streams(self) -> bool:
        return self._cut is not None

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
            return self._run("full", threads, self.inputs(phoneme_ids, scales))[0].reshape(-1)
        latents = self.latents(phoneme_ids, scales, threads)
        return self.decode(latents, 0, latents.frames, threads)

    def latents(
        self, phoneme_ids: list[int], scales: tuple[float, float, float], threads: int = 1
    ) -> Latents:
        """The prior of one sentence (text encoder and durations: all of its frames)."""
        assert self._cut is not None
        prior, mask, *durations = self._run("prior", threads, self.inputs(phoneme_ids, scales))
        return Latents(
            prior=prior,
            mask=mask,
            z=np.empty_like(prior),
            durations=durations[0].reshape(-1).astype(np.int64) if durations else None,
        )

    def decode(
        self, latents: Latents, start: int, end: int, threads: int = 1, flow_end: int = 0
    ) -> np.ndarray:
        """Audio of frames [start, end): the flow run as far as the decoder needs
        (from where it stopped), then the decoder, each with its context. When the
        flow has to run, it runs on to at least `flow_end`: a caller ahead of its
        listener pays the flow's context once for many frames."""
        cut, frames = self._cut, latents.frames
        assert cut is not None, "this voice's graph could not be cut: use synthesize()"
        need = min(frames, end + self.decoder_context)
        if need > latents.ready:
            # the first run only as far as the first chunk needs: it is on the
            # way to the first audio
            ahead = (
                need
                if latents.ready == 0
                else min(frames, max(need, flow_end, latents.ready + self.flow_min_frames))
            )
            lo = max(0, latents.ready - self.flow_context)
            hi = min(frames, ahead + self.flow_context)
            z = self._run(
                "flow",
                threads,
                {
                    cut.prior: np.ascontiguousarray(latents.prior[:, :, lo:hi]),
                    cut.mask: np.ascontiguousarray(latents.mask[:, :, lo:hi]),
                },
            )[0]
            latents.z[:, :, latents.ready : ahead] = z[:, :, latents.ready - lo : ahead - lo]
            latents.ready = ahead
        lo, hi = max(0, start - self.decoder_context), need
        audio = self._run("decoder", threads, {cut.latent: np.ascontiguousarray(latents.z[:, :, lo:hi])})[0]
        return audio.reshape(-1)[(start - lo) * self.hop : (end - lo) * self.hop]
