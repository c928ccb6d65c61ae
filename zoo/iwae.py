"""`iwae`: the reference VAE trained on the importance-weighted bound (Burda et al. 2015).

k = 5 samples per example inside the log-mean-exp (`--k`); `--m` > 1 averages
m independent IWAE-k bounds (MIWAE, see `miwae`). Monte-Carlo KL (the log
weights need log q(z|x)); everything else as `vae`. The `elbo` metric is the
standard ELBO (comparable across entries), `iwae` the bound being trained.

    python -m zoo.iwae --workdir=/tmp/iwae --dataset=fashion_mnist --k=5
"""

import dataclasses

from tfvae.objectives import importance_weighted as objectives_iw
from tfvae.models import iwae
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
        super().validate()
        objectives_iw.check_counts(self.k, self.m)


def build_model(config, info):
    """The (M)IWAE for `config`: the reference VAE's parts (`vae.build_parts`)."""
    return iwae.IWAE(*vae.build_parts(config, info), k=config.k, m=config.m,
                     **vae.elbo_options(config), name="iwae")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
