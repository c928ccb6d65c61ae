"""The ResNet VAE with bidirectional inference (Kingma et al. 2016, §6 and appendix).

One resolution: a strided stem maps x [N, H, W, C] (rescaled to [-1, 1]) to
features [N, H/s, W/s, hidden]; every stochastic layer has latents
[H/s, W/s, latent_channels].

Bottom-up (deterministic; inference only), layer l = 1..L:

    a = conv_a(act(h));  (hid, q_up, ctx_up) = split(a);  h <- h + 0.1 * conv_b(act(hid))

Top-down (shared by inference and generation), from a learned constant s:

    a = conv_c(act(s));  (hid, p params, q_down, ctx_down) = split(a)
    p_l = N(p params);   q_l = N(q_up + q_down)            ("bidirectional")
                         q_l = precision-weighted(q_up, p_l) ("ladder")
    z_l ~ q_l, then an optional IAF with context ctx_up + ctx_down per pixel
    (1x1 autoregressive convolutions: a MADE over the latent channels)
    s <- s + 0.1 * conv_d(act([hid, z_l]))

and p(x|z) from act(s), upsampled back to H x W (conv + depth_to_space).
Sampling runs the same top-down pass with z_l ~ p_l. The 0.1 on the
residual branches keeps the top-down state's scale stable with depth, as in
openai/iaf. With weight normalization each conv is initialized from the
first training batch (`tfvae.weight_norm`); heads start at scale 0.1.
"""

import keras
import tensorflow as tf

from tfvae import weight_norm as wn
from tfvae.flows import iaf as iaf_lib
from tfvae.hierarchy import base
from tfvae.hierarchy import mlp

_PACKAGE = "tfvae"
_RESIDUAL_SCALE = 0.1


