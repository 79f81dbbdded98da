"""Coqui XTTS-v2 speaking the shared streaming contract.

load(): the model from the cached weights (or XTTS_MODEL_DIR), the conditioning
latents of every built-in and folder speaker pinned on the device, a warm-up.
predict(): validate, then stream 16-bit PCM per `inference_stream` chunk, each stream
on its own view of the loaded model (stream_state.py), so TTS_MAX_STREAMS run at once.
"""

import contextlib
import logging
import threading
from collections.abc import Generator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from pydantic import AliasChoices, Field, StrictStr
from starlette.requests import Request
from starlette.responses import Response
from TTS.tts.configs.xtts_config import XttsConfig
from TTS.tts.models.xtts import Xtts

from model.stream_state import stream_generator, stream_view
from model.streaming_decode import inference_stream_incremental
from tts_common.contract import StreamRequest, field_error
from tts_common.reference_audio import decode_reference_wav, to_mono
from tts_common.settings import XttsSettings
from tts_common.speaker_cache import SpeakerCache, content_key
from tts_common.streaming import AudioStreamer, Synthesis
from tts_common.text import plan_segments
from tts_common.weights import checkpoint_dir

logger = logging.getLogger(__name__)

Latents = tuple[torch.Tensor, torch.Tensor]  # (gpt_cond_latent, speaker_embedding)
# The rate Xtts.get_conditioning_latents loads reference audio at.
XTTS_REFERENCE_RATE = 22050


