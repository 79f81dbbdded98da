"""Several streams' GPT steps run as one batch, as LLM servers batch decoding.

Each XTTS stream generates its audio tokens one GPT-2 step at a time: one new
position through every transformer layer, attending to the stream's own KV cache.
On a GPU one such step of one stream leaves the device mostly idle, and the same
kernels over several streams cost little more than over one. So every stream's
view (stream_state.stream_view) gets a `BatchedTransformer` in place of the shared
GPT-2 model: its single-position steps go through one `StepBatcher`, which runs the
steps that are waiting as one forward.

A step that finds no batch running and no other stream due runs at once, alone,
exactly as it would without a batcher: a lone stream keeps today's path and cost.
Steps that arrive while a batch runs queue, and the first of them runs the queue as
the next batch, after waiting up to GATHER_S for the other streams that stepped
recently (RECENT_S) to queue theirs: otherwise two streams fall into turns, each
arriving while the other's step runs, and never meet. Each stream's KV cache stays its own:
the batch's cache is the streams' caches left-padded to the longest, masked where
padded, and each stream's new keys and values are appended to its own cache after
the step. XTTS's GPT-2 has no position embeddings of its own (XTTS adds its own
before the transformer), so left padding moves nothing. A stream's outputs are
what its step alone gives, up to float rounding (tests/e2e/test_xtts_concurrency.py:
the same tokens and audio from the same seed, batched or alone).

The prefix (conditioning and text, many positions at once) runs alone. Copying
the caches into the batch costs a copy of each stream's cache per step; serving
engines avoid it with a paged cache, which this does not attempt.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

# The most streams' steps in one batch.
MAX_BATCH = 16
# A stream that asked for a step this recently is due again soon (between its steps it
# only samples its token); a batch waits for such streams at most GATHER_S.
RECENT_S = 0.05
GATHER_S = 0.002


@dataclass
class _Step:
    """One stream's step, waiting for a batch."""

    kwargs: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: BaseModelOutputWithPastAndCrossAttentions | None = None
    error: BaseException | None = None
    lead: bool = False  # handed the next batch to run


