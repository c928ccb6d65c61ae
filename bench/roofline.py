"""A roofline for one training step: its own matmuls, timed alone, plus the optimizer's bytes.

    bound = roofline(model, x)      # model: compiled as the loop does; x: one batch
    efficiency = bound["seconds"] / measured_seconds_per_step

The 2048^3 matmul peak overstates what a step of these models can reach: a
128 x 784 x 512 matmul runs at a fraction of it. The bound here is built from
the step's own work instead:

- every MatMul / BatchMatMul / Einsum / Conv2D (and transposed Conv2D) of the
  traced loss-and-gradient graph (forward and backward, `tf.GradientTape`),
  grouped by shape, dtype and transposes, each group timed alone at its real
  shape and dtype, compiled with XLA as the training step is (`repeat` distinct
  copies per compiled call, each summed into the result so none is pruned; the
  sums' cost is counted too, a few percent of a matmul of these shapes);
- the optimizer's element-wise update at the measured memory bandwidth: Adam
  reads the variable, its gradient and both moments and writes the variable
  and both moments, 7 x 4 bytes per float32 parameter (`OPTIMIZER_PASSES`);
  the bandwidth is the faster of an XLA-compiled and a numpy in-place
  v <- v * s over 64 MiB (read once, written once).

Everything else the step does (element-wise activations, log-densities,
sampling) is left out, so a step at efficiency 1.0 would do nothing but its
matmuls and one pass of the optimizer over memory.
"""

import collections
import time

import numpy as np
import tensorflow as tf

from bench import flops as flops_lib

# Adam's update: read variable, gradient, m, v; write variable, m, v.
OPTIMIZER_PASSES = {"adam": 7, "adamw": 7, "sgd": 3}
_MATMUL_TYPES = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum",
                 "Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput",
                 "Conv2DBackpropFilter")
_ATTRS = ("transpose_a", "transpose_b", "adj_x", "adj_y", "equation", "strides", "padding",
          "dilations", "data_format")


def _best_seconds(fn, repeats):
    fn()                                                    # trace and compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _signature(op):
    attrs = []
    for name in _ATTRS:
        try:
            value = op.get_attr(name)
        except ValueError:
            continue
        attrs.append((name, tuple(value) if isinstance(value, list) else value))
    inputs = tuple((tuple(t.shape.as_list()), t.dtype.name) for t in op.inputs)
    return op.type, inputs, tuple(attrs)


def specs(batch):
    """The `tf.TensorSpec`s of a batch: images [B, ...] or a dict of tensors."""
    return tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), batch)


def step_graph(model, batch):
    """The traced graph of one loss-and-gradient step of `model` on a batch shaped like
    `batch` (images [B, ...], or the pipeline's dict with labels)."""
    seed = tf.constant([0, 0], tf.int32)

    def step(data):
        with tf.GradientTape() as tape:
            loss = model.objective(data, seed)["loss"]
        return tape.gradient(loss, model.trainable_variables)

    return tf.function(step).get_concrete_function(specs(batch)).graph


def step_matmuls(graph):
    """{signature: (count, size values)} of the matmuls and convolutions of `graph`.

    A signature is (op type, ((input shape, dtype), ...), attributes); the size
    values are the int32 size inputs of the convolution gradients ({input index:
    value}, empty for the others).

    Raises:
      ValueError: the graph holds control flow (its matmuls would be missed), or a
        dynamic shape.
    """
    found = {}
    for op in graph.get_operations():
        if op.type in flops_lib._CONTROL_FLOW:             # pylint: disable=protected-access
            raise ValueError(f"{op.type} {op.name}: the step has control flow; its matmuls "
                             "would not all be counted.")
        if op.type in _MATMUL_TYPES:
            for tensor in op.inputs:
                flops_lib._static(tensor.shape, op)        # pylint: disable=protected-access
            # The int32 inputs are the convolution gradients' input_sizes / filter_sizes:
            # the shape of the op's own output, also when the graph computes them (tf.shape).
            sizes = {}
            for i, t in enumerate(op.inputs):
                if t.dtype == tf.int32:
                    value = tf.get_static_value(t)
                    sizes[i] = value if value is not None else op.outputs[0].shape.as_list()
            count, _ = found.get(_signature(op), (0, sizes))
            found[_signature(op)] = (count + 1, sizes)
    return found


