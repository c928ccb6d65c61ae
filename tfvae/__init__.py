"""tfvae: variational autoencoders in TensorFlow, Keras 3 and TFP.

After D. P. Kingma and M. Welling, "An Introduction to Variational
Autoencoders", Foundations and Trends in Machine Learning (2019).
"""

__version__ = "0.1.0"
