"""Pipecat services for the self-hosted TTS Trusses: `TrussRealtimeTTSService`
speaks the *-realtime Trusses' WebSocket protocol (text in as the LLM writes it,
audio and word timestamps out); the HTTP Trusses need no package of ours:
Pipecat's own `OpenAITTSService(base_url=...)` speaks to piper-openai and xtts-openai."""

from .tts import TrussRealtimeTTSService

__all__ = ["TrussRealtimeTTSService"]
__version__ = "0.1.0"
