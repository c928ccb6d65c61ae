"""Hierarchical VAE: a top-down stack of stochastic layers as a Keras 3 model (book §4.1-4.2).

`HierarchicalVAE` wires a stack (`tfvae.hierarchy.MLPStack` or
`ResNetStack`: the cells of p(z_L) p(z_{L-1}|z_L) ... p(x|z_1) and the
chosen inference) to a likelihood family, and owns `train_step`,
`test_step`, `elbo`, `log_prob`, `sample`, `encode`/`decode`, like `VAE`.
The ELBO is `objectives.elbo_loss` with the total rate = sum of the
layers' KL terms; free bits apply per layer (and per group within a layer,
§2.8.1); per-layer rates are the metrics `rate_0` (z_1) ... `rate_{L-1}`.
The importance-sampled log p(x) uses the joint of all layers,

    log p(x) ~= log (1/K) sum_k p(x, z_1..L^k) / q(z_1..L^k | x),

with log p(x, z)/q(z|x) = log p(x|z) - sum_l [log q_l(z_l) - log p_l(z_l)].
"""

import keras
import numpy as np
import tensorflow as tf

from tfvae import families
from tfvae import objectives
from tfvae import streams
from tfvae.hierarchy import base
from tfvae.models import example_model
from tfvae.models import guarded_step
from tfvae.models import vae as vae_lib

_PACKAGE = "tfvae"


# The stacks' loops and branches are over Python values (layers, options):
# autograph's source conversion of them only costs tracing time (tens of seconds
# for a deep stack), so the model's graph entry points skip it.
_plain_python = tf.autograph.experimental.do_not_convert


def _deserialize(obj):
    return keras.saving.deserialize_keras_object(obj) if isinstance(obj, dict) else obj


