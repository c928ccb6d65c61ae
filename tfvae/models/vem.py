"""Variational EM with local variational parameters (book appendix A.2.2, eqs. A.6-A.7).

The book's baseline for amortized inference: the generative model
p_theta(z) p_theta(x|z) of a VAE, and instead of an encoder one variational
parameter vector phi_i per training example (the parameters of q(z; phi_i)
in the model's posterior family, e.g. mean and log-scale), stored for the
whole training set. Each training step is one round of coordinate ascent on
the ELBO of its minibatch:

- E-step: `e_steps` gradient steps on the batch's phi_i (Adam restarted at
  every step, `tfvae.evaluation.local_posterior.optimize`), warm-started from
  the stored values, which are then written back;
- M-step: one optimizer step on theta for the ELBO with q(z; phi_i) fixed.

There is no encoder: a new x (held-out data, the SavedModel's `encode` and
`elbo`) gets its q by an E-step of `eval_e_steps` from the initial
parameters (zeros: q = N(0, I), the standard-normal prior), so every ELBO,
IS log p(x) and export of this model uses that local q.
"""

import keras
import tensorflow as tf

from tfvae.evaluation import local_posterior
from tfvae.models import nonamortized

_PACKAGE = "tfvae"


@keras.saving.register_keras_serializable(_PACKAGE)
class VariationalEM(nonamortized.NonAmortizedVAE):
    """Per-example variational parameters instead of an encoder (book A.2.2).

    Args:
      decoder, latent, likelihood: as `VAE` (`latent` a Gaussian posterior
        family without a flow; its head is not used).
      num_examples: N, training examples (rows of the parameter table).
      e_steps: E-step gradient steps per training batch.
      eval_e_steps: E-step steps for an example without stored parameters.
      e_learning_rate: the E-step's initial Adam step (decayed linearly to 0).
      e_samples: draws of z per E-step gradient.
      **kwargs: as `NonAmortizedVAE` (objective, max_grad_norm, seed, weight_prior).

    The training data must carry "index" (each example's row, 0..N-1).
    """

    method = "Variational EM"

    def __init__(self, decoder, latent, likelihood, *, num_examples, e_steps=5,
                 eval_e_steps=100, e_learning_rate=0.05, e_samples=1, **kwargs):
        for name, value in (("e_steps", e_steps), ("eval_e_steps", eval_e_steps),
                            ("e_samples", e_samples)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
        if not e_learning_rate > 0:
            raise ValueError(f"`e_learning_rate` must be > 0. "
                             f"Received: e_learning_rate={e_learning_rate!r}")
        self.e_steps, self.eval_e_steps = e_steps, eval_e_steps
        self.e_learning_rate, self.e_samples = float(e_learning_rate), e_samples
        super().__init__(decoder, latent, likelihood, num_examples=num_examples, **kwargs)
        if self.latent.flow is not None:
            raise ValueError("Variational EM keeps the parameters of a Gaussian q per example; "
                             f"a flow posterior is not supported. Received: "
                             f"flow={type(self.latent.flow).__name__}")

    def build_state(self):
        # Zeros: q = N(0, I) for the diagonal and the full-covariance family.
        self.local_params = self.add_weight(
            shape=(self.num_examples, self.latent.params_size), initializer="zeros",
            trainable=False, name="local_params")

    # -------------------------------------------------------------- inference
    def posterior_params(self, x, context=None):
        """q's parameters [B, P] for new examples: an E-step of `eval_e_steps` from zeros."""
        batch = self.read_batch(x if context is None else (x, context))
        start = tf.zeros([tf.shape(batch.x)[0], self.latent.params_size])
        params, _ = local_posterior.optimize(
            self, batch, start, num_steps=self.eval_e_steps,
            learning_rate=self.e_learning_rate, num_samples=self.e_samples,
            seed=self.inference_seed())
        return params

    # ----------------------------------------------------------------- training
    def training_values(self, data, batch, seed):
        """E-step on the batch's stored parameters (written back), then the objective's
        scalars with q(z; phi_i) fixed: what the M-step minimizes."""
        rows = self.rows(data)
        e_seed, m_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        params, _ = local_posterior.optimize(          # stop-gradient: theta's step only
            self, batch, tf.gather(self.local_params, rows), num_steps=self.e_steps,
            learning_rate=self.e_learning_rate, num_samples=self.e_samples, seed=e_seed)
        self.write_rows(self.local_params, rows, params)
        objective = self.training_objective
        terms = self.elbo_terms(batch, m_seed, objective.num_samples, objective.analytic_kl,
                                q=self.posterior_from_params(params))
        return objective.loss(terms, self.optimizer_step())

    def get_config(self):
        return {**super().get_config(), "e_steps": self.e_steps,
                "eval_e_steps": self.eval_e_steps, "e_learning_rate": self.e_learning_rate,
                "e_samples": self.e_samples}
