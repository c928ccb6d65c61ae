"""`beta_vae`: β-VAE (Higgins et al. 2017), optionally with capacity annealing (Burgess et al. 2018).

The reference VAE with loss distortion + β KL, β = 4 by default (`--beta=1`
is exactly `vae`). `--capacity_max=C` > 0 switches to distortion + γ |KL -
C(t)|, C(t) rising linearly from 0 to C nats over `--capacity_steps` steps
(β is then unused).

    python -m zoo.beta_vae --workdir=/tmp/beta_vae --dataset=fashion_mnist --beta=4
"""

import dataclasses

from tfvae.models import VAE
from tfvae.objectives import disentanglement
from tfvae import validation
from zoo import vae


@dataclasses.dataclass
class Config(vae.Config):
    """The `beta_vae` entry's options: those of `vae`, and

    Attributes:
      capacity_max: final target KL C_max in nats (0 disables capacity annealing).
      capacity_steps: steps over which the target KL rises from 0 to C_max.
      gamma: weight γ of |KL - C(t)| under capacity annealing.
    """

    beta: float = 4.0
    capacity_max: float = 0.0
    capacity_steps: int = 100000
    gamma: float = 1000.0

    def validate(self):
        super().validate()
        if self.capacity_max:
            validation.unused_at_default(
                self, ("beta", "kl_warmup_steps", "free_bits", "free_bits_groups"),
                "capacity annealing (it replaces β, warm-up and free bits)")

    def objective(self):
        """The ELBO with β, or with `capacity_max` > 0 the `CapacityELBO`."""
        if not self.capacity_max:
            return vae.elbo_objective(self)
        return disentanglement.CapacityELBO(self.capacity_max, self.capacity_steps, self.gamma,
                                            analytic_kl=self.analytic_kl)


def build_model(config, info):
    """The β-VAE for `config`: the reference VAE's parts with `config.objective()`."""
    return VAE(*vae.build_parts(config, info), objective=config.objective(), seed=config.seed,
               name="beta_vae")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