@keras.saving.register_keras_serializable(_PACKAGE)
class HierarchicalVAE(example_model.ExampleModelMixin, keras.Model):
    """VAE with L stochastic layers (Burda 2016, Sønderby 2016, Kingma 2016).

    Args:
      stack: a hierarchy stack layer (`MLPStack`, `ResNetStack`) whose
        `infer` / `generate` give the layers' `LayerOutput`s and the
        likelihood parameters [N, likelihood.params_size].
      likelihood: family of p(x|z) with event shape (H, W, C).
      analytic_kl: closed-form per-layer KLs where the stack allows it.
      beta: weight of the rate term.
      kl_warmup_steps: linear KL warm-up over this many steps (§2.8.1).
      free_bits: lambda in nats per group (0 disables); groups are the
        layers, or `free_bits_groups` contiguous groups within each layer.
      free_bits_groups: groups per layer (> 1 needs layers without IAF).
      max_grad_norm: skip (and count in `skipped_steps`) any step whose
        global gradient norm exceeds this; 0 disables.
      seed: int seed for the model's sampling noise.
    """

    def __init__(self, stack, likelihood, *, analytic_kl=True, beta=1.0, kl_warmup_steps=0,
                 free_bits=0.0, free_bits_groups=1, max_grad_norm=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.stack = _deserialize(stack)
        self.likelihood = _deserialize(likelihood)
        if not hasattr(self.stack, "infer") or not hasattr(self.stack, "generate"):
            raise ValueError(f"`stack` must be a hierarchy stack. Received: stack={stack!r}")
        if not isinstance(self.likelihood, families.Family):
            raise ValueError(f"`likelihood` must be a family. Received: likelihood={likelihood!r}")
        if not float(beta) >= 0:
            raise ValueError(f"`beta` must be >= 0. Received: beta={beta!r}")
        if not isinstance(kl_warmup_steps, (int, np.integer)) or kl_warmup_steps < 0:
            raise ValueError(f"`kl_warmup_steps` must be an integer >= 0. "
                             f"Received: kl_warmup_steps={kl_warmup_steps!r}")
        if not float(free_bits) >= 0:
            raise ValueError(f"`free_bits` must be >= 0. Received: free_bits={free_bits!r}")
        if not float(max_grad_norm) >= 0:
            raise ValueError(f"`max_grad_norm` must be >= 0. Received: max_grad_norm={max_grad_norm!r}")
        sizes = [base.flat_size(s) for s in self.stack.latent_shapes]
        if (not isinstance(free_bits_groups, (int, np.integer)) or free_bits_groups < 1
                or any(size % free_bits_groups for size in sizes)):
            raise ValueError(f"`free_bits_groups` must divide every layer's latent size {sizes}. "
                             f"Received: free_bits_groups={free_bits_groups!r}")
        if free_bits_groups > 1 and getattr(self.stack, "iaf_steps", 0):
            raise ValueError("Free bits per group within a layer need layers without IAF "
                             f"(no per-dimension KL). Received: free_bits_groups={free_bits_groups}")
        self.image_shape = tuple(self.likelihood.event_shape)
        if tuple(self.stack.image_shape) != self.image_shape:
            raise ValueError(f"The stack's image_shape {tuple(self.stack.image_shape)} differs "
                             f"from the likelihood's {self.image_shape}.")
        self.analytic_kl = bool(analytic_kl)
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.free_bits = float(free_bits)
        self.free_bits_groups = int(free_bits_groups)
        self.max_grad_norm = float(max_grad_norm)
        self.seed = seed
        self.num_layers = len(sizes)
        self._make_seed_generators(seed)
        names = ("loss", "elbo", "rate", "distortion", "beta",
                 *(f"rate_{l}" for l in range(self.num_layers)))
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self._trackers["skipped_steps"] = keras.metrics.Sum(name="skipped_steps")

    def build(self, input_shape):
        self._check_shape(tuple(input_shape))
        if not self.stack.built:
            self.stack.build(tuple(input_shape))
        self.built = True

    # The VAE's input handling, unchanged (same checks, same messages).
    _check_shape = vae_lib.VAE._check_shape
    _images = vae_lib.VAE._images
    _check_values = vae_lib.VAE._check_values

    # ------------------------------------------------------------- the model
    def _params_to_likelihood(self, params):
        return self.likelihood.make(tf.reshape(params, [-1, self.likelihood.params_size]))

    def layer_terms(self, x, seed, analytic=None, training=False):
        """One posterior pass: (list of `LayerOutput` z_1..z_L, log p(x|z) [N])."""
        analytic = self.analytic_kl if analytic is None else analytic
        outputs, params = self.stack.infer(x, seed, analytic=analytic, training=training)
        return outputs, self._params_to_likelihood(params).log_prob(x)

    @property
    def likelihood_support(self):
        """What `log_prob` measures: the likelihood family's `support` ("real",
        "discrete" or "binary"; see `tfvae.families.Family`)."""
        return self.likelihood.support

    def encode(self, x):
        """Posterior summary of every layer; see `posterior_summary`."""
        return self.posterior_summary(x)

    @_plain_python
    def posterior_summary(self, x):
        """Top-down posterior pass at the summary points (means) of each q_l.

        Returns:
          {"loc": z_1..z_L flattened and concatenated [N, D], "scale": the
          base posteriors' standard deviations [N, D]}.
        """
        x = tf.convert_to_tensor(x, self.compute_dtype)
        outputs, _ = self.stack.infer(x, tf.constant([0, 0]), analytic=True, mean=True)
        n = tf.shape(x)[0]
        flat = lambda t: tf.reshape(t, [n, -1])
        scales = [base.base_scale(o.q, o.z) for o in outputs]
        return {"loc": tf.concat([flat(o.z) for o in outputs], axis=-1),
                "scale": tf.concat([flat(s) for s in scales], axis=-1)}

    @_plain_python
    def decode(self, z):
        """p(x | z_1..L) for the flattened concatenated latents z [N, D] (as `posterior_summary`)."""
        z = tf.convert_to_tensor(z, self.compute_dtype)
        n = tf.shape(z)[0]
        sizes = [base.flat_size(s) for s in self.stack.latent_shapes]
        latents = [tf.reshape(part, [n, *shape]) for part, shape in
                   zip(tf.split(z, sizes, axis=-1), self.stack.latent_shapes)]
        return self._params_to_likelihood(self.stack.generate(n, tf.constant([0, 0]),
                                                              latents=latents))

    def call(self, inputs):
        """Reconstruction mean E[x|z] at the posterior summary points [N, H, W, C]."""
        return self.decode(self.posterior_summary(self._images(inputs))["loc"]).mean()

    @_plain_python
    def sample(self, num_samples, seed=None, temperature=1.0):
        """Ancestral samples: z_L ~ p, ..., z_1 ~ p(z_1|z_2), returns E[x|z] [N, H, W, C].

        `temperature` multiplies the prior scales of every layer (1 = the model).
        """
        seed = self._seed(seed, self.eval_seed_generator)
        return self._params_to_likelihood(
            self.stack.generate(num_samples, seed, temperature=temperature)).mean()

    # ---------------------------------------------------------------- objective
    def kl_weight(self):
        optimizer = getattr(self, "optimizer", None)   # None before compile()
        step = optimizer.iterations if optimizer is not None else 0
        return self.beta * objectives.linear_warmup(step, self.kl_warmup_steps)

    def objective(self, x, seed, training=False):
        """Loss dict: loss, elbo, rate (sum over layers), distortion, beta, rate_l."""
        outputs, log_likelihood = self.layer_terms(x, seed, training=training)
        kl = tf.add_n([o.kl for o in outputs])                               # [N]
        kl_groups = None
        if self.free_bits:
            kl_groups = tf.concat([base.kl_groups(o, self.free_bits_groups)
                                   for o in outputs], axis=-1)               # [N, L * groups]
        beta = self.kl_weight()
        out = objectives.elbo_loss(log_likelihood[tf.newaxis], kl, beta=beta,
                                   kl_groups=kl_groups, free_bits=self.free_bits)
        out["beta"] = tf.cast(beta, out["loss"].dtype)
        for l, o in enumerate(outputs):
            out[f"rate_{l}"] = tf.reduce_mean(o.kl)
        return out

    @_plain_python
    def elbo(self, x, num_samples=1, seed=None):
        """Per-example ELBO estimate [batch], averaged over `num_samples` passes."""
        x = self._images(x, check_values=True)
        seed = self._seed(seed, self.eval_seed_generator)
        elbos = []
        for s in range(num_samples):
            outputs, log_likelihood = self.layer_terms(
                x, tf.random.experimental.stateless_fold_in(seed, s))
            elbos.append(log_likelihood - tf.add_n([o.kl for o in outputs]))
        return tf.reduce_mean(tf.stack(elbos), axis=0)

    @_plain_python
    def log_prob(self, x, num_samples=1000, chunk_size=100, seed=None):
        """Importance-sampled log p(x) [batch] over the joint of all layers (§2.6).

        Each chunk tiles x `chunk_size` times and runs one posterior pass:
        log w = log p(x|z) - sum_l (log q_l(z_l) - log p_l(z_l)).
        """
        x = self._images(x, check_values=True)
        if isinstance(num_samples, (int, np.integer)):
            if num_samples < 1:
                raise ValueError(f"`num_samples` must be >= 1. Received: num_samples={num_samples}")
            chunk_size = min(chunk_size, int(num_samples))  # no masked-away samples for small K
        # A stream of its own: the same seed in `elbo` must not give the same draws.
        seed = streams.fold(self._seed(seed, self.eval_seed_generator), "importance")
        batch = tf.shape(x)[0]
        tiled = tf.tile(x, [chunk_size, 1, 1, 1])                            # [chunk * B, ...]

        def log_weights(chunk):
            outputs, log_likelihood = self.layer_terms(
                tiled, tf.random.experimental.stateless_fold_in(seed, chunk), analytic=False)
            log_w = log_likelihood - tf.add_n([o.kl for o in outputs])
            return tf.reshape(log_w, [chunk_size, batch])

        return objectives.chunked_log_mean_exp(log_weights, num_samples, chunk_size)

    def serving_endpoints(self, chunk_size=100):
        """SavedModel signatures: encode, decode, sample, sample_temperature, elbo, log_prob."""
        image = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        size = sum(base.flat_size(s) for s in self.stack.latent_shapes)
        latent = tf.TensorSpec([None, size], tf.float32, name="z")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        count = tf.TensorSpec([], tf.int32, name="num_samples")
        temperature = tf.TensorSpec([], tf.float32, name="temperature")
        return [
            ("encode", self.posterior_summary, [image]),
            ("decode", lambda z: {"mean": self.decode(z).mean()}, [latent]),
            ("sample", lambda n, s: {"images": self.sample(n, seed=s)}, [count, seed]),
            ("sample_temperature", lambda n, s, t: {"images": self.sample(
                n, seed=s, temperature=t)}, [count, seed, temperature]),
            ("elbo", lambda x, s: {"elbo": self.elbo(x, seed=s)}, [image, seed]),
            ("log_prob", lambda x, n, s: {"log_prob": self.log_prob(
                x, num_samples=n, chunk_size=chunk_size, seed=s)}, [image, count, seed]),
        ]

    # ---------------------------------------------------------------- training
    @property
    def metrics(self):
        return list(self._trackers.values())

    @_plain_python
    def train_step(self, data):
        x = self._images(data)
        seed = self._seed(None, self.seed_generator)
        with tf.GradientTape() as tape:
            values = self.objective(x, seed, training=True)
            # Gradients are summed over replicas: scale the per-replica loss.
            loss = values["loss"] / guarded_step.num_replicas()
        applied = guarded_step.minimize_if_finite(self.optimizer, tape, loss,
                                                  self.trainable_variables,
                                                  max_grad_norm=self.max_grad_norm)
        guarded_step.update_metrics(self._trackers, values, applied)
        return {m.name: m.result() for m in self.metrics}

    @_plain_python
    def test_step(self, data):
        return guarded_step.held_out_step(self, data)

    def get_config(self):
        return {**super().get_config(),
                "stack": keras.saving.serialize_keras_object(self.stack),
                "likelihood": keras.saving.serialize_keras_object(self.likelihood),
                "analytic_kl": self.analytic_kl, "beta": self.beta,
                "kl_warmup_steps": self.kl_warmup_steps, "free_bits": self.free_bits,
                "free_bits_groups": self.free_bits_groups, "max_grad_norm": self.max_grad_norm,
                "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
