"""Piper's VITS voice cut into stages, so it streams within a sentence.

A piper voice is one ONNX graph: the text encoder and duration predictor (the
"prior") turn phoneme ids into prior latents `z_p`, one frame per 256 samples;
the flow (four coupling layers) turns `z_p` into `z`; a HiFi-GAN style decoder
(three upsampling stages) turns `z` into audio. Piper runs it whole, once per
sentence. Flow and decoder are convolutions along time, so we cut the graph at
the prior's outputs, between the flow's coupling layers and between the
decoder's upsampling stages, and run every stage after the prior chunk by chunk:
the first audio costs the prior plus a few frames of each stage, and no single
run is long enough to hold up other streams for long (cpu_lanes.py schedules
runs).

Each stage keeps its output for the next (a sentence's `Latents`), so a stage
recomputes only its own receptive field at a chunk's edges, at its own rate.
Most of the decoder's 12-frame receptive field is in its first stage, the
cheapest per frame; its last stages, where most of its work is, need a frame
or less. Cut only at the flow's input and the decoder's input, the same chunks
recomputed the flow's 33 and the decoder's 12 frames on each side at full cost.

A stage's context (its receptive field plus one position, in its input's
positions) is measured by perturbation when the voice loads, so the chunks
joined are the one-shot graph's output up to float rounding for any voice the
graph can be cut for (tests/tools/piper_decoder_check.py checks it).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime
from onnx.utils import Extractor

from piper_engine.conv2d import as_2d
from piper_engine.int8 import Feed, quantized

logger = logging.getLogger(__name__)

GRAPH_INPUTS = ["input", "input_lengths", "scales"]
# Where piper's export (node names follow the PyTorch modules) is cut: the
# flow's first node takes `z_p`; the decoder's first node takes `z`, computed
# by a Mul of the flow's output with the frame mask. Within each, the outputs of
# the flow's coupling layers and the inputs of the decoder's upsampling layers
# after the first bound the stages.
FLOW_PREFIX = "/flow/"
COUPLING_OUTPUT = re.compile(r"/flow/flows\.(\d+)/Concat")
DECODER_ENTRY_NODE = "/dec/conv_pre/Conv"
UPSAMPLING = re.compile(r"/dec/ups\.(\d+)/ConvTranspose")
# After its first run the flow runs ahead of the decoder by at least this many
# frames at a time, so its stages' context is paid less often.
FLOW_MIN_RUN_FRAMES = 96
# Positions a stage is measured over when the voice loads (its input's units).
MEASURE_POSITIONS = 96
# The most input positions one stage run spans; longer windows run in pieces.
# It bounds a run's activations, which onnxruntime's arena keeps at their most:
# with runs of up to 256 frames, 8 streams ahead of their listeners grew a
# replica by 150 to 270 MB (tests/e2e/test_hardening.py). In frames: 512 for the
# flow and the decoder's first stage (a position a frame), 64 for its second (8
# a frame), 8 for its last (64 a frame); the last two cost no more per frame in
# such runs than in longer ones (measured with their context, one core).
MAX_RUN_POSITIONS = 512


def session_options(threads: int, spin: bool = False) -> onnxruntime.SessionOptions:
    """`spin`: worker threads spin between a run's operators, and stop when the
    run ends. Otherwise they sleep: spinning after a run would burn the cores
    that concurrent streams need."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


_arena_lock = threading.Lock()
_arena_registered = False


def _stage_session_options(threads: int, spin: bool = False) -> onnxruntime.SessionOptions:
    """Every stage's session allocates from one CPU arena for the process, grown
    by what a run asks for (not doubled): an arena keeps the most it ever held,
    and with one per session (sixteen) eight unread 5000-character streams grew a
    replica by 224 MB, against 107 MB shared (tests/e2e/test_hardening.py)."""
    global _arena_registered
    with _arena_lock:
        if not _arena_registered:
            onnxruntime.create_and_register_allocator(
                onnxruntime.OrtMemoryInfo(
                    "Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, onnxruntime.OrtMemType.DEFAULT
                ),
                onnxruntime.OrtArenaCfg({"arena_extend_strategy": 1}),  # kSameAsRequested
            )
            _arena_registered = True
    options = session_options(threads, spin)
    options.add_session_config_entry("session.use_env_allocators", "1")
    return options


