"""Constant-cost streaming decode for Coqui XTTS-v2.

Stock ``Xtts.inference_stream`` re-runs the HiFi-GAN decoder over *all* GPT latents
produced so far at every chunk and cross-fades 1024 samples between decodes: chunk k
costs O(k), a sentence costs O(k^2), and samples near each chunk end come from a decode
that had not seen the following latents yet (the convolutions are non-causal), so the
cross-fade papers over a real difference.

Here each chunk is decoded from the new latents plus only the context the decoder's
receptive field needs:

* The decoder is ``HifiDecoder.forward``: up to three linear interpolations (the
  ``speed`` length scale, x ar_mel_length_compression/output_hop_length = x4, x
  output/input sample rate = x24000/22050), then the HiFi-GAN generator (x256
  samples per input frame). Linear interpolation is local, so it is evaluated
  directly on *global* frame indices with PyTorch's own index arithmetic
  (``align_corners=False``): every interpolated frame equals the one-shot
  decode's, whatever window it is computed in (24000/22050 is not an integer
  ratio, so windowing ``F.interpolate`` itself would shift the sampling grid).
* The generator's receptive field is ``LEFT_CONTEXT_FRAMES`` / ``RIGHT_MARGIN_FRAMES``
  frames (256 samples each) either side, measured on the real XTTS-v2 generator
  (see tests/xtts_decoder_check.py) and equal to what its architecture gives. Each
  window is decoded from ``LEFT_CONTEXT_FRAMES`` frames of left context, the new
  frames, and ``RIGHT_MARGIN_FRAMES`` frames that are held back (emitted with the
  next chunk, or at the end). Emitted samples therefore equal the one-shot decode up
  to float rounding: no cross-fade, no seam, and concatenated chunks have exactly
  the one-shot length.

The cost of a chunk depends only on its size, never on its position in the sentence.
The price: audio up to latent t is final once latent ~t + 3.5 exists (RIGHT_MARGIN_FRAMES
* 256 samples = 139 ms of audio, ~3 latents at 1113.6 samples per latent, plus the
interpolations' look-ahead), where stock holds back 1024 samples but emits samples that
the next decode would have computed differently. 13 frames is the generator's exact
receptive field, so the result is exact for any weights; smaller margins trade accuracy
for latency and depend on the weights (random-weight decoder, vs one-shot: R = L = 8
frames 115 dB, 4 frames 77 dB, 2 frames 52 dB; re-measure on real weights before lowering).

First audio sooner: the first chunk is decoded after ``FIRST_CHUNK_TOKENS`` tokens,
later ones every ``stream_chunk_size`` tokens (see ``decode_points``).

Speed: inference_stream's ``speed`` interpolation is one more linear stage, exact the
same way. One exception: ``F.interpolate`` is the identity when ``int(T / speed) == T``
(speed in (0.5, 1) and fewer than speed / (1 - speed) tokens, e.g. < 32 at 0.97). A
sentence decoded in one window mirrors that; once streaming has begun the stretch is
applied as asked (seamless, but not the one-shot decode, which skips it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

#: Tokens before the first chunk is decoded (later chunks: every stream_chunk_size tokens).
FIRST_CHUNK_TOKENS = 8
#: Generator input frames (256 output samples each) of left context every window needs.
LEFT_CONTEXT_FRAMES = 13
#: Generator input frames held back at the right of every non-final window.
RIGHT_MARGIN_FRAMES = 13


def decode_points(
    stream_chunk_size: int, first_chunk_tokens: int | None = FIRST_CHUNK_TOKENS
) -> Iterator[int]:
    """Token counts at which a chunk is decoded (besides the end of generation).

    ``first_chunk_tokens``, then every ``stream_chunk_size`` tokens after it:
    8, 28, 48, ... for (20, 8). ``first_chunk_tokens`` None, or not smaller than
    ``stream_chunk_size``, gives stock's schedule (20, 40, 60, ...);
    ``stream_chunk_size`` <= 0 decodes only at the end, as stock does.
    """
    if stream_chunk_size <= 0:
        return
    first = (
        stream_chunk_size
        if first_chunk_tokens is None
        else max(1, min(first_chunk_tokens, stream_chunk_size))
    )
    n = first
    while True:
        yield n
        n += stream_chunk_size


class _LinearStage:
    """``F.interpolate(x, scale_factor=s, mode="linear")`` (align_corners=False) on global frame indices.

    Reproduces ATen's CPU arithmetic (bit for bit on an FMA CPU): output length
    ``int(n * s)``, the identity when that equals n; otherwise output frame j reads
    source ``max(float32(1/s) * (j + 0.5) - 0.5, 0)``, i0 = floor, i1 = i0 + 1
    (clamped to the last input frame), value ``x[i0] * (1 - lambda) + x[i1] * lambda``.
    Only output frames whose sources are all available are ever computed, so a
    frame does not depend on the window it is computed in.
    """

    def __init__(self, scale_factor: float):
        self.scale_factor = float(scale_factor)
        self._ratio = float(torch.tensor(1.0 / self.scale_factor, dtype=torch.float32))

    def out_len(self, n_in: int) -> int:
        return int(n_in * self.scale_factor)

    def _source(self, j: torch.Tensor, n_in: int | None):
        # One rounding for ratio * (j + 0.5) - 0.5, as ATen's fused multiply-add.
        real = (self._ratio * (j.to(torch.float32) + 0.5).to(torch.float64) - 0.5).to(torch.float32)
        real = torch.clamp_min(real, 0.0)
        i0 = torch.floor(real).to(torch.int64)
        if n_in is not None:
            i0 = torch.clamp_max(i0, n_in - 1)
        lam1 = torch.clamp(real - i0.to(torch.float32), 0.0, 1.0)
        i1 = i0 + 1 if n_in is None else torch.where(i0 < n_in - 1, i0 + 1, i0)
        return i0, i1, 1.0 - lam1, lam1

    def exact_prefix(self, n_avail: int) -> int:
        """Output frames computable from the first n_avail input frames of a longer, unfinished input."""
        if n_avail < 2:
            return 0
        lo = max(0, int((n_avail - 2) * self.scale_factor) - 4)
        j = torch.arange(lo, int(math.ceil(n_avail * self.scale_factor)) + 4)
        _, i1, _, _ = self._source(j, None)
        return lo + int((i1 <= n_avail - 1).sum())  # i1 grows with j: the computable frames are a prefix

    def input_range(self, j_lo: int, j_hi: int, n_in: int | None, identity: bool = False) -> tuple[int, int]:
        if identity:
            return j_lo, j_hi
        i0, i1, _, _ = self._source(torch.tensor([j_lo, j_hi - 1]), n_in)
        return int(i0[0]), int(i1[1]) + 1

    def apply(
        self, x: torch.Tensor, x_start: int, j_lo: int, j_hi: int, n_in: int | None, identity: bool = False
    ) -> torch.Tensor:
        """x: [B, C, frames x_start...]; returns output frames [j_lo, j_hi) as [B, C, j_hi - j_lo]."""
        if identity:
            return x[..., j_lo - x_start : j_hi - x_start]
        i0, i1, w0, w1 = self._source(torch.arange(j_lo, j_hi), n_in)
        t0 = x[..., (i0 - x_start).to(x.device)]
        t1 = x[..., (i1 - x_start).to(x.device)]
        w0 = w0.to(device=x.device, dtype=x.dtype)
        w1 = w1.to(device=x.device, dtype=x.dtype)
        if x.device.type == "cpu" and x.dtype == torch.float32:
            # fma(t0, w0, t1 * w1), as ATen's CPU kernel computes it
            return ((t1 * w1).to(torch.float64) + t0.to(torch.float64) * w0.to(torch.float64)).to(x.dtype)
        return t0 * w0 + t1 * w1


class IncrementalDecoder:
    """Decode GPT latents pushed a few at a time; ``decode()`` returns only final samples.

    The concatenation of everything ``decode`` returns, ending with ``decode(final=True)``,
    equals ``hifigan_decoder(all_latents_after_speed_interpolation, g)`` up to float
    rounding, at a cost per call that depends on the new latents only.
    """

    def __init__(
        self,
        hifigan_decoder,
        speaker_embedding: torch.Tensor,
        length_scale: float = 1.0,
        left_context: int = LEFT_CONTEXT_FRAMES,
        right_margin: int = RIGHT_MARGIN_FRAMES,
    ):
        self.decoder = hifigan_decoder
        self.g = speaker_embedding
        self.left = left_context
        self.right = right_margin
        stages = []
        if length_scale != 1.0:  # inference_stream's speed interpolation
            stages.append(_LinearStage(length_scale))
        stages.append(
            _LinearStage(hifigan_decoder.ar_mel_length_compression / hifigan_decoder.output_hop_length)
        )
        if hifigan_decoder.output_sample_rate != hifigan_decoder.input_sample_rate:
            stages.append(
                _LinearStage(hifigan_decoder.output_sample_rate / hifigan_decoder.input_sample_rate)
            )
        self.stages = stages
        self.hop = math.prod(int(up.stride[0]) for up in hifigan_decoder.waveform_decoder.ups)
        self._latents: list[torch.Tensor] = []  # [n, C] blocks as pushed
        self._n = 0
        self._base = 0  # global index of the first latent still held
        self.emitted = 0  # generator frames whose samples have been returned
        self.windows: list[tuple[int, int]] = []  # generator frame window of each decode, for inspection
        self.allow_identity = (
            True  # mirror ATen's same-length shortcut when decoding a sentence in one window
        )

    def push(self, latents: torch.Tensor) -> None:
        """latents: [n, C] (or [1, n, C]) new GPT latents, in order."""
        if latents.dim() == 3:
            latents = latents[0]
        if latents.shape[0]:
            self._latents.append(latents)
            self._n += latents.shape[0]

    def _lengths(self, final: bool) -> list[int]:
        """Frames at the input of each stage, then at the generator: exact ones if not final."""
        sizes = [self._n]
        for stage in self.stages:
            sizes.append(stage.out_len(sizes[-1]) if final else stage.exact_prefix(sizes[-1]))
        return sizes

    def decode(self, final: bool = False) -> torch.Tensor:
        """Samples that are now final: up to RIGHT_MARGIN_FRAMES frames short of the
        computable end, or everything left if ``final``. Possibly empty."""
        sizes = self._lengths(final)
        exact = sizes[-1]
        end = exact if final else exact - self.right
        if end <= self.emitted:
            return torch.zeros(0, device=self.g.device)
        lo, hi = max(0, self.emitted - self.left), exact if final else min(exact, end + self.right)
        # ATen's interpolation is the identity when it would not change the length
        # (x24000/22050 on <= 11 frames, a speed near 1 on a short sentence); only a
        # decode of the whole sentence at once (nothing emitted yet) can know that.
        n_ins = [n if final else None for n in sizes[:-1]]
        identity = [
            final and self.allow_identity and self.emitted == 0 and st.out_len(n) == n
            for st, n in zip(self.stages, sizes[:-1], strict=False)
        ]
        # Frames each stage must produce, from the generator back to the latents.
        ranges = [(lo, hi)]
        for stage, n_in, same in zip(
            reversed(self.stages), reversed(n_ins), reversed(identity), strict=False
        ):
            ranges.append(stage.input_range(*ranges[-1], n_in, same))
        ranges.reverse()
        a, b = ranges[0]
        x = self._window(a, b)  # [1, C, b - a]
        for stage, (j_lo, j_hi), n_in, same in zip(self.stages, ranges[1:], n_ins, identity, strict=False):
            x = stage.apply(x, a, j_lo, j_hi, n_in, same)
            a = j_lo
        wav = self.decoder.waveform_decoder(x, g=self.g)
        self.windows.append((lo, hi))
        out = wav[0, 0, (self.emitted - lo) * self.hop : (end - lo) * self.hop]
        self.emitted = end
        self._forget(ranges[0][0])
        return out

    def _window(self, a: int, b: int) -> torch.Tensor:
        held = torch.cat(self._latents, dim=0) if len(self._latents) > 1 else self._latents[0]
        self._latents = [held]
        return held[a - self._base : b - self._base].T.unsqueeze(0)

    def _forget(self, first_needed: int) -> None:
        """Drop latents no later window can need (keeps memory and cat cost bounded)."""
        keep_from = max(self._base, first_needed - 2)
        if keep_from > self._base and self._latents:
            self._latents = [self._latents[0][keep_from - self._base :]]
            self._base = keep_from


@torch.inference_mode()
def inference_stream_incremental(
    model,
    text: str,
    language: str,
    gpt_cond_latent: torch.Tensor,
    speaker_embedding: torch.Tensor,
    # Streaming
    stream_chunk_size: int = 20,
    first_chunk_tokens: int | None = FIRST_CHUNK_TOKENS,
    # GPT inference (same defaults as Xtts.inference_stream)
    temperature: float = 0.75,
    length_penalty: float = 1.0,
    repetition_penalty: float = 10.0,
    top_k: int = 50,
    top_p: float = 0.85,
    do_sample: bool = True,
    speed: float = 1.0,
    enable_text_splitting: bool = False,
    left_context: int = LEFT_CONTEXT_FRAMES,
    right_margin: int = RIGHT_MARGIN_FRAMES,
    max_audio_tokens: int | None = None,
    **hf_generate_kwargs,
) -> Iterator[torch.Tensor]:
    """Drop-in for ``Xtts.inference_stream``: same text handling, same GPT call, same RNG use.

    Yields 1-D float waveform chunks whose concatenation is the one-shot decode of the
    sentence's latents (up to float rounding).
    """
    from TTS.tts.layers.xtts.tokenizer import split_sentence

    language = language.split("-")[0]  # remove the country code
    length_scale = 1.0 / max(speed, 0.05)
    gpt_cond_latent = gpt_cond_latent.to(model.device)
    speaker_embedding = speaker_embedding.to(model.device)
    if enable_text_splitting:
        sentences = split_sentence(text, language, model.tokenizer.char_limits[language])
    else:
        sentences = [text]

    for sent in sentences:
        sent = sent.strip().lower()
        text_tokens = (
            torch.IntTensor(model.tokenizer.encode(sent, lang=language)).unsqueeze(0).to(model.device)
        )
        assert text_tokens.shape[-1] < model.args.gpt_max_text_tokens, (
            " ❗ XTTS can only generate text with a maximum of 400 tokens."
        )
        fake_inputs = model.gpt.compute_embeddings(gpt_cond_latent.to(model.device), text_tokens)
        gpt_generator = model.gpt.get_generator(
            fake_inputs=fake_inputs,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            do_sample=do_sample,
            num_beams=1,
            num_return_sequences=1,
            length_penalty=float(length_penalty),
            repetition_penalty=float(repetition_penalty),
            output_attentions=False,
            output_hidden_states=True,
            return_dict_in_generate=True,
            **hf_generate_kwargs,
        )
        decoder = IncrementalDecoder(
            model.hifigan_decoder, speaker_embedding, length_scale, left_context, right_margin
        )
        points = decode_points(stream_chunk_size, first_chunk_tokens)
        next_point = next(points, None)
        pending: list[torch.Tensor] = []
        tokens = 0
        while True:
            try:
                if max_audio_tokens is not None and tokens >= max_audio_tokens:
                    raise StopIteration  # the caller's cap, under the checkpoint's own
                _, latent = next(gpt_generator)
                pending.append(latent)
                tokens += 1
                is_end = False
            except StopIteration:
                is_end = True
            if is_end or tokens == next_point:
                if tokens == next_point:
                    next_point = next(points, None)
                if pending:
                    decoder.push(torch.cat(pending, dim=0))
                    pending = []
                wav = decoder.decode(final=is_end)
                if wav.numel():
                    yield wav
            if is_end:
                break
