"""Audio for and assertions about audio bytes, shared by the tests and bench."""

import base64
import io
import wave

import numpy as np


def pcm16(data: bytes) -> np.ndarray:
    assert len(data) % 2 == 0, "PCM16 body has an odd number of bytes"
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """`test` against `reference`, in dB (inf where they are equal)."""
    reference, test = np.asarray(reference, dtype=np.float64), np.asarray(test, dtype=np.float64)
    noise = float(np.sum((reference - test) ** 2))
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(reference**2) / noise))


def assert_speech_like(samples: np.ndarray, rate: int, words: int) -> None:
    """Not silence, and a duration a human voice could take for `words` words."""
    seconds = len(samples) / rate
    rms = float(np.sqrt(np.mean(samples**2)))
    assert rms > 0.01, f"audio is (near) silence: rms={rms:.4f}"
    assert 0.15 * words < seconds < 1.0 * words + 1.0, f"{seconds:.2f} s is implausible for {words} words"


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return 0.3 * np.sin(2 * np.pi * 150 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))


def wav_b64(samples: np.ndarray, rate: int) -> str:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return base64.b64encode(buf.getvalue()).decode()


def ffprobe(data: bytes) -> dict[str, str]:
    """What ffprobe reads of a stream's bytes: codec_name and sample_rate."""
    import subprocess

    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate",
            "-of",
            "default=nw=1",
            "-",
        ],
        input=data,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return dict(line.split("=", 1) for line in out.split())


def decode(data: bytes, rate: int) -> np.ndarray:
    """A compressed stream decoded by ffmpeg to mono float samples at `rate`."""
    import subprocess

    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "-", "-f", "s16le", "-ac", "1", "-ar", str(rate), "-"],
        input=data,
        capture_output=True,
        check=True,
    ).stdout
    return pcm16(pcm)
