"""`wake_sleep`: the Helmholtz machine trained by wake-sleep (book §2.9; Hinton et al. 1995).

The `vae` model's generative model p(z) p(x|z) and recognition model q(z|x),
trained by the wake phase (generative model on z ~ q) and the sleep phase
(recognition model on dreams (z, x) ~ p), no reparameterization and no joint
bound (`tfvae.models.wake_sleep`). `--k` > 1 is reweighted wake-sleep
(Bornschein and Bengio 2015) with self-normalized importance weights, and
`--wake_recognition` adds its wake-phase update of q. The logged `elbo` (and
`val_elbo`, which early stopping and the best checkpoint follow) is the
standard ELBO, comparable with every other entry.

    python -m zoo.wake_sleep --workdir=/tmp/ws --dataset=fashion_mnist
    python -m zoo.wake_sleep --workdir=/tmp/rws --dataset=fashion_mnist --k=5 --wake_recognition
"""

import dataclasses

from tfvae import validation
from tfvae.models import wake_sleep
from zoo import vae


@dataclasses.dataclass
class Config(vae.Config):
    """The `wake_sleep` entry's options: those of `vae` (a Gaussian posterior without a
    flow), and

    Attributes:
      k: draws of q per example in the wake phase (1: wake-sleep; > 1:
        reweighted wake-sleep).
      wake_recognition: reweighted wake-sleep's wake-phase update of q (k > 1).
      dreams: (z, x) pairs dreamed per step for the sleep phase (0: the batch size).
    """

    k: int = 1
    wake_recognition: bool = False
    dreams: int = 0

    def validate(self):
        if self.flow != "none":
            raise ValueError("wake-sleep evaluates q(z|x) at dreamed z: use a Gaussian "
                             f"posterior without a flow (--flow=none). Received: flow={self.flow!r}")
        super().validate()
        validation.at_least("k", self.k, 1)
        validation.at_least("dreams", self.dreams, 0)
        if self.wake_recognition and self.k < 2:
            raise ValueError("`wake_recognition` needs k >= 2 importance weights. "
                             f"Received: k={self.k}")
        validation.unused_at_default(
            self, ("beta", "kl_warmup_steps", "free_bits", "free_bits_groups"),
            "wake-sleep (they shape the ELBO, which wake-sleep does not train on)")


def build_model(config, info):
    """The `vae` parts trained by (reweighted) wake-sleep; the ELBO is logged."""
    return wake_sleep.WakeSleepVAE(
        *vae.build_parts(config, info), num_samples=config.k,
        wake_recognition=config.wake_recognition, dreams=config.dreams,
        objective=vae.elbo_objective(config), seed=config.seed, name="wake_sleep")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
