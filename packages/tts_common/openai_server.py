"""The server of a Truss with `docker_server`: OpenAI's speech API for one engine.

Truss model classes serve only `predict`, `websocket` and the chat/completions
family, so the OpenAI-compatible Trusses run this server themselves
(config.yaml's `docker_server.start_command`). On Baseten, its nginx maps
`/v1/models/model` (readiness) and `/v1/models/model:predict` to the routes
config.yaml names, and forwards `/environments/production/sync/{route}` to
`/{route}`, so the OpenAI SDK's base URL there ends in `/sync/v1`. The server
answers truss's two routes itself too, so it serves the same way without that
proxy (the local runner, a plain container).

Routes: POST /v1/audio/speech; GET /v1/models, /v1/models/{id}, /v1/audio/voices;
GET /health/ready (200 once loaded and healthy), /health/live; GET /metrics.
The model loads on a thread after the server starts: until then readiness and
speech answer 503.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .connection import request_id
from .openai_speech import REPLIES, OpenAISpeech
from .settings import ServerSettings, truss_secrets
from .truss_context import TrussContext

logger = logging.getLogger(__name__)

Build = Callable[[TrussContext], tuple[OpenAISpeech, Callable[[], None]]]


def app(speech: OpenAISpeech, load: Callable[[], None]) -> Starlette:
    """The Starlette app; `load()` runs on a thread once it starts."""
    loaded = threading.Event()

    def load_then_ready() -> None:
        try:
            load()
        except BaseException:
            logger.exception("loading the model failed: exiting")
            logging.shutdown()
            os._exit(1)  # the process's end is the signal: supervisord stops the container
        loaded.set()
        logger.info("model loaded: ready")

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        threading.Thread(target=load_then_ready, name="model-load", daemon=True).start()
        yield

    async def ready(request: Request) -> Response:
        if not loaded.is_set():
            return PlainTextResponse("loading", status_code=503)
        if not speech.core.healthy():
            return PlainTextResponse("a synthesis is stalled", status_code=503)
        return PlainTextResponse("ok")

    async def live(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def synthesize(request: Request) -> Response:
        if not loaded.is_set():
            return REPLIES.busy("the model is still loading", request_id(request))
        return await speech.speech(request)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/v1/audio/speech", synthesize, methods=["POST"]),
            Route("/v1/models/model:predict", synthesize, methods=["POST"]),  # truss's predict route
            Route("/v1/models/model", ready),  # truss's readiness route
            Route("/v1/models", speech.models),
            Route("/v1/models/{model_id}", speech.model),
            Route("/v1/audio/voices", speech.voices),
            Route("/health/ready", ready),
            Route("/health/live", live),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )


def truss_context(app_dir: Path) -> TrussContext:
    """What truss would hand a Model class, read from the image's /app."""
    config: dict[str, Any] = yaml.safe_load((app_dir / "config.yaml").read_text())
    secrets = truss_secrets(config.get("secrets") or {})
    return TrussContext.of({"config": config, "secrets": secrets, "data_dir": app_dir / "data"})


def serve(app_dir: Path, build: Build) -> None:
    """Build the surface from the Truss at `app_dir` and serve it until stopped."""
    import uvicorn  # the server's own dependency, not the library's

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    truss = truss_context(app_dir)
    settings = ServerSettings.from_env()
    port = settings.port or int(truss.config["docker_server"]["server_port"])
    speech, load = build(truss)
    uvicorn.run(app(speech, load), host=settings.host, port=port, log_level="info", ws="none")
