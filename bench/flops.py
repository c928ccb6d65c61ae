"""Matmul and convolution FLOPs of a traced TensorFlow graph.

    flops = matmul_flops(tf.function(f).get_concrete_function(*specs).graph)

Counts 2 * (multiply-adds) of every MatMul, BatchMatMul, Einsum, Conv2D and transposed Conv2D in
the graph from their static shapes — the work the throughput benchmarks
compare with the CPU's matmul rate. Element-wise ops are not counted (they are
memory-bound and small beside the matmuls of these models). Graphs with
control flow (While/If bodies are separate functions) are refused rather than
undercounted.
"""

import numpy as np

_CONTROL_FLOW = ("While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall",
                 "StatefulPartitionedCall")


def _static(shape, op):
    dims = shape.as_list()
    if any(d is None for d in dims):
        raise ValueError(f"FLOPs need static shapes; {op.type} {op.name} has {shape}. "
                         "Trace with a fixed batch size.")
    return dims


def _einsum_flops(op):
    """2 * product of the sizes of every distinct index of the equation."""
    equation = op.get_attr("equation").decode()
    inputs, _ = equation.split("->")
    sizes = {}
    for term, tensor in zip(inputs.split(","), op.inputs):
        dims = _static(tensor.shape, op)
        if "..." in term:
            head, tail = term.split("...")
            ellipsis = dims[len(head):len(dims) - len(tail)]
            for i, d in enumerate(ellipsis):
                sizes[f"ellipsis{i - len(ellipsis)}"] = d  # aligned from the right
            dims = dims[:len(head)] + dims[len(dims) - len(tail):]
            term = head + tail
        for letter, d in zip(term, dims):
            sizes[letter] = d
    return 2 * int(np.prod(list(sizes.values()), dtype=np.int64))


def op_flops(op):
    """FLOPs of one op (0 for ops that are not matmuls or convolutions)."""
    if op.type == "MatMul":
        a, b = (_static(t.shape, op) for t in op.inputs)
        m, k = (a[1], a[0]) if op.get_attr("transpose_a") else (a[0], a[1])
        n = b[0] if op.get_attr("transpose_b") else b[1]
        return 2 * m * k * n
    if op.type in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a, b = (_static(t.shape, op) for t in op.inputs)
        adj_x, adj_y = op.get_attr("adj_x"), op.get_attr("adj_y")
        m, k = (a[-1], a[-2]) if adj_x else (a[-2], a[-1])
        n = b[-2] if adj_y else b[-1]
        batch = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
        return 2 * int(np.prod(batch, dtype=np.int64)) * m * k * n
    if op.type == "Einsum":
        return _einsum_flops(op)
    if op.type in ("Conv2D", "DepthwiseConv2dNative"):
        out = _static(op.outputs[0].shape, op)
        kernel = _static(op.inputs[1].shape, op)                   # [kh, kw, in, out|mult]
        if op.type == "Conv2D":
            return 2 * int(np.prod(out, dtype=np.int64)) * kernel[0] * kernel[1] * kernel[2]
        return 2 * int(np.prod(out, dtype=np.int64)) * kernel[0] * kernel[1]
    if op.type == "Conv2DBackpropInput":                         # a transposed convolution
        kernel = _static(op.inputs[1].shape, op)                   # [kh, kw, out, in]
        grad = _static(op.inputs[2].shape, op)                     # [n, h, w, in]
        return 2 * int(np.prod(grad, dtype=np.int64)) * kernel[0] * kernel[1] * kernel[2]
    if op.type in _CONTROL_FLOW:
        raise ValueError(f"{op.type} {op.name}: FLOPs inside control flow are not counted; "
                         "this graph would be undercounted.")
    return 0


def matmul_flops(graph):
    """Sum of `op_flops` over the graph's operations."""
    return sum(op_flops(op) for op in graph.get_operations())
