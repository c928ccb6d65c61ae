"""A VAE with categorical latents trained through the Gumbel-softmax relaxation.

Jang et al. (2017) and Maddison et al. (2017); book §4.5. The encoder gives
logits of N categorical variables with K classes; training replaces the
one-hot sample by the relaxed sample y = softmax((logits + g) / tau) with a
temperature annealed from the optimizer's step,
tau = max(tau_min, tau_0 exp(-r step)); with `straight_through` the decoder
sees the one-hot argmax of y and the gradient flows through y.

Training ELBO (`kl_estimator`):
  - "discrete" (Jang et al.): E_relaxed[log p(x|y)] - KL(q(z|x) || p(z)) with
    the closed-form KL between the categoricals (sum over the N variables).
  - "relaxed" (Maddison et al.): the single-sample log-density ratio
    log q_tau(y|x) - log p_tau(y) of the relaxed distributions at y, computed
    for log y (the ratio is the same: both densities get the same Jacobian).

Evaluation uses the exact discrete model: `elbo` samples one-hot z from
q(z|x) (ELBO with the Monte-Carlo KL log q(z|x) - log p(z) of the
categoricals), and `log_prob` is the importance-sampled log p(x) of §2.6 with
one-hot z ~ q(z|x) and categorical probability mass functions: both inherit
`VAE`'s code, since `encode` and the prior give the exact categoricals.
"""

import keras
import tensorflow as tf

from tfvae.distributions import discrete_latents
from tfvae.objectives import base as objective_base
from tfvae.objectives import elbo as objectives
from tfvae.models import vae

_PACKAGE = "tfvae"


@keras.saving.register_keras_serializable(_PACKAGE)
class GumbelVAE(vae.VAE):
    """VAE with N categorical latents (one-hot, K classes), Gumbel-softmax training.

    Args:
      encoder, decoder, likelihood: as for `VAE`; the decoder reads the
        flattened one-hot code [n, N * K].
      latent: `LatentLayer` with a `RelaxedCategorical` posterior and a
        `UniformCategoricalPrior`.
      temperature: tau_0, the initial temperature.
      min_temperature: tau_min, the floor of the annealing.
      anneal_rate: r per optimizer step (0 keeps tau = tau_0).
      straight_through: feed the decoder the one-hot argmax (forward) with the
        relaxed sample's gradient.
      kl_estimator: "discrete" or "relaxed" (see the module docstring).
      objective: an objective on the relaxed terms with the Monte-Carlo KL
        (None: `ELBO(analytic_kl=False)`; β, warm-up and free bits with one
        group are its options).
      **kwargs: other `VAE` arguments (seed, ...).
    """

    def __init__(self, encoder, decoder, latent, likelihood, *, temperature=1.0,
                 min_temperature=0.5, anneal_rate=3e-4, straight_through=False,
                 kl_estimator="discrete", objective=None, **kwargs):
        super().__init__(encoder, decoder, latent, likelihood,
                         objective=objectives.ELBO(analytic_kl=False) if objective is None
                         else objective, **kwargs)
        if not isinstance(self.latent.posterior_family, discrete_latents.RelaxedCategorical) or (
                not isinstance(self.latent.prior_layer, discrete_latents.UniformCategoricalPrior)):
            raise ValueError("`latent` must have a RelaxedCategorical posterior and a "
                             f"UniformCategoricalPrior. Received: latent={self.latent!r}")
        for name, value in (("temperature", temperature), ("min_temperature", min_temperature)):
            if not float(value) > 0:
                raise ValueError(f"`{name}` must be positive. Received: {name}={value!r}")
        if not float(anneal_rate) >= 0:
            raise ValueError(f"`anneal_rate` must be >= 0. Received: anneal_rate={anneal_rate!r}")
        if kl_estimator not in discrete_latents.KL_ESTIMATORS:
            raise ValueError(f"`kl_estimator` must be one of {discrete_latents.KL_ESTIMATORS}. "
                             f"Received: kl_estimator={kl_estimator!r}")
        self.temperature = float(temperature)
        self.min_temperature = float(min_temperature)
        self.anneal_rate = float(anneal_rate)
        self.straight_through = bool(straight_through)
        self.kl_estimator = kl_estimator

    def current_temperature(self):
        """tau at the optimizer's current step (tau_0 before compiling)."""
        return discrete_latents.annealed_temperature(
            self.optimizer_step(), self.temperature, self.min_temperature, self.anneal_rate)

    def decode(self, z, context=None):
        """p(x|z) for one-hot (or relaxed) z [..., N, K] or flattened [..., N * K]."""
        z = tf.convert_to_tensor(z, self.compute_dtype)
        family = self.latent.posterior_family
        if z.shape.rank >= 2 and tuple(z.shape[-2:]) == family.event_shape:
            z = tf.reshape(z, tf.concat([tf.shape(z)[:-2], [family.latent_size]], 0))
        return super().decode(z, context)

    def posterior_summary(self, x, context=None):
        """{"loc": class probabilities, "scale": their std sqrt(p (1 - p))}, [batch, N * K]."""
        probs = tf.reshape(self.encode(x, context).distribution.probs_parameter(),
                           [-1, self.latent.latent_size])
        return {"loc": probs, "scale": tf.sqrt(probs * (1.0 - probs))}

    def extra_metric_names(self):
        return ("temperature",)

    def kl_support(self):
        """No closed-form or per-dimension KL: the training KL is chosen by `kl_estimator`."""
        return objective_base.KLSupport(analytic=False, per_dimension=False,
                                        group_sizes=(self.latent.latent_size,), max_samples=1)

    def objective_terms(self, batch, seed, num_samples=1, analytic_kl=False, training=False):
        """The relaxed bound's terms for x [B, H, W, C] (one relaxed draw per example), with
        the temperature in `extras`; `elbo` and `log_prob` use the exact discrete model."""
        del analytic_kl, training  # the KL estimator is `kl_estimator`
        if num_samples != 1:
            raise ValueError("The relaxed bound takes one relaxed draw per example. "
                             f"Received: num_samples={num_samples}")
        x = self.as_batch(batch).x
        family = self.latent.posterior_family
        tau = self.current_temperature()
        params = self.latent(self.encoder(x))                        # [batch, N * K]
        q_relaxed = family.relaxed(params, tau)
        log_y = q_relaxed.sample(seed=seed)                          # [batch, N, K], log simplex
        y = tf.exp(log_y)
        if self.straight_through:
            y = discrete_latents.straight_through(y)
        log_likelihood = self.decode(y).log_prob(x)[tf.newaxis]      # [1, batch]
        if self.kl_estimator == "discrete":
            kl = objectives.kl_divergence(family.make(params), self.latent.prior())  # [batch]
        else:
            kl = q_relaxed.log_prob(log_y) - self.latent.prior_layer.relaxed(tau).log_prob(log_y)
        return objective_base.Terms(log_likelihood, kl, lambda groups: kl[..., tf.newaxis],
                                    extras={"temperature": tf.cast(tau, log_likelihood.dtype)})

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature,
                "min_temperature": self.min_temperature, "anneal_rate": self.anneal_rate,
                "straight_through": self.straight_through, "kl_estimator": self.kl_estimator}