def _run_op(signature, operands):
    op_type, _, attrs = signature
    attrs = dict(attrs)
    if op_type == "MatMul":
        return tf.linalg.matmul(*operands, transpose_a=attrs["transpose_a"],
                                transpose_b=attrs["transpose_b"])
    if op_type.startswith("BatchMatMul"):
        return tf.linalg.matmul(*operands, adjoint_a=attrs["adj_x"], adjoint_b=attrs["adj_y"])
    if op_type == "Einsum":
        return tf.einsum(attrs["equation"].decode(), *operands)
    conv = dict(strides=list(attrs["strides"]), padding=attrs["padding"].decode(),
                dilations=list(attrs["dilations"]), data_format=attrs["data_format"].decode())
    if op_type == "Conv2D":
        return tf.raw_ops.Conv2D(input=operands[0], filter=operands[1], **conv)
    if op_type == "DepthwiseConv2dNative":
        return tf.raw_ops.DepthwiseConv2dNative(input=operands[0], filter=operands[1], **conv)
    if op_type == "Conv2DBackpropInput":
        return tf.raw_ops.Conv2DBackpropInput(input_sizes=operands[0], filter=operands[1],
                                              out_backprop=operands[2], **conv)
    return tf.raw_ops.Conv2DBackpropFilter(input=operands[0], filter_sizes=operands[1],
                                           out_backprop=operands[2], **conv)


def _operands(signature, rng, values):
    """Random operands of the op's shapes; the int32 size inputs of the convolution
    gradients get their values (`values`: {input index: value})."""
    _, inputs, _ = signature
    operands = []
    for i, (shape, dtype) in enumerate(inputs):
        if dtype == "int32":
            operands.append(tf.constant(values[i], tf.int32))
        else:
            operands.append(tf.constant(rng.standard_normal(shape), dtype))
    return operands


def time_op(signature, size_values=None, repeat=20, repeats=5):
    """Seconds of one op of `signature` alone, XLA-compiled: the best of `repeats` calls
    of `repeat` distinct copies, divided by `repeat` (`size_values`: as `step_matmuls`)."""
    rng = np.random.default_rng(0)
    copies = [_operands(signature, rng, size_values or {}) for _ in range(repeat)]

    @tf.function(jit_compile=True)
    def run():
        return tf.add_n([tf.reduce_sum(tf.cast(_run_op(signature, ops), tf.float32))
                         for ops in copies])

    return _best_seconds(lambda: run().numpy(), repeats) / repeat


def memory_bandwidth(mebibytes=64, repeats=10):
    """Bytes per second of an in-place v <- v * s over `mebibytes` of float32 (read once,
    written once, as the optimizer updates its variables): the faster of an
    XLA-compiled update of a variable and numpy's (so that a slow kernel of either does
    not lower the bound).

    Returns:
      (bytes per second, {"xla": ..., "numpy": ...}).
    """
    size = mebibytes * 2 ** 20 // 4
    v = tf.Variable(tf.random.normal([size]))

    @tf.function(jit_compile=True)
    def update():
        v.assign(v * 1.0001)
        return v[0]

    a = np.random.default_rng(0).standard_normal(size).astype(np.float32)
    rates = {"xla": 2 * size * 4 / _best_seconds(lambda: update().numpy(), repeats),
             "numpy": 2 * size * 4 / _best_seconds(
                 lambda: np.multiply(a, 1.0001, out=a), repeats)}
    return max(rates.values()), rates


def roofline(model, x, optimizer="adam"):
    """The step's roofline: its matmuls timed alone plus the optimizer's bytes.

    Args:
      model: a built zoo model.
      x: one training batch: images [B, ...] or the pipeline's dict (with labels).
      optimizer: the optimizer's name (a key of `OPTIMIZER_PASSES`).

    Returns:
      Dict: `seconds` (the bound per step), `matmul_seconds`, `optimizer_seconds`,
      `optimizer_bytes`, `memory_bytes_per_second` (and `memory_bytes_per_second_by`
      kernel), `matmul_ops` (how many),
      `matmul_shapes` (distinct signatures), `parameters`.
    """
    if optimizer not in OPTIMIZER_PASSES:
        raise ValueError(f"`optimizer` must be one of {sorted(OPTIMIZER_PASSES)}. "
                         f"Received: optimizer={optimizer!r}")
    matmuls = step_matmuls(step_graph(model, x))
    matmul_seconds = sum(count * time_op(signature, sizes)
                         for signature, (count, sizes) in matmuls.items())
    parameters = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    optimizer_bytes = OPTIMIZER_PASSES[optimizer] * 4 * parameters
    bandwidth, rates = memory_bandwidth()
    optimizer_seconds = optimizer_bytes / bandwidth
    return {"seconds": matmul_seconds + optimizer_seconds, "matmul_seconds": matmul_seconds,
            "optimizer_seconds": optimizer_seconds, "optimizer_bytes": optimizer_bytes,
            "memory_bytes_per_second": bandwidth, "memory_bytes_per_second_by": rates,
            "matmul_ops": sum(count for count, _ in matmuls.values()),
            "matmul_shapes": len(matmuls), "parameters": parameters}