@dataclass
class _Stage:
    """One cut of the graph: `source` to `target` (tensor names)."""

    name: str
    source: str
    target: str
    masked: bool  # a flow stage: takes the frame mask beside its input
    ratio: int = 1  # target positions per source position
    context: int = 0  # source positions needed either side of a window
    two_d: bool = False  # runs as 2-D convolutions (conv2d.py)
    int8: bool = False  # runs int8 convolutions (int8.py)


@dataclass
class _Buffer:
    """A stage boundary's values known so far: positions [offset, ready)."""

    data: np.ndarray  # [1, channels, positions]
    offset: int = 0

    @property
    def ready(self) -> int:
        return self.offset + int(self.data.shape[2])

    def window(self, lo: int, hi: int) -> np.ndarray:
        assert self.offset <= lo and hi <= self.ready, (lo, hi, self.offset, self.ready)
        return self.data[:, :, lo - self.offset : hi - self.offset]

    def append(self, values: np.ndarray) -> None:
        self.data = np.concatenate([self.data, values], axis=2) if self.data.shape[2] else values

    def drop_before(self, position: int) -> None:
        """Forget what no later window reaches back to (memory stays bounded)."""
        cut = min(max(0, position - self.offset), int(self.data.shape[2]))
        if cut:
            self.data = self.data[:, :, cut:]
            self.offset += cut


@dataclass
class Latents:
    """One sentence in flight: its prior, and each stage's output so far."""

    prior: np.ndarray  # z_p, [1, channels, frames]
    mask: np.ndarray  # [1, 1, frames]
    # Frames per phoneme id, as the duration predictor decided them in this run (they
    # sum to `frames`); None where the graph has no single Ceil to read them from.
    durations: np.ndarray | None = None
    # the boundaries after the prior (the last one, audio, is handed out, not kept)
    buffers: list[_Buffer] = field(default_factory=list)
    audio_ready: int = 0  # samples handed out

    @property
    def frames(self) -> int:
        return int(self.prior.shape[2])


@dataclass(frozen=True)
class _Cut:
    prior: str  # z_p
    mask: str
    latent: str  # z
    durations: str | None  # w_ceil: frames per phoneme id
    flow: tuple[str, ...]  # z_p, the coupling layers' outputs, z
    decoder: tuple[str, ...]  # z, the upsampling stages' inputs, audio


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
    # The reverse flow runs its layers from the highest index down; the last
    # coupling layer's output is masked into `z`, so it is not a cut of its own.
    couplings = sorted(
        (int(m.group(1)), n.output[0]) for n in nodes if (m := COUPLING_OUTPUT.fullmatch(n.name))
    )
    inner_flow = [name for _, name in reversed(couplings)][:-1]
    upsamplings = sorted((int(m.group(1)), n.input[0]) for n in nodes if (m := UPSAMPLING.fullmatch(n.name)))
    return _Cut(
        prior=flow.input[0],
        mask=mask[0],
        latent=latent,
        durations=_durations(model),
        flow=(flow.input[0], *inner_flow, latent),
        decoder=(latent, *[name for i, name in upsamplings if i > 0], model.graph.output[0].name),
    )


