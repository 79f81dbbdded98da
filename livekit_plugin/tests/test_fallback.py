"""Failover with LiveKit's own `tts.FallbackAdapter` over two custom_tts instances: the
primary is down (nothing listens on its port), the secondary (the real piper-streaming
server) speaks, and the adapter reports the primary unavailable."""

from __future__ import annotations

import asyncio

import pytest
from conftest import free_port
from helpers import collect, feed

from livekit.agents import APIConnectOptions, tts
from livekit.plugins import custom_tts

TEXT = "The primary is down, so the secondary answers. Nobody notices."
# The adapter retries each instance max_retry_per_tts times; keep those retries fast.
CONN = APIConnectOptions(max_retry=0, retry_interval=0.05, timeout=5.0)


@pytest.mark.parametrize("scheme", ["http", "ws"])
async def test_the_secondary_speaks_when_the_primary_is_down(piper, http_session, scheme):
    primary = custom_tts.TTS(
        api_url=f"{scheme}://127.0.0.1:{free_port()}", http_session=http_session, model_name="primary"
    )
    secondary = custom_tts.TTS(api_url=piper.base_url, http_session=http_session, model_name="secondary")
    adapter = tts.FallbackAdapter([primary, secondary], max_retry_per_tts=1)
    changes: list[tts.AvailabilityChangedEvent] = []
    adapter.on("tts_availability_changed", changes.append)
    try:
        spoken = await collect(adapter.synthesize(TEXT, conn_options=CONN))
        assert spoken.error is None
        assert 2.0 < spoken.duration < 10.0  # both sentences, from piper
        assert [(c.tts, c.available) for c in changes] == [(primary, False)]

        # A streamed reply goes to the secondary too, while the primary stays down.
        stream = adapter.stream(conn_options=CONN)
        feeding = asyncio.create_task(feed(stream, TEXT, delay=0.005))
        streamed = await collect(stream)
        await feeding
        assert streamed.error is None
        assert 2.0 < streamed.duration < 10.0
        assert {(ev.frame.sample_rate, ev.frame.num_channels) for ev in streamed.events} == {(24000, 1)}
        assert [(c.tts, c.available) for c in changes] == [(primary, False)]
    finally:
        await adapter.aclose()
        await primary.aclose()
        await secondary.aclose()
