"""A VAE's generative model with per-example inference state instead of an encoder.

The base of the book's non-amortized baselines (appendix A.2): variational
EM with local parameters (`tfvae.models.vem`) and MCMC-EM (`tfvae.models.
mcmc_em`). Each keeps one row of state per training example (variational
parameters, or a Markov chain) in non-trainable model variables, so the
state is checkpointed with the weights and a resumed run continues it; the
training data carry each example's row ("index",
`tfvae.data.datasets.make_dataset(..., with_index=True)`). There is no
encoder: `encode(x)` infers q for new x (the subclass' `posterior_params`).
"""

import keras
import tensorflow as tf

from tfvae.models import base
from tfvae.models import guarded_step
from tfvae.models import vae as vae_lib


class NonAmortizedVAE(vae_lib.VAE):
    """`VAE` without an encoder, with per-example state built by `build_state`.

    Args:
      decoder, latent, likelihood: as `VAE` (the latent layer's posterior
        family and prior; its head is not used).
      num_examples: N, training examples (rows of the state).
      encoder: unused (an `Identity`, so that the VAE's code applies).
      **kwargs: as `VAE` (objective, max_grad_norm, seed, weight_prior, name).
    """

    method = "this model"            # named in errors

    def __init__(self, decoder, latent, likelihood, *, num_examples, encoder=None, **kwargs):
        if isinstance(num_examples, bool) or not isinstance(num_examples, int) \
                or num_examples < 1:
            raise ValueError(f"`num_examples` must be an integer >= 1. "
                             f"Received: num_examples={num_examples!r}")
        self.num_examples = num_examples
        super().__init__(keras.layers.Identity() if encoder is None else encoder, decoder,
                         latent, likelihood, **kwargs)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.check_shape(input_shape)
        # No encoder and no latent head: the generative model and the state only.
        if not self.latent.prior_layer.built:
            self.latent.prior_layer.build((None, self.latent.latent_size))
        if not self.decoder.built:
            self.decoder.build((None, self.latent.latent_size))
        self.build_state()
        self.built = True

    def build_state(self):
        """Creates the per-example state variables (N rows)."""
        raise NotImplementedError

    def posterior_params(self, x, context=None):
        """q's parameters [B, P] for new examples, inferred without an encoder."""
        raise NotImplementedError

    def encode(self, x, context=None):
        """q(z|x) of new examples (`posterior_params`; there is no encoder)."""
        return self.posterior_from_params(self.posterior_params(x, context))

    def inference_seed(self):
        """The fixed stateless seed [2] of the inference for new examples: q(z|x) is a
        function of x alone (the same in every call, process and reloaded model)."""
        return tf.constant([self.seed or 0, 1], tf.int32)

    def rows(self, data):
        """The batch's rows int32 [B] ("index"), on one replica.

        Raises:
          ValueError: several replicas (the state is updated from one), or a
            batch without "index".
        """
        data = base.unwrap(data)
        if guarded_step.num_replicas() > 1:
            raise ValueError(f"{self.method} updates its per-example state from one replica; "
                             "train it with --strategy=default.")
        if not isinstance(data, dict) or "index" not in data:
            raise ValueError(f"{self.method} needs each training example's row: batches must "
                             "be dicts with an 'index' entry (make_dataset(..., "
                             "with_index=True)).")
        return tf.cast(data["index"], tf.int32)

    @staticmethod
    def write_rows(variable, rows, values):
        """Writes `values` [B, ...] into rows `rows` [B] of the state `variable`."""
        variable.assign(tf.tensor_scatter_nd_update(variable, rows[:, None], values))

    def get_config(self):
        config = super().get_config()
        config.pop("encoder")
        return {**config, "num_examples": self.num_examples}
