"""Equivalence check of the incremental XTTS decoder (packages/xtts_engine/streaming_decode.py).

Run with the xtts-streaming environment's python on the tiny checkpoint
(tests/fixtures/tiny_xtts.py: tiny GPT, real XTTS-v2 HiFi-GAN decoder):

    python tests/tools/xtts_decoder_check.py CHECKPOINT_DIR [--full]
        prints one JSON report (last line of stdout)

The report: for several sentences (seeds, lengths, speeds, chunk sizes), the GPT latents
are recorded once, then decoded three ways from those same latents:
  (a) one shot: ``hifigan_decoder`` on all latents (after inference_stream's speed interpolation);
  (b) stock: inference_stream's own loop (re-decode all latents per chunk, coqui's
      ``Xtts.handle_chunks`` cross-fade);
  (c) ours: ``IncrementalDecoder`` on the ``decode_points`` schedule;
with SNR against (a), lengths, per-chunk decode times and seam metrics. Also: the
decoder's receptive field (perturbation, and from the architecture), an L/R margin
sweep, and end to end runs showing (b) and (c) are exactly what ``Xtts.inference_stream``
and ``inference_stream_incremental`` stream for the same seed.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from TTS.tts.models.xtts import Xtts
from xtts_inprocess import gpt_kwargs, load
from xtts_reference import TEXT, VOICE

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "packages")]
import xtts_engine.streaming_decode as sd  # noqa: E402

LONG_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."
SNR_CAP_DB = 200.0


def record_latents(model: Xtts, text: str, voice, seed: int, max_tokens=None) -> torch.Tensor:
    """The GPT latents inference_stream would decode for this seed: same text handling, same call."""
    kw = gpt_kwargs(model)
    torch.manual_seed(seed)
    sent = text.strip().lower()
    tokens = torch.IntTensor(model.tokenizer.encode(sent, lang="en")).unsqueeze(0)
    fake_inputs = model.gpt.compute_embeddings(voice[0], tokens)
    gen = model.gpt.get_generator(
        fake_inputs=fake_inputs,
        top_k=kw["top_k"],
        top_p=kw["top_p"],
        temperature=kw["temperature"],
        do_sample=True,
        num_beams=1,
        num_return_sequences=1,
        length_penalty=float(kw["length_penalty"]),
        repetition_penalty=float(kw["repetition_penalty"]),
        output_attentions=False,
        output_hidden_states=True,
        return_dict_in_generate=True,
    )
    latents = []
    for _, latent in gen:
        latents.append(latent)
        if max_tokens is not None and len(latents) == max_tokens:
            break
    return torch.cat(latents, dim=0)  # [T, C]


def speed_interp(latents: torch.Tensor, length_scale: float) -> torch.Tensor:
    """[1, T, C] -> [1, T', C] exactly as inference_stream does."""
    if length_scale != 1.0:
        latents = F.interpolate(latents.transpose(1, 2), scale_factor=length_scale, mode="linear").transpose(
            1, 2
        )
    return latents


def one_shot(model: Xtts, latents: torch.Tensor, g, length_scale: float) -> torch.Tensor:
    return model.hifigan_decoder(speed_interp(latents[None], length_scale), g=g).squeeze()


def stock_stream(model: Xtts, latents: torch.Tensor, g, chunk: int, length_scale: float):
    """inference_stream's decode loop, verbatim, fed recorded latents."""
    chunks, times, wav_gen_prev, wav_overlap = [], [], None, None
    total = latents.shape[0]
    points = list(range(chunk, total + 1, chunk)) + [total]  # every `chunk` tokens, then at the end
    for i, n in enumerate(points):
        is_end = i == len(points) - 1
        start = time.perf_counter()
        gpt_latents = speed_interp(latents[None, :n], length_scale)
        wav_gen = model.hifigan_decoder(gpt_latents, g=g)
        wav_chunk, wav_gen_prev, wav_overlap = model.handle_chunks(
            wav_gen.squeeze(), wav_gen_prev, wav_overlap, 1024, is_final=is_end
        )
        times.append((time.perf_counter() - start) * 1000)
        chunks.append(wav_chunk.clone())
    return chunks, times


def ours_stream(
    model: Xtts,
    latents: torch.Tensor,
    g,
    chunk: int,
    first,
    length_scale: float,
    left=sd.LEFT_CONTEXT_FRAMES,
    right=sd.RIGHT_MARGIN_FRAMES,
):
    """IncrementalDecoder on inference_stream_incremental's schedule, fed recorded latents."""
    decoder = sd.IncrementalDecoder(model.hifigan_decoder, g, length_scale, left, right)
    total = latents.shape[0]
    points = []
    for p in sd.decode_points(chunk, first):
        if p > total:
            break
        points.append(p)
    chunks, times, done = [], [], 0
    for n, final in [(p, False) for p in points] + [(total, True)]:
        start = time.perf_counter()
        decoder.push(latents[done:n])
        done = n
        wav = decoder.decode(final=final)
        times.append((time.perf_counter() - start) * 1000)
        if wav.numel():
            chunks.append(wav.clone())
    return chunks, times, points


def snr_db(ref: torch.Tensor, y: torch.Tensor) -> float:
    n = min(len(ref), len(y))
    ref, y = ref[:n].double(), y[:n].double()
    err = float(((y - ref) ** 2).sum())
    if err == 0.0:
        return SNR_CAP_DB
    return min(SNR_CAP_DB, 10 * math.log10(float((ref**2).sum()) / err))


def seam_metrics(chunks, ref: torch.Tensor) -> dict:
    y = torch.cat(chunks).double()
    ref = ref.double()
    bounds = [int(b) for b in torch.cumsum(torch.tensor([len(c) for c in chunks]), 0)[:-1] if 0 < b < len(y)]
    jumps = (y[1:] - y[:-1]).abs()
    ref_jumps = (ref[1:] - ref[:-1]).abs()
    n = min(len(y), len(ref))
    err = (y[:n] - ref[:n]).abs()
    near = torch.zeros(n, dtype=torch.bool)
    for b in bounds:
        near[max(0, b - 1024) : b + 1024] = True
    return {
        "boundaries": bounds,
        "boundary_jump_max": max((float(jumps[b - 1]) for b in bounds), default=0.0),
        "signal_jump_max": float(ref_jumps.max()) if len(ref_jumps) else 0.0,
        "boundary_jump_dev_max": max(
            (abs(float(jumps[b - 1]) - float(ref_jumps[b - 1])) for b in bounds if b < len(ref)), default=0.0
        ),
        "err_near_boundaries_max": float(err[near].max()) if near.any() else 0.0,
        "err_elsewhere_max": float(err[~near].max()) if (~near).any() else 0.0,
    }


def per_chunk_err(chunks, ref: torch.Tensor) -> float:
    """Max |chunk - one-shot slice at the chunk's offset|: chunks are in order, back to back."""
    worst, offset = 0.0, 0
    for c in chunks:
        worst = max(worst, float((c - ref[offset : offset + len(c)]).abs().max()) if len(c) else 0.0)
        offset += len(c)
    return worst


def summary(chunks, times, ref) -> dict:
    y = torch.cat(chunks) if chunks else torch.zeros(0)
    return {
        "length": len(y),
        "chunks": len(chunks),
        "chunk_samples": [len(c) for c in chunks],
        "snr_db": snr_db(ref, y),
        "max_abs_err": float((y[: len(ref)] - ref[: len(y)]).abs().max()) if len(y) else 0.0,
        "per_chunk_max_err": per_chunk_err(chunks, ref) if len(y) <= len(ref) else None,
        "decode_ms": [round(t, 1) for t in times],
        "seams": seam_metrics(chunks, ref),
    }


# ---- receptive field --------------------------------------------------------


def _conv_back(conv, lo, hi):
    k, d, pad = conv.kernel_size[0], conv.dilation[0], conv.padding[0]
    return lo - pad, hi - pad + d * (k - 1)


def _tconv_back(conv, lo, hi):
    k, u, pad = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    return math.ceil((lo + pad - k + 1) / u), math.floor((hi + pad) / u)


def architecture_field(gen, block: int = 1000) -> dict:
    """Generator input frames output block `block` (hop samples) depends on, from the layer shapes."""
    hop = math.prod(int(up.stride[0]) for up in gen.ups)
    lo, hi = _conv_back(gen.conv_post, block * hop, block * hop + hop - 1)
    for i in reversed(range(gen.num_upsamples)):
        spans = []
        for rb in gen.resblocks[i * gen.num_kernels : (i + 1) * gen.num_kernels]:
            a, b = lo, hi
            for c1, c2 in reversed(
                list(zip(rb.convs1, rb.convs2, strict=True))
            ):  # residual: union = the conv span
                a, b = _conv_back(c1, *_conv_back(c2, a, b))
            spans.append((a, b))
        lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
        lo, hi = _tconv_back(gen.ups[i], lo, hi)
    lo, hi = _conv_back(gen.conv_pre, lo, hi)
    return {"frames_left": block - lo, "frames_right": hi - block}


def measured_field(model: Xtts, g) -> dict:
    dec = model.hifigan_decoder
    gen = dec.waveform_decoder
    hop = math.prod(int(up.stride[0]) for up in gen.ups)
    torch.manual_seed(123)
    frames, f = 80, 40
    z = torch.randn(1, gen.conv_pre.in_channels, frames)
    base = gen(z, g=g)[0, 0]
    zp = z.clone()
    zp[..., f] += 1.0
    changed = ((gen(zp, g=g)[0, 0] - base) != 0).nonzero().flatten()
    first, last = int(changed.min()), int(changed.max())
    # frame f changes samples [first, last] -> output block J depends on frames J - left .. J + right
    out = {
        "generator_samples_before": f * hop - first,
        "generator_samples_after": last - (f * hop + hop - 1),
        "generator_frames_left": f - first // hop,  # block J needs frames down to J - left
        "generator_frames_right": last // hop - f,
        "hop": hop,
    }
    # Latent level (HifiDecoder.forward: x4 then x24000/22050 interpolation, then generator).
    T, t = 40, 20
    lat = torch.randn(1, T, gen.conv_pre.in_channels)
    base = dec(lat, g=g)[0, 0]
    lp = lat.clone()
    lp[:, t] += 1.0
    changed = ((dec(lp, g=g)[0, 0] - base) != 0).nonzero().flatten()
    per_latent = len(base) / T
    out.update(
        {
            "samples_per_latent": per_latent,
            "latent_affects_samples": [
                int(changed.min()) - round(t * per_latent),
                int(changed.max()) - round((t + 1) * per_latent),
            ],
            "latent_affects_latents": [
                round(int(changed.min()) / per_latent - t, 2),
                round(int(changed.max()) / per_latent - t - 1, 2),
            ],
        }
    )
    return out


# ---- main -------------------------------------------------------------------

CASES = [
    # name, seed, text, max tokens (None: until the GPT stops), speed, stream_chunk_size, first chunk tokens
    ("60 tokens", 0, TEXT, None, 1.0, 20, sd.FIRST_CHUNK_TOKENS),
    ("37 tokens, chunk 10", 1, LONG_TEXT, 37, 1.0, 10, sd.FIRST_CHUNK_TOKENS),
    ("33 tokens, speed 0.8", 2, TEXT, 33, 0.8, 20, sd.FIRST_CHUNK_TOKENS),
    ("41 tokens, speed 1.25", 3, LONG_TEXT, 41, 1.25, 20, sd.FIRST_CHUNK_TOKENS),
    ("9 tokens", 4, TEXT, 9, 1.0, 20, sd.FIRST_CHUNK_TOKENS),
    ("2 tokens", 5, TEXT, 2, 1.0, 20, sd.FIRST_CHUNK_TOKENS),
    ("60 tokens, stock schedule", 6, LONG_TEXT, None, 1.0, 20, None),
]
FULL_CASES = [
    ("120 latents (2 sentences' latents joined)", (0, 1), TEXT, None, 1.0, 20, sd.FIRST_CHUNK_TOKENS),
    ("60 tokens, chunk 5", 7, TEXT, None, 1.0, 5, sd.FIRST_CHUNK_TOKENS),
]
# speed in (0.5, 1): F.interpolate is the identity while int(T * 1/speed) == T, i.e. for
# T < speed / (1 - speed) tokens; the stretch is applied as asked once streaming has begun.
SPEED_NEAR_ONE = ("25 tokens, speed 0.97", 8, TEXT, 25, 0.97, 20, sd.FIRST_CHUNK_TOKENS)


def run_case(model, voice, case) -> dict:
    name, seed, text, max_tokens, speed, chunk, first = case
    if isinstance(seed, tuple):
        latents = torch.cat([record_latents(model, text, voice, s, max_tokens) for s in seed])
    else:
        latents = record_latents(model, text, voice, seed, max_tokens)
    ls = 1.0 / max(speed, 0.05)
    g = voice[1]
    start = time.perf_counter()
    ref = one_shot(model, latents, g, ls)
    full_ms = (time.perf_counter() - start) * 1000
    stock_chunks, stock_times = stock_stream(model, latents, g, chunk, ls)
    our_chunks, our_times, points = ours_stream(model, latents, g, chunk, first, ls)
    return {
        "name": name,
        "seed": seed,
        "tokens": latents.shape[0],
        "speed": speed,
        "chunk_size": chunk,
        "first_chunk_tokens": first,
        "decode_points": points,
        "full_length": len(ref),
        "full_decode_ms": round(full_ms, 1),
        "stock": summary(stock_chunks, stock_times, ref),
        "ours": summary(our_chunks, our_times, ref),
    }


def end_to_end(model, voice) -> dict:
    """Real Xtts.inference_stream / inference_stream_incremental vs the loops above on recorded latents."""
    kw = gpt_kwargs(model)
    seed = 11
    torch.manual_seed(seed)
    stock = [
        c.clone()
        for c in model.inference_stream(TEXT, "en", voice[0], voice[1], stream_chunk_size=20, speed=1.0, **kw)
    ]
    torch.manual_seed(seed)
    ours = [
        c.clone()
        for c in sd.inference_stream_incremental(
            model, TEXT, "en", voice[0], voice[1], stream_chunk_size=20, speed=1.0, **kw
        )
    ]
    torch.manual_seed(seed)
    ours_speed = [
        c.clone()
        for c in sd.inference_stream_incremental(
            model, TEXT, "en", voice[0], voice[1], stream_chunk_size=20, speed=1.3, **kw
        )
    ]
    latents = record_latents(model, TEXT, voice, seed)
    stock_rec, _ = stock_stream(model, latents, voice[1], 20, 1.0)
    ours_rec, _, _ = ours_stream(model, latents, voice[1], 20, sd.FIRST_CHUNK_TOKENS, 1.0)
    ours_speed_rec, _, _ = ours_stream(model, latents, voice[1], 20, sd.FIRST_CHUNK_TOKENS, 1.0 / 1.3)

    def same(a, b):
        return [len(x) for x in a] == [len(x) for x in b] and all(
            torch.equal(x, y) for x, y in zip(a, b, strict=True)
        )

    return {
        "tokens": latents.shape[0],
        "stock_chunk_samples": [len(c) for c in stock],
        "ours_chunk_samples": [len(c) for c in ours],
        "stock_equals_inference_stream": same(stock, stock_rec),
        "ours_equals_inference_stream_incremental": same(ours, ours_rec),
        "ours_speed_1_3_equals_inference_stream_incremental": same(ours_speed, ours_speed_rec),
    }


def margin_sweep(model, voice) -> list:
    latents = record_latents(model, TEXT, voice, 0)
    ref = one_shot(model, latents, voice[1], 1.0)
    rows = []
    for margin in (2, 4, 6, 8, 10, 13):
        chunks, times, _ = ours_stream(
            model, latents, voice[1], 20, sd.FIRST_CHUNK_TOKENS, 1.0, margin, margin
        )
        y = torch.cat(chunks)
        rows.append(
            {
                "left": margin,
                "right": margin,
                "snr_db": round(snr_db(ref, y), 1),
                "held_back_ms": round(margin * model.hifigan_decoder.output_hop_length / 24000 * 1000, 1),
                "decode_ms_total": round(sum(times), 1),
                "length_ok": len(y) == len(ref),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--full", action="store_true", help="also the longer cases")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.checkpoint)
    with torch.inference_mode():
        speaker = model.speaker_manager.speakers[VOICE]
        voice = (speaker["gpt_cond_latent"], speaker["speaker_embedding"])
        report = {
            "constants": {
                "first_chunk_tokens": sd.FIRST_CHUNK_TOKENS,
                "left_context_frames": sd.LEFT_CONTEXT_FRAMES,
                "right_margin_frames": sd.RIGHT_MARGIN_FRAMES,
            },
            "decode_points": {
                f"{chunk},{first}": [
                    p for _, p in zip(range(5), sd.decode_points(chunk, first), strict=False)
                ]
                for chunk, first in ((20, 8), (20, None), (5, 8), (40, 8), (0, 8))
            },
            "receptive_field": {
                **measured_field(model, voice[1]),
                "architecture": architecture_field(model.hifigan_decoder.waveform_decoder),
            },
            "cases": [run_case(model, voice, c) for c in CASES + (FULL_CASES if args.full else [])],
            "speed_near_one": run_case(model, voice, SPEED_NEAR_ONE),
            "end_to_end": end_to_end(model, voice),
            "margin_sweep": margin_sweep(model, voice),
        }
        # The speed-near-one case against the stretch applied throughout (what streaming does).
        _, seed, text, max_tokens, speed, chunk, first = SPEED_NEAR_ONE
        latents = record_latents(model, text, voice, seed, max_tokens)
        stretched = sd.IncrementalDecoder(model.hifigan_decoder, voice[1], 1.0 / speed)
        stretched.allow_identity = False  # the stretch always applied
        stretched.push(latents)
        ref = stretched.decode(final=True)
        ours, _, _ = ours_stream(model, latents, voice[1], chunk, first, 1.0 / speed)
        report["speed_near_one"]["ours_vs_always_stretched_snr_db"] = snr_db(ref, torch.cat(ours))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
