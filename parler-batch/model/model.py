"""Parler-TTS: batched synthesis steered by a natural-language voice description.

load(): the generator (generator.py) from the cached weights (or PARLER_MODEL_DIR),
then a warm-up. predict(): one item {text, description, seed?} or {"items": [...]}
(schema.py); every item is validated before any generation, one generation runs at
a time, and the clips come back as JSON (base64 WAVs) or one binary clip.
"""

# No `from __future__ import annotations` here: truss reads predict()'s annotations
# at runtime to see that it takes the raw starlette Request.
import asyncio
import logging
import secrets
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from model.generator import Job, ParlerGenerator
from model.schema import BatchRequest, SingleRequest, parse_parler_request
from model.settings import ParlerSettings
from tts_common import replies
from tts_common.audio import resample_clip
from tts_common.auth import ApiKeyCheck
from tts_common.clips import clip_response, wav_base64
from tts_common.connection import REQUEST_ID_HEADER, request_id
from tts_common.contract import AudioFormat, RequestError, check_body_size
from tts_common.metrics import ModelMetrics, Transport, UtteranceOutcome, outcome_of
from tts_common.slots import SlotGate
from tts_common.synthesis import SynthesisCore
from tts_common.truss_context import TrussContext
from tts_common.weights import checkpoint_dir

logger = logging.getLogger(__name__)


class Model:
    def __init__(self, **kwargs: Any) -> None:
        self._truss = truss = TrussContext.of(kwargs)
        self._settings = ParlerSettings.load(truss.metadata)
        limit = self._settings.max_batch_items

        class _BatchRequest(BatchRequest):
            max_items: ClassVar[int] = limit

        self._batch_model = _BatchRequest
        # One generate() at a time: a batch already fills the accelerator.
        serving = truss.serving
        self._core = SynthesisCore(
            serving, ModelMetrics(truss.model_name), SlotGate(1, serving.queue_timeout_s)
        )
        self._metrics = self._core.metrics
        self._max_body_bytes = serving.max_body_bytes
        self._generator: ParlerGenerator | None = None
        self._auth = ApiKeyCheck(truss.api_key)

    def load(self) -> None:
        checkpoint = checkpoint_dir(self._settings.model_dir, self._truss.weights_dir, self._truss.lazy_data)
        generator = ParlerGenerator(checkpoint, self._settings)
        generator.generate([Job("Warm up.", "A calm voice with very clear audio.", 0)])
        self._generator = generator

    async def predict(self, request: Request) -> Response:
        response = await self._answer(request)
        self._metrics.request(outcome_of(response.status_code), response.status_code)
        return response

    async def _answer(self, request: Request) -> Response:
        generator = self._generator
        assert generator is not None
        rid = request_id(request)
        if not self._auth.accepts(request.headers, rid):
            return replies.unauthorized(rid)
        try:
            body = await request.body()
            check_body_size(body, self._max_body_bytes)
            req = parse_parler_request(body, self._batch_model)
        except RequestError as exc:
            return replies.request_error(exc, rid)
        items = req.items if isinstance(req, BatchRequest) else [req]
        jobs = [
            Job(item.text, item.description, item.seed if item.seed is not None else secrets.randbits(63))
            for item in items
        ]
        rate = req.sample_rate or generator.sampling_rate
        lease = await replies.admit(self._core, request, rid)
        if isinstance(lease, Response):
            return lease
        self._metrics.batch_items.observe(len(jobs))
        try:
            clips = await asyncio.to_thread(generator.generate, jobs)
        except Exception:  # reported, never a partial answer
            logger.exception("[%s] generation failed", rid)
            self._metrics.utterance(Transport.http, UtteranceOutcome.error)
            return replies.internal_error("synthesis failed", rid)
        finally:
            lease.release()
        self._metrics.utterance(Transport.http, UtteranceOutcome.ok)

        audio = [resample_clip(clip.audio, generator.sampling_rate, rate) for clip in clips]
        self._metrics.audio(Transport.http, sum(len(samples) for samples in audio) / rate)
        if isinstance(req, SingleRequest) and req.format != "json":
            return clip_response(
                audio[0],
                rate,
                AudioFormat(req.format),
                headers={
                    "X-Seed": str(jobs[0].seed),
                    "X-Codes-Sha256": clips[0].codes_sha256,
                    REQUEST_ID_HEADER: rid,
                    "X-Duration-S": f"{len(audio[0]) / rate:.6f}",
                },
            )
        results = [
            {
                "audio": wav_base64(samples, rate),  # base64 of a complete PCM16 WAV
                "sample_rate": rate,
                "duration_s": len(samples) / rate,
                "seed": job.seed,
                "codes_sha256": clip.codes_sha256,
            }
            for samples, job, clip in zip(audio, jobs, clips, strict=True)
        ]
        return JSONResponse(
            results[0] if isinstance(req, SingleRequest) else {"items": results},
            headers={REQUEST_ID_HEADER: rid},
        )
