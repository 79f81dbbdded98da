"""Parler-TTS generation: jobs in, clips out, batched, with seeds that hold in any batch.

The model and both tokenizers load from a checkpoint directory, on CUDA when
present, SDPA attention, optional torch.compile. Jobs are generated together in
left-padded batches and each clip is trimmed to its own length.

Reproducible seeds inside batches. Plain batched sampling draws every row from one
global RNG, and left padding shifts an item's decoder positions, so an item's audio
would depend on its batch-mates. Here (a) each item samples from its own
torch.Generator (PerItemSampler), and (b) prompts are left-padded to a fixed bucket
length, and only items of the same bucket share a generate() call; an item alone
gets the same padding. Its codes are then identical alone or in any batch.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
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

from model.settings import ParlerSettings

logger = logging.getLogger(__name__)
# parler logs every sub-config in full on each load (and a flash-attention notice
# on import); DAC warns about torch's old weight_norm. Set before importing parler.
logging.getLogger("parler_tts").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)

from parler_tts import ParlerTTSForConditionalGeneration  # noqa: E402
from parler_tts.logits_processors import ParlerTTSLogitsProcessor  # noqa: E402


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


class ParlerGenerator:
    """A loaded Parler-TTS checkpoint that turns jobs into clips, batched."""

    def __init__(self, checkpoint: Path, settings: ParlerSettings):
        cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if cuda else "cpu")
        if not cuda:
            logger.warning("CUDA is not available: Parler-TTS runs on the CPU, far slower than on a GPU")
        dtype = self._dtype(settings.dtype, cuda)
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
        self.max_generate_batch = settings.max_generate_batch
        self.bucket_tokens = settings.prompt_bucket_tokens
        self._generation_config, self._warpers = self._split_sampling(self.model.generation_config)
        self.compiled = settings.compile
        if self.compiled:
            mode = settings.compile_mode
            # Parler's documented recipe: a static cache makes shapes compile-friendly.
            self._generation_config.cache_implementation = "static"
            self.model.forward = torch.compile(self.model.forward, mode=mode)
            logger.info("torch.compile enabled (mode=%s); each new batch shape compiles once", mode)
        logger.info(
            "Parler-TTS loaded from %s on %s (%s, decoder attention %s): %d Hz, %d codebooks",
            checkpoint,
            self.device,
            dtype,
            self.attention,
            self.sampling_rate,
            self.num_codebooks,
        )

    @staticmethod
    def _dtype(choice: str, cuda: bool) -> torch.dtype:
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
        greedy.update(
            do_sample=False,
            temperature=1.0,
            top_k=50,
            top_p=1.0,
            min_p=None,
            typical_p=1.0,
            epsilon_cutoff=0.0,
            eta_cutoff=0.0,
        )
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
        clips: list[Clip | None] = [None] * len(jobs)
        for prompt_length, indices in self.plan(jobs):
            for index, clip in zip(
                indices, self._generate_call([jobs[i] for i in indices], prompt_length), strict=True
            ):
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
            len(jobs),
            prompt_length,
            sum(len(c.audio) for c in clips) / self.sampling_rate,
            time.perf_counter() - started,
        )
        return clips
