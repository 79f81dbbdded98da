"""Synthesize one utterance with the plugin and save it as a WAV file.

    .venv/bin/python -m local_truss serve piper-streaming     # in another terminal
    .venv-agent/bin/python livekit_plugin/examples/basic_usage.py "Hello there." --out output.wav

CUSTOM_TTS_URL picks another server (a Baseten predict URL with BASETEN_API_KEY set).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

from livekit import rtc
from livekit.agents import APIError
from livekit.plugins import custom_tts

logger = logging.getLogger("basic_usage")


async def synthesize(text: str, out: str, url: str, voice: str | None) -> None:
    tts = custom_tts.TTS(api_url=url, options=custom_tts.TTSOptions(voice=voice, sample_rate=24000))
    frames: list[rtc.AudioFrame] = []
    started = time.perf_counter()
    try:
        async with tts.synthesize(text) as stream:
            async for ev in stream:
                if not frames:
                    logger.info("first audio after %.0f ms", 1000 * (time.perf_counter() - started))
                frames.append(ev.frame)
    finally:
        await tts.aclose()
    audio = rtc.combine_audio_frames(frames)
    with open(out, "wb") as f:
        f.write(audio.to_wav_bytes())
    logger.info("wrote %s: %.2f s of %d Hz audio", out, audio.duration, audio.sample_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="?", default="Hello from my own text to speech server.")
    parser.add_argument("--out", default="output.wav")
    parser.add_argument("--url", default=os.environ.get("CUSTOM_TTS_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--voice", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        asyncio.run(synthesize(args.text, args.out, args.url, args.voice))
    except APIError as e:
        logger.error("synthesis failed: %s", e)
        sys.exit(1)


if __name__ == "__main__":
    main()
