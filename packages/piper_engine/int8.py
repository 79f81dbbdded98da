"""Opt-in int8 stages (`PIPER_INT8`): less CPU a frame, different audio.

Every stage after the prior runs near onnxruntime's float32 GEMM rate already
(bench/piper_stage_cost.py), so less CPU a frame needs less arithmetic a frame.
Static quantization does that: each Conv and ConvTranspose of a stage's graph
gets int8 weights (one scale a channel) and uint8 activations, with quantize
and dequantize nodes around it (QDQ) that onnxruntime fuses into its int8
kernels. The activations' ranges are calibrated when the voice loads (about 5 s
on one core), from the float32 stages' own values over a few sentences of the
voice itself; the prior draws noise, so they differ a little from load to load.

The flow's stages and the decoder's but its last run int8 (chunked_vits.py
says why not the last). The audio changes (quantization noise, 23 to 29 dB
below each stage's output), so it is off by default; bench/piper_intelligibility.py
measures its word error rate and length against piper whole, bench/piper_cpu_cost.py
its CPU. The prior stays float32: it decides the durations, so the length and the
words' timing are float32's.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

Feed = dict[str, np.ndarray]


class _Feeds(CalibrationDataReader):  # type: ignore[misc]  # untyped where mypy runs
    def __init__(self, feeds: list[Feed]) -> None:
        self._feeds: Iterator[Feed] = iter(feeds)

    def get_next(self) -> Feed | None:
        return next(self._feeds, None)


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    """onnxruntime's quantizer advises (on the root logger, once a graph) its
    pre-processing pass; the figures in docs/models.md were measured without it."""
    return "pre-process" not in record.getMessage()


@contextlib.contextmanager
def _quiet_advice() -> Iterator[None]:
    root = logging.getLogger()
    root.addFilter(_no_preprocessing_advice)
    try:
        yield
    finally:
        root.removeFilter(_no_preprocessing_advice)


def quantized(graph: onnx.ModelProto, feeds: list[Feed]) -> onnx.ModelProto:
    """`graph` with int8 convolutions, its activation ranges the extremes seen over `feeds`."""
    with tempfile.TemporaryDirectory(prefix="piper-int8-") as tmp, _quiet_advice():
        source, target = Path(tmp) / "float32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(graph, source)
        quantize_static(
            source,
            target,
            _Feeds(feeds),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["Conv", "ConvTranspose"],
            calibrate_method=CalibrationMethod.MinMax,
        )
        return onnx.load(target)
