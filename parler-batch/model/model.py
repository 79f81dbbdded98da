"""Parler-TTS: batched synthesis steered by a natural-language voice description.

load(): model and both tokenizers from the cached weights (or PARLER_MODEL_DIR),
CUDA when present, SDPA attention, optional torch.compile, a warm-up.
predict(): one item {text, description, seed?} or {"items": [...]}; every item is
validated before any generation; items are generated together in left-padded
batches and each clip is trimmed to its own length.

Reproducible seeds inside batches. Plain batched sampling draws every row from one
global RNG, and left padding shifts an item's decoder positions, so an item's audio
would depend on its batch-mates. Here (a) each item samples from its own
torch.Generator (PerItemSampler), and (b) prompts are left-padded to a fixed bucket
length, and only items of the same bucket share a generate() call; an item alone
gets the same padding. Its codes are then identical alone or in any batch.
"""

import asyncio
import copy
import hashlib
import json
import logging
import math
import os
import secrets
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from transformers import (
    AutoTokenizer,
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)
from transformers.generation.streamers import BaseStreamer
from tts_common import replies
from tts_common.batch import clip_response, resample, wav_base64
from tts_common.slots import Busy, ClientGone, SlotGate
from tts_common.weights import checkpoint_dir
from tts_common.contract import (
    AudioFormat,
    FieldError,
    RequestError,
    SampleRate,
    check_body_size,
    parse_request,
)
from tts_common.settings import ServingSettings

logger = logging.getLogger(__name__)
# parler logs every sub-config in full on each load (and a flash-attention notice
# on import); DAC warns about torch's old weight_norm. Set before importing parler.
logging.getLogger("parler_tts").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)

from parler_tts import ParlerTTSForConditionalGeneration  # noqa: E402
from parler_tts.logits_processors import ParlerTTSLogitsProcessor  # noqa: E402

# mini-v1 stops at ~30 s of audio (generation_config max_length 2580 frames at
# 86 Hz); 400 characters is about 25 s of speech.
MAX_TEXT_CHARS = 400
MAX_DESCRIPTION_CHARS = 500
MAX_SEED = 2**63 - 1
BINARY_FORMATS = (AudioFormat.wav, AudioFormat.pcm)


class ParlerItem(BaseModel):
    """One clip: what to say, how it should sound, and optionally a seed."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(max_length=MAX_TEXT_CHARS)
    description: StrictStr = Field(max_length=MAX_DESCRIPTION_CHARS)
    # Same text, description and seed give the same audio, alone or in a batch.
    seed: Optional[StrictInt] = Field(default=None, ge=0, le=MAX_SEED)

    @field_validator("text", "description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain non-whitespace text")
        return value


def _check_format(value: str, batch: bool) -> str:
    supported = ["json"] if batch else ["json", *(f.value for f in BINARY_FORMATS)]
    if value not in supported:
        hint = "; a batch always answers JSON" if batch and value in ("wav", "pcm") else ""
        raise FieldError("format", f"unsupported format {value!r}; supported: {', '.join(supported)}{hint}")
    return value


class SingleRequest(ParlerItem):
    """One item; `format` json (base64 WAV in JSON), wav or pcm (binary body)."""

    format: StrictStr = "json"
    sample_rate: Optional[SampleRate] = None  # default: the model's own rate

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        return _check_format(value, batch=False)


class BatchRequest(BaseModel):
    """Up to `max_items` items, answered as JSON in item order."""

    model_config = ConfigDict(extra="forbid")
    max_items: ClassVar[int] = 16  # set from model_metadata.max_batch_items

    items: list[ParlerItem] = Field(min_length=1)
    format: StrictStr = "json"
    sample_rate: Optional[SampleRate] = None

    @field_validator("items", mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        # Checked before the items themselves, so an oversized batch costs nothing.
        if isinstance(value, list) and len(value) > cls.max_items:
            raise FieldError("items", f"at most {cls.max_items} items per request, got {len(value)}")
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        return _check_format(value, batch=True)


def parse_parler_request(body: bytes, batch_model: type[BatchRequest]) -> Union[SingleRequest, BatchRequest]:
    """A body with an `items` key is a batch; anything else is one item."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        payload = None  # parse_request answers the 400
    model = batch_model if isinstance(payload, dict) and "items" in payload else SingleRequest
    return parse_request(body, model)


# ---- generation --------------------------------------------------------------


