"""The ResNet VAE of Kingma et al. 2016 (§6 and appendix), with a choice of inference.

A strided stem maps x [N, H, W, C] (rescaled to [-1, 1]) to features
[N, H/s, W/s, hidden]. The L stochastic layers are cut into resolution
groups (`layers_per_resolution`, bottom to top; default: one group): the
latents of group g are [H/(s 2^g), W/(s 2^g), latent_channels], as in the
paper's CIFAR-10 model (blocks at 16x16, then at 8x8).

Generative model (top-down, shared by inference and generation; book
§4.1-4.2), from a learned constant s at the coarsest resolution:

    a = conv_c(act(s));  (hid, p params, q_down, ctx_down) = split(a);  p_l = N(p params)
    s <- s + 0.1 * conv_d(act([hid, z_l]))
    s <- up(s) + 0.1 * depth_to_space(conv_u(act(s)))   (into a finer group: x2)

with `up` a nearest-neighbour x2 upsampling, and p(x|z) from act(s),
upsampled back to H x W (conv + depth_to_space). Sampling runs this pass
with z_l ~ p_l.

Inference options (`base.INFERENCE`):
  - "bidirectional" and "ladder": a deterministic bottom-up pass, layer l = 1..L,

        h <- pool(h) + 0.1 * conv_s(act(h))                (into a coarser group: stride 2)
        a = conv_a(act(h));  (hid, q_up, ctx_up) = split(a);  h <- h + 0.1 * conv_b(act(hid))

    with `pool` a 2x2 average pooling, then the top-down pass above with z_l ~ q_l:
    q_l = N(q_up + q_down) ("bidirectional") or the precision-weighted
    product of N(q_up) and p_l ("ladder"); analytic per-layer KLs without an IAF. With
    "bidirectional", z_l is refined by an optional IAF with context
    ctx_up + ctx_down per pixel (1x1 autoregressive convolutions: a MADE
    over the latent channels).
  - "bottom_up": q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1}), q(z_1|x) =
    N(conv_a(act(h))) on the stem features h, q(z_l|z_{l-1}) =
    N(conv_a(act(conv_e(z_{l-1})))) (conv_e has stride 2 into a coarser
    group); the priors come from the top-down pass run on these samples,
    and each KL is the single-sample log q_l(z_l) - log p_l(z_l).

The 0.1 on the residual branches keeps the states' scale stable with depth,
as in openai/iaf. With weight normalization each conv is initialized from
the first training batch (`tfvae.nn.weight_norm`); heads start at scale 0.1.
"""

import keras
import tensorflow as tf

from tfvae.nn import weight_norm as wn
from tfvae.flows import iaf as iaf_lib
from tfvae.hierarchy import base

_PACKAGE = "tfvae"
_RESIDUAL_SCALE = 0.1
_DEFAULT_NUM_LAYERS = 2


def _upsample_nearest(s):
    """[N, h, w, c] -> [N, 2h, 2w, c], each pixel repeated 2x2."""
    return tf.repeat(tf.repeat(s, 2, axis=1), 2, axis=2)


