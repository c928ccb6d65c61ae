"""MADE, the masked autoregressive network of IAF and MAF (book §3.3-3.4, §4.4).

Germain, Gregor, Murray and Larochelle, "MADE: Masked Autoencoder for
Distribution Estimation" (ICML 2015). Every input variable j gets a degree
m(j) in 1..D from the ordering; every hidden unit k a degree m(k); the masks
keep a connection only where it cannot carry information from a variable to
an output of equal or smaller degree:

    input j  -> hidden k:   m(k) >= m(j)
    hidden j -> hidden k:   m(k) >= m(j)
    hidden k -> output i:   m(i) >  m(k)

so output i depends only on the inputs j with m(j) < m(i). A context input h
(IAF's encoder context, Algorithm 3) is unmasked and added to the first
hidden layer; with a context, hidden degrees start at 0 so that the first
variable's outputs can depend on h (degree-0 units see h and no input).

This is our own Keras 3 layer: TFP's `tfb.AutoregressiveNetwork` is a
`tf_keras` layer whose weights Keras 3 does not track.
"""

import keras
import numpy as np

_PACKAGE = "tfvae"
ORDERINGS = ("natural", "reversed", "random")


def spawn_seeds(seed, count):
    """Returns `count` integer seeds derived from `seed` (all None for seed None)."""
    if seed is None:
        return [None] * count
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=count)]


def check_units(value, name):
    """Validates a non-empty sequence of positive layer sizes; returns a tuple."""
    try:
        units = tuple(int(u) for u in value)
    except (TypeError, ValueError):
        units = ()
    if not units or any(u <= 0 for u in units):
        raise ValueError(f"`{name}` must be a non-empty sequence of positive integers. "
                         f"Received: {name}={value!r}")
    return units


