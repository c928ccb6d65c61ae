"""Hierarchical VAE: a top-down stack of stochastic layers as a Keras 3 model (book §4.1-4.2).

`HierarchicalVAE` wires a stack (`tfvae.hierarchy.MLPStack` or
`ResNetStack`: the cells of p(z_L) p(z_{L-1}|z_L) ... p(x|z_1) and the
chosen inference) to a likelihood family. As a `LatentVariableModel` it adds
only its math: the objective's terms, the posterior draws of all layers
with their log-density, the joint log p(x, z_1..L), `elbo`, `sample`,
`encode`/`decode`. Its objective (an `ELBO` by default) sees the total rate
= sum of the layers' KL terms; free bits apply per layer (and per group
within a layer, §2.8.1); per-layer rates are the metrics `rate_0` (z_1) ...
`rate_{L-1}`.
The importance-sampled log p(x) uses the joint of all layers,

    log p(x) ~= log (1/K) sum_k p(x, z_1..L^k) / q(z_1..L^k | x),

with log p(x, z)/q(z|x) = log p(x|z) - sum_l [log q_l(z_l) - log p_l(z_l)].
"""

import keras
import tensorflow as tf

from tfvae.distributions import families
from tfvae.objectives import base as objective_base
from tfvae.objectives import elbo as elbo_objectives
from tfvae.hierarchy import base
from tfvae.models import base as base_model
from tfvae.models import serving

_PACKAGE = "tfvae"


# The stacks' loops and branches are over Python values (layers, options):
# autograph's source conversion of them only costs tracing time (tens of seconds
# for a deep stack), so the model's graph entry points skip it.
_plain_python = tf.autograph.experimental.do_not_convert



