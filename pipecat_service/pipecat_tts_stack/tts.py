"""Pipecat TTS over the realtime WebSocket of a *-realtime Truss (docs/protocol.md).

One socket a service, one turn at a time, as the protocol has it: the LLM's text
goes out as it comes (`input.text`, token by token: the server finds the
sentences and starts each at once), the end of the turn is an `input.done`, and
the server answers each unit with `audio.start`, binary PCM at the pipeline's
rate, `audio.done` (with word times when asked), then `session.done`. Word times
are per unit; the service adds the audio of the turn's earlier units, so
Pipecat gets times from the start of the turn.

Interruption: the protocol's barge-in is closing the socket (the server stops
the synthesis within one chunk and frees its slot), so an interrupted turn
reconnects (Pipecat's InterruptibleTTSService), and the next turn speaks on a
fresh session. A dropped connection reconnects with backoff (WebsocketService).
Between turns a keepalive (an empty `input.done`) keeps the session within the
server's idle timeout.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

from loguru import logger
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame, TTSStoppedFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import InterruptibleTTSService, TextAggregationMode
from pipecat.utils.tracing.service_decorators import traced_tts
from websockets.protocol import State

# The server closes a session that hears nothing for TTS_WS_IDLE_TIMEOUT_S (30 s).
KEEPALIVE_S = 15.0


@dataclass
class TrussRealtimeTTSSettings(TTSSettings):
    """voice: a voice of the Truss (None: its default); language: what it speaks
    (None: "Auto")."""


class TrussRealtimeTTSService(InterruptibleTTSService):
    """Speaks through a *-realtime Truss (piper-realtime, xtts-realtime).

    Args:
        url: the Truss's WebSocket, `ws://127.0.0.1:8080/v1/websocket` locally, or
            `wss://model-<id>.api.baseten.co/environments/production/websocket`.
        api_key: sent as `Authorization: Api-Key <key>` (Baseten's key, or a
            self-hosted Truss's `tts_api_key`).
        word_timestamps: ask for word times and emit the spoken text word by word
            as it plays (piper has exact ones; XTTS has none: set False, and the
            text goes out as Pipecat's other services send it).
        extra: model fields for `session.config` (piper: `speed`; XTTS: `temperature`, ...).
        text_aggregation_mode: TOKEN by default: the server splits sentences itself,
            and starts a turn's first one at a clause break.
    """

    Settings = TrussRealtimeTTSSettings
    _settings: TrussRealtimeTTSSettings

    def __init__(
        self,
        *,
        url: str,
        api_key: str | None = None,
        word_timestamps: bool = True,
        extra: Mapping[str, Any] | None = None,
        settings: TrussRealtimeTTSSettings | None = None,
        text_aggregation_mode: TextAggregationMode = TextAggregationMode.TOKEN,
        **kwargs: Any,
    ):
        stored = TrussRealtimeTTSSettings(model=None, voice=None, language=None)
        if settings is not None:
            stored.apply_update(settings)
        super().__init__(
            text_aggregation_mode=text_aggregation_mode,
            push_text_frames=not word_timestamps,
            push_start_frame=True,
            settings=stored,
            **kwargs,
        )
        self._url = url
        self._headers = {"Authorization": f"Api-Key {api_key}"} if api_key else {}
        self._word_timestamps = word_timestamps
        self._extra = dict(extra or {})
        self._turn_offset_s = 0.0  # audio of the turn's earlier units
        self._receive_task: Any = None

    def can_generate_metrics(self) -> bool:
        return True

    def _session_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "type": "session.config",
            "sample_rate": self.sample_rate,
            "language": self._settings.language or "Auto",
            "timestamp_type": "word" if self._word_timestamps else "none",
        }
        if self._settings.voice:
            config["voice"] = self._settings.voice
        return {**config, **self._extra}

    async def start(self, frame: Any) -> None:
        await super().start(frame)
        await self._connect()

    # TTSService narrows AIService's argument type itself, as here.
    async def _update_settings(self, delta: TTSSettings) -> dict[str, Any]:  # type: ignore[override]
        """A new voice or language is a new session.config, sent between turns."""
        changed: dict[str, Any] = await super()._update_settings(delta)
        if changed and self._websocket is not None and self._websocket.state is State.OPEN:
            await self._websocket.send(json.dumps(self._session_config()))
        return changed

    async def _connect(self) -> None:
        await super()._connect()
        await self._connect_websocket()
        # A receive task that ended with the last socket (the server closed it) is replaced.
        if self._websocket is not None and (self._receive_task is None or self._receive_task.done()):
            self._receive_task = self.create_task(self._receive_task_handler(self._report_error))
        self._create_keepalive_task(KEEPALIVE_S)

    async def _disconnect(self) -> None:
        await super()._disconnect()
        await self._cancel_keepalive_task()
        if self._receive_task:
            await self.cancel_task(self._receive_task)
            self._receive_task = None
        await self._disconnect_websocket()

    async def _connect_websocket(self) -> None:
        try:
            if self._websocket is not None and self._websocket.state is State.OPEN:
                return
            self._websocket = await self._websocket_connect(self._url, additional_headers=self._headers)
            self._turn_offset_s = 0.0
            await self._websocket.send(json.dumps(self._session_config()))
            await self._call_event_handler("on_connected")
        except Exception as e:
            await self.push_error(error_msg=f"cannot connect to {self._url}: {e}", exception=e)
            self._websocket = None
            await self._call_event_handler("on_connection_error", f"{e}")

    async def _disconnect_websocket(self) -> None:
        try:
            await self.stop_all_metrics()
            if self._websocket is not None:
                await self._websocket.close()  # a barge-in when a turn is in flight
        except Exception as e:
            await self.push_error(error_msg=f"error closing the socket: {e}", exception=e)
        finally:
            self._websocket = None
            await self._call_event_handler("on_disconnected")

    def _is_keepalive_ready(self) -> bool:
        # An input.done in a turn would flush its text: only between turns.
        return super()._is_keepalive_ready() and self.get_active_audio_context_id() is None

    async def _send_keepalive(self) -> None:
        assert self._websocket is not None
        await self._websocket.send(json.dumps({"type": "input.done"}))

    async def flush_audio(self, context_id: str | None = None) -> None:
        """The end of the turn's text: the server speaks what it holds."""
        flush_id = context_id or self.get_active_audio_context_id()
        if self._websocket is not None and flush_id is not None:
            await self._websocket.send(json.dumps({"type": "input.done"}))

    async def _receive_messages(self) -> None:
        assert self._websocket is not None
        async for message in self._websocket:
            context_id = self.get_active_audio_context_id()
            if isinstance(message, bytes):
                if context_id is not None:
                    await self.stop_ttfb_metrics()
                    frame = TTSAudioRawFrame(message, self.sample_rate, 1, context_id=context_id)
                    await self.append_to_audio_context(context_id, frame)
                continue
            await self._handle_event(json.loads(message), context_id)

    async def _handle_event(self, event: dict[str, Any], context_id: str | None) -> None:
        kind = event.get("type")
        if kind == "audio.done" and context_id is not None:
            alignment = (event.get("timestamp_info") or {}).get("word_alignment") or {}
            words = alignment.get("words") or []
            starts = alignment.get("word_start_times_seconds") or []
            if words:
                times = [
                    (word, self._turn_offset_s + start) for word, start in zip(words, starts, strict=True)
                ]
                await self.add_word_timestamps(times, context_id)
            self._turn_offset_s += float(event.get("audio_seconds") or 0.0)
        elif kind == "session.done" and context_id is not None:
            await self.stop_ttfb_metrics()
            await self.append_to_audio_context(context_id, TTSStoppedFrame(context_id=context_id))
            await self.remove_audio_context(context_id)
            self._turn_offset_s = 0.0
        elif kind == "error" and context_id is None:
            # Between turns: a session the server closed as idle; the next turn reconnects.
            logger.info(f"{self}: the TTS server says: {event.get('message')}")
        elif kind == "error":
            logger.warning(f"{self}: the TTS server says: {event.get('message')}")
            await self.push_error(error_msg=f"TTS server error: {event.get('message')}")

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Sends the text as it comes; the audio arrives on the receive task."""
        try:
            if self._websocket is None or self._websocket.state is not State.OPEN:
                await self._connect()
            assert self._websocket is not None
            await self._websocket.send(json.dumps({"type": "input.text", "text": text}))
            await self.start_tts_usage_metrics(text)
        except Exception as e:
            yield ErrorFrame(error=f"sending text failed: {e}")
            yield TTSStoppedFrame(context_id=context_id)
            await self._disconnect()
            await self._connect()
            return
        yield None
