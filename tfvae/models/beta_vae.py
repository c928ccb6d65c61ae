"""β-VAE with optional capacity annealing (Higgins et al. 2017; Burgess et al. 2018).

β alone is already an argument of `VAE` (book §2.8.1 writes the weighted
ELBO once); this subclass adds only the capacity objective
-E log p(x|z) + γ |KL - C(t)| of `disentanglement.capacity_loss`.
"""

import keras
import numpy as np

from tfvae.objectives import disentanglement
from tfvae.models import vae


@keras.saving.register_keras_serializable(vae._PACKAGE)
class BetaVAE(vae.VAE):
    """A VAE with loss distortion + β·KL, or with capacity annealing.

    With `capacity_max` = 0 the objective is exactly `VAE.objective` (β-VAE;
    β = 1 is the VAE). With `capacity_max` > 0 it is distortion + γ |KL -
    C(t)|, C(t) = capacity_max * min(1, t / capacity_steps) at optimizer step
    t; β is then not used, and the `capacity` metric reports C(t).

    Args:
      encoder, decoder, latent, likelihood, **kwargs: as in `VAE`.
      capacity_max: final target KL C_max in nats (0 disables annealing).
      capacity_steps: steps over which C rises linearly from 0 to C_max.
      gamma: weight γ of |KL - C|.

    Raises:
      ValueError: negative capacity_max, capacity_steps < 1, gamma <= 0,
        or capacity annealing combined with warm-up or free bits.
    """

    def __init__(self, encoder, decoder, latent, likelihood, *, capacity_max=0.0,
                 capacity_steps=100000, gamma=1000.0, **kwargs):
        super().__init__(encoder, decoder, latent, likelihood, **kwargs)
        if not float(capacity_max) >= 0:
            raise ValueError(f"`capacity_max` must be >= 0. Received: capacity_max={capacity_max!r}")
        if isinstance(capacity_steps, bool) or not isinstance(capacity_steps, (int, np.integer)) \
                or capacity_steps < 1:
            raise ValueError(f"`capacity_steps` must be an integer >= 1. "
                             f"Received: capacity_steps={capacity_steps!r}")
        if not float(gamma) > 0:
            raise ValueError(f"`gamma` must be > 0. Received: gamma={gamma!r}")
        if capacity_max and (self.kl_warmup_steps or self.free_bits):
            raise ValueError(
                "Capacity annealing replaces KL warm-up and free bits; use one of them. Received: "
                f"capacity_max={capacity_max}, kl_warmup_steps={self.kl_warmup_steps}, "
                f"free_bits={self.free_bits}")
        self.capacity_max = float(capacity_max)
        self.capacity_steps = int(capacity_steps)
        self.gamma = float(gamma)
        if self.capacity_max:
            self.untrack_metrics("beta")        # β is not used by the capacity objective
            self.track_metrics("capacity")

    def capacity(self):
        """The target KL C(t) in nats at the optimizer's current step."""
        return disentanglement.linear_capacity(self.optimizer_step(), self.capacity_max,
                                               self.capacity_steps)

    def objective(self, data, seed, training=False):
        """`VAE.objective`, or with capacity annealing {loss, elbo, rate, distortion, capacity}."""
        if not self.capacity_max:
            return super().objective(data, seed, training)
        terms = self.compute_terms(data, seed)
        return disentanglement.capacity_loss(terms["log_likelihood"], terms["kl"],
                                             self.capacity(), self.gamma)

    def get_config(self):
        return {**super().get_config(), "capacity_max": self.capacity_max,
                "capacity_steps": self.capacity_steps, "gamma": self.gamma}
