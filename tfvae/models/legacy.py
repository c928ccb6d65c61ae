"""Configs and `.keras` files of the variants that were `VAE` subclasses before objectives were objects.

IWAE, β-VAE and β-TCVAE differed from `VAE` only in their objective; they
are now a `VAE` with an `IWAEBound`, `ELBO` / `CapacityELBO` or `BetaTC`
objective. A `.keras` file or config that names one of the old classes
("tfvae>IWAE", "tfvae>BetaVAE", "tfvae>BetaTCVAE") loads as that `VAE`,
with the objective built from the options it stored, so workdirs written
before the change still evaluate.
"""

import keras

from tfvae.objectives import base as objective_base
from tfvae.objectives import disentanglement
from tfvae.objectives import elbo
from tfvae.objectives import importance_weighted
from tfvae.models import vae


def _iwae_objective(options):
    return importance_weighted.IWAEBound(options.get("k", 5), options.get("m", 1))


def _beta_vae_objective(options):
    capacity_max = options.get("capacity_max", 0.0)
    if capacity_max:
        return disentanglement.CapacityELBO(
            capacity_max, options.get("capacity_steps", 100000), options.get("gamma", 1000.0),
            analytic_kl=options.get("analytic_kl", True))
    return elbo.ELBO(**{key: options[key] for key in elbo.LEGACY_KEYS if key in options})


def _beta_tcvae_objective(options):
    return disentanglement.BetaTC(
        alpha=options.get("alpha", 1.0), beta=options.get("beta", 6.0),
        gamma=options.get("gamma", 1.0), dataset_size=options.get("dataset_size", 50000),
        estimator=options.get("estimator", "mss"), analytic_kl=options.get("analytic_kl", True))


# Old class name -> (its own options, the objective they make).
_VARIANTS = {
    "IWAE": (("k", "m"), _iwae_objective),
    "BetaVAE": (("capacity_max", "capacity_steps", "gamma"), _beta_vae_objective),
    "BetaTCVAE": (("alpha", "gamma", "dataset_size", "estimator"), _beta_tcvae_objective),
}


def vae_from_legacy_config(class_name, config):
    """The `VAE` that an old `class_name` config describes (see the module docstring)."""
    own, make_objective = _VARIANTS[class_name]
    config = dict(config)
    options = {key: config.pop(key) for key in (*own, *elbo.LEGACY_KEYS) if key in config}
    config["objective"] = objective_base.serialize(make_objective(options))
    return vae.VAE(**config)


def _register(class_name):
    @keras.saving.register_keras_serializable(objective_base.PACKAGE, name=class_name)
    class Legacy:
        """Loads an old "tfvae>{class_name}" config as a `VAE` (never instantiated itself)."""

        def get_config(self):   # Keras registers only classes that have one
            raise NotImplementedError("A legacy name only loads; it saves as `VAE`.")

        @classmethod
        def from_config(cls, config):
            return vae_from_legacy_config(class_name, config)
    Legacy.__name__ = Legacy.__qualname__ = f"Legacy{class_name}"
    return Legacy


for _name in _VARIANTS:
    _register(_name)
