import logging

logger = logging.getLogger("livekit.plugins.custom_tts")


def unit_started(words: int | None, offset_s: float) -> None:
    """A unit's first audio went to the emitter: a sentence over HTTP, a unit the server
    chose over a WebSocket (`words`: its word count, when known), `offset_s` seconds into
    the segment's audio. bench/realtime_feed.py reads these records to find each sentence
    in the audio it times."""
    logger.debug(
        "unit of %s words starts %.3f s into the segment",
        words,
        offset_s,
        extra={"unit_words": words, "unit_offset_s": offset_s},
    )
