"""Mixed precision of a model's networks through Keras 3 dtype policies.

`apply(model, "bfloat16")` gives each encoder/decoder network of `model`
(every `Network`: the layers of `tfvae.nn.networks` and the deterministic
MLPs of the hierarchical stacks) and all its sub-layers the policy
"mixed_bfloat16" ("mixed_float16" for "float16"): the weights stay float32,
the network computes in the low precision and returns float32
(`Network.full_precision_output`), so every tensor a model combines, and
every distribution parameter, is float32. The rest of the model stays
float32: the model itself (x is read as float32), the latent layer's head,
priors, flows, MADEs, PixelCNNs and the hierarchies' heads. The families
also cast parameters a low-precision layer hands them to float32
(`tfvae.distributions.families.full_precision`, for layers under a global
Keras policy), so every log-density, KL, the logsumexp of importance
sampling, the loss, the gradients of the (float32) weights and the
optimizer's slots are float32.

The policy is in each network's config (its sub-layers take it from there),
so a `.keras` file reloads with it; the exported SavedModel takes and
returns float32, its casts are inside the graph. The casts and the policy
are the same on a CPU, a GPU and a TPU: nothing in the compiled step is
specific to a CPU.

Hardware (`hardware_warnings`): bfloat16 has native units on TPUs, recent
GPUs and on CPUs with AMX-BF16 or AVX512-BF16 (TensorFlow's oneDNN kernels
use them); other CPUs emulate it, slower than float32. float16 with loss
scaling is for GPUs. XLA on a CPU computes bfloat16 matrix products without
the native units (measured: bench/RESULTS.md, "Mixed precision").
"""

import keras

from tfvae import validation

MIXED_PRECISION = ("none", "bfloat16", "float16")
"""Values of `mixed_precision`: float32 throughout, or networks in bfloat16 / float16."""

POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
"""The Keras dtype policy of the networks for each low precision."""

LOW_PRECISION = ("bfloat16", "float16")
"""Compute dtypes of a mixed-precision network."""


class Network(keras.layers.Layer):
    """A layer that may compute in a low precision (`apply`): an encoder or decoder
    network whose sub-layers are its own, and whose output is cast to float32
    (`full_precision_output`) before the model uses it."""

    def full_precision_output(self, outputs):
        """`outputs` in float32 when this network computes in bfloat16 or float16."""
        if self.compute_dtype in LOW_PRECISION:
            return keras.ops.cast(outputs, "float32")
        return outputs


NATIVE_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of a CPU with bfloat16 arithmetic units (either suffices)."""


def policy(mixed_precision):
    """The `keras.DTypePolicy` of the networks, or None for "none".

    Raises:
      ValueError: `mixed_precision` not in `MIXED_PRECISION`.
    """
    validation.one_of("mixed_precision", mixed_precision, MIXED_PRECISION)
    return None if mixed_precision == "none" else keras.DTypePolicy(POLICIES[mixed_precision])


def _sublayers(layer, include_self):
    """Every layer tracked under `layer`, recursively (Keras' own traversal)."""
    # pylint: disable-next=protected-access
    return list(layer._flatten_layers(include_self=include_self))


def networks_of(model):
    """The `Network` layers of `model` (a Keras layer or model), outermost first."""
    return [layer for layer in _sublayers(model, False) if isinstance(layer, Network)]


def apply(model, mixed_precision):
    """Sets the networks of `model` to compute in `mixed_precision` (before the model is built).

    Args:
      model: a tfvae model (any Keras layer holding `Network`s).
      mixed_precision: one of `MIXED_PRECISION`; "none" changes nothing.

    Returns:
      The networks whose policy was set ([] for "none").

    Raises:
      ValueError: an unknown `mixed_precision`, or a low precision for a model
        with no network it could apply to (its layers would all stay float32).
    """
    network_policy = policy(mixed_precision)
    if network_policy is None:
        return []
    found = networks_of(model)
    if not found:
        raise ValueError(
            f"`mixed_precision` needs an encoder or decoder network (tfvae.nn.precision."
            f"Network); {model.name!r} has none, so it would train in float32 all the "
            f"same. Use --mixed_precision=none. Received: mixed_precision={mixed_precision!r}")
    for network in found:
        for layer in _sublayers(network, True):
            layer.dtype_policy = network_policy
    return found


def cpu_info(path="/proc/cpuinfo"):
    """{field: value} of the first processor in `path` ("model name", "flags", ...);
    {} if it is unreadable (not Linux)."""
    info = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break                          # the end of the first processor
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (e.g. "avx512_bf16") from `path`; empty if it is unreadable."""
    return frozenset(cpu_info(path).get("flags", "").split())


def native_bfloat16(flags):
    """Whether CPU flags `flags` include bfloat16 arithmetic (`NATIVE_BFLOAT16_FLAGS`)."""
    return any(flag in flags for flag in NATIVE_BFLOAT16_FLAGS)


def hardware_warnings(mixed_precision, *, accelerator, jit_compile, flags):
    """What a user should know about `mixed_precision` on this hardware ([] if nothing).

    Args:
      mixed_precision: one of `MIXED_PRECISION`.
      accelerator: whether the model runs on a GPU or TPU (False: the CPU).
      jit_compile: whether the train step is compiled with XLA.
      flags: the CPU's feature flags (`cpu_flags()`).

    Returns:
      A list of messages: bfloat16 emulated on a CPU without native bfloat16;
      bfloat16 under XLA on a CPU (whose matrix products XLA emulates);
      float16 on a CPU.
    """
    validation.one_of("mixed_precision", mixed_precision, MIXED_PRECISION)
    if accelerator or mixed_precision == "none":
        return []
    if mixed_precision == "float16":
        return ["--mixed_precision=float16 on a CPU: float16 with loss scaling is meant for "
                "GPUs; a CPU emulates much of it. Use bfloat16 on a CPU with AMX-BF16 or "
                "AVX512-BF16, or none."]
    if not native_bfloat16(flags):
        return ["--mixed_precision=bfloat16 on a CPU without native bfloat16 (no "
                f"{' or '.join(NATIVE_BFLOAT16_FLAGS)} in /proc/cpuinfo): bfloat16 is emulated "
                "and slower than float32. Use --mixed_precision=none on this machine."]
    if jit_compile:
        return ["--mixed_precision=bfloat16 with --jit_compile on a CPU: XLA computes "
                "bfloat16 matrix products without the CPU's bfloat16 units, slower than "
                "float32; --jit_compile=false uses them (oneDNN). See bench/RESULTS.md, "
                "\"Mixed precision\"."]
    return []