class ChunkedVits:
    """Runs a piper ONNX voice as prior, then flow and decoder stages chunk by chunk.

    Sessions are built for 1 to `max_threads` intra-op threads (onnxruntime fixes
    a session's thread count), so each run can use as many cores as the caller
    holds. Where the graph cannot be cut (a voice exported some other way),
    `streams` is False and `synthesize` runs the whole graph. With `int8`
    sentences (phoneme ids and scales), every stage but the decoder's last runs
    int8, calibrated on those sentences (int8.py).
    """

    def __init__(
        self,
        model_path: str,
        hop: int,
        max_threads: int = 1,
        int8: Sequence[tuple[list[int], tuple[float, float, float]]] = (),
    ):
        self.hop = hop
        self.max_threads = max(1, max_threads)
        model = onnx.load(model_path)
        self._cut = _find_cut(model)
        self.stages: list[_Stage] = []
        # positions per frame at each stage boundary (z_p, ..., audio), set by measuring
        self._scale = [1]
        if self._cut is None:
            logger.warning("%s: no flow/decoder cut found; streaming whole sentences", model_path)
            graphs = {"full": model}
        else:
            cut, extractor = self._cut, Extractor(model)
            graphs = {
                "prior": extractor.extract_model(
                    GRAPH_INPUTS, [cut.prior, cut.mask, *([cut.durations] if cut.durations else [])]
                )
            }
            for part, bounds in (("flow", cut.flow), ("decoder", cut.decoder)):
                for i, (source, target) in enumerate(zip(bounds, bounds[1:], strict=False)):
                    stage = _Stage(f"{part}.{i}", source, target, masked=part == "flow")
                    inputs = [source, cut.mask] if stage.masked else [source]
                    graph = extractor.extract_model(inputs, [target])
                    # the decoder's stages only: the flow's gain nothing from it
                    planar = as_2d(graph) if part == "decoder" else None
                    stage.two_d = planar is not None
                    graphs[stage.name] = planar or graph
                    self.stages.append(stage)
        self._sessions: dict[tuple[str, int], onnxruntime.InferenceSession] = {}
        for name, graph in graphs.items():
            self._load(name, graph)
        if self.stages:
            self._measure_stages()
            if int8:
                self._quantize(graphs, int8)

    def _load(self, name: str, graph: onnx.ModelProto) -> None:
        """A graph's sessions, one for each thread count."""
        serialized = graph.SerializeToString()
        for threads in range(1, self.max_threads + 1):
            self._sessions[name, threads] = onnxruntime.InferenceSession(
                serialized,
                # The prior is one run of many small operators (the first audio
                # waits on all of it): on two threads, a worker asleep between
                # them is woken for each, which cost as much time as it saved.
                # Spinning for the run brought a lone stream's first audio from
                # 48 to 41 ms, its CPU within run-to-run noise (piper_cpu_cost).
                # The stages' two-thread runs spinning too took a lone first
                # 12-frame chunk from 18.3 to 16.0 ms, but they are also a
                # stalled stream's under load, where spinning threads take cores
                # from the others: 20 voice-agent sessions stalled 5 turns
                # against none (bench/sessions.py, same hour). So the prior only.
                sess_options=_stage_session_options(threads, spin=name == "prior"),
                providers=["CPUExecutionProvider"],
            )

    def _quantize(
        self,
        graphs: dict[str, onnx.ModelProto],
        sentences: Sequence[tuple[list[int], tuple[float, float, float]]],
    ) -> None:
        """The stages int8 (int8.py) but the last, calibrated on what the float32
        stages see over `sentences`, in windows as long as a decode's longest run.
        The last stage makes audio at its full rate: quantized in a trial, it left a
        noise floor in quiet passages (its log spectrum 9 to 13 dB off float32's,
        where the other stages together move it 4.8 to 5.7 dB)."""
        assert self._cut is not None
        quantize = self.stages[:-1]
        feeds: dict[str, list[Feed]] = {stage.name: [] for stage in quantize}
        for ids, scales in sentences:
            latents = self.latents(ids, scales)
            values = latents.prior
            for k, stage in enumerate(quantize):
                outputs = []
                for lo in range(0, latents.frames * self._scale[k], MAX_RUN_POSITIONS):
                    window = values[:, :, lo : lo + MAX_RUN_POSITIONS]
                    mask = latents.mask[:, :, lo : lo + MAX_RUN_POSITIONS]
                    feeds[stage.name].append(
                        {stage.source: window, **({self._cut.mask: mask} if stage.masked else {})}
                    )
                    outputs.append(self._run_stage(stage, window, mask, 1))
                values = np.concatenate(outputs, axis=2)
        for stage in quantize:
            self._load(stage.name, quantized(graphs[stage.name], feeds[stage.name]))
            stage.int8 = True
        logger.info(
            "stages %s run int8 (calibrated on %d sentences)", [s.name for s in quantize], len(sentences)
        )

    def _run(self, name: str, threads: int, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs: list[np.ndarray] = self._sessions[name, min(max(1, threads), self.max_threads)].run(
            None, feed
        )
        return outputs

    def _run_stage(self, stage: _Stage, source: np.ndarray, mask: np.ndarray, threads: int) -> np.ndarray:
        """One stage over a window; `mask` is the frame mask over the same window
        (only the flow's stages take it)."""
        assert self._cut is not None
        feed = {stage.source: np.ascontiguousarray(source)}
        if stage.masked:
            feed[self._cut.mask] = np.ascontiguousarray(mask)
        out = self._run(stage.name, threads, feed)[0]
        # the decoder's output is [1, 1, samples]; every boundary is [1, channels, positions]
        return out.reshape(1, -1, out.shape[-1])

    def _measure_stages(self) -> None:
        """Each stage's rate ratio and receptive field, by perturbation: nudge the
        middle position of a random input and see how far the output changes."""
        rng = np.random.default_rng(0)
        channels = int(self.latents([1, 2, 3], (0.0, 1.0, 0.0)).prior.shape[1])
        for stage in self.stages:
            n = MEASURE_POSITIONS
            x = rng.standard_normal((1, channels, n)).astype(np.float32)
            mask = np.ones((1, 1, n), dtype=np.float32)
            base = self._run_stage(stage, x, mask, 1)
            stage.ratio = int(base.shape[2]) // n
            k = n // 2
            nudged = x.copy()
            nudged[:, :, k] += 1.0
            diff = np.abs(self._run_stage(stage, nudged, mask, 1) - base).max(axis=1).reshape(-1)
            changed = np.flatnonzero(diff > 1e-6 * max(1.0, float(np.abs(base).max())))
            if changed.min() == 0 or changed.max() == len(diff) - 1:
                raise ValueError(f"{stage.name}: receptive field wider than {n} positions")
            left = k - int(changed.min()) // stage.ratio
            right = -(-(int(changed.max()) + 1) // stage.ratio) - 1 - k
            stage.context = max(left, right) + 1
            channels = int(base.shape[1])
            self._scale.append(self._scale[-1] * stage.ratio)
        if self._scale[-1] != self.hop:
            raise ValueError(f"the stages make {self._scale[-1]} samples a frame, the voice {self.hop}")
        logger.info(
            "VITS stages (ratio, context): %s",
            ", ".join(f"{s.name} ({s.ratio}, {s.context})" for s in self.stages),
        )

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
            durations=durations[0].reshape(-1).astype(np.int64) if durations else None,
            buffers=[_Buffer(np.empty((1, 0, 0), dtype=np.float32)) for _ in self.stages[:-1]],
        )

    @property
    def _latent_boundary(self) -> int:
        """The boundary index of `z`: after the flow's stages."""
        return sum(s.masked for s in self.stages)

    def decode(
        self, latents: Latents, start: int, end: int, threads: int = 1, flow_end: int = 0
    ) -> np.ndarray:
        """Audio of frames [start, end), `start` where the last call ended: each
        stage run as far as the next needs (from where it stopped), with its
        context. When the flow has to run, it runs on to at least `flow_end`: a
        caller ahead of its listener pays the flow's context once for many frames."""
        assert self._cut is not None, "this voice's graph could not be cut: use synthesize()"
        assert start * self.hop == latents.audio_ready, "chunks are decoded in order"
        frames, stages, scale = latents.frames, self.stages, self._scale
        ready = [frames] + [b.ready for b in latents.buffers] + [latents.audio_ready]

        def window_end(k: int, target: int) -> int:
            """How far stage k's input must reach for its output to reach `target`."""
            return min(frames * scale[k], -(-target // stages[k].ratio) + stages[k].context)

        # How far each boundary is to be known, from the audio back to z_p.
        target = [0] * (len(stages) + 1)
        target[-1] = end * self.hop
        for k in range(len(stages) - 1, -1, -1):
            target[k] = window_end(k, target[k + 1])
            if k == self._latent_boundary and target[k] > ready[k]:
                # z: the first run only as far as the first chunk needs (it is on
                # the way to the first audio); later ones well beyond it
                ahead = target[k] if ready[k] == 0 else max(flow_end, ready[k] + FLOW_MIN_RUN_FRAMES)
                target[k] = min(frames, max(target[k], ahead))
        sources = [None, *latents.buffers]
        pieces: list[np.ndarray] = []
        for k, stage in enumerate(stages):
            source, last = sources[k], window_end(k, target[k + 1])
            done = ready[k + 1]
            while done < target[k + 1]:
                # one run spans at most MAX_RUN_POSITIONS of its input: where it
                # stops short, its output is good up to its context from the end
                lo = max(0, done // stage.ratio - stage.context)
                hi = min(last, lo + MAX_RUN_POSITIONS)
                upto = target[k + 1] if hi == last else (hi - stage.context) * stage.ratio
                window = latents.prior[:, :, lo:hi] if source is None else source.window(lo, hi)
                out = self._run_stage(stage, window, latents.mask[:, :, lo:hi], threads)
                fresh = out[:, :, done - lo * stage.ratio : upto - lo * stage.ratio]
                if k + 1 < len(stages):
                    latents.buffers[k].append(fresh)
                else:
                    pieces.append(fresh.reshape(-1))
                done = upto
            if k + 1 == len(stages):
                latents.audio_ready = done
            if source is not None and done > ready[k + 1]:
                source.drop_before(done // stage.ratio - stage.context)
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.float32)
