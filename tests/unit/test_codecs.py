"""Compressed streams (Opus/Ogg, MP3, FLAC, AAC): encoded chunk by chunk as audio is
made, and what ffmpeg decodes of them has the codec, rate and length of the PCM."""

import shutil

import numpy as np
import pytest
from audio_checks import decode, ffprobe

from tts_common.audio import StreamEncoder
from tts_common.codecs import CODECS
from tts_common.contract import AudioFormat, FieldError, StreamRequest, content_type

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffmpeg (ffprobe) is not installed")

RATE = 24000
FFPROBE_NAME = {"opus": "opus", "mp3": "mp3", "flac": "flac", "aac": "aac"}
# What a decoder adds at the start (no gapless header on a stream that cannot seek
# back): MP3's encoder delay and padding; AAC's priming frame.
DECODER_SLACK = {"opus": 0, "mp3": 1105 + 576, "flac": 0, "aac": 1024}


def _speechlike(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.mark.parametrize("fmt", sorted(CODECS))
def test_a_stream_decodes_to_its_pcm(fmt):
    encoder = StreamEncoder(22050, RATE, AudioFormat(fmt))  # resampled on the way, as piper's voice is
    pieces = [encoder.encode(chunk) for chunk in np.array_split(_speechlike(2.0, 22050), 37)]
    body = b"".join(pieces) + encoder.finish()
    probe = ffprobe(body)
    assert probe["codec_name"] == FFPROBE_NAME[fmt]
    # Opus decodes at 48 kHz whatever went in; the others at the rate given
    assert probe["sample_rate"] == ("48000" if fmt == "opus" else str(RATE))
    decoded = decode(body, RATE)
    frame = CODECS[fmt].frame_samples
    assert abs(len(decoded) - 2.0 * RATE) <= frame + DECODER_SLACK[fmt], len(decoded)
    assert float(np.sqrt(np.mean(decoded**2))) > 0.1  # the tone survived, not silence


@pytest.mark.parametrize("fmt", sorted(CODECS))
def test_bytes_come_out_within_a_frame_of_the_pcm(fmt):
    """Streamed, not held to the end: bytes appear once a codec frame's worth is in
    (FLAC's larger frames too), and keep coming as chunks go in."""
    encoder = StreamEncoder(RATE, RATE, AudioFormat(fmt))
    chunk = _speechlike(0.05)  # 1,200 samples, a piper-sized first chunk
    fed, first_at = 0, None
    out = []
    for _ in range(40):
        data = encoder.encode(chunk)
        fed += len(chunk)
        out.append(data)
        if data and first_at is None:
            first_at = fed
    assert first_at is not None and first_at <= CODECS[fmt].frame_samples + 2 * len(chunk)
    assert sum(1 for piece in out if piece) >= 10  # flushed as made, not at the end


def test_formats_refuse_rates_their_codec_cannot_take():
    with pytest.raises(ValueError) as err:
        StreamRequest.model_validate({"text": "Hi.", "format": "opus", "sample_rate": 22050})
    assert isinstance(err.value.errors()[0]["ctx"]["error"], FieldError)
    assert "opus takes 8000, 12000, 16000, 24000, 48000 Hz" in str(err.value)
    assert StreamRequest.model_validate({"text": "Hi.", "format": "mp3"}).output_rate == RATE


def test_content_types():
    assert content_type(AudioFormat.opus, RATE) == "audio/ogg; codecs=opus"
    assert content_type(AudioFormat.mp3, RATE) == "audio/mpeg"
    assert content_type(AudioFormat.flac, RATE) == "audio/flac"
    assert content_type(AudioFormat.aac, RATE) == "audio/aac"
