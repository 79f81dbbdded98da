"""Reference output: raw in-process `Xtts.inference_stream`, no server, no wrapper.

Run with the xtts-streaming environment's python:
    python tests/tools/xtts_inprocess.py CHECKPOINT_DIR VOICE SEED TEXT OUT.pcm
Loads the checkpoint the way production does, takes the voice's latents from
speakers_xtts.pth, seeds torch, and writes the chunks as 16-bit PCM, one after
the other, with the contract's float-to-PCM conversion. Prints chunk sizes.
"""

import json
import sys
import time
from pathlib import Path

import torch
from TTS.tts.configs.xtts_config import XttsConfig
from TTS.tts.models.xtts import Xtts

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "packages"))
from tts_common.audio import float_to_pcm16  # noqa: E402


def main() -> None:
    checkpoint, voice, seed, text, out = sys.argv[1:6]
    config = XttsConfig()
    config.load_json(str(Path(checkpoint) / "config.json"))
    model = Xtts(config)
    model.load_checkpoint(config, checkpoint_dir=checkpoint, use_deepspeed=False, eval=True)
    speaker = model.speaker_manager.speakers[voice]
    torch.manual_seed(int(seed))
    sizes, times = [], []
    start = time.perf_counter()
    with open(out, "wb") as f, torch.inference_mode():
        for chunk in model.inference_stream(
            text,
            "en",
            speaker["gpt_cond_latent"],
            speaker["speaker_embedding"],
            stream_chunk_size=20,
            temperature=config.temperature,
            length_penalty=config.length_penalty,
            repetition_penalty=config.repetition_penalty,
            top_k=config.top_k,
            top_p=config.top_p,
            speed=1.0,
            enable_text_splitting=False,
        ):
            times.append(time.perf_counter() - start)
            sizes.append(len(chunk))
            f.write(float_to_pcm16(chunk.float().cpu().numpy()))
    print(json.dumps({"chunk_samples": sizes, "chunk_times": times}))


if __name__ == "__main__":
    main()
