"""`Objective`: a training objective as an object that consumes a model's terms.

A model computes its terms once per step through the protocol method

    model.objective_terms(batch, seed, num_samples, analytic_kl, training) -> Terms

and the model's `objective` hands them to its `Objective`, which returns the
scalars to log, `loss` first. So an objective's knobs (β, warm-up, free bits,
k and m of IWAE, capacity, the β-TC weights, the M2 classification weight)
live in the objective, never in a model, and a model never has to reject
another objective's knobs. An objective refuses what it cannot honour in
two places: at construction (its own arguments) and in `bind(model)` when a
model takes it (an analytic KL the model has no closed form for, free-bits
groups that do not divide the model's latent groups, ...), each with a
message naming the option.

The ELBO (book §2.2, §2.8.1) is `tfvae.objectives.elbo.ELBO`; IWAE/MIWAE
`importance_weighted.IWAEBound`; capacity and β-TC in `disentanglement`; the
M2 classification term in `semi_supervised`.
"""

import collections

import keras

PACKAGE = "tfvae"

Terms = collections.namedtuple(
    "Terms", ["log_likelihood", "kl", "kl_groups", "posterior", "extras"],
    defaults=(None, None, {}))
"""A model's per-example pieces of its bound for one batch of B examples.

  log_likelihood: log p(x|z) [S, B] at S posterior draws.
  kl: KL(q(z|x) || p(z)): closed form [B], or Monte Carlo log q - log p [S, B].
  kl_groups: callable(num_groups) -> the KL split into free-bits groups
    [..., B, G] that sum to `kl` (book §2.8.1), or None if the model has none.
  posterior: (q, p, z) for objectives that need the distributions
    themselves (β-TC), or None.
  extras: scalars the model adds to the logged terms (per-layer rates, the
    relaxation temperature, ...), after the objective's own.
"""

KLSupport = collections.namedtuple(
    "KLSupport", ["analytic", "per_dimension", "group_sizes", "max_samples",
                  "factorized_gaussian"], defaults=(None, False))
"""What a model's terms offer an objective.

  analytic: a closed-form KL exists (a Gaussian posterior without a flow and
    the standard-normal prior, or a hierarchy's Gaussian layers).
  per_dimension: the KL splits over latent dimensions (a factorized
    posterior and prior): needed by free bits with several groups per layer
    and by the β-TC decomposition.
  group_sizes: the sizes that a number of free-bits groups must divide (the
    latent size, or every layer's size of a hierarchy).
  max_samples: the most posterior draws per example `objective_terms` takes
    (None: any number; 1 for one pass of a hierarchy or a relaxed draw).
  factorized_gaussian: `Terms.posterior` is one factorized Gaussian q(z|x)
    with the standard-normal p(z) (what the β-TC decomposition needs).
"""


class Objective:
    """Base class of the objectives a `LatentVariableModel` trains on.

    Subclasses set `metric_names` (the keys their `loss` returns, "loss"
    first), `num_samples` (posterior draws per example) and `analytic_kl`
    (the KL estimator they ask the model for), and implement `loss`; an
    objective that needs more than `Terms` (M2's) overrides `__call__`.

    Args:
      analytic_kl: ask for the closed-form KL (True) or the single-sample
        Monte-Carlo estimate log q(z|x) - log p(z) (False; book §2.2).
    """

    metric_names = ("loss", "elbo", "rate", "distortion")
    num_samples = 1

    def __init__(self, analytic_kl=True):
        if not isinstance(analytic_kl, bool):
            raise ValueError(f"`analytic_kl` must be a bool. Received: analytic_kl={analytic_kl!r}")
        self.analytic_kl = analytic_kl

    def bind(self, model):
        """Raises ValueError if `model` cannot give what this objective needs.

        The base checks the KL estimator and the number of draws against
    `model.kl_support()`.
        """
        support = model.kl_support()
        if self.analytic_kl and not support.analytic:
            raise ValueError(
                f"{type(self).__name__}(analytic_kl=True) needs a closed-form KL, which "
                f"{type(model).__name__} does not have here (a flow posterior, a learned or "
                "mixture prior, or discrete latents): use analytic_kl=False, the Monte-Carlo KL.")
        if support.max_samples is not None and self.num_samples > support.max_samples:
            raise ValueError(
                f"{self!r} needs {self.num_samples} posterior draws per example; the training "
                f"terms of {type(model).__name__} take at most {support.max_samples}.")

    def loss(self, terms, step):
        """The objective's scalars from `Terms` at optimizer step `step`: {"loss", ...}."""
        raise NotImplementedError

    def __call__(self, model, batch, seed, training=False):
        """{"loss": scalar to minimize, ...the objective's terms, ...the model's extras}."""
        terms = model.objective_terms(batch, seed, num_samples=self.num_samples,
                                      analytic_kl=self.analytic_kl, training=training)
        return {**self.loss(terms, model.optimizer_step()), **terms.extras}

    def get_config(self):
        return {"analytic_kl": self.analytic_kl}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({options})"


def serialize(objective):
    """The Keras config of an objective (stored in its model's `get_config`)."""
    return keras.saving.serialize_keras_object(objective)


def deserialize(objective):
    """An `Objective` from its config, or `objective` itself; raises ValueError otherwise."""
    if isinstance(objective, dict):
        objective = keras.saving.deserialize_keras_object(objective)
    if not isinstance(objective, Objective):
        raise ValueError(f"`objective` must be a tfvae Objective (e.g. objectives.elbo.ELBO()). "
                         f"Received: objective={objective!r}")
    return objective
