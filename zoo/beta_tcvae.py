"""`beta_tcvae`: β-TCVAE (Chen et al. 2018), the KL split into MI, TC and dimension-wise KL.

loss = distortion + α MI + β TC + γ dimension-wise KL with α = γ = 1, β = 6;
the terms are minibatch estimates against the aggregate posterior over the N
training examples (`--estimator=mss`, stratified sampling; `mws` is the
published weighted-sampling estimator, whose TC value carries an offset of
about (d - 1) log N). Monte-Carlo KL; everything else as `vae`.

    python -m zoo.beta_tcvae --workdir=/tmp/beta_tcvae --dataset=fashion_mnist --beta=6
"""

import dataclasses

from tfvae.models import VAE
from tfvae.objectives import disentanglement
from tfvae import validation
from zoo import vae


@dataclasses.dataclass
class Config(vae.Config):
    """The `beta_tcvae` entry's options: those of `vae` (`beta` weights the TC), and

    Attributes:
      alpha: weight α of the index-code mutual information.
      gamma: weight γ of the dimension-wise KL.
      estimator: "mss" (minibatch stratified sampling) or "mws" (weighted sampling).
      dataset_size: N of the aggregate posterior; 0 = the training examples used.
    """

    analytic_kl: bool = False
    beta: float = 6.0
    alpha: float = 1.0
    gamma: float = 1.0
    estimator: str = "mss"
    dataset_size: int = 0

    def validate(self):
        validation.at_least("dataset_size", self.dataset_size, 0)
        super().validate()
        validation.unused_at_default(self, ("kl_warmup_steps", "free_bits", "free_bits_groups"),
                                     "the β-TC objective")

    def objective(self, dataset_size=None):
        """The `BetaTC` objective; N = `dataset_size`, else the config's or a placeholder
        (the model gets the training split's size from `build_model`)."""
        return disentanglement.BetaTC(
            alpha=self.alpha, beta=self.beta, gamma=self.gamma,
            dataset_size=dataset_size or self.dataset_size or 1, estimator=self.estimator,
            analytic_kl=self.analytic_kl)


def build_model(config, info):
    """The β-TCVAE for `config`; N from the config or the training split's size."""
    dataset_size = config.dataset_size or config.max_train_examples or info.splits["train"]
    return VAE(*vae.build_parts(config, info), objective=config.objective(dataset_size),
               seed=config.seed, name="beta_tcvae")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
