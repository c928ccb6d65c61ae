"""The VAE of the book's chapter 2 as a Keras 3 model (Algorithms 1 and 2).

`VAE` wires an encoder network, a `LatentLayer` (posterior family + prior),
a decoder network and a likelihood family. It is a `LatentVariableModel`:
the base owns the batch, seeds, metrics, the guarded train/test step and the
IS skeleton of `log_prob`; the VAE adds its math through the protocol
(`sample_posterior`, `log_joint`, `objective_terms`, `kl_support`) and
`encode`, `decode`, `sample`, `elbo`. Every method that reads x takes an
optional `context` (None here; the labels of `ConditionalVAE`). The
training objective is an `Objective` object (ELBO, IWAE, capacity, β-TC:
`tfvae.objectives`), so IWAE or β-TCVAE is a `VAE` with another objective;
subclasses override only what differs in the model (prior, decoder, latent
relaxation or context).
"""

import keras
import tensorflow as tf

from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.objectives import base as objective_base
from tfvae.objectives import elbo as elbo_objectives
from tfvae.distributions import priors
from tfvae.models import base
from tfvae.models import serving

_PACKAGE = "tfvae"



@keras.saving.register_keras_serializable(_PACKAGE)
class VAE(base.LatentVariableModel):
    """Variational autoencoder p(z) p(x|z) with amortized q(z|x) (book ch. 2).

    Training maximizes `objective` (an `Objective` of `tfvae.objectives`;
    default: the ELBO of Algorithm 1 with the closed-form KL) on the
    reparameterized z (§2.4): β, warm-up and free bits (§2.8.1), IWAE,
    capacity or β-TC are objectives, not model arguments. A step whose loss
    or gradient is not finite is skipped (no update) and counted in the
    `skipped_steps` metric.

    Args:
      encoder: layer mapping images [batch, H, W, C] to features [batch, F].
      decoder: layer mapping z [n, latent_size] to likelihood parameters,
        [n, likelihood.params_size] or image-shaped [n, H, W, k*C].
      latent: `LatentLayer` (posterior family and prior).
      likelihood: likelihood family for p(x|z) with event shape (H, W, C).
      objective: the training objective (or its config); None: `ELBO()`.
        Its KL estimator (`analytic_kl`) is also the one `elbo()` uses.
      max_grad_norm, seed: as in `LatentVariableModel`.
    """

    def __init__(self, encoder, decoder, latent, likelihood, *, objective=None, **kwargs):
        likelihood = base.deserialize(likelihood)
        if not isinstance(likelihood, families.Family):
            raise ValueError(f"`likelihood` must be a family. Received: likelihood={likelihood!r}")
        super().__init__(likelihood.event_shape, **kwargs)
        self.encoder = base.deserialize(encoder)
        self.decoder = base.deserialize(decoder)
        self.latent = base.deserialize(latent)
        self.likelihood = likelihood
        if not isinstance(self.latent, latents.LatentLayer):
            raise ValueError(f"`latent` must be a LatentLayer. Received: latent={latent!r}")
        self.use_objective(elbo_objectives.ELBO() if objective is None else objective,
                           *self.extra_metric_names())

    def extra_metric_names(self):
        """Names of the scalars this model adds to its objective's (`Terms.extras`)."""
        return ()

    @classmethod
    def from_config(cls, config):
        # Configs written before objectives were objects hold the ELBO's options.
        return cls(**elbo_objectives.from_legacy_config(config))

    # ----------------------------------------------------------------- building
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.check_shape(input_shape)
        # Sub-layers deserialized from a `.keras` file arrive already built.
        if not self.encoder.built:
            self.encoder.build(input_shape)
        if not self.latent.built:
            self.latent.build(self.encoder.compute_output_shape(input_shape))
        if not self.decoder.built:
            self.decoder.build((None, self.latent.latent_size))
        self.built = True

    @property
    def likelihood_support(self):
        """What `log_prob` measures: the likelihood family's `support` ("real",
        "discrete" or "binary"; see `tfvae.distributions.families.Family`)."""
        return self.likelihood.support

    # -------------------------------------------------------------- inference
    def encode(self, x, context=None):
        """Returns q(z|x) for images x [batch, H, W, C]: batch [batch], event [latent_size]."""
        del context  # an unconditional model
        return self.latent.posterior(self.encoder(x))

    def posterior_params(self, x, context=None):
        """The amortized parameters of q(z|x) [batch, latent.params_size] (the latent
        head's output; `encode` is `posterior_from_params` of them)."""
        del context
        return self.latent(self.encoder(x))

    def posterior_from_params(self, params):
        """q(z) of posterior parameters [batch, latent.params_size]: the same family
        with other (e.g. locally optimized, book §2.7) parameters."""
        return self.latent.posterior_from_params(params)

    def decode(self, z, context=None):
        """Returns p(x|z) for z [..., latent_size]: batch [...], event (H, W, C)."""
        del context
        z = tf.convert_to_tensor(z, self.compute_dtype)
        batch = tf.shape(z)[:-1]
        params = self.decoder(tf.reshape(z, [-1, self.latent.latent_size]))
        params = tf.reshape(params, tf.concat([batch, [self.likelihood.params_size]], 0))
        return self.likelihood.make(params)

    def posterior_summary(self, x, context=None):
        """A point and a spread of q(z|x): {"loc", "scale"} [batch, latent_size].

        Gaussian posteriors: the mean and the marginal standard deviations.
        Flow posteriors (no closed-form mean): loc = f(mu_0), the base mean
        pushed through the flow, and scale = sigma_0, the base scale.
        """
        q = self.encode(x, context)
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

    def reconstruction_summary(self, data):
        """{"loc", "scale"} of `posterior_summary` and "mean" E[x|z = loc] for a batch."""
        batch = self.read_batch(data)
        summary = self.posterior_summary(batch.x, batch.context)
        return {**summary, "mean": self.decode(summary["loc"], batch.context).mean()}

    def call(self, inputs):
        """Reconstruction mean E[x|z] at the posterior's summary point z [batch, H, W, C]."""
        return self.reconstruction_summary(inputs)["mean"]

    def sample(self, num_samples, seed=None):
        """Draws z ~ p(z) and returns the decoder means E[x|z] [num_samples, H, W, C]."""
        num_samples = self.check_count("num_samples", num_samples, 0)
        z = self.prior().sample(num_samples, seed=self.eval_seed(seed))
        return self.decode(z).mean()

    # ------------------------------------------------------------- protocol
    def sample_posterior(self, batch, num_samples, seed):
        """z ~ q(z|x) [num_samples, B, latent_size] and log q(z|x) [num_samples, B]."""
        return self.encode(batch.x, batch.context).experimental_sample_and_log_prob(
            num_samples, seed=seed)

    def log_joint(self, batch, z):
        """log p(x, z) = log p(x|z) + log p(z) [S, B] for z [S, B, latent_size]."""
        return self.decode(z, batch.context).log_prob(batch.x) + self.prior().log_prob(z)

    def log_weights_fn(self, batch):
        """IS weights with q(z|x) and p(z) computed once for all chunks (§2.6)."""
        q, p = self.encode(batch.x, batch.context), self.prior()

        def log_weights(num_samples, seed):
            z, log_q = q.experimental_sample_and_log_prob(num_samples, seed=seed)
            return self.decode(z, batch.context).log_prob(batch.x) + p.log_prob(z) - log_q
        return log_weights

    # ---------------------------------------------------------------- objective
    def kl_support(self):
        """Closed-form and per-dimension KLs need a Gaussian posterior without a flow and
        the standard-normal prior (a factorized one for per-dimension KLs)."""
        gaussian_pair = self.latent.flow is None and isinstance(self.latent.prior_layer,
                                                                 priors.StandardNormal)
        factorized = gaussian_pair and getattr(self.latent.posterior_family, "factorized", False)
        return objective_base.KLSupport(
            analytic=gaussian_pair, per_dimension=factorized,
            group_sizes=(self.latent.latent_size,), factorized_gaussian=factorized)

    def objective_terms(self, batch, seed, num_samples=1, analytic_kl=True, training=False):
        """The terms the objective trains on: the model's own `elbo_terms` (a model whose
        training bound differs from its ELBO, a relaxed one, overrides this)."""
        del training  # the same networks in training and evaluation
        return self.elbo_terms(batch, seed, num_samples, analytic_kl)

    def elbo_terms(self, batch, seed, num_samples=1, analytic_kl=True, q=None):
        """The ELBO's pieces of a batch (x [B, H, W, C], context) at `num_samples` draws.

        Args:
          batch, seed, num_samples, analytic_kl: the batch, its noise and the KL.
          q: the posterior to use instead of `encode`'s (variational EM's local
            posterior, `tfvae.models.vem`).

        Returns:
          `Terms`: log p(x|z) [S, B]; KL ([B] closed form or [S, B] Monte
          Carlo); free-bits groups (the total, or sums of per-dimension KLs);
          posterior (q, p, z [S, B, d]).
        """
        batch = self.as_batch(batch)
        q = self.encode(batch.x, batch.context) if q is None else q
        p = self.prior()
        z, kl = self.sample_and_kl(q, p, num_samples, seed, analytic_kl)
        log_likelihood = self.decode(z, batch.context).log_prob(batch.x)   # [samples, batch]

        def kl_groups(num_groups):
            if num_groups == 1:
                return kl[..., tf.newaxis]                               # one group: the total KL
            kl_dims = elbo_objectives.kl_per_dimension(q, p, z, analytic=analytic_kl)
            return elbo_objectives.group_sum(kl_dims, num_groups)
        return objective_base.Terms(log_likelihood, kl, kl_groups, (q, p, z))

    @staticmethod
    def sample_and_kl(q, p, num_samples, seed, analytic_kl):
        """z ~ q [samples, batch, d] and KL(q || p): analytic [batch] or MC [samples, batch]."""
        if analytic_kl:
            return q.sample(num_samples, seed=seed), elbo_objectives.kl_divergence(q, p)
        # The density of a flow's own samples comes from the forward
        # log-det (§3.2.2): no inverse of the flow is needed.
        z, log_q = q.experimental_sample_and_log_prob(num_samples, seed=seed)
        return z, log_q - p.log_prob(z)

    def elbo(self, x, context=None, num_samples=1, seed=None):
        """Per-example ELBO estimate [batch], averaged over `num_samples` draws of z.

        Args:
          x: images [batch, H, W, C], or a whole batch (dict / pair).
          context: the condition of a conditional model (None here).
          num_samples: draws of z averaged.
          seed: int32 [2] stateless seed (None: the model's generator).
        """
        batch = self.read_batch(x if context is None else (x, context), check_values=True)
        terms = self.elbo_terms(batch, self.eval_seed(seed), num_samples,
                                analytic_kl=self.training_objective.analytic_kl)
        return tf.reduce_mean(terms.log_likelihood - terms.kl, axis=0)

    def serving_endpoints(self, chunk_size=100, log_prob_samples=serving.DEFAULT_LOG_PROB_SAMPLES):
        """The SavedModel signatures (`tfvae.training.export`), each returning a dict of tensors.

        Batch-only (every input has a batch dimension: TF Serving's row format
        can send them; random draws use `serving.SERVING_SEED`, each example
        on its own, see `tfvae.models.serving`):
          encode(x [n, H, W, C]) -> {loc, scale} [n, d] (`posterior_summary`);
          decode(z [n, d]) -> {mean} [n, H, W, C];
          sample(index int32 [n]) -> {images} [n, H, W, C]: sample number
            `index` of the fixed stream;
          elbo(x) -> {elbo} [n] (one draw of z);
          log_prob(x) -> {log_prob} [n] (importance sampling, §2.6, with
            K = `log_prob_samples`).
        Seeded (for research: explicit seed and counts):
          sample_seeded(num_samples [], seed [2]) -> {images};
          elbo_seeded(x, seed [2]) -> {elbo}; log_prob_seeded(x,
          num_samples [] (K), seed [2]) -> {log_prob}.

        Every input is checked in graph (`check_values`, `check_latents`,
        `check_count`): an empty batch, a NaN or inf, x outside the
        likelihood's support, K < 1 or num_samples < 0 fail with an
        InvalidArgumentError naming the input, in a process without tfvae too.

        Args:
          chunk_size: importance samples per chunk of `log_prob` (memory bound).
          log_prob_samples: K of the batch-only `log_prob`.
        """
        log_prob_samples = self.check_count("log_prob_samples", log_prob_samples, 1)
        image = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        latent = tf.TensorSpec([None, self.latent.latent_size], tf.float32, name="z")
        index = tf.TensorSpec([None], tf.int32, name="index")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        count = tf.TensorSpec([], tf.int32, name="num_samples")

        def elbo(x):
            x = self.read_examples(x, check_values=True)
            return {"elbo": serving.per_example(
                lambda row: self.elbo(row, seed=serving.fixed_seed()), x)}

        def log_prob(x):
            x = self.read_examples(x, check_values=True)
            return {"log_prob": serving.per_example(lambda row: self.log_prob(
                row, num_samples=log_prob_samples, chunk_size=chunk_size,
                seed=serving.fixed_seed()), x)}

        return [
            ("encode", lambda x: self.posterior_summary(self.read_examples(x, check_values=True)),
             [image]),
            ("decode", lambda z: {"mean": self.decode(self.check_latents(z)).mean()}, [latent]),
            ("sample", lambda i: {"images": serving.indexed_samples(
                lambda s: self.sample(1, seed=s), self.image_shape, i)}, [index]),
            ("elbo", elbo, [image]),
            ("log_prob", log_prob, [image]),
            ("sample_seeded", lambda n, s: {"images": self.sample(n, seed=s)}, [count, seed]),
            ("elbo_seeded", lambda x, s: {"elbo": self.elbo(x, seed=s)}, [image, seed]),
            ("log_prob_seeded", lambda x, n, s: {"log_prob": self.log_prob(
                x, num_samples=n, chunk_size=chunk_size, seed=s)}, [image, count, seed]),
        ]

    # ------------------------------------------------------------ serialization
    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder),
                "latent": keras.saving.serialize_keras_object(self.latent),
                "likelihood": keras.saving.serialize_keras_object(self.likelihood)}
