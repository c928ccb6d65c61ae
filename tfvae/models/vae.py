"""The VAE of the book's chapter 2 as a Keras 3 model (Algorithms 1 and 2).

`VAE` wires an encoder network, a `LatentLayer` (posterior family + prior),
a decoder network and a likelihood family, and owns `train_step`,
`test_step`, `encode`, `decode`, `sample`, `elbo` and `log_prob`. Variants
override only what differs (another objective, a second input, ...).
"""

import keras
import numpy as np
import tensorflow as tf

from tfvae import families
from tfvae import latents
from tfvae import objectives
from tfvae import priors
from tfvae import streams
from tfvae.models import example_model
from tfvae.models import guarded_step

_PACKAGE = "tfvae"


def _deserialize(obj):
    return keras.saving.deserialize_keras_object(obj) if isinstance(obj, dict) else obj


@keras.saving.register_keras_serializable(_PACKAGE)
class VAE(example_model.ExampleModelMixin, keras.Model):
    """Variational autoencoder p(z) p(x|z) with amortized q(z|x) (book ch. 2).

    Training maximizes the single-sample ELBO estimate of Algorithm 1 with
    reparameterized z (§2.4), optionally with beta, a linear KL warm-up and
    free bits per latent group (§2.8.1). A step whose loss or gradient is not
    finite is skipped (no update) and counted in the `skipped_steps` metric.

    Args:
      encoder: layer mapping images [batch, H, W, C] to features [batch, F].
      decoder: layer mapping z [n, latent_size] to likelihood parameters,
        [n, likelihood.params_size] or image-shaped [n, H, W, k*C].
      latent: `LatentLayer` (posterior family and prior).
      likelihood: likelihood family for p(x|z) with event shape (H, W, C).
      analytic_kl: closed-form KL if True, else the Monte-Carlo estimate.
      beta: weight of the KL term (1 = the ELBO; beta-VAE otherwise).
      kl_warmup_steps: linear warm-up of the KL weight over this many steps.
      free_bits: lambda in nats per latent group (0 disables).
      free_bits_groups: number of contiguous latent groups for free bits.
      seed: int seed for the model's sampling noise.
    """

    def __init__(self, encoder, decoder, latent, likelihood, *, analytic_kl=True, beta=1.0,
                 kl_warmup_steps=0, free_bits=0.0, free_bits_groups=1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = _deserialize(encoder)
        self.decoder = _deserialize(decoder)
        self.latent = _deserialize(latent)
        self.likelihood = _deserialize(likelihood)
        if not isinstance(self.latent, latents.LatentLayer):
            raise ValueError(f"`latent` must be a LatentLayer. Received: latent={latent!r}")
        if not isinstance(self.likelihood, families.Family):
            raise ValueError(f"`likelihood` must be a family. Received: likelihood={likelihood!r}")
        if not float(beta) >= 0:
            raise ValueError(f"`beta` must be >= 0. Received: beta={beta!r}")
        if not isinstance(kl_warmup_steps, (int, np.integer)) or kl_warmup_steps < 0:
            raise ValueError(
                f"`kl_warmup_steps` must be an integer >= 0. Received: kl_warmup_steps={kl_warmup_steps!r}")
        if not float(free_bits) >= 0:
            raise ValueError(f"`free_bits` must be >= 0. Received: free_bits={free_bits!r}")
        latent_size = self.latent.latent_size
        if (not isinstance(free_bits_groups, (int, np.integer)) or free_bits_groups <= 0
                or latent_size % free_bits_groups):
            raise ValueError(
                f"`free_bits_groups` must be a positive divisor of latent_size={latent_size}. "
                f"Received: free_bits_groups={free_bits_groups!r}")
        gaussian_pair = self.latent.flow is None and isinstance(self.latent.prior_layer,
                                                                 priors.StandardNormal)
        if analytic_kl and not gaussian_pair:
            raise ValueError(
                "The analytic KL needs a Gaussian posterior without a flow and the "
                "standard-normal prior; use the Monte-Carlo KL (analytic_kl=False) with a "
                f"flow posterior or a learned prior. Received: analytic_kl={analytic_kl!r}")
        if free_bits_groups > 1 and not (
                gaussian_pair and getattr(self.latent.posterior_family, "factorized", False)):
            raise ValueError(
                "Free bits per latent group need a factorized posterior without a flow and a "
                "factorized prior (otherwise the per-group KL is not defined). Use "
                f"free_bits_groups=1. Received: free_bits_groups={free_bits_groups}")
        self.image_shape = tuple(self.likelihood.event_shape)
        self.analytic_kl = bool(analytic_kl)
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.free_bits = float(free_bits)
        self.free_bits_groups = int(free_bits_groups)
        self.seed = seed
        self._make_seed_generators(seed)
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in ("loss", "elbo", "rate", "distortion", "beta")}
        self._trackers["skipped_steps"] = keras.metrics.Sum(name="skipped_steps")

    # ----------------------------------------------------------------- building
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_shape(input_shape)
        # Sub-layers deserialized from a `.keras` file arrive already built.
        if not self.encoder.built:
            self.encoder.build(input_shape)
        if not self.latent.built:
            self.latent.build(self.encoder.compute_output_shape(input_shape))
        if not self.decoder.built:
            self.decoder.build((None, self.latent.latent_size))
        self.built = True

    def _check_shape(self, shape):
        if len(shape) != 4 or tuple(shape[1:]) != self.image_shape:
            raise ValueError(
                f"Expected images of shape [batch, {', '.join(map(str, self.image_shape))}]. "
                f"Received: shape={list(shape)}")

    def _images(self, data, check_values=False):
        """Extracts x [batch, H, W, C] from a batch (dict, tuple or tensor)."""
        if isinstance(data, dict):
            data = data["image"]
        elif isinstance(data, (tuple, list)):
            data = data[0]
        x = tf.cast(data, self.compute_dtype)
        self._check_shape(x.shape)
        if check_values:
            x = self._check_values(x)
        return x

    def _check_values(self, x):
        """Raises if x has non-finite values or values outside the likelihood's support."""
        support = (0.0, 1.0) if isinstance(self.likelihood, families.Bernoulli) else None
        if tf.executing_eagerly():
            values = x.numpy()
            bad = int(np.size(values) - np.isfinite(values).sum())
            if bad:
                raise ValueError(f"`x` contains {bad} non-finite values (NaN or inf).")
            if support and values.size and (values.min() < support[0] or values.max() > support[1]):
                raise ValueError(
                    f"`x` must lie in [{support[0]}, {support[1]}] for a Bernoulli likelihood. "
                    f"Received: min={values.min()}, max={values.max()}")
            return x
        checks = [tf.debugging.assert_all_finite(x, "`x` contains non-finite values.")]
        if support:
            checks += [tf.debugging.assert_greater_equal(x, 0.0, message="`x` must be >= 0."),
                       tf.debugging.assert_less_equal(x, 1.0, message="`x` must be <= 1.")]
        with tf.control_dependencies(checks):
            return tf.identity(x)

    # -------------------------------------------------------------- inference
    @property
    def likelihood_support(self):
        """What `log_prob` measures: the likelihood family's `support` ("real",
        "discrete" or "binary"; see `tfvae.families.Family`)."""
        return self.likelihood.support

    def encode(self, x):
        """Returns q(z|x) for images x [batch, H, W, C]: batch [batch], event [latent_size]."""
        return self.latent.posterior(self.encoder(x))

    def decode(self, z):
        """Returns p(x|z) for z [..., latent_size]: batch [...], event (H, W, C)."""
        z = tf.convert_to_tensor(z, self.compute_dtype)
        batch = tf.shape(z)[:-1]
        params = self.decoder(tf.reshape(z, [-1, self.latent.latent_size]))
        params = tf.reshape(params, tf.concat([batch, [self.likelihood.params_size]], 0))
        return self.likelihood.make(params)

    def posterior_summary(self, x):
        """A point and a spread of q(z|x): {"loc", "scale"} [batch, latent_size].

        Gaussian posteriors: the mean and the marginal standard deviations.
        Flow posteriors (no closed-form mean): loc = f(mu_0), the base mean
        pushed through the flow, and scale = sigma_0, the base scale.
        """
        q = self.encode(x)
        if self.latent.flow is None:
            return {"loc": q.mean(), "scale": q.stddev()}
        return {"loc": q.bijector.forward(q.distribution.mean()),
                "scale": q.distribution.stddev()}

    def prior(self):
        """Returns p(z), event shape [latent_size]: the latent layer's prior.

        The one place the model asks for its prior; a prior that depends on
        the encoder (VampPrior, `tfvae.models.vamp_vae`) overrides it.
        """
        return self.latent.prior()

    def call(self, inputs):
        """Reconstruction mean E[x|z] at the posterior's summary point z [batch, H, W, C]."""
        x = self._images(inputs)
        return self.decode(self.posterior_summary(x)["loc"]).mean()

    def sample(self, num_samples, seed=None):
        """Draws z ~ p(z) and returns the decoder means E[x|z] [num_samples, H, W, C]."""
        z = self.prior().sample(num_samples, seed=self._seed(seed, self.eval_seed_generator))
        return self.decode(z).mean()

    # ---------------------------------------------------------------- objective
    def compute_terms(self, x, seed, num_samples=1):
        """Per-example pieces of the ELBO for x [batch, H, W, C].

        Returns:
          Dict: `log_likelihood` log p(x|z) [samples, batch]; `kl`
          ([batch] analytic or [samples, batch]); `q`, `p`, `z`.
        """
        q = self.encode(x)
        p = self.prior()
        z, kl = self.sample_and_kl(q, p, num_samples, seed)
        log_likelihood = self.decode(z).log_prob(x)                  # [samples, batch]
        return {"log_likelihood": log_likelihood, "kl": kl, "q": q, "p": p, "z": z}

    def sample_and_kl(self, q, p, num_samples, seed):
        """z ~ q [samples, batch, d] and KL(q || p): analytic [batch] or MC [samples, batch]."""
        if self.analytic_kl:
            return q.sample(num_samples, seed=seed), objectives.kl_divergence(q, p)
        # The density of a flow's own samples comes from the forward
        # log-det (§3.2.2): no inverse of the flow is needed.
        z, log_q = q.experimental_sample_and_log_prob(num_samples, seed=seed)
        return z, log_q - p.log_prob(z)

    def kl_weight(self):
        """beta times the warm-up factor at the optimizer's current step."""
        step = self.optimizer.iterations if self.optimizer is not None else 0
        return self.beta * objectives.linear_warmup(step, self.kl_warmup_steps)

    def objective(self, x, seed):
        """The training objective dict (loss, elbo, rate, distortion, beta) for x."""
        terms = self.compute_terms(x, seed)
        kl_groups = None
        if self.free_bits and self.free_bits_groups == 1:
            kl_groups = terms["kl"][..., tf.newaxis]                 # one group: the total KL
        elif self.free_bits:
            kl_dims = objectives.kl_per_dimension(terms["q"], terms["p"], terms["z"],
                                                  analytic=self.analytic_kl)
            kl_groups = objectives.group_sum(kl_dims, self.free_bits_groups)
        beta = self.kl_weight()
        out = objectives.elbo_loss(terms["log_likelihood"], terms["kl"], beta=beta,
                                   kl_groups=kl_groups, free_bits=self.free_bits)
        out["beta"] = tf.cast(beta, out["loss"].dtype)
        return out

    def elbo(self, x, num_samples=1, seed=None):
        """Per-example ELBO estimate [batch], averaged over `num_samples` draws of z."""
        x = self._images(x, check_values=True)
        terms = self.compute_terms(x, self._seed(seed, self.eval_seed_generator), num_samples)
        kl = terms["kl"]
        return tf.reduce_mean(terms["log_likelihood"] - kl, axis=0)

    def log_prob(self, x, num_samples=1000, chunk_size=100, seed=None):
        """Importance-sampled log p(x) [batch] with q(z|x) as proposal (book §2.6).

        log p(x) ~= log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x), in
        chunks of `chunk_size` samples (bounded memory for any K).
        """
        x = self._images(x, check_values=True)
        if isinstance(num_samples, (int, np.integer)):
            if num_samples < 1:
                raise ValueError(f"`num_samples` must be >= 1. Received: num_samples={num_samples}")
            chunk_size = min(chunk_size, int(num_samples))  # no masked-away samples for small K
        # A stream of its own: the same seed in `elbo` must not give the same draws.
        seed = streams.fold(self._seed(seed, self.eval_seed_generator), "importance")
        q = self.encode(x)
        p = self.prior()

        def log_weights(chunk):
            z, log_q = q.experimental_sample_and_log_prob(
                chunk_size, seed=tf.random.experimental.stateless_fold_in(seed, chunk))
            return self.decode(z).log_prob(x) + p.log_prob(z) - log_q      # [chunk, batch]

        return objectives.chunked_log_mean_exp(log_weights, num_samples, chunk_size)

    def serving_endpoints(self, chunk_size=100):
        """The SavedModel signatures (`tfvae.export`), each returning a dict of tensors.

        encode(x [n, H, W, C]) -> {loc, scale} [n, d] (`posterior_summary`);
        decode(z [n, d]) -> {mean} [n, H, W, C]; sample(num_samples [], seed [2])
        -> {images}; elbo(x, seed) -> {elbo} [n]; log_prob(x, num_samples, seed)
        -> {log_prob} [n] (importance sampling with K = num_samples, §2.6).
        """
        image = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        latent = tf.TensorSpec([None, self.latent.latent_size], tf.float32, name="z")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        count = tf.TensorSpec([], tf.int32, name="num_samples")
        return [
            ("encode", self.posterior_summary, [image]),
            ("decode", lambda z: {"mean": self.decode(z).mean()}, [latent]),
            ("sample", lambda n, s: {"images": self.sample(n, seed=s)}, [count, seed]),
            ("elbo", lambda x, s: {"elbo": self.elbo(x, seed=s)}, [image, seed]),
            ("log_prob", lambda x, n, s: {"log_prob": self.log_prob(
                x, num_samples=n, chunk_size=chunk_size, seed=s)}, [image, count, seed]),
        ]

    # ---------------------------------------------------------------- training
    @property
    def metrics(self):
        return list(self._trackers.values())

    def train_step(self, data):
        x = self._images(data)
        seed = self._seed(None, self.seed_generator)
        with tf.GradientTape() as tape:
            values = self.objective(x, seed)
            # Gradients are summed over replicas: scale the per-replica loss.
            loss = values["loss"] / guarded_step.num_replicas()
        finite = guarded_step.minimize_if_finite(self.optimizer, tape, loss,
                                                 self.trainable_variables)
        guarded_step.update_metrics(self._trackers, values, finite)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        return guarded_step.held_out_step(self, data)

    # ------------------------------------------------------------ serialization
    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder),
                "latent": keras.saving.serialize_keras_object(self.latent),
                "likelihood": keras.saving.serialize_keras_object(self.likelihood),
                "analytic_kl": self.analytic_kl, "beta": self.beta,
                "kl_warmup_steps": self.kl_warmup_steps, "free_bits": self.free_bits,
                "free_bits_groups": self.free_bits_groups, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