class StepBatcher:
    """Runs concurrent streams' single-position GPT-2 steps as batches."""

    def __init__(self, transformer: nn.Module, max_batch: int = MAX_BATCH):
        self.transformer = transformer
        # Left padding shifts nothing only where the model adds no positions of its own.
        self.max_batch = 1 if isinstance(getattr(transformer, "wpe", None), nn.Embedding) else max_batch
        self._cond = threading.Condition()
        self._queue: list[_Step] = []
        self._running = False
        self._seen: dict[int, float] = {}  # stream (its cache) -> when it last asked for a step
        self.sizes: dict[int, int] = {}  # batches run, by size

    def step(self, **kwargs: Any) -> BaseModelOutputWithPastAndCrossAttentions:
        """One stream's step: alone at once if no batch is running and no other stream
        is due, else in the next batch."""
        item = _Step(kwargs)
        with self._cond:
            self._queue.append(item)
            self._seen[id(kwargs["past_key_values"])] = time.monotonic()
            self._cond.notify_all()
            lead = not self._running
            self._running = True
        if not lead:
            item.done.wait()
            lead = item.lead
        if lead:
            self._lead()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _gather(self) -> list[_Step]:
        """The next batch: waits up to GATHER_S for the streams that stepped within
        RECENT_S to queue their next step too (with the lock held). Without it two
        streams alternate, each arriving while the other's step runs."""
        deadline = time.monotonic() + GATHER_S
        while True:
            now = time.monotonic()
            self._seen = {k: t for k, t in self._seen.items() if now - t < RECENT_S}
            queued = {id(item.kwargs["past_key_values"]) for item in self._queue}
            if set(self._seen) <= queued or len(self._queue) >= self.max_batch or now >= deadline:
                break
            self._cond.wait(deadline - now)
        batch = self._queue[: self.max_batch]
        del self._queue[: self.max_batch]
        self.sizes[len(batch)] = self.sizes.get(len(batch), 0) + 1
        return batch

    def _lead(self) -> None:
        """Run the next batch, then hand the queue to the next leader."""
        with self._cond:
            batch = self._gather()
        try:
            results = self._run(batch)
            for item, result in zip(batch, results, strict=True):
                item.result = result
        except BaseException as exc:  # every stream of the batch hears it
            for item in batch:
                item.error = exc
        with self._cond:
            if self._queue:
                self._queue[0].lead = True
                self._queue[0].done.set()
            else:
                self._running = False
        for item in batch:
            item.done.set()

    def _run(self, batch: list[_Step]) -> list[BaseModelOutputWithPastAndCrossAttentions]:
        if len(batch) == 1:  # alone: the stream's own call, unchanged
            return [self.transformer(**batch[0].kwargs)]
        caches: list[DynamicCache] = [item.kwargs["past_key_values"] for item in batch]
        lengths = [cache.get_seq_length() for cache in caches]
        longest = max(lengths)
        layers = len(caches[0].layers)

        def padded(tensor: torch.Tensor, length: int) -> torch.Tensor:
            return nn.functional.pad(tensor, (0, 0, longest - length, 0))

        merged = DynamicCache(
            ddp_cache_data=[
                (
                    torch.cat([padded(c.layers[i].keys, n) for c, n in zip(caches, lengths, strict=True)]),
                    torch.cat([padded(c.layers[i].values, n) for c, n in zip(caches, lengths, strict=True)]),
                )
                for i in range(layers)
            ]
        )
        masks = []
        for item, n in zip(batch, lengths, strict=True):
            own = item.kwargs.get("attention_mask")
            own = torch.ones(1, n + 1, dtype=torch.long) if own is None else own.reshape(1, -1)
            masks.append(nn.functional.pad(own[:, -(n + 1) :], (longest - n, 0)))
        first = batch[0].kwargs
        out = self.transformer(
            inputs_embeds=torch.cat([item.kwargs["inputs_embeds"] for item in batch]),
            past_key_values=merged,
            attention_mask=torch.cat(masks).to(first["inputs_embeds"].device),
            use_cache=True,
            output_hidden_states=first.get("output_hidden_states"),
            return_dict=True,
        )
        results = []
        hidden = out.hidden_states
        for row, cache in enumerate(caches):
            for i in range(layers):
                layer = merged.layers[i]
                cache.update(layer.keys[row : row + 1, :, -1:], layer.values[row : row + 1, :, -1:], i)
            results.append(
                BaseModelOutputWithPastAndCrossAttentions(
                    last_hidden_state=out.last_hidden_state[row : row + 1],
                    past_key_values=cache,
                    hidden_states=None if hidden is None else tuple(h[row : row + 1] for h in hidden),
                )
            )
        return results


class BatchedTransformer(nn.Module):
    """A stream's GPT-2 model: its single-position steps through the batcher, the rest as is."""

    def __init__(self, batcher: StepBatcher):
        super().__init__()
        self._batcher = [batcher]  # in a list: not a child module (the weights are the model's)

    def __getattr__(self, name: str) -> Any:  # the model's own attributes (config, layers, ...)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._batcher[0].transformer, name)

    def forward(self, **kwargs: Any) -> BaseModelOutputWithPastAndCrossAttentions:
        batcher = self._batcher[0]
        embeds = kwargs.get("inputs_embeds")
        batchable = (
            embeds is not None
            and embeds.shape[:2] == (1, 1)
            and isinstance(kwargs.get("past_key_values"), DynamicCache)
            and kwargs.get("token_type_ids") is None
            and not kwargs.get("output_attentions")
        )
        if not batchable:
            return batcher.transformer(**kwargs)
        return batcher.step(**kwargs)
