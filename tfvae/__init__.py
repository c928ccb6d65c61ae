"""tfvae: variational autoencoders in TensorFlow, Keras 3 and TFP.

After D. P. Kingma and M. Welling, "An Introduction to Variational
Autoencoders", Foundations and Trends in Machine Learning (2019).
"""

__version__ = "0.1.0"

from tfvae import versions as _versions  # noqa: E402

_versions.warn_if_untested()              # before TensorFlow is imported

# Importing the package registers every serializable class with Keras, so a
# `.keras` file loads after a plain `import tfvae`. The subpackages follow the
# picture of the design: nn -> flows -> distributions -> hierarchy -> models,
# with objectives, data, evaluation and training beside them; the modules keep
# their short public names here (`tfvae.families`, `tfvae.networks`, ...).
from tfvae.nn import made  # noqa: E402,F401
from tfvae.nn import networks  # noqa: E402,F401
from tfvae.nn import pixelcnn  # noqa: E402,F401
from tfvae.nn import weight_norm  # noqa: E402,F401
from tfvae.flows import density  # noqa: E402,F401
from tfvae.flows import householder  # noqa: E402,F401
from tfvae.flows import iaf  # noqa: E402,F401
from tfvae.flows import planar  # noqa: E402,F401
from tfvae.flows import sylvester  # noqa: E402,F401
from tfvae.distributions import discrete_latents  # noqa: E402,F401
from tfvae.distributions import discretized  # noqa: E402,F401
from tfvae.distributions import families  # noqa: E402,F401
from tfvae.distributions import latents  # noqa: E402,F401
from tfvae.distributions import priors  # noqa: E402,F401
from tfvae.distributions import vamp  # noqa: E402,F401
from tfvae.hierarchy import mlp as hierarchy_mlp  # noqa: E402,F401
from tfvae.hierarchy import resnet as hierarchy_resnet  # noqa: E402,F401
from tfvae.objectives import disentanglement  # noqa: E402,F401
from tfvae.objectives import elbo  # noqa: E402,F401
from tfvae.objectives import importance_weighted  # noqa: E402,F401
from tfvae.objectives import semi_supervised  # noqa: E402,F401
from tfvae.objectives.base import Objective  # noqa: E402,F401
from tfvae.objectives.disentanglement import BetaTC  # noqa: E402,F401
from tfvae.objectives.disentanglement import CapacityELBO  # noqa: E402,F401
from tfvae.objectives.elbo import ELBO  # noqa: E402,F401
from tfvae.objectives.importance_weighted import IWAEBound  # noqa: E402,F401
from tfvae.objectives.semi_supervised import SemiSupervisedBound  # noqa: E402,F401
from tfvae import models  # noqa: E402,F401
from tfvae.models import cvae  # noqa: E402,F401
from tfvae.models import gumbel_vae  # noqa: E402,F401
from tfvae.models import hvae  # noqa: E402,F401
from tfvae.models import legacy  # noqa: E402,F401
from tfvae.models import m2  # noqa: E402,F401
from tfvae.models import pixel_vae  # noqa: E402,F401
from tfvae.models import vamp_vae  # noqa: E402,F401
from tfvae.models import mcmc_em  # noqa: E402,F401
from tfvae.models import vem  # noqa: E402,F401
from tfvae.models import wake_sleep  # noqa: E402,F401
from tfvae.models.base import Batch  # noqa: E402,F401
from tfvae.models.base import LatentVariableModel  # noqa: E402,F401
from tfvae.models.flow_density import FlowDensity  # noqa: E402,F401
from tfvae.models.vae import VAE  # noqa: E402,F401
