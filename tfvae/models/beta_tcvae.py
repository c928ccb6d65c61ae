"""β-TCVAE (Chen et al. 2018): the KL split into index-code MI, TC and dimension-wise KL.

Only the objective differs from `VAE`: with one z_i ~ q(z|x_i) per example,

    loss = -log p(x|z) + α I_q(x; z) + β TC(z) + γ sum_j KL(q(z_j) || p(z_j)),

the three terms estimated on the minibatch by
`disentanglement.tc_decomposition`. α = β = γ = 1 is the VAE's
Monte-Carlo-KL objective exactly (the three terms sum to the KL).
"""

import keras
import numpy as np
import tensorflow as tf

from tfvae.objectives import disentanglement
from tfvae.distributions import families
from tfvae.objectives import elbo as objectives
from tfvae.distributions import priors
from tfvae.models import vae


@keras.saving.register_keras_serializable(vae._PACKAGE)
class BetaTCVAE(vae.VAE):
    """A VAE whose KL is decomposed and re-weighted (Chen et al. 2018).

    Metrics: `loss`, `elbo` (the standard ELBO with the model's KL), `rate`,
    `distortion`, `beta`, and the minibatch estimates `mi`, `tc`, `dwkl`.

    Args:
      encoder, decoder, latent, likelihood, analytic_kl, seed: as in `VAE`;
        `latent` must have a factorized Gaussian posterior without a flow and
        the standard-normal prior (the per-dimension densities are needed).
      alpha: weight of the index-code mutual information.
      beta: weight of the total correlation.
      gamma: weight of the dimension-wise KL.
      dataset_size: N, the number of training examples (the aggregate
        posterior is q(z) = (1/N) sum_n q(z|x_n)).
      estimator: "mss" (minibatch stratified sampling) or "mws" (minibatch
        weighted sampling, whose TC value is offset by about (d-1) log N;
        see `disentanglement.log_importance_weights`).

    Raises:
      ValueError: a non-factorized posterior, a flow, another prior, negative
        weights, dataset_size < 1, an unknown estimator, warm-up or free bits.
    """

    def __init__(self, encoder, decoder, latent, likelihood, *, alpha=1.0, beta=6.0, gamma=1.0,
                 dataset_size=50000, estimator="mss", **kwargs):
        super().__init__(encoder, decoder, latent, likelihood, beta=beta, **kwargs)
        if (not getattr(self.latent.posterior_family, "factorized", False)
                or self.latent.flow is not None
                or not isinstance(self.latent.prior_layer, priors.StandardNormal)):
            raise ValueError(
                "β-TCVAE needs a factorized Gaussian posterior without a flow and the "
                f"standard-normal prior. Received: latent={self.latent.posterior_family!r}, "
                f"flow={self.latent.flow!r}, prior={type(self.latent.prior_layer).__name__}")
        for name, value in (("alpha", alpha), ("gamma", gamma)):
            if not float(value) >= 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={value!r}")
        if isinstance(dataset_size, bool) or not isinstance(dataset_size, (int, np.integer)) \
                or dataset_size < 1:
            raise ValueError(f"`dataset_size` must be an integer >= 1. "
                             f"Received: dataset_size={dataset_size!r}")
        if estimator not in disentanglement.ESTIMATORS:
            raise ValueError(f"`estimator` must be one of {', '.join(disentanglement.ESTIMATORS)}. "
                             f"Received: estimator={estimator!r}")
        if self.kl_warmup_steps or self.free_bits:
            raise ValueError("KL warm-up and free bits are not defined for β-TCVAE. Received: "
                             f"kl_warmup_steps={self.kl_warmup_steps}, free_bits={self.free_bits}")
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.dataset_size = int(dataset_size)
        self.estimator = estimator
        self.track_metrics("mi", "tc", "dwkl")

    def objective(self, data, seed, training=False):
        """{loss, elbo, rate, distortion, beta, mi, tc, dwkl} for x (one z per example)."""
        terms = self.compute_terms(data, seed)
        z = terms["z"][0]                                               # [batch, d]
        loc, scale = families.diagonal_normal_params(terms["q"])
        parts = disentanglement.tc_decomposition(z, loc, scale, terms["p"].log_prob(z),
                                                 self.dataset_size, self.estimator)
        out = objectives.elbo_loss(terms["log_likelihood"], terms["kl"])
        out["loss"] = (out["distortion"] + self.alpha * parts["mi"] + self.beta * parts["tc"]
                       + self.gamma * parts["dwkl"])
        out["beta"] = tf.constant(self.beta, out["loss"].dtype)
        return {**out, **parts}

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma,
                "dataset_size": self.dataset_size, "estimator": self.estimator}
