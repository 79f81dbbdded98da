"""XTTS-v2 as a streaming engine: load the checkpoint, pin every voice's
conditioning on the device, generate a sentence's audio chunk by chunk on a
stream's own view of the model."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Generator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from pydantic import AliasChoices, BaseModel, Field
from TTS.tts.configs.xtts_config import XttsConfig
from TTS.tts.models.xtts import Xtts

from tts_common.contract import FieldError, shown
from tts_common.reference_audio import ReferenceClip, to_mono
from tts_common.speaker_cache import SpeakerCache, content_key
from tts_common.synthesis import Synthesis
from tts_common.text import split_long
from tts_common.truss_context import TrussContext
from tts_common.voice_store import ID_PREFIX
from tts_common.weights import checkpoint_dir
from xtts_engine.settings import XttsSettings
from xtts_engine.step_batching import StepBatcher
from xtts_engine.stream_state import stream_generator, stream_view
from xtts_engine.streaming_decode import inference_stream_incremental

logger = logging.getLogger(__name__)

Latents = tuple[torch.Tensor, torch.Tensor]  # (gpt_cond_latent, speaker_embedding)
# The rate Xtts.get_conditioning_latents loads reference audio at.
XTTS_REFERENCE_RATE = 22050
# "Auto" (LiveKit's plugin's default) cannot be detected by XTTS: it speaks this.
AUTO_LANGUAGE = "en"
# Longest run of digits in a text: XTTS spells numbers out in words (num2words), a
# token or more per digit, so a long run alone would pass its GPT's text limit.
MAX_DIGITS = 20
_DIGIT_RUN = re.compile(rf"\d{{{MAX_DIGITS + 1},}}")


class Sampling(BaseModel):
    """XTTS's generation fields, shared by the HTTP request and the realtime
    session config (one place for their bounds); None: the checkpoint's
    config.json value."""

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
    # Audio tokens (about 46 ms each) one sentence may generate, at most the checkpoint's
    # own cap; Baseten's default TTS shape sends it (incremental decoder only).
    max_tokens: int | None = Field(default=None, ge=1, le=100_000)


class XttsEngine:
    """XTTS-v2 behind every XTTS Truss (tts_common.engine.Engine)."""

    word_times = False  # its GPT emits audio codes with no alignment to the text

    def __init__(
        self,
        settings: XttsSettings,
        weights_dir: Path,
        data_dir: Path,
        lazy_data: Any = None,
        on_voice_cache: Callable[[bool], None] = lambda hit: None,
    ) -> None:
        """`on_voice_cache` hears each cloned-voice cache lookup (hit or not)."""
        self.settings = settings
        self._on_voice_cache = on_voice_cache
        self._weights_dir = weights_dir
        self._data_dir = data_dir
        self._lazy_data = lazy_data
        self._cloned: SpeakerCache[Latents] = SpeakerCache(settings.max_cloned_voices)
        self._model: Xtts | None = None
        self.voices: dict[str, Latents] = {}
        self.default_voice = ""
        self.languages: list[str] = []
        self.device = "cpu"
        self._half = False
        self._batcher: StepBatcher | None = None
        # "incremental" (default): constant-cost decode (streaming_decode.py); "stock": Xtts.inference_stream.
        self.stream_decoder = settings.stream_decoder

    @classmethod
    def for_truss(cls, truss: TrussContext, on_voice_cache: Callable[[bool], None]) -> XttsEngine:
        """The engine of a Truss: its settings, weights mount and data directory."""
        return cls(
            XttsSettings.load(truss.metadata),
            weights_dir=truss.weights_dir,
            data_dir=truss.data_dir,
            lazy_data=truss.lazy_data,
            on_voice_cache=on_voice_cache,
        )

    @property
    def model(self) -> Xtts:
        assert self._model is not None, "load() has not run"
        return self._model

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.model_args.output_sample_rate)

    def load(self, max_streams: int) -> None:
        """`max_streams`: how many generations the Truss runs at once."""
        cuda = torch.cuda.is_available()
        self.device = "cuda" if cuda else "cpu"
        if not cuda:
            logger.warning("CUDA is not available: XTTS runs on the CPU, far slower than on a GPU")
        use_deepspeed = cuda and self.settings.deepspeed
        if use_deepspeed and max_streams > 1:
            # DeepSpeed's inference engine (injected kernels with their own workspace) is not
            # thread-safe: DeepSpeed-MII itself serializes calls to it.
            raise ValueError(
                f"XTTS_DEEPSPEED=1 needs TTS_MAX_STREAMS=1 (got {max_streams}): "
                "DeepSpeed inference is not safe for concurrent streams"
            )
        self._half = cuda and self.settings.half
        checkpoint = checkpoint_dir(self.settings.model_dir, self._weights_dir, self._lazy_data)
        config = XttsConfig()
        config.load_json(str(checkpoint / "config.json"))
        model = Xtts(config)
        model.load_checkpoint(config, checkpoint_dir=str(checkpoint), use_deepspeed=use_deepspeed, eval=True)
        model.to(self.device)
        self._model = model
        batch = cuda if self.settings.batch_steps is None else self.settings.batch_steps
        if batch and not use_deepspeed:  # DeepSpeed runs one stream at a time
            self._batcher = StepBatcher(model.gpt.gpt_inference.transformer)
        self.languages = self._speakable_languages(model, list(config.languages))
        logger.info(
            "XTTS loaded from %s on %s (deepspeed=%s, fp16=%s, GPT steps batched across streams=%s)",
            checkpoint,
            self.device,
            use_deepspeed,
            self._half,
            self._batcher is not None,
        )

        # Pin every known voice's conditioning on the device, once.
        with torch.inference_mode():
            for name, speaker in (model.speaker_manager.speakers if model.speaker_manager else {}).items():
                self.voices[name] = (
                    speaker["gpt_cond_latent"].to(self.device),
                    speaker["speaker_embedding"].to(self.device),
                )
            for wav in sorted((self.settings.speakers_dir or self._data_dir / "speakers").glob("*.wav")):
                samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
                self.voices[wav.stem] = self.latents(to_mono(samples, rate, XTTS_REFERENCE_RATE))
        if not self.voices:
            raise RuntimeError(
                "no voices: the checkpoint has no speakers_xtts.pth and data/speakers is empty"
            )
        wanted = self.settings.default_voice
        self.default_voice = wanted if wanted in self.voices else sorted(self.voices)[0]
        if self.default_voice != wanted:
            logger.warning("default voice %r not found; using %r", wanted, self.default_voice)
        logger.info("%d voices pinned on %s; default %r", len(self.voices), self.device, self.default_voice)
        for _ in self.generate(self.view(0), "Warm up.", "en", self.voices[self.default_voice], Sampling()):
            pass

    def language(self, wanted: str | None) -> str:
        language = AUTO_LANGUAGE if wanted is None or wanted.lower() == "auto" else wanted
        if language not in self.languages:
            raise FieldError(
                "language",
                f"unsupported language {shown(wanted)}; supported: Auto, {', '.join(self.languages)}",
            )
        return language

    def check_voice(self, voice: str | None) -> None:
        if voice is not None and voice not in self.voices:
            raise FieldError(
                "voice", f"unknown voice {shown(voice)}; available: {', '.join(self.voice_names())}"
            )

    def voice_names(self) -> list[str]:
        """The built-in voices (an uploaded voice is pinned under an id of its own)."""
        return sorted(v for v in self.voices if not v.startswith(ID_PREFIX))

    def pin(self, voice_id: str, latents: Latents) -> None:
        self.voices[voice_id] = latents

    def unpin(self, voice_id: str) -> None:
        self.voices.pop(voice_id, None)

    @staticmethod
    def _speakable_languages(model: Xtts, languages: list[str]) -> list[str]:
        """The checkpoint's languages whose text front end runs here: Chinese needs
        pypinyin, Japanese cutlet (not in the Trusses' requirements); a language
        that cannot run is refused as unsupported, not a 500 at its first request."""
        usable = []
        for language in languages:
            try:
                model.tokenizer.encode("a", language)
            except Exception as exc:  # ImportError, or whatever its front end raises
                logger.warning("language %s disabled: its text front end fails (%s)", language, exc)
                continue
            usable.append(language)
        return usable

    def fit(self, units: list[str], language: str) -> list[str]:
        """Each unit within the GPT's text limit, counted in the language's own tokens
        (numbers spelled out, one or more tokens per character in some scripts), a
        unit over it split at its clause breaks, then words; FieldError("text") for a
        run of more than MAX_DIGITS digits."""
        for unit in units:
            run = _DIGIT_RUN.search(unit)
            if run:
                raise FieldError(
                    "text", f"a number of {len(run.group())} digits; at most {MAX_DIGITS} (group longer ones)"
                )
        limit = self.model.args.gpt_max_text_tokens - 1  # the GPT asserts fewer than its maximum
        fitted: list[str] = []
        pending = list(reversed(units))
        while pending:
            unit = pending.pop()
            try:
                tokens = len(self.model.tokenizer.encode(unit, language))
            except Exception as exc:  # its front end cannot read this text (Hindi numbers, say)
                why = shown(str(exc) or type(exc).__name__)
                raise FieldError("text", f"cannot be read in {language}: {why}") from None
            if tokens <= limit or len(unit) <= 1:
                fitted.append(unit)
                continue
            pieces = split_long(unit, max(1, len(unit) * limit // tokens - 1))
            if len(pieces) == 1:  # no break to split at: cut it in half
                pieces = [unit[: len(unit) // 2], unit[len(unit) // 2 :]]
            pending.extend(reversed(pieces))
        return fitted

    def max_unit_chars(self, language: str) -> int:
        """The tokenizer's character limit for the language (250 where it has none)."""
        limits: dict[str, int] = self.model.tokenizer.char_limits
        return limits.get(language.split("-")[0], 250)

    def speakable(self, text: str) -> bool:
        return any(c.isalnum() for c in text)

    def synthesis(
        self,
        units: list[str],
        language: str,
        voice: str | None,
        options: Sampling,
        in_hand_s: float = 0.0,
        clip: ReferenceClip | None = None,
    ) -> Synthesis:
        """The audio of `units` in order, in a built-in or uploaded `voice`, or
        cloned from `clip` (its conditioning computed on the worker, or cached).
        FieldError("text") for a number too long to speak."""
        units = self.fit(units, language)
        info = {"voice": voice or ("cloned" if clip else self.default_voice)}

        def latents() -> Latents:
            if clip is None:
                return self.voices[voice or self.default_voice]
            found, cached = self.cloned(clip.raw, lambda: clip.samples)
            info["voice_cache"] = "hit" if cached else "miss"
            self._on_voice_cache(cached)
            return found

        return Synthesis(self.sample_rate, self.stream(units, language, latents, options), info=info)

    def latents(self, mono: np.ndarray) -> Latents:
        """Conditioning from a mono reference clip at XTTS_REFERENCE_RATE, as
        Xtts.get_conditioning_latents computes it (the clip was resampled with
        soxr, linear-time at any input rate)."""
        model = self.model
        load_sr = XTTS_REFERENCE_RATE
        audio = torch.from_numpy(np.ascontiguousarray(mono)).unsqueeze(0)
        audio = audio[:, : load_sr * model.config.max_ref_len].to(self.device)
        with torch.inference_mode():
            embedding = model.get_speaker_embedding(audio, load_sr)
            latent = model.get_gpt_cond_latents(
                audio, load_sr, length=model.config.gpt_cond_len, chunk_length=model.config.gpt_cond_chunk_len
            )
        return latent, embedding

    def cloned(self, raw: bytes, mono: Callable[[], np.ndarray]) -> tuple[Latents, bool]:
        """A reference clip's conditioning, from the cache when the same bytes came
        before (True) or computed now (False)."""
        return self._cloned.get_or_compute(content_key(raw), lambda: self.latents(mono()))

    def generate(
        self, view: Xtts, text: str, language: str, voice: Latents, opts: Sampling
    ) -> Iterator[np.ndarray]:
        """One sentence on `view`, a stream's view (stream_state.stream_view) of the loaded model."""
        config = view.config
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.float16)
            if self._half
            else contextlib.nullcontext()
        )
        stream = (
            view.inference_stream
            if self.stream_decoder == "stock"
            else partial(inference_stream_incremental, view, max_audio_tokens=opts.max_tokens)
        )

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        with torch.inference_mode(), autocast:
            for chunk in stream(
                text,
                language,
                voice[0],
                voice[1],
                stream_chunk_size=opts.chunk_size,
                temperature=pick(opts.temperature, config.temperature),
                length_penalty=pick(opts.length_penalty, config.length_penalty),
                repetition_penalty=pick(opts.repetition_penalty, config.repetition_penalty),
                top_k=pick(opts.top_k, config.top_k),
                top_p=pick(opts.top_p, config.top_p),
                speed=opts.speed,
                enable_text_splitting=False,  # we split: one sentence per call
            ):
                yield chunk.float().cpu().numpy()

    def view(self, seed: int | None) -> Xtts:
        """A stream's own prefix and sampler RNG over the shared weights: streams run at once."""
        return stream_view(self.model, stream_generator(self.device, seed), self._batcher)

    def stream(
        self, segments: list[str], language: str, voice: Callable[[], Latents], opts: Sampling
    ) -> Callable[[threading.Event], Generator[np.ndarray, None, None]]:
        """The audio of `segments` (a text plan), in order, as `Synthesis.chunks`;
        `voice` runs on the worker (cloning a reference clip is model work)."""

        def chunks(cancel: threading.Event) -> Generator[np.ndarray, None, None]:
            latents = voice()
            view = self.view(opts.seed)
            for segment in segments:
                for chunk in self.generate(view, segment, language, latents, opts):
                    if cancel.is_set():
                        return
                    yield chunk

        return chunks
