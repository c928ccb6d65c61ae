"""Distribution families: tensors of parameters in, `tfd.Distribution` out.

A family is a small serializable object (no weights) with a `params_size`
and `make(params)`. Networks produce the flat parameter tensor; the family
turns it into a distribution whose event shape is the family's
`event_shape`. Likelihood families (Bernoulli, Gaussian, Categorical) model
p(x|z) (book §1.7.3); posterior families (DiagonalGaussian,
FullCovarianceGaussian) model q(z|x) with reparameterized sampling (§2.4-2.5).

Every family validates its arguments where they enter and is registered with
Keras so that models holding it round-trip through `get_config` and `.keras`.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.nn import precision

tfd = tfp.distributions

_PACKAGE = "tfvae"


def _check_event_shape(event_shape, name="event_shape"):
    """Returns `event_shape` as a tuple of positive ints or raises ValueError."""
    if isinstance(event_shape, int):
        event_shape = (event_shape,)
    try:
        shape = tuple(int(d) for d in event_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a sequence of positive integers. "
            f"Received: {name}={event_shape!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of positive integers. "
            f"Received: {name}={event_shape!r}")
    return shape


def full_precision(params):
    """`params` as a tensor, in float32 if a network computed it in bfloat16 or float16.

    The boundary of mixed precision (`tfvae.nn.precision`): every distribution
    parameter, log-density and KL is float32 (bfloat16's 8-bit mantissa would
    round a log p(x|z) summed over 784 pixels to about 1 nat). tfvae's networks
    already return float32; this covers layers under a global low-precision
    Keras policy. float32 and float64 pass unchanged.

    Args:
      params: a tensor (or array) of distribution parameters [..., n].

    Returns:
      The same values [..., n], float32 if they were bfloat16 or float16.
    """
    params = tf.convert_to_tensor(params)
    return tf.cast(params, tf.float32) if params.dtype.name in precision.LOW_PRECISION else params


def split_params(params, event_shape, k):
    """Reshapes flat params [..., prod(event)*k] to k tensors [..., *event].

    The parameter index is innermost, so a conv decoder's [H, W, C*k] output
    flattened in row-major order maps pixel by pixel. Low-precision params
    become float32 (`full_precision`).
    """
    params = full_precision(params)
    size = int(np.prod(event_shape)) * k
    if params.shape[-1] is not None and params.shape[-1] != size:
        raise ValueError(
            f"`params` must have last dimension {size} for event_shape="
            f"{event_shape} and {k} parameter(s) per element. "
            f"Received: params.shape={params.shape}")
    batch = tf.shape(params)[:-1]
    params = tf.reshape(params, tf.concat([batch, event_shape, [k]], 0))
    return tf.unstack(params, num=k, axis=-1)


class Family:
    """Base class: maps a flat parameter tensor to a distribution.

    `support` says what `log_prob` is: "real" for a density on R^D (or
    [0, 1]^D), "discrete" for a probability mass on a finite grid of values
    (a bits/dim is defined), "binary" for a mass on {0, 1}^D, which is a
    probability on binary data and only a cross-entropy on grey values
    (`tfvae.evaluation.estimators`).
    """

    support = "real"

    def __init__(self, event_shape):
        self.event_shape = _check_event_shape(event_shape)

    @property
    def params_size(self):
        """Number of parameters per example (last dimension of `params`)."""
        raise NotImplementedError

    def make(self, params):
        """Returns the distribution for `params` of shape [..., params_size]."""
        raise NotImplementedError

    def get_config(self):
        return {"event_shape": list(self.event_shape)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(_PACKAGE)
class Bernoulli(Family):
    """Factorized Bernoulli likelihood with logits (book §1.7.3).

    log p(x|z) = sum_j x_j log p_j + (1 - x_j) log(1 - p_j), computed from
    logits for stability. Values of x in [0, 1] (grey values) give the usual
    cross-entropy; anything outside [0, 1] is rejected by the model.

    Args:
      event_shape: shape of one example, e.g. `(28, 28, 1)`.
    """

    support = "binary"

    @property
    def params_size(self):
        return int(np.prod(self.event_shape))

    def make(self, params):
        """Args: params: logits [..., prod(event_shape)]. Returns: Independent Bernoulli."""
        (logits,) = split_params(params, self.event_shape, 1)
        return tfd.Independent(
            tfd.Bernoulli(logits=logits, dtype=logits.dtype),
            reinterpreted_batch_ndims=len(self.event_shape))


@keras.saving.register_keras_serializable(_PACKAGE)
class Gaussian(Family):
    """Factorized Gaussian likelihood with fixed or learned variance.

    Args:
      event_shape: shape of one example.
      scale: a positive float for a fixed standard deviation, or None to learn
        one per element: scale = softplus(raw) + min_scale.
      min_scale: floor on a learned scale; keeps log p(x|z) bounded when the
        decoder would otherwise shrink the variance to zero on a pixel that is
        constant in the data.
    """

    def __init__(self, event_shape, scale=None, min_scale=1e-3):
        super().__init__(event_shape)
        if scale is not None and not float(scale) > 0:
            raise ValueError(f"`scale` must be positive or None. Received: scale={scale!r}")
        if not float(min_scale) >= 0:
            raise ValueError(f"`min_scale` must be >= 0. Received: min_scale={min_scale!r}")
        self.scale = None if scale is None else float(scale)
        self.min_scale = float(min_scale)

    @property
    def params_size(self):
        return int(np.prod(self.event_shape)) * (1 if self.scale is not None else 2)

    def make(self, params):
        """Args: params: [..., params_size] (loc, or loc and raw scale interleaved)."""
        if self.scale is not None:
            (loc,) = split_params(params, self.event_shape, 1)
            scale = tf.fill(tf.shape(loc), tf.constant(self.scale, loc.dtype))
        else:
            loc, raw = split_params(params, self.event_shape, 2)
            scale = tf.math.softplus(raw) + self.min_scale
        return tfd.Independent(tfd.Normal(loc, scale),
                               reinterpreted_batch_ndims=len(self.event_shape))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "min_scale": self.min_scale}


@keras.saving.register_keras_serializable(_PACKAGE)
class Categorical(Family):
    """Factorized categorical distribution with logits.

    Args:
      num_classes: number of categories per element.
      event_shape: shape of the categorical elements; `()` for one label.
    """

    support = "discrete"

    def __init__(self, num_classes, event_shape=()):
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(
                f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}")
        self.num_classes = int(num_classes)
        self.event_shape = () if event_shape in ((), []) else _check_event_shape(event_shape)

    @property
    def params_size(self):
        return int(np.prod(self.event_shape, dtype=np.int64)) * self.num_classes

    def make(self, params):
        """Args: params: logits [..., prod(event_shape) * num_classes]."""
        params = full_precision(params)
        logits = tf.reshape(params, tf.concat(
            [tf.shape(params)[:-1], self.event_shape, [self.num_classes]], 0))
        dist = tfd.Categorical(logits=logits)
        if self.event_shape:
            dist = tfd.Independent(dist, reinterpreted_batch_ndims=len(self.event_shape))
        return dist

    def get_config(self):
        return {"num_classes": self.num_classes, "event_shape": list(self.event_shape)}


@keras.saving.register_keras_serializable(_PACKAGE)
class DiagonalGaussian(Family):
    """Factorized Gaussian posterior q(z|x) = N(mu, diag(sigma^2)) (book §2.5).

    The encoder head emits (mu, log sigma); z = mu + sigma * eps with
    eps ~ N(0, I) is the reparameterization of §2.4 (TFP's sampler does
    exactly this), and log q(z|x) = sum_i log N(eps_i; 0, 1) - log sigma_i.

    Args:
      latent_size: dimension of z.
    """

    factorized = True  # q(z|x) = prod_i q(z_i|x): per-dimension KLs are defined.

    def __init__(self, latent_size):
        super().__init__((latent_size,))
        self.latent_size = self.event_shape[0]

    @property
    def params_size(self):
        return 2 * self.latent_size

    def make(self, params):
        """Args: params: [..., 2 * latent_size] = (mu, log sigma). Returns: MVNDiag."""
        params = full_precision(params)
        _check_last_dim(params, self.params_size)
        loc, log_scale = tf.split(params, 2, axis=-1)
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.exp(log_scale))

    def get_config(self):
        return {"latent_size": self.latent_size}


@keras.saving.register_keras_serializable(_PACKAGE)
class FullCovarianceGaussian(Family):
    """Full-covariance Gaussian posterior, exactly Algorithm 2 of the book (§2.5.1).

    The encoder head emits (mu, log sigma, L'); with L_mask the matrix of
    ones strictly below the diagonal,

        L = L_mask * L' + diag(sigma),   z = mu + L eps,   Sigma = L L^T,

    so log |det dz/deps| = sum_i log sigma_i. Only the strictly lower entries
    of L' are parameters (the masked ones would get zero gradient), so the
    head emits d(d-1)/2 numbers for L' in row-major order of
    `np.tril_indices(d, -1)`.

    Args:
      latent_size: dimension d of z.
    """

    def __init__(self, latent_size):
        super().__init__((latent_size,))
        self.latent_size = self.event_shape[0]
        d = self.latent_size
        rows, cols = np.tril_indices(d, -1)
        # Index 0 of the gather source is a constant zero: every entry of L'
        # that the mask removes (diagonal and above) reads it.
        index = np.zeros((d, d), np.int32)
        index[rows, cols] = np.arange(1, len(rows) + 1)
        self._gather_index = index.reshape(-1)

    @property
    def params_size(self):
        d = self.latent_size
        return 2 * d + d * (d - 1) // 2

    def scale_tril(self, params):
        """Returns (loc [..., d], L [..., d, d], log sigma [..., d]) from params."""
        params = full_precision(params)
        _check_last_dim(params, self.params_size)
        d = self.latent_size
        loc, log_scale, lower = tf.split(params, [d, d, d * (d - 1) // 2], axis=-1)
        padded = tf.concat([tf.zeros_like(lower[..., :1]), lower], axis=-1)
        masked = tf.gather(padded, self._gather_index, axis=-1)   # [..., d*d] = L_mask * L'
        masked = tf.reshape(masked, tf.concat([tf.shape(loc)[:-1], [d, d]], 0))
        return loc, masked + tf.linalg.diag(tf.exp(log_scale)), log_scale

    def make(self, params):
        """Args: params: [..., params_size]. Returns: MultivariateNormalTriL."""
        loc, scale_tril, _ = self.scale_tril(params)
        return tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale_tril)

    def get_config(self):
        return {"latent_size": self.latent_size}


def _check_last_dim(params, size):
    if params.shape[-1] is not None and params.shape[-1] != size:
        raise ValueError(
            f"`params` must have last dimension {size}. Received: params.shape={params.shape}")


def diagonal_normal_params(dist):
    """Returns (loc, scale) [..., d] if `dist` is a diagonal Gaussian, else None.

    Used where a per-dimension quantity (free bits per latent group, §2.8.1)
    is only defined for factorized distributions.
    """
    if isinstance(dist, tfd.MultivariateNormalLinearOperator) and isinstance(
            dist.scale, tf.linalg.LinearOperatorDiag):
        return dist.loc if dist.loc is not None else tf.zeros_like(dist.scale.diag), dist.scale.diag
    if isinstance(dist, tfd.Independent) and isinstance(dist.distribution, tfd.Normal) and (
            dist.reinterpreted_batch_ndims == 1):
        return dist.distribution.loc, dist.distribution.scale
    return None