class XttsRequest(StreamRequest):
    """XTTS fields; sampling fields left out use the checkpoint's config.json values."""

    speaker_wav: StrictStr | None = None  # base64 WAV, 1 to 30 s, for cloning
    chunk_size: int = Field(
        default=20, ge=5, le=400, validation_alias=AliasChoices("chunk_size", "stream_chunk_size")
    )
    temperature: float | None = Field(default=None, gt=0.0, le=2.0)
    top_k: int | None = Field(default=None, ge=1, le=1000)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, ge=1.0, le=50.0)
    length_penalty: float | None = Field(default=None, ge=-10.0, le=10.0)
    speed: float = Field(default=1.0, ge=0.5, le=2.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


class Model:
    def __init__(self, **kwargs: Any) -> None:
        config = kwargs["config"]
        self._settings = XttsSettings.load(config.get("model_metadata") or {})
        self._weights_dir = Path(config["weights"][0]["mount_location"])
        self._data_dir = Path(kwargs.get("data_dir") or "data")
        self._lazy_data = kwargs.get("lazy_data_resolver")
        self._default_voice_name = self._settings.default_voice
        self._streamer = AudioStreamer.for_truss(kwargs)
        self._cloned: SpeakerCache[Latents] = SpeakerCache(self._settings.max_cloned_voices)
        self.model: Xtts | None = None
        self.voices: dict[str, Latents] = {}
        self.default_voice = ""
        # "incremental" (default): constant-cost decode (streaming_decode.py); "stock": Xtts.inference_stream.
        self._stream_decoder = self._settings.stream_decoder

    # ---- load -------------------------------------------------------------

    def _checkpoint_dir(self) -> Path:
        return checkpoint_dir("XTTS_MODEL_DIR", self._weights_dir, self._lazy_data)

    def load(self) -> None:
        cuda = torch.cuda.is_available()
        self.device = "cuda" if cuda else "cpu"
        if not cuda:
            logger.warning("CUDA is not available: XTTS runs on the CPU, far slower than on a GPU")
        use_deepspeed = cuda and self._settings.deepspeed
        if use_deepspeed and self._streamer.settings.max_streams > 1:
            # DeepSpeed's inference engine (injected kernels with their own workspace) is not
            # thread-safe: DeepSpeed-MII itself serializes calls to it.
            raise ValueError(
                f"XTTS_DEEPSPEED=1 needs TTS_MAX_STREAMS=1 (got {self._streamer.settings.max_streams}): "
                "DeepSpeed inference is not safe for concurrent streams"
            )
        self._half = cuda and self._settings.half
        checkpoint = self._checkpoint_dir()
        config = XttsConfig()
        config.load_json(str(checkpoint / "config.json"))
        model = Xtts(config)
        model.load_checkpoint(config, checkpoint_dir=str(checkpoint), use_deepspeed=use_deepspeed, eval=True)
        model.to(self.device)
        self.model = model
        self.languages = list(config.languages)
        logger.info(
            "XTTS loaded from %s on %s (deepspeed=%s, fp16=%s)",
            checkpoint,
            self.device,
            use_deepspeed,
            self._half,
        )

        # Pin every known voice's conditioning on the device, once.
        with torch.inference_mode():
            for name, speaker in (model.speaker_manager.speakers if model.speaker_manager else {}).items():
                self.voices[name] = (
                    speaker["gpt_cond_latent"].to(self.device),
                    speaker["speaker_embedding"].to(self.device),
                )
            for wav in sorted((self._data_dir / "speakers").glob("*.wav")):
                samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
                self.voices[wav.stem] = self._latents(to_mono(samples, rate, XTTS_REFERENCE_RATE))
        if not self.voices:
            raise RuntimeError(
                "no voices: the checkpoint has no speakers_xtts.pth and data/speakers is empty"
            )
        self.default_voice = (
            self._default_voice_name if self._default_voice_name in self.voices else sorted(self.voices)[0]
        )
        if self.default_voice != self._default_voice_name:
            logger.warning(
                "default voice %r not found; using %r", self._default_voice_name, self.default_voice
            )
        logger.info("%d voices pinned on %s; default %r", len(self.voices), self.device, self.default_voice)

        warm_up = stream_view(model, stream_generator(self.device, 0))
        for _ in self._generate(
            warm_up, "Warm up.", "en", self.voices[self.default_voice], XttsRequest(text="-")
        ):
            pass

    def _latents(self, mono: np.ndarray) -> Latents:
        """Conditioning from a mono reference clip at XTTS_REFERENCE_RATE, as
        Xtts.get_conditioning_latents computes it (the clip was resampled with
        soxr, linear-time at any input rate)."""
        model = self.model
        assert model is not None
        load_sr = XTTS_REFERENCE_RATE
        audio = torch.from_numpy(np.ascontiguousarray(mono)).unsqueeze(0)
        audio = audio[:, : load_sr * model.config.max_ref_len].to(self.device)
        with torch.inference_mode():
            embedding = model.get_speaker_embedding(audio, load_sr)
            latent = model.get_gpt_cond_latents(
                audio, load_sr, length=model.config.gpt_cond_len, chunk_length=model.config.gpt_cond_chunk_len
            )
        return latent, embedding

    # ---- predict ----------------------------------------------------------

    def _generate(
        self, model: Xtts, text: str, language: str, voice: Latents, req: XttsRequest
    ) -> Iterator[np.ndarray]:
        """One sentence on `model`, a stream's view (stream_state.stream_view) of the loaded model."""
        config = model.config
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.float16)
            if self._half
            else contextlib.nullcontext()
        )
        stream = (
            model.inference_stream
            if self._stream_decoder == "stock"
            else partial(inference_stream_incremental, model)
        )
        with torch.inference_mode(), autocast:
            for chunk in stream(
                text,
                language,
                voice[0],
                voice[1],
                stream_chunk_size=req.chunk_size,
                temperature=req.temperature if req.temperature is not None else config.temperature,
                length_penalty=req.length_penalty
                if req.length_penalty is not None
                else config.length_penalty,
                repetition_penalty=(
                    req.repetition_penalty
                    if req.repetition_penalty is not None
                    else config.repetition_penalty
                ),
                top_k=req.top_k if req.top_k is not None else config.top_k,
                top_p=req.top_p if req.top_p is not None else config.top_p,
                speed=req.speed,
                enable_text_splitting=False,  # we split: one sentence per call
            ):
                yield chunk.float().cpu().numpy()

    def _prepare(self, req: XttsRequest) -> Synthesis:
        model = self.model
        assert model is not None
        if req.language not in self.languages:
            raise field_error(
                "language", f"unsupported language {req.language!r}; supported: {', '.join(self.languages)}"
            )
        if req.voice is not None and req.speaker_wav is not None:
            raise field_error("speaker_wav", "give either voice or speaker_wav, not both")
        if req.voice is not None and req.voice not in self.voices:
            raise field_error(
                "voice", f"unknown voice {req.voice!r}; available: {', '.join(sorted(self.voices))}"
            )
        clip = (
            decode_reference_wav(req.speaker_wav, XTTS_REFERENCE_RATE)
            if req.speaker_wav is not None
            else None
        )
        char_limit = model.tokenizer.char_limits.get(req.language.split("-")[0], 250)
        segments = plan_segments(req.text, max_chars=char_limit)
        headers: dict[str, str] = {"X-Voice": req.voice or ("cloned" if clip else self.default_voice)}

        def chunks(cancel: threading.Event) -> Generator[np.ndarray, None, None]:
            if clip is not None:
                voice, cached = self._cloned.get_or_compute(
                    content_key(clip.raw), lambda: self._latents(clip.samples)
                )
                headers["X-Voice-Cache"] = "hit" if cached else "miss"
                self._streamer.metrics.voice_cache(cached)
            else:
                voice = self.voices[req.voice or self.default_voice]
            # This stream's prefix and sampler RNG over the shared weights: streams run at once.
            view = stream_view(model, stream_generator(self.device, req.seed))
            for segment in segments:
                for chunk in self._generate(view, segment, req.language, voice, req):
                    if cancel.is_set():
                        return
                    yield chunk

        return Synthesis(
            model_rate=model.config.model_args.output_sample_rate, chunks=chunks, headers=headers
        )

    def is_healthy(self) -> bool:
        return self._streamer.healthy()

    async def predict(self, request: Request) -> Response:
        return await self._streamer.respond(request, XttsRequest, self._prepare)
