"""tfvae: a TensorFlow / Keras 3 / TFP model zoo of variational autoencoders.

The metadata lives in pyproject.toml (PEP 621); this shim serves tools that
still run `python setup.py ...`.
"""

import setuptools

setuptools.setup()
