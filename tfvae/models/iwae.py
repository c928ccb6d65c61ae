"""IWAE / MIWAE: the VAE trained on the importance-weighted bound (Burda et al. 2015).

Only the objective differs from `VAE`: m * k posterior samples per example
from `compute_terms` (Monte-Carlo KL, so `log_likelihood - kl` are the log
importance weights of book §2.6) go into `objectives_iw.iwae_loss`.
"""

import keras

from tfvae.objectives import importance_weighted as objectives_iw
from tfvae.models import vae


@keras.saving.register_keras_serializable(vae._PACKAGE)
class IWAE(vae.VAE):
    """A VAE maximizing the (M)IWAE bound L_k (Burda et al. 2015; Rainforth et al. 2018).

    Metrics: `loss` = -L_k (M)IWAE bound being trained, `iwae` = L_k,
    `elbo` = the standard ELBO from the same m * k samples (so early stopping
    and the benchmark compare ELBOs across models), `rate`, `distortion`.
    `elbo()`, `log_prob()` and the export are the VAE's.

    Args:
      encoder, decoder, latent, likelihood, seed: as in `VAE`.
      k: importance samples per bound (k = 1: the Monte-Carlo-KL VAE).
      m: independent IWAE-k bounds averaged (1 = IWAE, > 1 = MIWAE).
      analytic_kl: must be False: the log weights need log q(z|x) at z.
      **kwargs: other `VAE` arguments; beta, KL warm-up and free bits are
        not defined for the IWAE bound and must keep their defaults.

    Raises:
      ValueError: invalid k or m, analytic_kl=True, or beta / warm-up /
        free bits set.
    """

    def __init__(self, encoder, decoder, latent, likelihood, *, k=5, m=1, analytic_kl=False,
                 **kwargs):
        objectives_iw.check_counts(k, m)
        if analytic_kl:
            raise ValueError("The IWAE bound needs the Monte-Carlo log weights "
                             "log p(x|z) + log p(z) - log q(z|x): use analytic_kl=False. "
                             f"Received: analytic_kl={analytic_kl!r}")
        super().__init__(encoder, decoder, latent, likelihood, analytic_kl=False, **kwargs)
        if self.beta != 1.0 or self.kl_warmup_steps or self.free_bits:
            raise ValueError(
                "beta, KL warm-up and free bits are not defined for the IWAE bound. Received: "
                f"beta={self.beta}, kl_warmup_steps={self.kl_warmup_steps}, "
                f"free_bits={self.free_bits}")
        self.k = int(k)
        self.m = int(m)
        self.untrack_metrics("beta")          # no KL weight in the IWAE bound
        self.track_metrics("iwae")

    def objective(self, data, seed, training=False):
        """{loss, iwae, elbo, rate, distortion} from m * k samples per example."""
        terms = self.compute_terms(data, seed, num_samples=self.k * self.m)
        return objectives_iw.iwae_loss(terms["log_likelihood"], terms["kl"], self.k, self.m)

    def iwae_bound(self, x, seed=None):
        """The model's (M)IWAE bound per example [batch] for images x."""
        batch = self.read_batch(x, check_values=True)
        terms = self.compute_terms(batch, self.eval_seed(seed), num_samples=self.k * self.m)
        return objectives_iw.iwae_bound(terms["log_likelihood"] - terms["kl"], self.k, self.m)

    def get_config(self):
        return {**super().get_config(), "k": self.k, "m": self.m}
