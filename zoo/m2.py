"""`m2`: semi-supervised M2 (Kingma et al. 2014; book §4.5.1).

A classifier q(y|x), the conditional encoder q(z|x, y) and decoder
p(x|y, z) (MLPs), p(y) uniform, p(z) = N(0, I), Bernoulli p(x|y, z). Every
step sees a labelled batch from a class-balanced subset of `num_labels`
training examples (fixed by the seed) and an unlabelled batch of the full
training set, whose label is summed out exactly. The classification term
has Kingma et al.'s weight alpha = 0.1 N over the data set, i.e.
`alpha_factor` N / num_labels per labelled example. Test accuracy is in
metrics.json as `test_accuracy`.

M1+M2 (Kingma et al.'s stacked model): `--m1_workdir` names a finished
unsupervised VAE run on the same dataset (M1); M2 is then trained on M1's
latents (`zoo.m1_features`: a fresh draw z_1 ~ q(z_1|x) per training
batch, the posterior mean for held-out data) with a Gaussian p(z_1|y, z_2).
The test bound is then one of log p(z_1), and the exported M2 takes M1's
`encode` output (its `loc`, shaped [N, 1, 1, d]) instead of images.
Kingma et al.'s M1 has two softplus layers of 600 units and 50 latents:

    python -m zoo.vae --workdir=/tmp/m1 --dataset=fashion_mnist --latent_size=50 \
        --hidden_units=600,600 --activation=softplus
    python -m zoo.m2 --workdir=/tmp/m1m2 --dataset=fashion_mnist --num_labels=100 \
        --m1_workdir=/tmp/m1

    python -m zoo.m2 --workdir=/tmp/m2 --dataset=fashion_mnist --num_labels=100
"""

import dataclasses

from tfvae.distributions import families
from tfvae.data import labelled as labelled_data
from tfvae.distributions import latents
from zoo import m1_features
from tfvae.nn import networks
from tfvae.training import train
from tfvae.models import m2
from tfvae.objectives import semi_supervised
from tfvae import validation
from zoo import workdirs


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
      m1_workdir: workdir of a trained unsupervised VAE on the same dataset
        (M1): M2 models its latents instead of the images (M1+M2); "" for M2
        on the images.
    """

    dataset: str = "fashion_mnist"
    num_labels: int = 100
    latent_size: int = 50
    hidden_units: tuple = (500, 500)
    activation: str = "softplus"
    alpha_factor: float = 0.1
    m1_workdir: str = ""

    def added_fields(self):
        return {**super().added_fields(), "m1_workdir": ""}

    def validate(self):
        super().validate()
        validation.at_least("num_labels", self.num_labels, 1)
        validation.at_least("latent_size", self.latent_size, 1)
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"`hidden_units` must be positive integers. "
                             f"Received: hidden_units={self.hidden_units!r}")
        if not self.alpha_factor >= 0:
            raise ValueError(f"`alpha_factor` must be >= 0. Received: alpha_factor={self.alpha_factor!r}")

    def check_inputs(self):
        """The M1 workdir must hold a run on the same dataset and binarization."""
        super().check_inputs()
        if self.m1_workdir:
            m1_config = workdirs.read_config(self.m1_workdir, "m1_workdir")
            for key in ("dataset", "binarize"):
                if m1_config.get(key) != getattr(self, key):
                    raise ValueError(f"M1 was trained with {key}={m1_config.get(key)!r}, M2 would "
                                     f"see {key}={getattr(self, key)!r}: they must agree. "
                                     f"Received: m1_workdir={self.m1_workdir!r}")

    def m1(self):
        """The trained M1 (`zoo.m1_features.load_m1`), loaded once; None without one."""
        if not self.m1_workdir:
            return None
        if getattr(self, "_m1", None) is None:
            self._m1 = m1_features.load_m1(self.m1_workdir)
        return self._m1

    def dataset_info(self):
        info = super().dataset_info()
        return m1_features.feature_info(info, self.m1()) if self.m1_workdir else info

    def train_dataset(self, epoch=None):
        """Training batches {"labelled", "unlabelled"} of epoch `epoch` (see `TrainConfig`)."""
        unlabelled = super().train_dataset(epoch)
        labelled = labelled_data.labelled_dataset(
            self.dataset, self.num_labels, self.batch_size, seed=self.seed,
            binarize=self.binarize, data_dir=self.data_dir or None, download=self.download,
            max_examples=self.max_train_examples or None, epoch=epoch)
        if self.m1_workdir:      # the held-out splits are features already (`held_out_dataset`)
            m1 = self.m1()
            unlabelled = m1_features.to_features(unlabelled, m1, sample=True, seed=self.seed,
                                                 epoch=epoch)
            labelled = m1_features.to_features(labelled, m1, sample=True, seed=self.seed,
                                               stream="m1_labelled_features", epoch=epoch)
        return labelled_data.semi_supervised_dataset(unlabelled, labelled)

    def held_out_dataset(self, split, batch_size=None, max_examples=None):
        """The held-out images, or with an M1 their M1 features (posterior means)."""
        dataset = super().held_out_dataset(split, batch_size, max_examples)
        return m1_features.to_features(dataset, self.m1(), sample=False) if self.m1_workdir \
            else dataset


def build_model(config, info):
    """The M2 model for `config` on a labelled dataset described by `info`."""
    if info.num_classes < 2:
        raise ValueError(f"`m2` needs a labelled dataset. Received: dataset={info.name!r}")
    image_shape = tuple(info.image_shape)
    # M1 features are continuous (num_bits 0): a Gaussian with a learned scale.
    likelihood = (families.Gaussian(image_shape) if info.num_bits == 0
                  else families.Bernoulli(image_shape))
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
                 num_classes=info.num_classes,
                 objective=semi_supervised.SemiSupervisedBound(alpha), seed=config.seed,
                 name="m2")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
