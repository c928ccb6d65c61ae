"""`vamp_vae`: the reference VAE with the VampPrior (Tomczak & Welling 2018).

p(z) = (1/K) sum_k q(z|u_k) over K = 500 learned pseudo-inputs u_k
(`--num_pseudo_inputs`); Monte-Carlo KL; everything else as `vae`.

    python -m zoo.vamp_vae --workdir=/tmp/vamp_vae --dataset=fashion_mnist
"""

import dataclasses

from tfvae.distributions import vamp
from tfvae.models import vamp_vae
from tfvae import validation
from zoo import vae


@dataclasses.dataclass
class Config(vae.Config):
    """The `vamp_vae` entry's options: those of `vae` (`prior` must stay standard_normal), and

    Attributes:
      num_pseudo_inputs: K, the number of learned pseudo-inputs of the VampPrior.
    """

    analytic_kl: bool = False
    num_pseudo_inputs: int = 500

    def validate(self):
        super().validate()
        validation.at_least("num_pseudo_inputs", self.num_pseudo_inputs, 1)
        if self.prior != "standard_normal":
            raise ValueError("The VampPrior is the prior of `vamp_vae`; --prior does not apply. "
                             f"Received: prior={self.prior!r}")


def build_model(config, info):
    """The VampVAE for `config`: the reference VAE's parts and the VampPrior."""
    parts = vae.build_parts(config, info)
    prior = vamp.VampPrior(config.num_pseudo_inputs, tuple(info.image_shape), seed=config.seed,
                           name="vamp_prior")
    return vamp_vae.VampVAE(*parts, vamp_prior=prior, objective=config.objective(),
                            seed=config.seed, name="vamp_vae")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
