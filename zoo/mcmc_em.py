"""`mcmc_em`: MCMC-EM with persistent HMC chains per training example (book appendix A.2.3).

The `vae` generative model without an encoder: one Markov chain z_i per
training example, moved by `--mcmc_steps` HMC transitions (tfp.mcmc, step
sizes adapted per chain towards 0.65 acceptance, all saved in the
checkpoint) whenever its example is in a batch, then one M-step on
-log p(x_i, z_i) (`tfvae.models.mcmc_em`). Training logs `log_joint`,
`acceptance` and `step_size`; held-out examples get a factorized Gaussian q
from `--eval_chains` chains of `--eval_mcmc_steps` transitions, which the
reported ELBO, IS log p(x) and the export use.

    python -m zoo.mcmc_em --workdir=/tmp/mcmc_em --dataset=fashion_mnist
"""

import dataclasses

from tfvae import validation
from tfvae.models import mcmc_em
from zoo import vae


@dataclasses.dataclass
class Config(vae.Config):
    """The `mcmc_em` entry's options: those of `vae` (a diagonal Gaussian held-out q, no
    flow; the encoder's options are unused), and

    Attributes:
      mcmc_steps: HMC transitions per training batch.
      leapfrog_steps: leapfrog steps per HMC transition.
      initial_step_size: every chain's first HMC step size.
      eval_chains: HMC chains per held-out example (its q's mean and spread).
      eval_mcmc_steps: transitions of the held-out chains, from prior draws.
    """

    mcmc_steps: int = 5
    leapfrog_steps: int = 5
    initial_step_size: float = 0.1
    eval_chains: int = 8
    eval_mcmc_steps: int = 100

    def validate(self):
        if self.flow != "none" or self.posterior != "diagonal":
            raise ValueError("mcmc_em's held-out q is a factorized Gaussian: use "
                             "--posterior=diagonal --flow=none. Received: "
                             f"posterior={self.posterior!r}, flow={self.flow!r}")
        super().validate()
        for name in ("mcmc_steps", "leapfrog_steps", "eval_mcmc_steps"):
            validation.at_least(name, getattr(self, name), 1)
        validation.at_least("eval_chains", self.eval_chains, 2)
        validation.positive("initial_step_size", self.initial_step_size)
        if self.strategy != "default":
            raise ValueError("mcmc_em updates its per-example chains on one replica: use "
                             f"--strategy=default. Received: strategy={self.strategy!r}")

    def needs_example_index(self):
        return True


def build_model(config, info):
    """The `vae` decoder, prior and likelihood with one HMC chain per example (MCMC-EM)."""
    parts = vae.build_parts(config, info)
    return mcmc_em.MCMCEM(
        parts.decoder, parts.latent, parts.likelihood,
        num_examples=config.num_train_examples(), mcmc_steps=config.mcmc_steps,
        leapfrog_steps=config.leapfrog_steps, initial_step_size=config.initial_step_size,
        eval_chains=config.eval_chains, eval_mcmc_steps=config.eval_mcmc_steps,
        objective=vae.elbo_objective(config), seed=config.seed, name="mcmc_em")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
