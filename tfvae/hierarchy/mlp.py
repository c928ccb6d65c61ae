"""A stack of fully connected stochastic layers (Burda et al. 2016; Sønderby et al. 2016).

Generative model (top-down, shared by every inference option):

    p(z_L) = N(0, I),  p(z_l | z_{l+1}) = N(mu_l(t_l), sigma_l(t_l)), t_l = MLP_l(z_{l+1}),
    p(x | z_1) = likelihood(decoder(z_1)).

Inference options of the same stack (book §4.1-4.2):
  - "bottom_up": q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1}) (Burda et al.'s
    two-layer VAE). KLs are the single-sample log q(z_l) - log p(z_l|z_{l+1}).
  - "ladder": a deterministic pass d_l = MLP_l(d_{l-1}), d_0 = x, gives
    bottom-up Gaussian estimates (mu_hat_l, sigma_hat_l); top-down, the
    posterior of layer l is their precision-weighted product with
    p(z_l | z_{l+1}) (Sønderby et al. 2016), the top layer uses the
    bottom-up estimate alone. Analytic per-layer KL given z_{l+1}.
  - "bidirectional": the same deterministic pass; the top-down features t_l
    of the generative model also emit a correction, q params = bottom-up +
    top-down (Kingma et al. 2016), with an optional IAF per layer whose
    context is the sum of the bottom-up and top-down contexts.

Each deterministic MLP has `depth` layers of the width `hidden_units[l]`
(layer l's width; the decoder uses hidden_units[0]).
"""

import keras
import tensorflow as tf

from tfvae.nn import weight_norm as wn
from tfvae.flows import iaf as iaf_lib
from tfvae.hierarchy import base

_PACKAGE = "tfvae"



class _Dense(keras.layers.Layer):
    """`depth` dense layers of one width with an activation on each."""

    def __init__(self, width, depth, activation, weight_norm, **kwargs):
        super().__init__(**kwargs)
        self._stages = [wn.dense(width, activation, weight_norm, name=f"dense_{i}")
                        for i in range(depth)]

    def call(self, inputs, training=False):
        h = inputs
        for layer in self._stages:
            h = layer(h, training=training)
        return h