@keras.saving.register_keras_serializable(_PACKAGE)
class ResNetStack(keras.layers.Layer):
    """Convolutional hierarchical stack with bidirectional, ladder or bottom-up inference.

    Args:
      image_shape: (H, W, C), H and W divisible by `downsample` * 2^(G-1)
        for G resolution groups.
      output_channels: likelihood parameters per pixel (params_size / (H*W)).
      num_layers: stochastic layers L. None: sum(layers_per_resolution), or
        2 without `layers_per_resolution`; if both are given they must agree.
      hidden_channels: channels of the deterministic features.
      latent_channels: channels of each z_l.
      inference: "bidirectional", "ladder" or "bottom_up".
      downsample: stride of the stem (1 or 2).
      activation: "elu", "swish", ...
      weight_norm: weight-normalized convs with data-dependent init.
      iaf_steps: IAF steps per layer (0: none; needs inference="bidirectional").
      iaf_hidden_units: hidden widths of each IAF step's MADE (per pixel).
      context_channels: IAF context channels per pixel.
      seed: seed of the IAFs' initializers.
      layers_per_resolution: layers per resolution group, bottom (finest,
        H/downsample) to top; group g's latents are at H/(downsample 2^g).
        None: one group of num_layers layers.

    Call args:
      inputs: images [N, H, W, C] in [0, 1]. Returns: likelihood params
      [N, H*W*output_channels] at a posterior sample.
    """

    def __init__(self, image_shape, output_channels, num_layers=None, hidden_channels=32,
                 latent_channels=8, inference="bidirectional", downsample=2, activation="elu",
                 weight_norm=True, iaf_steps=1, iaf_hidden_units=(32,), context_channels=16,
                 seed=None, layers_per_resolution=None, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = base.positive_ints(image_shape, "image_shape")
        self.inference = base.check_inference(inference)
        if layers_per_resolution is None:
            num_layers = _DEFAULT_NUM_LAYERS if num_layers is None else num_layers
            self.layers_per_resolution = base.positive_ints([num_layers], "num_layers")
        else:
            self.layers_per_resolution = base.positive_ints(layers_per_resolution,
                                                    "layers_per_resolution")
            if num_layers is not None and num_layers != sum(self.layers_per_resolution):
                raise ValueError(f"`num_layers` must be sum(layers_per_resolution) = "
                                 f"{sum(self.layers_per_resolution)} (or None). Received: "
                                 f"num_layers={num_layers!r}, "
                                 f"layers_per_resolution={layers_per_resolution!r}")
        for name, value in (("output_channels", output_channels),
                            ("hidden_channels", hidden_channels),
                            ("latent_channels", latent_channels),
                            ("context_channels", context_channels)):
            base.positive_ints([value], name)
        if downsample not in (1, 2) or self.image_shape[0] % downsample or (
                self.image_shape[1] % downsample):
            raise ValueError(f"`downsample` must be 1 or 2 and divide the image size "
                             f"{self.image_shape[:2]}. Received: downsample={downsample!r}")
        num_groups = len(self.layers_per_resolution)
        factor = downsample * 2 ** (num_groups - 1)
        if self.image_shape[0] % factor or self.image_shape[1] % factor:
            raise ValueError(f"`layers_per_resolution` has {num_groups} resolutions: the image "
                             f"size {self.image_shape[:2]} must be divisible by downsample * "
                             f"2^{num_groups - 1} = {factor}. Received: "
                             f"layers_per_resolution={layers_per_resolution!r}")
        if not isinstance(iaf_steps, int) or iaf_steps < 0:
            raise ValueError(f"`iaf_steps` must be an integer >= 0. Received: iaf_steps={iaf_steps!r}")
        if iaf_steps and inference != "bidirectional":
            raise ValueError("The IAF context comes from the bidirectional pass: use "
                             f"inference='bidirectional'. Received: inference={inference!r}")
        keras.activations.get(activation)
        self.output_channels = int(output_channels)
        self.num_layers = sum(self.layers_per_resolution)
        self.hidden_channels, self.latent_channels = int(hidden_channels), int(latent_channels)
        self.downsample, self.activation, self.weight_norm = downsample, activation, bool(weight_norm)
        self.iaf_steps, self.context_channels, self.seed = iaf_steps, int(context_channels), seed
        self.iaf_hidden_units = base.positive_ints(iaf_hidden_units, "iaf_hidden_units")
        self.output_size = self.image_shape[0] * self.image_shape[1] * self.output_channels
        self._act = keras.activations.get(activation)
        # Resolution group of each layer, bottom to top: [0, 0, ..., G-1].
        self._group = tuple(g for g, n in enumerate(self.layers_per_resolution) for _ in range(n))
        hid, zc, norm = self.hidden_channels, self.latent_channels, self.weight_norm
        ctx = self.context_channels if iaf_steps else 0
        bottom_up = inference == "bottom_up"
        # bottom_up: conv_a is only q's head (no deterministic features carried up),
        # initialized at scale 0.1 like the other heads.
        self._up_split = [0 if bottom_up else hid, 2 * zc, ctx]
        down_q = 2 * zc if inference == "bidirectional" else 0
        self._down_split = [hid, 2 * zc, down_q, ctx]
        self._stem = wn.conv(hid, 3, downsample, None, norm, name="stem")
        self._up_a = [wn.conv(sum(self._up_split), 3, 1, None, norm, name=f"up_a_{l}",
                              init_scale=0.1 if bottom_up else 1.0)
                      for l in range(self.num_layers)]
        if bottom_up:
            self._up_embed = [wn.conv(hid, 3, 2 if self._coarser(l) else 1, None, norm,
                                      name=f"up_embed_{l}") for l in range(1, self.num_layers)]
        else:
            # The top layer's bottom-up features feed nothing further up.
            self._up_b = [wn.conv(hid, 3, 1, None, norm, name=f"up_b_{l}")
                          for l in range(self.num_layers - 1)]
            self._up_shrink = [wn.conv(hid, 3, 2, None, norm, name=f"up_shrink_{g}")
                               for g in range(1, num_groups)]
        self._down_c = [wn.conv(sum(self._down_split), 3, 1, None, norm, name=f"down_c_{l}",
                                init_scale=0.1) for l in range(self.num_layers)]
        self._down_d = [wn.conv(hid, 3, 1, None, norm, name=f"down_d_{l}")
                        for l in range(self.num_layers)]
        self._down_grow = [wn.conv(4 * hid, 3, 1, None, norm, name=f"down_grow_{g}")
                           for g in range(1, num_groups)]
        self._flows = [iaf_lib.IAF(zc, iaf_steps, hidden_units=self.iaf_hidden_units,
                                   context_size=ctx, activation=activation,
                                   seed=None if seed is None else seed + l, name=f"iaf_{l}")
                       for l in range(self.num_layers)] if iaf_steps else []
        self._out = wn.conv(self.output_channels * downsample ** 2, 3, 1, None, norm,
                            name="out", init_scale=0.1)

    @property
    def latent_shapes(self):
        """Event shape (h, w, latent_channels) of each z_l, bottom to top."""
        h, w = self.image_shape[0] // self.downsample, self.image_shape[1] // self.downsample
        return [(h // 2 ** g, w // 2 ** g, self.latent_channels) for g in self._group]

    def build(self, input_shape):
        h, w, _ = self.latent_shapes[-1]
        self.top = self.add_weight(name="top", shape=(1, h, w, self.hidden_channels),
                                   initializer="zeros")
        self.call(tf.zeros([1, *self.image_shape]))
        self.built = True

    def _coarser(self, l):
        """Whether layer l's latents are at half the resolution of layer l-1's."""
        return l > 0 and self._group[l] != self._group[l - 1]

    @property
    def feature_shapes(self):
        """Shape of each tensor of `posterior_features` (one example's)."""
        ctx = self._up_split[2]
        if self.inference == "bottom_up":
            return [(*self.latent_shapes[0][:2], 2 * self.latent_channels)]
        return [(*shape[:2], 2 * self.latent_channels + ctx) for shape in self.latent_shapes]

    def posterior_features(self, x, training=False):
        """What the posterior reads of x; see `MLPStack.posterior_features`.

        Returns:
          A list of [N, *feature_shapes[i]]: for "bottom_up" q(z_1|x)'s
          [loc, log_scale] maps; otherwise each layer's bottom-up
          [loc, log_scale, IAF context] maps of the deterministic pass.
        """
        h = self._stem(2.0 * x - 1.0, training=training)
        if self.inference == "bottom_up":
            return [tf.split(self._up_a[0](self._act(h), training=training),
                             self._up_split, -1)[1]]
        hid_size = self._up_split[0]
        features = []
        for l in range(self.num_layers):
            if self._coarser(l):
                shrink = self._up_shrink[self._group[l] - 1](self._act(h), training=training)
                h = tf.nn.avg_pool2d(h, 2, 2, "VALID") + _RESIDUAL_SCALE * shrink
            hid, feature = tf.split(self._up_a[l](self._act(h), training=training),
                                    [hid_size, sum(self._up_split[1:])], -1)
            if l < self.num_layers - 1:
                h = h + _RESIDUAL_SCALE * self._up_b[l](self._act(hid), training=training)
            features.append(feature)
        return features

    def _bottom_up_draws(self, q_up, seeds, training, mean):
        """Bottom-up posterior z_l ~ q(z_l | z_{l-1}) from q(z_1|x)'s [loc, log_scale]
        `q_up`: [(z_l, q_l, None)] per layer."""
        drawn = []
        for l in range(self.num_layers):
            if l:
                h = self._up_embed[l - 1](drawn[-1][0], training=training)
                q_up = tf.split(self._up_a[l](self._act(h), training=training),
                                self._up_split, -1)[1]
            loc, log_scale = tf.split(q_up, 2, axis=-1)
            drawn.append(base.draw(base.gaussian(loc, log_scale, 3), seeds[l], mean=mean))
        return drawn

    def _top_down(self, l, s, training, log_temperature=0.0):
        """Layer l's top-down split: (hid, p_l, q_down params, ctx_down)."""
        parts = tf.split(self._down_c[l](self._act(s), training=training), self._down_split, -1)
        hid, p_params, q_down, ctx = parts
        p_loc, p_log_scale = tf.split(p_params, 2, axis=-1)
        p = base.gaussian(p_loc, p_log_scale + log_temperature, 3)
        return hid, p, q_down, ctx

    def _posterior(self, l, feature, p, q_down, ctx_down, seed, mean):
        """Ladder/bidirectional q_l from the bottom-up [q_up, ctx_up] and the top-down split."""
        q_up, ctx_up = tf.split(feature, self._up_split[1:], -1)
        loc, log_scale = tf.split(q_up, 2, axis=-1)
        if self.inference == "ladder":
            p_loc, p_scale = base.normal_parts(p)
            up_loc, up_scale = base.normal_parts(base.gaussian(loc, log_scale, 3))
            loc, scale = base.precision_weighted_merge(up_loc, up_scale, p_loc, p_scale)
            log_scale = tf.math.log(scale)
        else:
            d_loc, d_log_scale = tf.split(q_down, 2, axis=-1)
            loc, log_scale = loc + d_loc, log_scale + d_log_scale
        flow = self._flows[l] if self._flows else None
        return base.draw(base.gaussian(loc, log_scale, 3), seed, flow,
                         ctx_up + ctx_down if flow else None, mean)

    def _update(self, l, s, hid, z, training):
        """The top-down state after layer l, upsampled x2 if layer l-1 is finer."""
        branch = self._down_d[l](self._act(tf.concat([hid, z], -1)), training=training)
        s = s + _RESIDUAL_SCALE * branch
        if self._coarser(l):
            grow = self._down_grow[self._group[l] - 1](self._act(s), training=training)
            s = _upsample_nearest(s) + _RESIDUAL_SCALE * tf.nn.depth_to_space(grow, 2)
        return s

    def _output(self, s, training):
        out = self._out(self._act(s), training=training)
        if self.downsample > 1:
            out = tf.nn.depth_to_space(out, self.downsample)       # [N, H, W, output_channels]
        return tf.reshape(out, [tf.shape(out)[0], self.output_size])

    def _start(self, n):
        return tf.tile(self.top, [n, 1, 1, 1])

    def infer(self, x, seed, analytic=True, training=False, mean=False):
        """Posterior pass; see `MLPStack.infer` (same arguments and returns).

        Args:
          x: images [N, H, W, C] in [0, 1].
          seed: stateless seed [2]; layer l uses fold_in(seed, l).
          analytic: closed-form KLs where valid (ladder/bidirectional without IAF).
          training: first training call initializes weight norm from the batch.
          mean: posterior summary points instead of samples.

        Returns:
          (list of `LayerOutput` z_1 ... z_L with z_l [N, *latent_shapes[l]],
          likelihood params [N, H*W*output_channels]).
        """
        return self.infer_from_features(self.posterior_features(x, training), seed, analytic,
                                        training, mean)

    def infer_from_features(self, features, seed, analytic=True, training=False, mean=False):
        """`infer` from given `posterior_features` (a list of [N, *feature_shapes[i]])."""
        seeds = [tf.random.experimental.stateless_fold_in(seed, l)
                 for l in range(self.num_layers)]
        bottom_up = self.inference == "bottom_up"
        drawn = self._bottom_up_draws(features[0], seeds, training, mean) if bottom_up else None
        s = self._start(tf.shape(features[0])[0])
        outputs = [None] * self.num_layers
        for l in reversed(range(self.num_layers)):
            hid, p, q_down, ctx_down = self._top_down(l, s, training)
            if bottom_up:
                z, q, log_q = drawn[l]
                # q(z_l|z_{l-1}) and p(z_l|z_{l+1}) condition on different samples:
                # only the single-sample log-ratio is an unbiased KL term.
                outputs[l] = base.layer_output(z, q, p, log_q, analytic=False)
            else:
                z, q, log_q = self._posterior(l, features[l], p, q_down, ctx_down, seeds[l],
                                              mean)
                outputs[l] = base.layer_output(z, q, p, log_q, analytic)
            s = self._update(l, s, hid, z, training)
        return outputs, self._output(s, training)

    def generate(self, num_samples, seed, temperature=1.0, latents=None):
        """Top-down sampling; see `MLPStack.generate` (same arguments and returns).

        `latents`, if given, holds z_l [N, *latent_shapes[l]] (bottom to top)
        used instead of samples: a posterior pass's z give its likelihood params.
        """
        log_temperature = tf.math.log(tf.cast(temperature, tf.float32))
        s = self._start(num_samples)
        for l in reversed(range(self.num_layers)):
            hid, p, _, _ = self._top_down(l, s, False, log_temperature)
            z = (latents[l] if latents is not None
                 else p.sample(seed=tf.random.experimental.stateless_fold_in(seed, l)))
            s = self._update(l, s, hid, z, False)
        return self._output(s, False)

    def prior_log_prob(self, latents):
        """log p(z_1, ..., z_L) of the generative model at given latents (book §4.1).

        The top-down pass of `generate` run on the given z_l: log p(z_L) +
        sum_{l<L} log p(z_l | z_{l+1}, ..., z_L), each p_l the conditional prior
        `generate` samples from (at temperature 1). With `generate(n, seed,
        latents=latents)` for p(x|z) it gives the joint log p(x, z_1..L)
        without any posterior (e.g. an exact log p(x) by quadrature).

        Args:
          latents: list of z_l [N, *latent_shapes[l]], bottom (z_1) to top (z_L).

        Returns:
          log p(z_1, ..., z_L) [N].
        """
        latents = [tf.convert_to_tensor(z, self.compute_dtype) for z in latents]
        s = self._start(tf.shape(latents[0])[0])
        total = 0.0
        for l in reversed(range(self.num_layers)):
            hid, p, _, _ = self._top_down(l, s, False)
            total += p.log_prob(latents[l])
            s = self._update(l, s, hid, latents[l], False)
        return total

    def call(self, inputs, training=False):
        return self.infer(inputs, tf.constant([0, 0]), training=training)[1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "output_channels": self.output_channels, "num_layers": self.num_layers,
                "hidden_channels": self.hidden_channels, "latent_channels": self.latent_channels,
                "inference": self.inference, "downsample": self.downsample,
                "activation": self.activation, "weight_norm": self.weight_norm,
                "iaf_steps": self.iaf_steps, "iaf_hidden_units": list(self.iaf_hidden_units),
                "context_channels": self.context_channels, "seed": self.seed,
                "layers_per_resolution": list(self.layers_per_resolution)}
