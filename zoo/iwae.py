"""`iwae`: the reference VAE trained on the importance-weighted bound (Burda et al. 2015).

k = 5 samples per example inside the log-mean-exp (`--k`); `--m` > 1 averages
m independent IWAE-k bounds (MIWAE, see `miwae`). Monte-Carlo KL (the log
weights need log q(z|x)); everything else as `vae`. The `elbo` metric is the
standard ELBO (comparable across entries), `iwae` the bound being trained.

    python -m zoo.iwae --workdir=/tmp/iwae --dataset=fashion_mnist --k=5
"""

import dataclasses

from tfvae.models import VAE
from tfvae.objectives import importance_weighted as objectives_iw
from tfvae import validation
from zoo import vae


@dataclasses.dataclass
class Config(vae.Config):
    """The `iwae` entry's options: those of `vae`, and

    Attributes:
      k: importance samples per bound (Burda et al. 2015).
      m: independent IWAE-k bounds averaged (1 = IWAE; > 1 = MIWAE).
    """

    analytic_kl: bool = False
    k: int = 5
    m: int = 1

    def validate(self):
        objectives_iw.check_counts(self.k, self.m)
        super().validate()
        validation.unused_at_default(
            self, ("beta", "kl_warmup_steps", "free_bits", "free_bits_groups"), "the IWAE bound")

    def objective(self):
        return objectives_iw.IWAEBound(self.k, self.m, analytic_kl=self.analytic_kl)


def build_model(config, info):
    """The (M)IWAE for `config`: the reference VAE's parts with the `IWAEBound` objective."""
    return VAE(*vae.build_parts(config, info), objective=config.objective(), seed=config.seed,
               name="iwae")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