@keras.saving.register_keras_serializable(_PACKAGE)
class ResNetStack(keras.layers.Layer):
    """Convolutional hierarchical stack with bidirectional or ladder inference.

    Args:
      image_shape: (H, W, C), H and W divisible by `downsample`.
      output_channels: likelihood parameters per pixel (params_size / (H*W)).
      num_layers: stochastic layers L.
      hidden_channels: channels of the deterministic features.
      latent_channels: channels of each z_l.
      inference: "bidirectional" or "ladder".
      downsample: stride of the stem (1 or 2).
      activation: "elu", "swish", ...
      weight_norm: weight-normalized convs with data-dependent init.
      iaf_steps: IAF steps per layer (0: none).
      iaf_hidden_units: hidden widths of each IAF step's MADE (per pixel).
      context_channels: IAF context channels per pixel.
      seed: seed of the IAFs' initializers.

    Call args:
      inputs: images [N, H, W, C] in [0, 1]. Returns: likelihood params
      [N, H*W*output_channels] at a posterior sample.
    """

    def __init__(self, image_shape, output_channels, num_layers=2, hidden_channels=32,
                 latent_channels=8, inference="bidirectional", downsample=2, activation="elu",
                 weight_norm=True, iaf_steps=1, iaf_hidden_units=(32,), context_channels=16,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = mlp._units(image_shape, "image_shape")
        self.inference = base.check_inference(inference, ("bidirectional", "ladder"))
        for name, value in (("output_channels", output_channels), ("num_layers", num_layers),
                            ("hidden_channels", hidden_channels),
                            ("latent_channels", latent_channels),
                            ("context_channels", context_channels)):
            mlp._units([value], name)
        if downsample not in (1, 2) or self.image_shape[0] % downsample or (
                self.image_shape[1] % downsample):
            raise ValueError(f"`downsample` must be 1 or 2 and divide the image size "
                             f"{self.image_shape[:2]}. Received: downsample={downsample!r}")
        if not isinstance(iaf_steps, int) or iaf_steps < 0:
            raise ValueError(f"`iaf_steps` must be an integer >= 0. Received: iaf_steps={iaf_steps!r}")
        if iaf_steps and inference != "bidirectional":
            raise ValueError("The IAF context comes from the bidirectional pass: use "
                             f"inference='bidirectional'. Received: inference={inference!r}")
        keras.activations.get(activation)
        self.output_channels, self.num_layers = int(output_channels), int(num_layers)
        self.hidden_channels, self.latent_channels = int(hidden_channels), int(latent_channels)
        self.downsample, self.activation, self.weight_norm = downsample, activation, bool(weight_norm)
        self.iaf_steps, self.context_channels, self.seed = iaf_steps, int(context_channels), seed
        self.iaf_hidden_units = mlp._units(iaf_hidden_units, "iaf_hidden_units")
        self.output_size = self.image_shape[0] * self.image_shape[1] * self.output_channels
        self._act = keras.activations.get(activation)
        hid, zc, norm = self.hidden_channels, self.latent_channels, self.weight_norm
        ctx = self.context_channels if iaf_steps else 0
        self._up_split = [hid, 2 * zc, ctx]
        down_q = 2 * zc if inference == "bidirectional" else 0
        self._down_split = [hid, 2 * zc, down_q, ctx]
        self._stem = wn.conv(hid, 3, downsample, None, norm, name="stem")
        self._up_a = [wn.conv(sum(self._up_split), 3, 1, None, norm, name=f"up_a_{l}")
                      for l in range(self.num_layers)]
        # The top layer's bottom-up features feed nothing further up.
        self._up_b = [wn.conv(hid, 3, 1, None, norm, name=f"up_b_{l}")
                      for l in range(self.num_layers - 1)]
        self._down_c = [wn.conv(sum(self._down_split), 3, 1, None, norm, name=f"down_c_{l}",
                                init_scale=0.1) for l in range(self.num_layers)]
        self._down_d = [wn.conv(hid, 3, 1, None, norm, name=f"down_d_{l}")
                        for l in range(self.num_layers)]
        self._flows = [iaf_lib.IAF(zc, iaf_steps, hidden_units=self.iaf_hidden_units,
                                   context_size=ctx, activation=activation,
                                   seed=None if seed is None else seed + l, name=f"iaf_{l}")
                       for l in range(self.num_layers)] if iaf_steps else []
        self._out = wn.conv(self.output_channels * downsample ** 2, 3, 1, None, norm,
                            name="out", init_scale=0.1)

    @property
    def latent_shapes(self):
        h, w = self.image_shape[0] // self.downsample, self.image_shape[1] // self.downsample
        return [(h, w, self.latent_channels)] * self.num_layers

    def build(self, input_shape):
        h, w, _ = self.latent_shapes[0]
        self.top = self.add_weight(name="top", shape=(1, h, w, self.hidden_channels),
                                   initializer="zeros")
        self.call(tf.zeros([1, *self.image_shape]))
        self.built = True

    def _top_down(self, l, s, training, log_temperature=0.0):
        """Layer l's top-down split: (hid, p_l, q_down params or None, ctx_down or None)."""
        parts = tf.split(self._down_c[l](self._act(s), training=training), self._down_split, -1)
        hid, p_params, q_down, ctx = parts
        p_loc, p_log_scale = tf.split(p_params, 2, axis=-1)
        p = base.gaussian(p_loc, p_log_scale + log_temperature, 3)
        return hid, p, q_down, ctx

    def _update(self, l, s, hid, z, training):
        branch = self._down_d[l](self._act(tf.concat([hid, z], -1)), training=training)
        return s + _RESIDUAL_SCALE * branch

    def _output(self, s, training):
        out = self._out(self._act(s), training=training)
        if self.downsample > 1:
            out = tf.nn.depth_to_space(out, self.downsample)       # [N, H, W, output_channels]
        return tf.reshape(out, [tf.shape(out)[0], self.output_size])

    def _start(self, n):
        return tf.tile(self.top, [n, 1, 1, 1])

    def infer(self, x, seed, analytic=True, training=False, mean=False):
        """Posterior pass; see `MLPStack.infer` (same arguments and returns)."""
        h = self._stem(2.0 * x - 1.0, training=training)
        up = []
        for l in range(self.num_layers):
            hid, q_up, ctx_up = tf.split(self._up_a[l](self._act(h), training=training),
                                         self._up_split, -1)
            if l < self.num_layers - 1:
                h = h + _RESIDUAL_SCALE * self._up_b[l](self._act(hid), training=training)
            up.append((q_up, ctx_up))
        s = self._start(tf.shape(x)[0])
        outputs = [None] * self.num_layers
        for l in reversed(range(self.num_layers)):
            hid, p, q_down, ctx_down = self._top_down(l, s, training)
            q_up, ctx_up = up[l]
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
            z, q, log_q = base.draw(base.gaussian(loc, log_scale, 3),
                                    tf.random.experimental.stateless_fold_in(seed, l), flow,
                                    ctx_up + ctx_down if flow else None, mean)
            outputs[l] = base.layer_output(z, q, p, log_q, analytic)
            s = self._update(l, s, hid, z, training)
        return outputs, self._output(s, training)

    def generate(self, num_samples, seed, temperature=1.0, latents=None):
        """Top-down sampling; see `MLPStack.generate` (same arguments and returns)."""
        log_temperature = tf.math.log(tf.cast(temperature, tf.float32))
        s = self._start(num_samples)
        for l in reversed(range(self.num_layers)):
            hid, p, _, _ = self._top_down(l, s, False, log_temperature)
            z = (latents[l] if latents is not None
                 else p.sample(seed=tf.random.experimental.stateless_fold_in(seed, l)))
            s = self._update(l, s, hid, z, False)
        return self._output(s, False)

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
                "context_channels": self.context_channels, "seed": self.seed}
