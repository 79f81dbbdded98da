"""The decoder's 1-D convolutions as 2-D ones of height 1: the same arithmetic,
about a tenth less CPU.

onnxruntime's fastest CPU convolutions are for images: at its default
optimization level, its NCHWc transformer rewrites 4-D Conv and ConvTranspose
nodes, and the element-wise nodes between them, into blocked kernels; 1-D ones
are left to an im2col and a GEMM each. Piper's HiFi-GAN decoder is made of 1-D
convolutions, LeakyRelu and sums only, so a decoder stage's graph runs 4-D
throughout here: its input unsqueezed once to [batch, channels, 1, time], its
output squeezed once, so the blocked layout holds from one convolution to the
next. Per frame, on one thread, the three decoder stages took 4 to 7, 8 to 9
and 13 to 16 % less CPU (bench/piper_stage_cost.py; bench/piper_cpu_cost.py for
the whole engine); the flow's stages gained nothing, so they stay 1-D. The output
is the 1-D graph's up to float rounding (tests/e2e/test_piper_decoder.py).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

CONVOLUTIONS = ("Conv", "ConvTranspose")
# Nodes that compute the same with a height axis of 1 in every tensor.
ELEMENT_WISE = frozenset({"Add", "Sub", "Mul", "Div", "LeakyRelu", "Tanh", "Relu"})
HEIGHT = 2  # the axis inserted: [batch, channels, 1, time]
AXES = "conv2d__height_axis"


def as_2d(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """`model` rewritten with every tensor 4-D; None where a node does not allow it."""
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    if not all(_rank_free(node, initializers) for node in graph.node):
        return None
    graph.initializer.append(numpy_helper.from_array(np.array([HEIGHT], dtype=np.int64), AXES))
    ends = [i.name for i in graph.input] + [o.name for o in graph.output]
    renamed = {name: f"{name}__4d" for name in ends}
    nodes = [helper.make_node("Unsqueeze", [i.name, AXES], [renamed[i.name]]) for i in graph.input]
    for node in graph.node:
        inputs = [renamed.get(name, name) for name in node.input]
        outputs = [renamed.get(name, name) for name in node.output]
        if node.op_type in CONVOLUTIONS:
            weights = numpy_helper.to_array(initializers[node.input[1]])
            graph.initializer.append(numpy_helper.from_array(weights[:, :, None, :], f"{node.input[1]}__2d"))
            inputs[1] = f"{node.input[1]}__2d"
            nodes.append(
                helper.make_node(node.op_type, inputs, outputs, name=node.name, **_attributes_2d(node))
            )
        else:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[:], copy.output[:] = inputs, outputs
            nodes.append(copy)
    nodes += [helper.make_node("Squeeze", [renamed[o.name], AXES], [o.name]) for o in graph.output]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # the inner shapes changed; onnxruntime infers them
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def _rank_free(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> bool:
    """Whether `node` computes the same on 4-D tensors, given 4-D inputs."""
    if node.op_type in CONVOLUTIONS:
        weights = initializers.get(node.input[1])
        return weights is not None and len(weights.dims) == 3
    if node.op_type == "Unsqueeze":  # an axis before the height: the same once squeezed
        axes = initializers.get(node.input[1]) if len(node.input) > 1 else None
        return axes is not None and all(0 <= a < HEIGHT for a in numpy_helper.to_array(axes).reshape(-1))
    # constants: scalars only (a [channels, 1] one would broadcast differently)
    return node.op_type in ELEMENT_WISE and all(
        name not in initializers or int(np.prod(initializers[name].dims)) == 1 for name in node.input
    )


def _attributes_2d(node: onnx.NodeProto) -> dict[str, object]:
    """A 1-D convolution's attributes for the same convolution over [1, time]."""
    attributes: dict[str, object] = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        if attribute.name in ("kernel_shape", "strides", "dilations", "output_padding"):
            value = [1 if attribute.name != "output_padding" else 0, *value]
        elif attribute.name == "pads":
            value = [0, value[0], 0, value[1]]
        elif attribute.name == "output_shape":
            value = [1, *value]
        attributes[attribute.name] = value
    return attributes