@keras.saving.register_keras_serializable(_PACKAGE)
class HierarchicalVAE(base_model.LatentVariableModel):
    """VAE with L stochastic layers (Burda 2016, Sønderby 2016, Kingma 2016).

    Args:
      stack: a hierarchy stack layer (`MLPStack`, `ResNetStack`) whose
        `infer` / `generate` give the layers' `LayerOutput`s and the
        likelihood parameters [N, likelihood.params_size].
      likelihood: family of p(x|z) with event shape (H, W, C).
      objective: the training objective (None: `ELBO()`): its analytic KL
        means closed-form per-layer KLs where the stack allows it; its free
        bits groups are the layers, or `free_bits_groups` contiguous groups
        within each layer (> 1 needs layers without IAF).
      max_grad_norm, seed: as in `LatentVariableModel`.
    """

    def __init__(self, stack, likelihood, *, objective=None, **kwargs):
        likelihood = base_model.deserialize(likelihood)
        if not isinstance(likelihood, families.Family):
            raise ValueError(f"`likelihood` must be a family. Received: likelihood={likelihood!r}")
        super().__init__(likelihood.event_shape, **kwargs)
        self.stack = base_model.deserialize(stack)
        self.likelihood = likelihood
        if not hasattr(self.stack, "infer") or not hasattr(self.stack, "generate"):
            raise ValueError(f"`stack` must be a hierarchy stack. Received: stack={stack!r}")
        self.sizes = tuple(base.flat_size(shape) for shape in self.stack.latent_shapes)
        if tuple(self.stack.image_shape) != self.image_shape:
            raise ValueError(f"The stack's image_shape {tuple(self.stack.image_shape)} differs "
                             f"from the likelihood's {self.image_shape}.")
        self.num_layers = len(self.sizes)
        self.use_objective(elbo_objectives.ELBO() if objective is None else objective,
                           *(f"rate_{l}" for l in range(self.num_layers)))

    @classmethod
    def from_config(cls, config):
        # Configs written before objectives were objects hold the ELBO's options.
        return cls(**elbo_objectives.from_legacy_config(config))

    def build(self, input_shape):
        self.check_shape(tuple(input_shape))
        if not self.stack.built:
            self.stack.build(tuple(input_shape))
        self.built = True

    @property
    def likelihood_support(self):
        """What `log_prob` measures: the likelihood family's `support`."""
        return self.likelihood.support

    # ------------------------------------------------------------- the model
    def _params_to_likelihood(self, params):
        return self.likelihood.make(tf.reshape(params, [-1, self.likelihood.params_size]))

    def layer_terms(self, x, seed, analytic=True, training=False):
        """One posterior pass: (list of `LayerOutput` z_1..z_L, log p(x|z) [N])."""
        outputs, params = self.stack.infer(x, seed, analytic=analytic, training=training)
        return outputs, self._params_to_likelihood(params).log_prob(x)

    def encode(self, x, context=None):
        """Posterior summary of every layer; see `posterior_summary`."""
        return self.posterior_summary(x, context)

    @_plain_python
    def posterior_summary(self, x, context=None):
        """Top-down posterior pass at the summary points (means) of each q_l.

        Returns:
          {"loc": z_1..z_L flattened and concatenated [N, D], "scale": the
          base posteriors' standard deviations [N, D]}.
        """
        del context  # an unconditional model
        x = tf.convert_to_tensor(x, self.compute_dtype)
        outputs, _ = self.stack.infer(x, tf.constant([0, 0]), analytic=True, mean=True)
        n = tf.shape(x)[0]
        flat = lambda t: tf.reshape(t, [n, -1])
        scales = [base.base_scale(o.q, o.z) for o in outputs]
        return {"loc": tf.concat([flat(o.z) for o in outputs], axis=-1),
                "scale": tf.concat([flat(s) for s in scales], axis=-1)}

    def _split_latents(self, z):
        """z [N, D] (flattened, concatenated) -> list of z_l [N, *latent_shapes[l]]."""
        n = tf.shape(z)[0]
        return [tf.reshape(part, [n, *shape]) for part, shape in
                zip(tf.split(z, list(self.sizes), axis=-1), self.stack.latent_shapes)]

    @_plain_python
    def decode(self, z, context=None):
        """p(x | z_1..L) for the flattened concatenated latents z [N, D] (as `posterior_summary`)."""
        del context
        z = tf.convert_to_tensor(z, self.compute_dtype)
        return self._params_to_likelihood(self.stack.generate(
            tf.shape(z)[0], tf.constant([0, 0]), latents=self._split_latents(z)))

    def reconstruction_summary(self, data):
        """{"loc", "scale"} of `posterior_summary` and "mean" E[x|z = loc] for a batch."""
        summary = self.posterior_summary(self.read_batch(data).x)
        return {**summary, "mean": self.decode(summary["loc"]).mean()}

    def call(self, inputs):
        """Reconstruction mean E[x|z] at the posterior summary points [N, H, W, C]."""
        return self.reconstruction_summary(inputs)["mean"]

    @_plain_python
    def sample(self, num_samples, seed=None, temperature=1.0):
        """Ancestral samples: z_L ~ p, ..., z_1 ~ p(z_1|z_2), returns E[x|z] [N, H, W, C].

        `temperature` multiplies the prior scales of every layer (1 = the model).
        """
        num_samples = self.check_count("num_samples", num_samples, 0)
        return self._params_to_likelihood(
            self.stack.generate(num_samples, self.eval_seed(seed), temperature=temperature)).mean()

    # ------------------------------------------------------------- protocol
    @_plain_python
    def posterior_params(self, x, context=None):
        """The posterior's per-example parameters [N, P] (book §2.7): the stack's
        `posterior_features` of x, flattened and concatenated."""
        del context  # an unconditional model
        x = tf.convert_to_tensor(x, self.compute_dtype)
        n = tf.shape(x)[0]
        return tf.concat([tf.reshape(f, [n, -1]) for f in self.stack.posterior_features(x)],
                         axis=-1)

    def posterior_from_params(self, params):
        """q(z_1..L | x) at per-example parameters [N, P]: a `StackPosterior`."""
        return base.StackPosterior(self.stack, params)

    @_plain_python
    def sample_posterior(self, batch, num_samples, seed):
        """z_1..L ~ q flattened and concatenated [S, B, D], and log q(z_1..L|x) [S, B]."""
        q = self.posterior_from_params(self.posterior_params(batch.x))
        return q.experimental_sample_and_log_prob(num_samples, seed)

    @_plain_python
    def log_joint(self, batch, z):
        """log p(x, z_1..L) = log p(x|z_1..) + log p(z_1..L) [S, B] for z [S, B, D]."""
        shape = tf.shape(z)
        flat = tf.reshape(z, [shape[0] * shape[1], shape[2]])
        latents = self._split_latents(flat)
        x = tf.tile(batch.x, [shape[0], 1, 1, 1])
        params = self.stack.generate(shape[0] * shape[1], tf.constant([0, 0]), latents=latents)
        log_p = self._params_to_likelihood(params).log_prob(x) + self.stack.prior_log_prob(latents)
        return tf.reshape(log_p, shape[:2])

    def log_weights_fn(self, batch):
        """One posterior pass per chunk: log w = log p(x|z) - sum_l (log q_l - log p_l) (§2.6)."""
        x = batch.x

        def log_weights(num_samples, seed):
            tiled = tf.tile(x, [num_samples, 1, 1, 1])                    # [S * B, ...]
            outputs, log_likelihood = self.layer_terms(tiled, seed, analytic=False)
            log_w = log_likelihood - tf.add_n([o.kl for o in outputs])
            return tf.reshape(log_w, [num_samples, tf.shape(x)[0]])
        return log_weights

    @_plain_python
    def log_prob(self, x, context=None, num_samples=1000, chunk_size=100, seed=None):
        """Importance-sampled log p(x) [batch] over the joint of all layers (§2.6)."""
        return super().log_prob(x, context, num_samples, chunk_size, seed)

    # ---------------------------------------------------------------- objective
    def kl_support(self):
        """Closed-form KLs where the stack's layers allow them; per-dimension KLs for layers
        without IAF; free-bits groups divide every layer's size."""
        return objective_base.KLSupport(analytic=True,
                                        per_dimension=not getattr(self.stack, "iaf_steps", 0),
                                        group_sizes=self.sizes, max_samples=1)

    def objective_terms(self, batch, seed, num_samples=1, analytic_kl=True, training=False):
        """One posterior pass of all layers (`num_samples` = 1): log p(x|z) [1, N], the
        total KL [N], free-bits groups per layer, the per-layer rates in `extras`."""
        if num_samples != 1:
            raise ValueError("A hierarchical VAE's objective takes one posterior pass. "
                             f"Received: num_samples={num_samples}")
        x = self.as_batch(batch).x
        outputs, log_likelihood = self.layer_terms(x, seed, analytic=analytic_kl,
                                                   training=training)
        kl = tf.add_n([o.kl for o in outputs])                               # [N]

        def kl_groups(num_groups):
            return tf.concat([base.kl_groups(o, num_groups) for o in outputs], axis=-1)
        rates = {f"rate_{l}": tf.reduce_mean(o.kl) for l, o in enumerate(outputs)}
        return objective_base.Terms(log_likelihood[tf.newaxis], kl, kl_groups, extras=rates)

    @_plain_python
    def elbo(self, x, context=None, num_samples=1, seed=None):
        """Per-example ELBO estimate [batch], averaged over `num_samples` passes."""
        x = self.read_batch(x if context is None else (x, context), check_values=True).x
        seed = self.eval_seed(seed)
        elbos = []
        for s in range(num_samples):
            outputs, log_likelihood = self.layer_terms(
                x, tf.random.experimental.stateless_fold_in(seed, s),
                analytic=self.training_objective.analytic_kl)
            elbos.append(log_likelihood - tf.add_n([o.kl for o in outputs]))
        return tf.reduce_mean(tf.stack(elbos), axis=0)

    def serving_endpoints(self, chunk_size=100, log_prob_samples=serving.DEFAULT_LOG_PROB_SAMPLES):
        """SavedModel signatures, their inputs checked in graph as `VAE.serving_endpoints`'.

        Batch-only: encode(x) -> {loc, scale}; decode(z [n, D]) -> {mean};
        sample(index [n]) -> {images}; sample_temperature(index [n],
        temperature [n]) -> {images} (each row's prior scales times its
        temperature); elbo(x) -> {elbo}; log_prob(x) -> {log_prob} (K =
        `log_prob_samples`).
        Seeded: sample_seeded(num_samples, seed); sample_temperature_seeded(
        num_samples, seed, temperature []); elbo_seeded(x, seed);
        log_prob_seeded(x, num_samples, seed).
        """
        log_prob_samples = self.check_count("log_prob_samples", log_prob_samples, 1)
        image = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        size = sum(base.flat_size(s) for s in self.stack.latent_shapes)
        latent = tf.TensorSpec([None, size], tf.float32, name="z")
        index = tf.TensorSpec([None], tf.int32, name="index")
        temperatures = tf.TensorSpec([None], tf.float32, name="temperature")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        count = tf.TensorSpec([], tf.int32, name="num_samples")
        temperature = tf.TensorSpec([], tf.float32, name="temperature")

        def per_example(fn, x):
            return serving.per_example(fn, self.read_examples(x, check_values=True))

        def sample_temperature(i, t):
            return {"images": serving.indexed_samples(
                lambda s, row: self.sample(1, seed=s, temperature=row[0]), self.image_shape,
                i, base_model.check_tensor("temperature", t))}

        return [
            ("encode", lambda x: self.posterior_summary(self.read_examples(x, check_values=True)),
             [image]),
            ("decode", lambda z: {"mean": self.decode(self.check_latents(z)).mean()}, [latent]),
            ("sample", lambda i: {"images": serving.indexed_samples(
                lambda s: self.sample(1, seed=s), self.image_shape, i)}, [index]),
            ("sample_temperature", sample_temperature, [index, temperatures]),
            ("elbo", lambda x: {"elbo": per_example(
                lambda row: self.elbo(row, seed=serving.fixed_seed()), x)}, [image]),
            ("log_prob", lambda x: {"log_prob": per_example(lambda row: self.log_prob(
                row, num_samples=log_prob_samples, chunk_size=chunk_size,
                seed=serving.fixed_seed()), x)}, [image]),
            ("sample_seeded", lambda n, s: {"images": self.sample(n, seed=s)}, [count, seed]),
            ("sample_temperature_seeded", lambda n, s, t: {"images": self.sample(
                n, seed=s, temperature=t)}, [count, seed, temperature]),
            ("elbo_seeded", lambda x, s: {"elbo": self.elbo(x, seed=s)}, [image, seed]),
            ("log_prob_seeded", lambda x, n, s: {"log_prob": self.log_prob(
                x, num_samples=n, chunk_size=chunk_size, seed=s)}, [image, count, seed]),
        ]

    # ---------------------------------------------------------------- training
    @_plain_python
    def train_step(self, data):
        return super().train_step(data)

    @_plain_python
    def test_step(self, data):
        return super().test_step(data)

    def get_config(self):
        return {**super().get_config(),
                "stack": keras.saving.serialize_keras_object(self.stack),
                "likelihood": keras.saving.serialize_keras_object(self.likelihood)}
