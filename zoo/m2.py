"""`m2`: semi-supervised M2 (Kingma et al. 2014; book §4.5.1).

A classifier q(y|x), the conditional encoder q(z|x, y) and decoder
p(x|y, z) (MLPs), p(y) uniform, p(z) = N(0, I), Bernoulli p(x|y, z). Every
step sees a labelled batch from a class-balanced subset of `num_labels`
training examples (fixed by the seed) and an unlabelled batch of the full
training set, whose label is summed out exactly. The classification term
has Kingma et al.'s weight alpha = 0.1 N over the data set, i.e.
`alpha_factor` N / num_labels per labelled example. Test accuracy is in
metrics.json as `test_accuracy`. M2 only (no M1 features below it).

    python -m zoo.m2 --workdir=/tmp/m2 --dataset=fashion_mnist --num_labels=100
"""

import dataclasses

from tfvae import data as data_lib
from tfvae import families
from tfvae import labelled_data
from tfvae import latents
from tfvae import networks
from tfvae import train
from tfvae.models import m2


@dataclasses.dataclass
class Config(train.TrainConfig):
    """The `m2` entry's options.

    Attributes:
      num_labels: size of the labelled training subset (100, 600, 1000,
        3000, ...; a multiple of the number of classes).
      latent_size: dimension of z.
      hidden_units: widths of the hidden layers of the encoder, the
        classifier and (mirrored) the decoder.
      activation: activation of the hidden layers.
      alpha_factor: the classification weight per labelled example is
        alpha_factor * N / num_labels (N training examples); 0.1 is Kingma
        et al.'s alpha = 0.1 N.
    """

    dataset: str = "fashion_mnist"
    num_labels: int = 100
    latent_size: int = 50
    hidden_units: tuple = (500, 500)
    activation: str = "softplus"
    alpha_factor: float = 0.1

    def validate(self):
        super().validate()
        train._at_least("num_labels", self.num_labels, 1)
        train._at_least("latent_size", self.latent_size, 1)
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"`hidden_units` must be positive integers. "
                             f"Received: hidden_units={self.hidden_units!r}")
        if not self.alpha_factor >= 0:
            raise ValueError(f"`alpha_factor` must be >= 0. Received: alpha_factor={self.alpha_factor!r}")

    def num_train_examples(self):
        """N: the training examples the unlabelled stream covers."""
        n = data_lib.info(self.dataset).splits["train"]
        return min(n, self.max_train_examples) if self.max_train_examples else n

    def datasets(self):
        """(train, validation, test): training batches are {"labelled", "unlabelled"}."""
        unlabelled, validation, test = super().datasets()
        labelled = labelled_data.labelled_dataset(
            self.dataset, self.num_labels, self.batch_size, seed=self.seed,
            binarize=self.binarize, data_dir=self.data_dir or None, download=self.download,
            max_examples=self.max_train_examples or None)
        return labelled_data.semi_supervised_dataset(unlabelled, labelled), validation, test


def build_model(config, info):
    """The M2 model for `config` on a labelled dataset described by `info`."""
    if info.num_classes < 2:
        raise ValueError(f"`m2` needs a labelled dataset. Received: dataset={info.name!r}")
    image_shape = tuple(info.image_shape)
    likelihood = families.Bernoulli(image_shape)
    hidden = tuple(config.hidden_units)
    encoder = networks.MLP(hidden[:-1], hidden[-1], activation=config.activation,
                           output_activation=config.activation, name="encoder")
    classifier = networks.MLP(hidden, info.num_classes, activation=config.activation,
                              name="classifier")
    decoder = networks.MLP(tuple(reversed(hidden)), likelihood.params_size,
                           activation=config.activation, name="decoder")
    latent = latents.LatentLayer(families.DiagonalGaussian(config.latent_size), name="latent")
    alpha = config.alpha_factor * config.num_train_examples() / config.num_labels
    return m2.M2(encoder, decoder, latent, likelihood, classifier=classifier,
                 num_classes=info.num_classes, alpha=alpha, seed=config.seed, name="m2")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
