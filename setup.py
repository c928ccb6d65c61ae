"""tfvae: a TensorFlow / Keras 3 / TFP model zoo of variational autoencoders."""

import setuptools

setuptools.setup(
    name="tfvae",
    version="0.1.0",
    description=(
        "Variational autoencoders after Kingma & Welling (2019), in TensorFlow, "
        "Keras 3 and TensorFlow Probability."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["tfvae", "tfvae.*", "zoo", "zoo.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-probability>=0.25,<0.26",
        # TFP 0.25 imports tf_keras on first use, even for distributions only.
        "tf-keras>=2.21,<2.22",
        "keras>=3.10",
        "tensorboard>=2.21",
        "absl-py>=2.0",
        "numpy>=1.26",
    ],
    extras_require={
        # scikit-learn ships the offline 8x8 `digits` data set.
        "digits": ["scikit-learn>=1.3"],
        "test": [
            "pytest>=8",
            # The suite runs on every core (pytest.ini: -n auto).
            "pytest-xdist>=3.5",
            "scikit-learn>=1.3",
            "scipy>=1.11",
            "nbformat>=5.9",
            "nbclient>=0.10",
            "ipykernel>=6.29",
            "matplotlib>=3.8",
        ],
    },
)
