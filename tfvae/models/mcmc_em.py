"""MCMC-EM with persistent Hamiltonian Monte Carlo chains (book appendix A.2.3).

The book's other non-amortized baseline: the generative model
p_theta(z) p_theta(x|z) of a VAE, no variational posterior in training, and
one Markov chain z_i per training example that persists across epochs:

- E-step: `mcmc_steps` HMC transitions (`tfp.mcmc.HamiltonianMonteCarlo`,
  gradient of log p_theta(x_i, z) as in eq. A.14) on the batch's chains,
  each with its own step size, adapted towards an acceptance rate of 0.65
  (x1.02 / x0.98 after every transition); chain states and step sizes are
  model variables, so they are checkpointed and a resumed run continues them;
- M-step: one optimizer step on theta for -mean_i log p_theta(x_i, z_i) at
  the chains' states (a one-sample Monte-Carlo EM step).

Training logs `log_joint` (mean log p(x, z_i)), `acceptance` and `step_size`.
Held-out examples (and the SavedModel) get q(z|x) from `eval_chains` chains of
`eval_mcmc_steps` transitions started at prior draws: the factorized Gaussian
with the chains' mean and standard deviation. The reported ELBO and IS
log p(x) use that q (any q gives a valid bound and a valid IS proposal).
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import families
from tfvae.models import base
from tfvae.models import nonamortized

_PACKAGE = "tfvae"
TARGET_ACCEPT = 0.65


def hmc(model, batch, z, step, num_steps, leapfrog_steps, seed):
    """HMC on p(z|x) for chains z [C, B, D] with step sizes step [C, B], adapted.

    Returns:
      (z [C, B, D], step [C, B], the mean acceptance rate of the transitions).
    """
    def body(t, seed, z, step, accept_sum):
        kernel = tfp.mcmc.HamiltonianMonteCarlo(
            lambda state: model.log_joint(batch, state), step_size=step[..., None],
            num_leapfrog_steps=leapfrog_steps)
        step_seed, seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        z, results = kernel.one_step(z, kernel.bootstrap_results(z), seed=step_seed)
        ratio = results.log_accept_ratio
        accept = tf.exp(tf.minimum(0.0, tf.where(tf.math.is_nan(ratio), -math.inf, ratio)))
        step = step * tf.where(accept > TARGET_ACCEPT, 1.02, 0.98)
        return t + 1, seed, z, step, accept_sum + tf.reduce_mean(accept)

    _, _, z, step, accept_sum = tf.while_loop(
        lambda t, *_: t < num_steps, body,
        (tf.constant(0), tf.cast(seed, tf.int32), z, step, tf.constant(0.0)))
    return tf.stop_gradient(z), step, accept_sum / float(num_steps)


@keras.saving.register_keras_serializable(_PACKAGE)
class MCMCEM(nonamortized.NonAmortizedVAE):
    """Persistent HMC chains per training example instead of an encoder (book A.2.3).

    Args:
      decoder, latent, likelihood: as `VAE`; `latent` has a `DiagonalGaussian`
        family (the held-out q) and no flow; its head is not used.
      num_examples: N, training examples (one chain each).
      mcmc_steps: HMC transitions per training batch.
      leapfrog_steps: leapfrog steps per transition.
      initial_step_size: every chain's first step size.
      eval_chains, eval_mcmc_steps: chains per held-out example and their
        transitions (from prior draws) for its q.
      **kwargs: as `NonAmortizedVAE` (objective, max_grad_norm, seed,
        weight_prior; the objective's ELBO is the held-out metric).

    The training data must carry "index" (each example's row, 0..N-1).
    """

    method = "MCMC-EM"

    def __init__(self, decoder, latent, likelihood, *, num_examples, mcmc_steps=5,
                 leapfrog_steps=5, initial_step_size=0.1, eval_chains=8, eval_mcmc_steps=100,
                 **kwargs):
        for name, value in (("mcmc_steps", mcmc_steps), ("leapfrog_steps", leapfrog_steps),
                            ("eval_chains", eval_chains), ("eval_mcmc_steps", eval_mcmc_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
        if eval_chains < 2:
            raise ValueError("`eval_chains` must be >= 2 (q's spread is the chains' spread). "
                             f"Received: eval_chains={eval_chains}")
        if not initial_step_size > 0:
            raise ValueError(f"`initial_step_size` must be > 0. "
                             f"Received: initial_step_size={initial_step_size!r}")
        self.mcmc_steps, self.leapfrog_steps = mcmc_steps, leapfrog_steps
        self.initial_step_size = float(initial_step_size)
        self.eval_chains, self.eval_mcmc_steps = eval_chains, eval_mcmc_steps
        super().__init__(decoder, latent, likelihood, num_examples=num_examples, **kwargs)
        if self.latent.flow is not None or not isinstance(self.latent.posterior_family,
                                                          families.DiagonalGaussian):
            raise ValueError("MCMC-EM's held-out q is a factorized Gaussian: use a "
                             "DiagonalGaussian posterior without a flow.")

    def extra_metric_names(self):
        return ("log_joint", "acceptance", "step_size")

    def training_only_metric_names(self):
        return (*base.TRAINING_ONLY, *self.extra_metric_names())

    def held_out_only_metric_names(self):
        return tuple(n for n in self.training_objective.metric_names if n != "loss")

    def build_state(self):
        self.chains = self.add_weight(
            shape=(self.num_examples, self.latent.latent_size), trainable=False, name="chains",
            initializer=keras.initializers.RandomNormal(seed=self.seed))
        self.step_sizes = self.add_weight(
            shape=(self.num_examples,), trainable=False, name="step_sizes",
            initializer=keras.initializers.Constant(self.initial_step_size))

    # -------------------------------------------------------------- inference
    def posterior_params(self, x, context=None):
        """q's [loc, log scale] [B, 2 D] for new examples: the mean and standard deviation
        of `eval_chains` HMC chains from prior draws."""
        batch = self.read_batch(x if context is None else (x, context))
        n = tf.shape(batch.x)[0]
        start_seed, chain_seed = tf.unstack(tf.random.experimental.stateless_split(
            self.inference_seed(), 2))
        z = self.prior().sample([self.eval_chains, n], seed=start_seed)
        step = tf.fill([self.eval_chains, n], self.initial_step_size)
        z, _, _ = hmc(self, batch, z, step, self.eval_mcmc_steps, self.leapfrog_steps,
                      chain_seed)
        loc = tf.reduce_mean(z, axis=0)
        scale = tf.math.reduce_std(z, axis=0) + 1e-3
        return tf.concat([loc, tf.math.log(scale)], axis=-1)

    # ----------------------------------------------------------------- training
    def training_values(self, data, batch, seed):
        """The E-step (HMC on the batch's chains, written back), then the M-step's loss
        -mean log p(x_i, z_i) at the chains' states."""
        rows = self.rows(data)
        z, step, acceptance = hmc(
            self, batch, tf.gather(self.chains, rows)[None],
            tf.gather(self.step_sizes, rows)[None], self.mcmc_steps, self.leapfrog_steps, seed)
        self.write_rows(self.chains, rows, z[0])
        self.write_rows(self.step_sizes, rows, step[0])
        log_joint = tf.reduce_mean(self.log_joint(batch, z))
        return {"loss": -log_joint, "log_joint": log_joint, "acceptance": acceptance,
                "step_size": tf.reduce_mean(step)}

    def get_config(self):
        return {**super().get_config(), "mcmc_steps": self.mcmc_steps,
                "leapfrog_steps": self.leapfrog_steps,
                "initial_step_size": self.initial_step_size, "eval_chains": self.eval_chains,
                "eval_mcmc_steps": self.eval_mcmc_steps}