class PerItemSampler(LogitsProcessor):
    """Samples each item's codebook rows from that item's own torch.Generator.

    Runs after every other processor and warper (see _processors) and returns a
    one-hot score row, so generate()'s greedy argmax takes exactly this choice.
    The draw is an exponential race (argmax p / E, E ~ Exp(1)), i.e. an exact
    categorical sample that always consumes num_codebooks x vocab numbers per step:
    an item's random stream never depends on its batch-mates.
    """

    def __init__(self, seeds: list[int], num_codebooks: int, device: torch.device):
        self.num_codebooks = num_codebooks
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float(), dim=-1).view(len(self.generators), self.num_codebooks, -1)
        picks = torch.stack(
            [
                (probs[i] / torch.empty_like(probs[i]).exponential_(generator=g)).argmax(dim=-1)
                for i, g in enumerate(self.generators)
            ]
        ).view(-1, 1)
        return torch.full_like(scores, -math.inf).scatter_(1, picks, 0.0)


class CodeRecorder(BaseStreamer):
    """Keeps the token rows generate() emits, to fingerprint each item's codes."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # parler first puts the decoder start tokens
            self._prompt_seen = True
            return
        self.steps.append(value.reshape(-1))

    def end(self) -> None:
        pass

    def fingerprints(self, batch: int, num_codebooks: int, codebook_size: int) -> list[str]:
        tokens = torch.stack(self.steps, dim=1).view(batch, num_codebooks, -1)
        result = []
        for item in tokens:
            # Steps after an item finished hold only pad/eos (>= codebook_size); an
            # item alone stops there, so they are left out.
            real = (item < codebook_size).any(dim=0).nonzero()
            end = int(real.max()) + 1 if len(real) else 0
            result.append(hashlib.sha256(item[:, :end].to(torch.int32).numpy().tobytes()).hexdigest())
        return result


@dataclass
class Job:
    text: str
    description: str
    seed: int


@dataclass
class Clip:
    audio: np.ndarray  # float32 mono at the model's rate
    codes_sha256: str


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes")


class ParlerGenerator:
    """A loaded Parler-TTS checkpoint that turns jobs into clips, batched."""

    def __init__(self, checkpoint: Path, max_generate_batch: int, bucket_tokens: int):
        cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if cuda else "cpu")
        if not cuda:
            logger.warning("CUDA is not available: Parler-TTS runs on the CPU, far slower than on a GPU")
        dtype = self._dtype(cuda)
        # No explicit attn_implementation: transformers then picks SDPA wherever a
        # sub-model supports it (the Parler decoder's self and cross attention);
        # asking for "sdpa" outright fails on the T5 encoder, which has none in 4.46.
        self.model = ParlerTTSForConditionalGeneration.from_pretrained(checkpoint, torch_dtype=dtype)
        self.model.to(self.device).eval()
        self.attention = self.model.decoder.config._attn_implementation
        if self.attention != "sdpa":
            logger.warning("decoder attention is %r, not sdpa", self.attention)
        # Descriptions feed the T5 encoder with its attention mask (right padding is
        # harmless); prompts are prepended to the decoder input, hence left padding.
        self.description_tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.prompt_tokenizer = AutoTokenizer.from_pretrained(checkpoint, padding_side="left")
        self.sampling_rate = int(self.model.config.sampling_rate)
        self.num_codebooks = int(self.model.decoder.num_codebooks)
        self.codebook_size = int(self.model.audio_encoder.config.codebook_size)
        self.max_generate_batch = max_generate_batch
        self.bucket_tokens = bucket_tokens
        self._generation_config, self._warpers = self._split_sampling(self.model.generation_config)
        self.compiled = _env_flag("PARLER_COMPILE")
        if self.compiled:
            mode = os.environ.get("PARLER_COMPILE_MODE", "reduce-overhead")
            # Parler's documented recipe: a static cache makes shapes compile-friendly.
            self._generation_config.cache_implementation = "static"
            self.model.forward = torch.compile(self.model.forward, mode=mode)
            logger.info("torch.compile enabled (mode=%s); each new batch shape compiles once", mode)
        logger.info(
            "Parler-TTS loaded from %s on %s (%s, decoder attention %s): %d Hz, %d codebooks",
            checkpoint, self.device, dtype, self.attention, self.sampling_rate, self.num_codebooks,
        )

    @staticmethod
    def _dtype(cuda: bool) -> torch.dtype:
        choice = os.environ.get("PARLER_DTYPE", "auto").strip().lower()
        if choice == "auto":
            if not cuda:
                return torch.float32
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16  # T4: no bf16
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[choice]

    @staticmethod
    def _split_sampling(config: GenerationConfig) -> tuple[GenerationConfig, list[LogitsProcessor]]:
        """The checkpoint's sampling settings as explicit warpers, and a greedy config.

        transformers appends its warpers after custom processors, so a custom sampler
        would see unwarped logits. We run the same warpers ourselves, then our
        sampler, and let generate() take the argmax of its one-hot output.
        """
        greedy = copy.deepcopy(config)
        if not config.do_sample:
            return greedy, []
        warpers: list[LogitsProcessor] = []
        if config.temperature is not None and config.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k is not None and config.top_k != 0:
            warpers.append(TopKLogitsWarper(top_k=config.top_k))
        if config.top_p is not None and config.top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=config.top_p))
        if config.min_p is not None:
            warpers.append(MinPLogitsWarper(min_p=config.min_p))
        if config.typical_p is not None and config.typical_p < 1.0:
            warpers.append(TypicalLogitsWarper(mass=config.typical_p))
        if config.epsilon_cutoff is not None and 0.0 < config.epsilon_cutoff < 1.0:
            warpers.append(EpsilonLogitsWarper(epsilon=config.epsilon_cutoff))
        if config.eta_cutoff is not None and 0.0 < config.eta_cutoff < 1.0:
            warpers.append(EtaLogitsWarper(epsilon=config.eta_cutoff))
        # Defaults, so the greedy config does not warn about unused sampling fields.
        greedy.update(do_sample=False, temperature=1.0, top_k=50, top_p=1.0, min_p=None,
                      typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0)
        return greedy, warpers

    def _bucket(self, text: str) -> int:
        tokens = len(self.prompt_tokenizer(text).input_ids)
        return max(1, math.ceil(tokens / self.bucket_tokens)) * self.bucket_tokens

    def plan(self, jobs: list[Job]) -> list[tuple[int, list[int]]]:
        """(prompt length, job indices) per generate() call: one bucket per call."""
        by_bucket: dict[int, list[int]] = {}
        for index, job in enumerate(jobs):
            by_bucket.setdefault(self._bucket(job.text), []).append(index)
        calls = []
        for length in sorted(by_bucket):
            indices = by_bucket[length]
            for start in range(0, len(indices), self.max_generate_batch):
                calls.append((length, indices[start : start + self.max_generate_batch]))
        return calls

    def generate(self, jobs: list[Job]) -> list[Clip]:
        clips: list[Optional[Clip]] = [None] * len(jobs)
        for prompt_length, indices in self.plan(jobs):
            for index, clip in zip(indices, self._generate_call([jobs[i] for i in indices], prompt_length)):
                clips[index] = clip
        assert all(clip is not None for clip in clips)
        return clips  # type: ignore[return-value]

    def _processors(self, seeds: list[int]) -> LogitsProcessorList:
        # Passing logits_processor replaces parler's default list, so its
        # delay-pattern EOS processor is added back first.
        eos = self._generation_config.eos_token_id
        processors: list[LogitsProcessor] = [
            ParlerTTSLogitsProcessor(eos, self.num_codebooks, len(seeds), self.device)
        ]
        if self._warpers:
            processors += [*self._warpers, PerItemSampler(seeds, self.num_codebooks, self.device)]
        return LogitsProcessorList(processors)

    def _generate_call(self, jobs: list[Job], prompt_length: int) -> list[Clip]:
        descriptions = self.description_tokenizer(
            [job.description for job in jobs], return_tensors="pt", padding=True
        ).to(self.device)
        prompts = self.prompt_tokenizer(
            [job.text for job in jobs], return_tensors="pt", padding="max_length", max_length=prompt_length
        ).to(self.device)
        recorder = CodeRecorder()
        if self.compiled and hasattr(self.model, "_cache"):
            # parler 0.2.3 reads StaticCache.max_batch_size when reusing its cache,
            # which transformers 4.46 renamed; a fresh cache per call avoids that.
            del self.model._cache
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=descriptions.input_ids,
                attention_mask=descriptions.attention_mask,
                prompt_input_ids=prompts.input_ids,
                prompt_attention_mask=prompts.attention_mask,
                generation_config=self._generation_config,
                logits_processor=self._processors([job.seed for job in jobs]),
                streamer=recorder,
                return_dict_in_generate=True,
            )
        audio = out.sequences.float().cpu().numpy()
        fingerprints = recorder.fingerprints(len(jobs), self.num_codebooks, self.codebook_size)
        clips = [
            Clip(audio=audio[i, : int(length)].copy(), codes_sha256=fingerprints[i])
            for i, length in enumerate(out.audios_length)
        ]
        logger.info(
            "generated %d clip(s), prompt bucket %d tokens, %.2f s of audio in %.2f s",
            len(jobs), prompt_length, sum(len(c.audio) for c in clips) / self.sampling_rate,
            time.perf_counter() - started,
        )
        return clips


# ---- the Truss ---------------------------------------------------------------


class Model:
    def __init__(self, **kwargs):
        config = kwargs["config"]
        metadata = config.get("model_metadata", {})
        self._weights_dir = Path(config["weights"][0]["mount_location"])
        self._lazy_data = kwargs.get("lazy_data_resolver")
        self._max_generate_batch = int(metadata.get("max_generate_batch", 16))
        self._bucket_tokens = int(metadata.get("prompt_bucket_tokens", 32))
        limit = int(metadata.get("max_batch_items", 16))

        class _BatchRequest(BatchRequest):
            max_items: ClassVar[int] = limit

        self._batch_model = _BatchRequest
        # One generate() at a time: a batch already fills the accelerator.
        self._gate = SlotGate(1, float(metadata.get("queue_timeout_s", 60)))
        self._max_body_bytes = ServingSettings.from_env().max_body_bytes
        self._generator: Optional[ParlerGenerator] = None

    def _checkpoint_dir(self) -> Path:
        return checkpoint_dir("PARLER_MODEL_DIR", self._weights_dir, self._lazy_data)

    def load(self) -> None:
        generator = ParlerGenerator(self._checkpoint_dir(), self._max_generate_batch, self._bucket_tokens)
        generator.generate([Job("Warm up.", "A calm voice with very clear audio.", 0)])
        self._generator = generator

    async def predict(self, request: Request) -> Response:
        generator = self._generator
        assert generator is not None
        rid = replies.request_id(request)
        try:
            body = await request.body()
            check_body_size(body, self._max_body_bytes)
            req = parse_parler_request(body, self._batch_model)
        except RequestError as exc:
            logger.info("[%s] rejected request (%s): %s", rid, exc.status, exc)
            return replies.request_error(exc, rid)
        items = req.items if isinstance(req, BatchRequest) else [req]
        jobs = [
            Job(item.text, item.description, item.seed if item.seed is not None else secrets.randbits(63))
            for item in items
        ]
        rate = req.sample_rate or generator.sampling_rate
        try:
            async with self._gate.slot(gone=request.is_disconnected):
                clips = await asyncio.to_thread(generator.generate, jobs)
        except Busy as exc:
            return replies.busy(str(exc), rid)
        except ClientGone:
            logger.info("[%s] client left while waiting for a slot; never started", rid)
            return Response(status_code=499, headers={replies.REQUEST_ID_HEADER: rid})
        except Exception:  # reported, never a partial answer
            logger.exception("[%s] generation failed", rid)
            return replies.internal_error("synthesis failed", rid)

        audio = [resample(clip.audio, generator.sampling_rate, rate) for clip in clips]
        if isinstance(req, SingleRequest) and req.format != "json":
            return clip_response(
                audio[0], rate, AudioFormat(req.format),
                headers={"X-Seed": str(jobs[0].seed), "X-Codes-Sha256": clips[0].codes_sha256,
                         replies.REQUEST_ID_HEADER: rid,
                         "X-Duration-S": f"{len(audio[0]) / rate:.6f}"},
            )
        results = [
            {
                "audio": wav_base64(samples, rate),  # base64 of a complete PCM16 WAV
                "sample_rate": rate,
                "duration_s": len(samples) / rate,
                "seed": job.seed,
                "codes_sha256": clip.codes_sha256,
            }
            for samples, job, clip in zip(audio, jobs, clips)
        ]
        return JSONResponse(
            results[0] if isinstance(req, SingleRequest) else {"items": results},
            headers={replies.REQUEST_ID_HEADER: rid},
        )
