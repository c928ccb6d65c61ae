"""tfvae: variational autoencoders in TensorFlow, Keras 3 and TFP.

After D. P. Kingma and M. Welling, "An Introduction to Variational
Autoencoders", Foundations and Trends in Machine Learning (2019).
"""

__version__ = "0.1.0"

# Importing the package registers every serializable class with Keras, so a
# `.keras` file loads after a plain `import tfvae`.
from tfvae import families  # noqa: E402,F401
from tfvae import latents  # noqa: E402,F401
from tfvae import networks  # noqa: E402,F401
from tfvae import priors  # noqa: E402,F401
from tfvae import models  # noqa: E402,F401
from tfvae.flows import density  # noqa: E402,F401
from tfvae.flows import iaf  # noqa: E402,F401
from tfvae.flows import made  # noqa: E402,F401
from tfvae.flows import householder  # noqa: E402,F401
from tfvae.flows import planar  # noqa: E402,F401
from tfvae.flows import sylvester  # noqa: E402,F401
from tfvae import vamp  # noqa: E402,F401
from tfvae.models import beta_tcvae  # noqa: E402,F401
from tfvae.models import beta_vae  # noqa: E402,F401
from tfvae.models import iwae  # noqa: E402,F401
from tfvae.models import vamp_vae  # noqa: E402,F401
from tfvae import discrete_latents  # noqa: E402,F401
from tfvae import pixelcnn  # noqa: E402,F401
from tfvae.models import cvae  # noqa: E402,F401
from tfvae.models import gumbel_vae  # noqa: E402,F401
from tfvae.models import m2  # noqa: E402,F401
from tfvae.models import pixel_vae  # noqa: E402,F401
from tfvae import discretized  # noqa: E402,F401
from tfvae import weight_norm  # noqa: E402,F401
from tfvae.hierarchy import mlp as hierarchy_mlp  # noqa: E402,F401
from tfvae.hierarchy import resnet as hierarchy_resnet  # noqa: E402,F401
from tfvae.models import hvae  # noqa: E402,F401
