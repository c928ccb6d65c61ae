"""The Helmholtz machine trained by wake-sleep (book §2.9; Hinton et al. 1995), and
reweighted wake-sleep (Bornschein and Bengio 2015).

The same generative model p_theta(z) p_theta(x|z) and recognition model
q_phi(z|x) as `VAE`, trained without reparameterization and without a joint
bound:

- wake phase, theta: z_k ~ q_phi(z|x), k = 1..K (no gradient into phi);
  maximize sum_k w_k log p_theta(x, z_k), with w_k = 1 for K = 1 (classic
  wake-sleep) and the self-normalized importance weights
  w_k = softmax_k(log p(x, z_k) - log q(z_k|x)) for K > 1 (RWS);
- sleep phase, phi: dreams (z, x) ~ p_theta(z) p_theta(x|z) (no gradient
  into theta); maximize log q_phi(z|x), i.e. minimize
  KL(p_theta(z|x) || q_phi(z|x)) averaged over the model's own data;
- wake phase, phi (RWS, `wake_recognition=True`): maximize
  sum_k w_k log q_phi(z_k|x), the same KL at the real data.

The three losses touch disjoint variables (theta or phi) through
stop-gradients, so one optimizer step on their sum is the three updates.
The logged `elbo` is the standard ELBO of the model's `ELBO` objective, for
comparison with every other entry; `wake_log_joint` and `sleep_log_q` are
the phases' objectives.
"""

import keras
import tensorflow as tf

from tfvae.models import vae as vae_lib

_PACKAGE = "tfvae"


@keras.saving.register_keras_serializable(_PACKAGE)
class WakeSleepVAE(vae_lib.VAE):
    """A `VAE`'s generative and recognition models trained by (reweighted) wake-sleep.

    Args:
      encoder, decoder, latent, likelihood: as `VAE` (a posterior without a
        flow: the sleep phase evaluates q at dreamed z).
      num_samples: K >= 1 draws of q per example in the wake phase (1: classic
        wake-sleep; > 1: reweighted wake-sleep).
      wake_recognition: RWS's wake-phase update of q (needs K > 1).
      dreams: (z, x) pairs drawn from the model per step for the sleep phase
        (0: as many as the batch has examples).
      objective, max_grad_norm, seed: as `VAE` (the objective gives the logged,
        held-out ELBO; it is not what trains the model).
    """

    def __init__(self, encoder, decoder, latent, likelihood, *, num_samples=1,
                 wake_recognition=False, dreams=0, **kwargs):
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an integer >= 1. "
                             f"Received: num_samples={num_samples!r}")
        if wake_recognition and num_samples < 2:
            raise ValueError("`wake_recognition` (RWS's wake update of q) needs num_samples "
                             f">= 2 importance weights. Received: num_samples={num_samples}")
        if not isinstance(dreams, int) or dreams < 0:
            raise ValueError(f"`dreams` must be an integer >= 0. Received: dreams={dreams!r}")
        self.num_samples = num_samples
        self.wake_recognition = bool(wake_recognition)
        self.dreams = dreams
        super().__init__(encoder, decoder, latent, likelihood, **kwargs)
        if self.latent.flow is not None:
            raise ValueError("Wake-sleep evaluates q(z|x) at dreamed z, which a flow posterior "
                             "cannot do without inverting the flow; use a Gaussian posterior. "
                             f"Received: flow={type(self.latent.flow).__name__}")

    def extra_metric_names(self):
        return ("wake_log_joint", "sleep_log_q")

    def objective(self, data, seed, training=False):
        """The ELBO's scalars, with "loss" the wake-sleep loss (training and held out)."""
        batch = self.as_batch(data)
        elbo_seed, wake_seed, dream_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 3))
        values = super().objective(batch, elbo_seed, training)
        wake, wake_q = self.wake_losses(batch, wake_seed)
        sleep = self.sleep_loss(tf.shape(batch.x)[0], dream_seed)
        loss = wake + sleep + (wake_q if self.wake_recognition else 0.0)
        return {**values, "loss": loss, "wake_log_joint": -wake, "sleep_log_q": -sleep}

    def wake_losses(self, batch, seed):
        """(-E_w[log p(x, z)] for theta, -E_w[log q(z|x)] for phi), batch means, at
        z_k ~ q(z|x) with the self-normalized weights w (uniform for K = 1)."""
        q = self.encode(batch.x, batch.context)
        z = tf.stop_gradient(q.sample(self.num_samples, seed=seed))            # [K, B, d]
        log_q = q.log_prob(z)
        log_joint = self.log_joint(batch, z)
        weights = tf.stop_gradient(tf.nn.softmax(log_joint - log_q, axis=0))   # [K, B]
        # z and the weights are constants: log p(x, z) differentiates through theta
        # only, log q(z|x) through phi only.
        wake_theta = -tf.reduce_mean(tf.reduce_sum(weights * log_joint, axis=0))
        wake_phi = -tf.reduce_mean(tf.reduce_sum(weights * log_q, axis=0))
        return wake_theta, wake_phi

    def sleep_loss(self, batch_size, seed):
        """-E_{(z, x) ~ p}[log q(z|x)] over `dreams` (or `batch_size`) dreamed pairs."""
        n = self.dreams or batch_size
        z_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        z = tf.stop_gradient(self.prior().sample(n, seed=z_seed))
        x = tf.stop_gradient(tf.cast(self.decode(z).sample(seed=x_seed), self.compute_dtype))
        return -tf.reduce_mean(self.encode(x).log_prob(z))

    def get_config(self):
        return {**super().get_config(), "num_samples": self.num_samples,
                "wake_recognition": self.wake_recognition, "dreams": self.dreams}
