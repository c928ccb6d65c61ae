"""`vem`: variational EM with local variational parameters (book appendix A.2.2).

The `vae` generative model without an encoder: a Gaussian q(z; phi_i) per
training example, stored for the whole training set and refined by an
E-step of `--e_steps` gradient steps whenever its example is in a batch
(warm-started), followed by one M-step on the generative model
(`tfvae.models.vem`). Held-out examples get their q from an E-step of
`--eval_e_steps` from q = N(0, I); the reported ELBO, IS log p(x) and the
export use that local q. The book's baseline for amortized inference:
compare its test ELBO with `vae`'s, and `python -m zoo.gaps` on both.

    python -m zoo.vem --workdir=/tmp/vem --dataset=fashion_mnist
"""

import dataclasses

from tfvae import validation
from tfvae.models import vem
from zoo import vae


@dataclasses.dataclass
class Config(vae.Config):
    """The `vem` entry's options: those of `vae` (a Gaussian posterior without a flow;
    the encoder's options are unused), and

    Attributes:
      e_steps: E-step gradient steps on a training batch's parameters.
      eval_e_steps: E-step steps for a held-out example, from q = N(0, I).
      e_learning_rate: the E-step's initial Adam step (decayed linearly to 0).
      e_samples: draws of z per E-step gradient.
    """

    e_steps: int = 5
    eval_e_steps: int = 100
    e_learning_rate: float = 0.05
    e_samples: int = 1

    def validate(self):
        if self.flow != "none":
            raise ValueError("vem keeps a Gaussian q per example: use --flow=none. "
                             f"Received: flow={self.flow!r}")
        super().validate()
        for name in ("e_steps", "eval_e_steps", "e_samples"):
            validation.at_least(name, getattr(self, name), 1)
        validation.positive("e_learning_rate", self.e_learning_rate)
        if self.strategy != "default":
            raise ValueError("vem updates its per-example table on one replica: use "
                             f"--strategy=default. Received: strategy={self.strategy!r}")

    def needs_example_index(self):
        return True


def build_model(config, info):
    """The `vae` decoder, prior and likelihood with per-example q's (variational EM)."""
    parts = vae.build_parts(config, info)
    return vem.VariationalEM(
        parts.decoder, parts.latent, parts.likelihood,
        num_examples=config.num_train_examples(), e_steps=config.e_steps,
        eval_e_steps=config.eval_e_steps, e_learning_rate=config.e_learning_rate,
        e_samples=config.e_samples, objective=vae.elbo_objective(config), seed=config.seed,
        name="vem")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
