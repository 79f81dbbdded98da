"""Per-stream XTTS inference state over one set of shared weights.

coqui's XTTS keeps two pieces of per-generation state where concurrent streams on one
model would mix them:

* the conditioning prefix (speaker latents + text embeddings): ``GPT.compute_embeddings``
  stores it on the shared ``GPT2InferenceModel`` (``store_prefix_emb``) and every forward
  step reads it back, to embed the first step and to count positions. A second stream
  starting mid-generation replaces it: the first stream continues in the other's voice
  and text, at the wrong positions.
* the sampler's RNG: coqui's ``sample_stream`` draws every token with ``torch.multinomial``
  on torch's global generator, so concurrent streams interleave their draws and a seed no
  longer fixes the audio.

The KV cache is already per generation (``generate`` builds it per call), and the
HiFi-GAN decoder and speaker encoder keep nothing between calls (weight norm is removed at
load).

``stream_view`` gives each stream a shallow copy of the ``Xtts`` whose ``gpt`` and
``gpt.gpt_inference`` are shallow copies too: their own attributes (the cached prefix, the
logits-processor hook below), the same parameters and submodules (transformer, heads,
embeddings, HiFi-GAN, speaker encoder), so no weight is copied and a view costs a few
dictionaries. ``Xtts.inference_stream`` and ``inference_stream_incremental`` run on a view
unchanged.

Sampling: the view appends ``StreamSampler`` after every logits processor and warper
generate builds (repetition penalty, temperature, top-k, top-p: the exact scores
``sample_stream`` turns into probabilities). It draws the token from those scores as
``sample_stream`` would (softmax, ``torch.multinomial``), with the stream's own
``torch.Generator``, and hands ``sample_stream`` a one-hot distribution, so its draw on the
global generator can only return that token (ATen samples one category as the argmax of
p / Exp(1) noise: zero-probability entries never win, except on the CPU when the noise is
exactly 0, about 2^-53 per entry; the next step checks and raises rather than continue on
a token the stream did not draw). A stream's generator seeded with s draws what torch's
global generator draws after ``torch.manual_seed(s)``, so a seeded stream produces exactly
what ``inference_stream`` produces on the whole model after ``torch.manual_seed(s)``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import LogitsProcessor, LogitsProcessorList

from xtts_engine.step_batching import BatchedTransformer, StepBatcher


class StreamSampler(LogitsProcessor):
    """The last logits processor of one generation: draws the next token with the stream's generator."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self.drawn: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.drawn is not None and not torch.equal(input_ids[:, -1], self.drawn):
            raise RuntimeError("the generation appended a token its stream did not draw")
        probs = nn.functional.softmax(scores, dim=-1)  # as sample_stream computes them
        token = torch.multinomial(probs, num_samples=1, generator=self.generator)
        self.drawn = token[:, 0]
        return torch.full_like(scores, -float("inf")).scatter_(-1, token, 0.0)


def stream_generator(device: torch.device | str, seed: int | None) -> torch.Generator:
    """The stream's sampling RNG: seeded, or from the OS's entropy when seed is None."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _with_children(module: nn.Module, **children: nn.Module) -> nn.Module:
    """A shallow copy of `module` with some children replaced; the original is untouched."""
    clone = copy.copy(module)  # own __dict__; shares _parameters, _buffers and (until replaced) _modules
    clone._modules = {**module._modules, **children}
    return clone


def stream_view(model, generator: torch.Generator, batcher: StepBatcher | None = None):
    """An ``Xtts`` for one stream: its own conditioning prefix and sampler RNG, the model's
    weights; with `batcher`, its GPT steps batched with other streams' (step_batching.py)."""
    children = {} if batcher is None else {"transformer": BatchedTransformer(batcher)}
    inference = _with_children(model.gpt.gpt_inference, **children)
    build_processors = inference._get_logits_processor  # bound to the view

    def with_stream_sampler(*args, **kwargs) -> LogitsProcessorList:
        processors = build_processors(*args, **kwargs)
        processors.append(StreamSampler(generator))  # one per generation: `drawn` starts empty
        return processors

    inference._get_logits_processor = with_stream_sampler  # instance attribute: this view only
    gpt = _with_children(model.gpt, gpt_inference=inference)
    return _with_children(model, gpt=gpt)