def check_int(value, name, minimum):
    """Validates an integer >= minimum; returns it as a Python int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def _hidden_degrees(units, low, high):
    """Degrees of `units` hidden units spread evenly over [low, high].

    Evenly spread (rather than sampled, as in the paper) so that a layer
    narrower than the number of degrees still covers their whole range.
    """
    return low + (np.arange(units) * (high - low + 1)) // units


@keras.saving.register_keras_serializable(_PACKAGE)
class MADE(keras.layers.Layer):
    """Masked autoregressive MLP: [..., event_size] -> [..., event_size, params].

    Args:
      event_size: number D of autoregressive variables.
      hidden_units: sizes of the masked hidden layers, e.g. `(64, 64)`.
      params: number of outputs per variable (2 for IAF's (m, s), MAF's
        (shift, log_scale)).
      context_size: size of the unmasked context input h (0: none).
      ordering: "natural" (variable j has degree j + 1), "reversed" or
        "random" (a permutation drawn from `seed`).
      seed: integer seed of the random ordering and the kernel initializers;
        required for ordering="random" so the ordering is reproducible.
      activation: Keras activation of the hidden layers.
      output_bias: initial output bias per parameter (length `params`);
        default zeros. IAF uses it to start its gates near 1.

    Call args:
      inputs: [..., event_size].
      context: [..., context_size], broadcast against the leading dimensions
        of `inputs`; required exactly when context_size > 0.

    Returns:
      [..., event_size, params]; output [..., i, :] depends only on the inputs
      j with `degrees[j] < degrees[i]` (and on the context).

    Attributes:
      order: [event_size] permutation: variable `order[k]` comes k-th
        (degree k + 1).
      degrees: [event_size] degree m(j) in 1..event_size of each variable.
    """

    def __init__(self, event_size, hidden_units, params=2, context_size=0, ordering="natural",
                 seed=None, activation="relu", output_bias=None, **kwargs):
        super().__init__(**kwargs)
        self.event_size = check_int(event_size, "event_size", 1)
        self.hidden_units = check_units(hidden_units, "hidden_units")
        self.params = check_int(params, "params", 1)
        self.context_size = check_int(context_size, "context_size", 0)
        if ordering not in ORDERINGS:
            raise ValueError(
                f"`ordering` must be one of {ORDERINGS}. Received: ordering={ordering!r}")
        if seed is not None:
            check_int(seed, "seed", 0)
        if ordering == "random" and seed is None:
            raise ValueError("ordering='random' needs an integer `seed` so the ordering is "
                             "reproducible. Received: seed=None")
        self.ordering = ordering
        self.seed = seed
        self.activation = activation
        self._activation = keras.activations.get(activation)
        if output_bias is not None:
            output_bias = [float(b) for b in output_bias]
            if len(output_bias) != self.params:
                raise ValueError(f"`output_bias` must have `params`={self.params} entries. "
                                 f"Received: output_bias={output_bias!r}")
        self.output_bias_init = output_bias

        if ordering == "natural":
            self.order = np.arange(self.event_size)
        elif ordering == "reversed":
            self.order = np.arange(self.event_size)[::-1].copy()
        else:
            self.order = np.random.default_rng(seed).permutation(self.event_size)
        self.degrees = np.empty(self.event_size, dtype=np.int64)
        self.degrees[self.order] = np.arange(1, self.event_size + 1)

    def build(self, input_shape):
        if input_shape[-1] != self.event_size:
            raise ValueError(f"MADE expects inputs [..., {self.event_size}]. "
                             f"Received: input_shape={input_shape}")
        seeds = spawn_seeds(self.seed, len(self.hidden_units) + 2)
        # Degree-0 hidden units see no input; they are useful only to carry the context.
        low = 0 if self.context_size else 1
        high = max(self.event_size - 1, low)
        in_degrees, n_in = self.degrees, self.event_size
        self._kernels, self._biases, self._masks = [], [], []
        for i, units in enumerate(self.hidden_units):
            degrees = _hidden_degrees(units, low, high)
            self._masks.append(  # [n_in, units]
                (degrees[None, :] >= in_degrees[:, None]).astype(self.variable_dtype))
            self._kernels.append(self.add_weight(
                shape=(n_in, units), name=f"kernel_{i}",
                initializer=keras.initializers.GlorotUniform(seed=seeds[i])))
            self._biases.append(self.add_weight(shape=(units,), name=f"bias_{i}",
                                                initializer="zeros"))
            in_degrees, n_in = degrees, units
        if self.context_size:
            self.context_kernel = self.add_weight(
                shape=(self.context_size, self.hidden_units[0]), name="context_kernel",
                initializer=keras.initializers.GlorotUniform(seed=seeds[-2]))
        # Strict inequality: output i never sees a unit carrying variable i itself.
        self._output_mask = (self.degrees[None, :, None] > in_degrees[:, None, None]).astype(
            self.variable_dtype)  # [units, event_size, 1]
        self.output_kernel = self.add_weight(
            shape=(n_in, self.event_size, self.params), name="output_kernel",
            initializer=keras.initializers.GlorotUniform(seed=seeds[-1]))
        bias = np.zeros((self.event_size, self.params)) if self.output_bias_init is None else (
            np.tile(self.output_bias_init, (self.event_size, 1)))
        self.output_bias = self.add_weight(shape=(self.event_size, self.params),
                                           name="output_bias",
                                           initializer=keras.initializers.Constant(bias))

    def call(self, inputs, context=None):
        if (context is None) != (self.context_size == 0):
            raise ValueError(f"MADE has context_size={self.context_size}: pass `context` exactly "
                             f"when context_size > 0. Received: context={context!r}")
        x = inputs
        for i, (kernel, bias, mask) in enumerate(zip(self._kernels, self._biases, self._masks)):
            x = keras.ops.matmul(x, kernel * mask) + bias  # [..., units]
            if i == 0 and context is not None:
                x = x + keras.ops.matmul(context, self.context_kernel)  # broadcasts
            x = self._activation(x)
        return keras.ops.einsum("...k,kdp->...dp", x,
                                self.output_kernel * self._output_mask) + self.output_bias

    def compute_output_shape(self, inputs_shape, context_shape=None):
        return (*inputs_shape, self.params)

    def get_config(self):
        return {**super().get_config(), "event_size": self.event_size,
                "hidden_units": list(self.hidden_units), "params": self.params,
                "context_size": self.context_size, "ordering": self.ordering,
                "seed": self.seed, "activation": self.activation,
                "output_bias": self.output_bias_init}
