"""A complete voice agent whose voice is your own TTS server.

STT and LLM are LiveKit Inference models named by environment variables, as in
LiveKit's own examples; the TTS is this plugin pointed at a Truss.

    export LIVEKIT_URL=wss://<project>.livekit.cloud LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    export CUSTOM_TTS_URL=http://127.0.0.1:8080        # or a Baseten predict URL
    export BASETEN_API_KEY=...                         # only for Baseten
    .venv-agent/bin/python livekit_plugin/examples/voice_agent.py dev

Optional: STT_MODEL (default deepgram/nova-3:en), LLM_MODEL (default
openai/gpt-4.1-mini), CUSTOM_TTS_VOICE, CUSTOM_TTS_VOICE_DESCRIPTION (Parler).
TTS_PLUGIN=baseten speaks to a *-realtime Truss (a ws:// or wss:// CUSTOM_TTS_URL)
through LiveKit's own Baseten plugin instead of this one. CUSTOM_TTS_ALLOW_INSECURE=1
sends the key over plain ws:// or http:// to a host other than this machine, as inside
a cluster whose NetworkPolicy admits only the agents (deploy/kubernetes/agent).

The image for a cluster: livekit_plugin/examples/Dockerfile.
"""

from __future__ import annotations

import logging
import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli, tts
from livekit.plugins import custom_tts

logger = logging.getLogger("voice_agent")

DEFAULT_STT = "deepgram/nova-3:en"
DEFAULT_LLM = "openai/gpt-4.1-mini"


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions="You are a friendly voice assistant. Keep answers short and "
            "conversational, in plain sentences without markdown, lists or emojis.",
        )

    async def on_enter(self) -> None:
        self.session.generate_reply(instructions="Greet the user and offer your help.")


def build_tts() -> tts.TTS:
    url = os.environ.get("CUSTOM_TTS_URL", "http://127.0.0.1:8080")
    voice = os.environ.get("CUSTOM_TTS_VOICE") or None
    if os.environ.get("TTS_PLUGIN") == "baseten":
        from livekit.plugins import baseten  # livekit-plugins-baseten, in the image

        # The qwen3-tts WebSocket protocol, which the *-realtime Trusses speak.
        extra = {"voice": voice} if voice else {}
        return baseten.TTS(model="qwen3-tts", model_endpoint=url, **extra)
    return custom_tts.TTS(
        api_url=url,
        options=custom_tts.TTSOptions(
            voice=voice,
            voice_description=os.environ.get("CUSTOM_TTS_VOICE_DESCRIPTION") or None,
            sample_rate=24000,
        ),
        allow_insecure=os.environ.get("CUSTOM_TTS_ALLOW_INSECURE") == "1",
    )


def build_session() -> AgentSession:
    return AgentSession(
        stt=os.environ.get("STT_MODEL", DEFAULT_STT),
        llm=os.environ.get("LLM_MODEL", DEFAULT_LLM),
        tts=build_tts(),
    )


server = AgentServer()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    ctx.log_context_fields = {"room": ctx.room.name}
    session = build_session()
    await session.start(agent=Assistant(), room=ctx.room)
    logger.info("agent started in room %s", ctx.room.name)


if __name__ == "__main__":
    cli.run_app(server)
