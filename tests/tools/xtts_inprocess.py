"""Reference output: in-process XTTS streaming, no server, no wrapper.

Run with the xtts-streaming environment's python:
    python tests/tools/xtts_inprocess.py CHECKPOINT_DIR VOICE SEED TEXT OUT.pcm [--decoder incremental]
Loads the checkpoint the way production does, takes the voice's latents from
speakers_xtts.pth, seeds torch, and streams as a request with only text, voice and
seed is served: with the stock decoder, raw `Xtts.inference_stream`; with the
incremental one (the Truss's default), `inference_stream_incremental`. Writes the
chunks as 16-bit PCM, one after the other, with the contract's float-to-PCM
conversion, and prints chunk sizes. xtts_decoder_check.py and bench/xtts_streaming.py
load and stream with the functions here too.
"""

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from TTS.tts.configs.xtts_config import XttsConfig
from TTS.tts.models.xtts import Xtts
from xtts_reference import CHUNK

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "packages"))
from tts_common.audio import float_to_pcm16  # noqa: E402
from xtts_engine.streaming_decode import inference_stream_incremental  # noqa: E402


def load(checkpoint: str) -> Xtts:
    config = XttsConfig()
    config.load_json(str(Path(checkpoint) / "config.json"))
    model = Xtts(config)
    model.load_checkpoint(config, checkpoint_dir=checkpoint, use_deepspeed=False, eval=True)
    return model


def gpt_kwargs(model: Xtts) -> dict[str, Any]:
    """The config's sampling settings: what a request that sets none of them gets."""
    c = model.config
    return dict(
        temperature=c.temperature,
        length_penalty=c.length_penalty,
        repetition_penalty=c.repetition_penalty,
        top_k=c.top_k,
        top_p=c.top_p,
    )


def default_kwargs(model: Xtts) -> dict[str, Any]:
    """The stream's arguments for a request that sets only text and voice (the engine
    splits sentences itself)."""
    return dict(stream_chunk_size=CHUNK, speed=1.0, enable_text_splitting=False, **gpt_kwargs(model))


def stream_of(model: Xtts, decoder: str) -> Callable[..., Iterator[torch.Tensor]]:
    """The generator XTTS_STREAM_DECODER=`decoder` streams with."""
    return model.inference_stream if decoder == "stock" else partial(inference_stream_incremental, model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("checkpoint", "voice", "seed", "text", "out"):
        parser.add_argument(name)
    parser.add_argument("--decoder", choices=("stock", "incremental"), default="stock")
    args = parser.parse_args()
    model = load(args.checkpoint)
    speaker = model.speaker_manager.speakers[args.voice]
    voice = (speaker["gpt_cond_latent"], speaker["speaker_embedding"])
    torch.manual_seed(int(args.seed))
    sizes = []
    with open(args.out, "wb") as f, torch.inference_mode():
        for chunk in stream_of(model, args.decoder)(args.text, "en", *voice, **default_kwargs(model)):
            sizes.append(len(chunk))
            f.write(float_to_pcm16(chunk.float().cpu().numpy()))
    print(json.dumps({"chunk_samples": sizes}))


if __name__ == "__main__":
    main()
