"""Wire encodings: PCM16, mu-law against the standard library, streaming resampling."""

import io
import struct
import warnings
import wave

import numpy as np
import pytest

from tts_common.audio import StreamEncoder, mulaw_to_pcm16, pcm16_to_mulaw, wav_header
from tts_common.contract import AudioFormat

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")  # the reference G.711 codec (Python < 3.13)


def test_mulaw_matches_the_reference_codec_for_every_sample():
    everything = np.arange(-32768, 32768, dtype=np.int16)
    assert pcm16_to_mulaw(everything) == audioop.lin2ulaw(everything.tobytes(), 2)
    codes = bytes(range(256))
    expected = np.frombuffer(audioop.ulaw2lin(codes, 2), dtype=np.int16)
    assert np.array_equal(mulaw_to_pcm16(codes), expected)


def test_streaming_wav_header_parses_with_the_standard_library():
    pcm = (np.sin(np.arange(2400) / 5) * 8000).astype("<i2").tobytes()
    reader = wave.open(io.BytesIO(wav_header(24000) + pcm))
    assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 24000)
    assert reader.readframes(10_000) == pcm
    (riff_size,) = struct.unpack("<I", wav_header(24000)[4:8])
    assert riff_size == 0xFFFFFFFF  # unknown length: the body is streamed


@pytest.mark.parametrize("out_rate", [8000, 16000, 24000, 44100, 48000])
def test_chunked_resampling_equals_one_shot(out_rate):
    """Chunk boundaries leave no clicks or gaps: streamed == resampled in one go."""
    rng = np.random.default_rng(0)
    t = np.arange(22050 * 2) / 22050
    signal = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    cuts = np.sort(rng.choice(len(signal), size=30, replace=False))
    streamed = StreamEncoder(22050, out_rate, AudioFormat.pcm)
    body = b"".join(streamed.encode(c) for c in np.split(signal, cuts)) + streamed.finish()
    whole = StreamEncoder(22050, out_rate, AudioFormat.pcm)
    reference = whole.encode(signal) + whole.finish()
    a = np.frombuffer(body, "<i2").astype(int)
    b = np.frombuffer(reference, "<i2").astype(int)
    assert abs(len(a) - len(signal) * out_rate / 22050) <= 2
    assert len(a) == len(b)
    assert np.max(np.abs(a - b)) <= 2  # rounding only
    # No discontinuity anywhere: the largest sample-to-sample step of a 220 Hz
    # sine is far below what a click or a gap would produce.
    max_sine_step = 0.5 * 32767 * 2 * np.pi * 220 / out_rate
    assert np.max(np.abs(np.diff(a))) < 1.2 * max_sine_step + 50


def test_wav_format_prefixes_the_header_once():
    enc = StreamEncoder(24000, 24000, AudioFormat.wav)
    first, second = enc.encode(np.zeros(10)), enc.encode(np.zeros(10))
    assert first[:4] == b"RIFF" and len(first) == 44 + 20
    assert len(second) == 20