@keras.saving.register_keras_serializable(_PACKAGE)
class MLPStack(keras.layers.Layer):
    """Fully connected hierarchical VAE stack with a choice of inference.

    Args:
      image_shape: (H, W, C) of one input.
      latent_sizes: sizes of z_1 (bottom) ... z_L (top).
      hidden_units: width of layer l's deterministic MLPs, one per latent layer.
      output_size: parameters of p(x|z_1) per example (the likelihood's params_size).
      inference: "bottom_up", "ladder" or "bidirectional".
      depth: dense layers per deterministic MLP.
      activation: hidden activation ("elu", "swish", "relu", ...).
      weight_norm: weight-normalized dense layers with data-dependent init.
      iaf_steps: IAF steps per layer (0: none; needs inference="bidirectional").
      iaf_hidden_units: hidden widths of each IAF step's MADE.
      iaf_context_size: size of the IAF context per layer.
      seed: seed of the IAFs' MADE initializers.

    Call args:
      inputs: images [N, H, W, C]. Returns: params of p(x|z_1) [N, output_size]
      at a sample (see `infer`).
    """

    def __init__(self, image_shape, latent_sizes, hidden_units, output_size,
                 inference="ladder", depth=2, activation="elu", weight_norm=False, iaf_steps=0,
                 iaf_hidden_units=(64,), iaf_context_size=16, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = base.positive_ints(image_shape, "image_shape")
        self.latent_sizes = base.positive_ints(latent_sizes, "latent_sizes")
        self.hidden_units = base.positive_ints(hidden_units, "hidden_units")
        if len(self.hidden_units) != len(self.latent_sizes):
            raise ValueError(f"`hidden_units` needs one width per latent layer "
                             f"({len(self.latent_sizes)}). Received: hidden_units={hidden_units!r}")
        self.output_size = base.positive_ints([output_size], "output_size")[0]
        self.inference = base.check_inference(inference)
        self.depth = base.positive_ints([depth], "depth")[0]
        keras.activations.get(activation)  # Raises ValueError for an unknown name.
        self.activation = activation
        self.weight_norm = bool(weight_norm)
        if not isinstance(iaf_steps, int) or iaf_steps < 0:
            raise ValueError(f"`iaf_steps` must be an integer >= 0. Received: iaf_steps={iaf_steps!r}")
        if iaf_steps and inference != "bidirectional":
            raise ValueError("An IAF per layer is conditioned on the bidirectional context: use "
                             f"inference='bidirectional'. Received: inference={inference!r}")
        self.iaf_steps = iaf_steps
        self.iaf_hidden_units = base.positive_ints(iaf_hidden_units, "iaf_hidden_units")
        self.iaf_context_size = base.positive_ints([iaf_context_size], "iaf_context_size")[0]
        self.seed = seed
        self.num_layers = len(self.latent_sizes)
        ctx = self.iaf_context_size if iaf_steps else 0
        act, norm = activation, self.weight_norm
        self._up = [_Dense(self.hidden_units[l], self.depth, act, norm, name=f"up_{l}")
                    for l in range(self.num_layers)]
        self._up_heads = [wn.dense(2 * d + ctx, None, norm, name=f"up_head_{l}",
                                    init_scale=0.1)
                          for l, d in enumerate(self.latent_sizes)]
        below_top = range(self.num_layers - 1)
        self._down = [_Dense(self.hidden_units[l], self.depth, act, norm, name=f"down_{l}")
                      for l in below_top]
        self._prior_heads = [wn.dense(2 * self.latent_sizes[l], None, norm,
                                       name=f"prior_head_{l}", init_scale=0.1)
                             for l in below_top]
        self._q_down_heads = ([wn.dense(2 * self.latent_sizes[l] + ctx, None, norm,
                                        name=f"q_down_head_{l}", init_scale=0.1) for l in below_top]
                              if inference == "bidirectional" else [])
        self._flows = [iaf_lib.IAF(d, iaf_steps, hidden_units=self.iaf_hidden_units,
                                   context_size=ctx, activation=act,
                                   seed=None if seed is None else seed + l, name=f"iaf_{l}")
                       for l, d in enumerate(self.latent_sizes)] if iaf_steps else []
        self._decoder = _Dense(self.hidden_units[0], self.depth, act, norm, name="decoder")
        self._out = wn.dense(self.output_size, None, norm, name="decoder_out", init_scale=0.1)

    # ------------------------------------------------------------------ pieces
    @property
    def latent_shapes(self):
        """Event shape of each z_l, bottom to top."""
        return [(d,) for d in self.latent_sizes]

    def build(self, input_shape):
        self.call(tf.zeros([1, *self.image_shape]))
        self.built = True

    def _split_up(self, params, l):
        d = self.latent_sizes[l]
        return params[:, :d], params[:, d:2 * d], params[:, 2 * d:]   # loc, log_scale, context

    def _prior(self, l, z_above, training, log_temperature=0.0):
        """p(z_l | z_{l+1}) (standard normal at the top) and the top-down features t_l."""
        d = self.latent_sizes[l]
        if l == self.num_layers - 1:
            zeros = tf.zeros([tf.shape(z_above)[0], d])
            return base.gaussian(zeros, zeros + log_temperature, 1), None
        t = self._down[l](z_above, training=training)
        loc, log_scale = tf.split(self._prior_heads[l](t, training=training), 2, axis=-1)
        return base.gaussian(loc, log_scale + log_temperature, 1), t

    def _draw(self, l, loc, log_scale, context, seed, mean):
        flow = self._flows[l] if self._flows else None
        return base.draw(base.gaussian(loc, log_scale, 1), seed, flow, context, mean)

    def _decode(self, z_1, training=False):
        return self._out(self._decoder(z_1, training=training), training=training)

    # --------------------------------------------------------------- inference
    @property
    def feature_shapes(self):
        """Shape of each tensor of `posterior_features` (one example's)."""
        if self.inference == "bottom_up":
            return [(2 * self.latent_sizes[0],)]
        ctx = self.iaf_context_size if self.iaf_steps else 0
        return [(2 * d + ctx,) for d in self.latent_sizes]

    def posterior_features(self, x, training=False):
        """What the posterior reads of x: the bottom-up heads' outputs (book §2.7, §4.1).

        Everything else in q(z_1..L | x) is a function of these tensors and of
        the latents drawn above or below, so they are the per-example
        (local) parameters of the stack's posterior family: `infer_from_features`
        with other values is another member of the same family.

        Args:
          x: images [N, H, W, C].
          training: as in `infer`.

        Returns:
          A list of [N, *feature_shapes[i]]: for "bottom_up" q(z_1|x)'s
          [loc, log_scale] (the layers above read only z); otherwise each
          layer's [loc, log_scale, IAF context] of the deterministic pass.
        """
        h = tf.reshape(x, [tf.shape(x)[0], -1])
        if self.inference == "bottom_up":
            return [self._up_heads[0](self._up[0](h, training=training), training=training)]
        features = []
        for l in range(self.num_layers):
            h = self._up[l](h, training=training)                  # deterministic d_l
            features.append(self._up_heads[l](h, training=training))
        return features

    def infer(self, x, seed, analytic=True, training=False, mean=False):
        """Posterior pass: z_l ~ q and the per-layer terms.

        Args:
          x: images [N, H, W, C].
          seed: stateless seed [2]; layer l uses fold_in(seed, l).
          analytic: closed-form KLs where valid (ladder/bidirectional without IAF).
          training: first training call initializes weight norm from the batch.
          mean: posterior summary points instead of samples.

        Returns:
          (list of `LayerOutput` z_1 ... z_L, params of p(x|z_1) [N, output_size]).
        """
        return self.infer_from_features(self.posterior_features(x, training), seed, analytic,
                                        training, mean)

    def infer_from_features(self, features, seed, analytic=True, training=False, mean=False):
        """`infer` from given `posterior_features` (a list of [N, *feature_shapes[i]])."""
        seeds = [tf.random.experimental.stateless_fold_in(seed, l) for l in range(self.num_layers)]
        if self.inference == "bottom_up":
            drawn = []
            params = features[0]
            for l in range(self.num_layers):
                if l:                                              # q(z_{l+1} | z_l)
                    params = self._up_heads[l](self._up[l](drawn[-1][0], training=training),
                                               training=training)
                loc, log_scale, _ = self._split_up(params, l)
                drawn.append(self._draw(l, loc, log_scale, None, seeds[l], mean))
            outputs = [None] * self.num_layers
            for l in reversed(range(self.num_layers)):
                z, q, log_q = drawn[l]
                above = drawn[l + 1][0] if l + 1 < self.num_layers else z
                p, _ = self._prior(l, above, training)
                # q(z_l|z_{l-1}) and p(z_l|z_{l+1}) condition on different samples:
                # only the single-sample log-ratio is an unbiased KL term.
                outputs[l] = base.layer_output(z, q, p, log_q, analytic=False)
            return outputs, self._decode(outputs[0].z, training)
        up = [self._split_up(f, l) for l, f in enumerate(features)]
        outputs = [None] * self.num_layers
        z_above = features[-1]                 # the top layer's prior reads its batch size only
        for l in reversed(range(self.num_layers)):
            loc, log_scale, context = up[l]
            p, t = self._prior(l, z_above, training)
            if t is not None and self.inference == "ladder":
                p_loc, p_scale = base.normal_parts(p)
                up_loc, up_scale = base.normal_parts(base.gaussian(loc, log_scale, 1))
                loc, scale = base.precision_weighted_merge(up_loc, up_scale, p_loc, p_scale)
                log_scale = tf.math.log(scale)
            elif t is not None:                                    # bidirectional
                down = self._q_down_heads[l](t, training=training)
                d_loc, d_log_scale, d_context = self._split_up(down, l)
                loc, log_scale, context = loc + d_loc, log_scale + d_log_scale, context + d_context
            z, q, log_q = self._draw(l, loc, log_scale, context, seeds[l], mean)
            outputs[l] = base.layer_output(z, q, p, log_q, analytic)
            z_above = z
        return outputs, self._decode(outputs[0].z, training)

    def generate(self, num_samples, seed, temperature=1.0, latents=None):
        """Top-down pass of the generative model.

        Args:
          num_samples: N.
          seed: stateless seed [2].
          temperature: prior scales are multiplied by it when sampling.
          latents: optional list of z_l [N, d_l] (bottom to top) to use
            instead of samples.

        Returns:
          Params of p(x|z_1) [N, output_size].
        """
        log_temperature = tf.math.log(tf.cast(temperature, tf.float32))
        z_above = tf.zeros([num_samples, 1])
        for l in reversed(range(self.num_layers)):
            if latents is not None:
                z_above = latents[l]
                continue
            p, _ = self._prior(l, z_above, False, log_temperature)
            z_above = p.sample(seed=tf.random.experimental.stateless_fold_in(seed, l))
        return self._decode(z_above)

    def prior_log_prob(self, latents):
        """log p(z_1, ..., z_L) of the generative model at given latents (book §4.1).

        The top-down factorization log p(z_L) + sum_{l<L} log p(z_l | z_{l+1}),
        each factor the conditional prior that `generate` samples from (at
        temperature 1). With `generate(n, seed, latents=latents)` for p(x|z_1)
        it gives the joint log p(x, z_1..L) without any posterior (e.g. an
        exact log p(x) by quadrature over small latents).

        Args:
          latents: list of z_l [N, d_l], bottom (z_1) to top (z_L).

        Returns:
          log p(z_1, ..., z_L) [N].
        """
        latents = [tf.convert_to_tensor(z, self.compute_dtype) for z in latents]
        total = 0.0
        for l in range(self.num_layers):
            above = latents[min(l + 1, self.num_layers - 1)]   # the top layer: batch size only
            p, _ = self._prior(l, above, False)
            total += p.log_prob(latents[l])
        return total

    def call(self, inputs, training=False):
        return self.infer(inputs, tf.constant([0, 0]), training=training)[1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "latent_sizes": list(self.latent_sizes), "hidden_units": list(self.hidden_units),
                "output_size": self.output_size, "inference": self.inference,
                "depth": self.depth, "activation": self.activation,
                "weight_norm": self.weight_norm, "iaf_steps": self.iaf_steps,
                "iaf_hidden_units": list(self.iaf_hidden_units),
                "iaf_context_size": self.iaf_context_size, "seed": self.seed}
