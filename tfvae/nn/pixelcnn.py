"""A gated PixelCNN decoder conditioned on a feature map (book §4.2-4.3).

PixelCNN (van den Oord et al. 2016) models p(x) = prod_i p(x_i | x_<i) in
raster order with masked convolutions: the mask of type "A" (first layer)
hides the centre pixel and everything after it, type "B" (later layers)
hides only what comes after the centre, so output i depends on pixels < i
only. We use the SIMPLER variant: one stack of gated residual blocks,

    h <- h + W_o * (tanh(W_f *_B h + V_f c) ⊙ sigmoid(W_g *_B h + V_g c)),

not the vertical + horizontal stacks of the gated PixelCNN, so the receptive
field has the usual blind spot (pixels up-right beyond the kernel's reach);
c is the conditioning feature map from z (PixelVAE, Gulrajani et al. 2017;
VLAE, Chen et al. 2017), added to the gates by 1x1 convolutions.
Single-channel images only (no masks between colour channels).

`AutoregressiveBernoulli` is the resulting p(x|z): `log_prob` is one
parallel (teacher-forced) pass; `sample` and the deterministic `mean` (the
greedy decode, see there) run H * W passes in a `tf.while_loop`, in graph.
"""

import weakref

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import families

tfd = tfp.distributions

_PACKAGE = "tfvae"
MASK_TYPES = ("A", "B")


def causal_mask(kernel_size, mask_type):
    """The [k, k, 1, 1] raster-order mask: 1 where a kernel tap sees an earlier pixel.

    Type "A" also hides the centre (the pixel being predicted); type "B"
    keeps it (in later layers the centre holds features of earlier pixels).
    """
    mask = np.ones((kernel_size, kernel_size, 1, 1), np.float32)
    centre = kernel_size // 2
    mask[centre, centre + (mask_type == "B"):] = 0.0   # the centre row from the centre (A) or after it (B)
    mask[centre + 1:] = 0.0                            # every row below
    return mask


@keras.saving.register_keras_serializable(_PACKAGE)
class MaskedConv2D(keras.layers.Layer):
    """A 'same'-padded 2-D convolution whose kernel is masked to raster order.

    Args:
      filters: output channels.
      kernel_size: odd kernel size k.
      mask_type: "A" (excludes the centre pixel) or "B" (includes it).

    Call args:
      inputs: [batch, H, W, C_in].

    Returns:
      [batch, H, W, filters]; output (r, c) depends on inputs at positions
      before (r, c) in raster order (and at (r, c) for type "B").
    """

    def __init__(self, filters, kernel_size, mask_type, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError(f"`filters` must be a positive integer. Received: filters={filters!r}")
        if not isinstance(kernel_size, (int, np.integer)) or kernel_size <= 0 or kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be a positive odd integer. "
                             f"Received: kernel_size={kernel_size!r}")
        if mask_type not in MASK_TYPES:
            raise ValueError(f"`mask_type` must be 'A' or 'B'. Received: mask_type={mask_type!r}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.mask_type = mask_type
        self._mask = causal_mask(self.kernel_size, mask_type)

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(k, k, input_shape[-1], self.filters),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        kernel = self.kernel * self._mask                    # masked taps get no gradient
        return keras.ops.conv(inputs, kernel, padding="same") + self.bias

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "mask_type": self.mask_type}


@keras.saving.register_keras_serializable(_PACKAGE)
class PixelCNN(keras.layers.Layer):
    """Gated PixelCNN on images conditioned on a spatial context (see module docstring).

    Args:
      filters: channels F of the residual stream.
      num_layers: gated residual blocks (masked "B" convolutions).
      kernel_size: kernel of the blocks' masked convolutions (odd).
      first_kernel_size: kernel of the first, type-"A" convolution (odd).
      output_channels: logits per pixel (1 for a Bernoulli pixel).

    Call args:
      inputs: [images [batch, H, W, 1], context [batch, H, W, C_ctx]].

    Returns:
      Logits [batch, H, W, output_channels]; position i depends on the
      image only through pixels before i in raster order.
    """

    def __init__(self, filters=32, num_layers=4, kernel_size=3, first_kernel_size=7,
                 output_channels=1, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("filters", filters), ("num_layers", num_layers),
                            ("output_channels", output_channels)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        self.filters = int(filters)
        self.num_layers = int(num_layers)
        self.kernel_size = kernel_size
        self.first_kernel_size = first_kernel_size
        self.output_channels = int(output_channels)
        self._first = MaskedConv2D(self.filters, first_kernel_size, "A", name="conv_a")
        self._gates = [MaskedConv2D(2 * self.filters, kernel_size, "B", name=f"gate_{i}")
                       for i in range(self.num_layers)]
        self._context = [keras.layers.Conv2D(2 * self.filters, 1, name=f"context_{i}")
                         for i in range(self.num_layers)]
        self._outs = [keras.layers.Conv2D(self.filters, 1, name=f"out_{i}")
                      for i in range(self.num_layers)]
        self._head = [keras.layers.Conv2D(self.filters, 1, activation="relu", name="head_0"),
                      keras.layers.Conv2D(self.output_channels, 1, name="head_1")]

    def build(self, input_shape):
        image_shape, context_shape = input_shape
        if image_shape[-1] != 1:
            raise ValueError("PixelCNN models single-channel images. "
                             f"Received: images shape={tuple(image_shape)}")
        self._first.build(image_shape)
        stream = (*image_shape[:-1], self.filters)
        for gate, context, out in zip(self._gates, self._context, self._outs):
            gate.build(stream)
            context.build(context_shape)
            out.build(stream)
        self._head[0].build(stream)
        self._head[1].build(stream)

    def call(self, inputs):
        images, context = inputs
        h = self._first(images)                                       # [batch, H, W, F]
        for gate, project, out in zip(self._gates, self._context, self._outs):
            a, b = keras.ops.split(gate(h) + project(context), 2, axis=-1)
            h = h + out(keras.ops.tanh(a) * keras.ops.sigmoid(b))
        return self._head[1](self._head[0](keras.ops.relu(h)))

    @property
    def rows_above(self):
        """R: rows above a pixel that its logit can see (the receptive field's height - 1)."""
        return self.first_kernel_size // 2 + self.num_layers * (self.kernel_size // 2)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.output_channels)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "num_layers": self.num_layers,
                "kernel_size": self.kernel_size, "first_kernel_size": self.first_kernel_size,
                "output_channels": self.output_channels}


class AutoregressiveBernoulli(tfd.Autoregressive):
    """p(x|c) = prod_i Bernoulli(x_i; sigmoid(logits_i(x_<i, c))), raster order.

    Built by `make_autoregressive_bernoulli`. `log_prob(x)` is one
    teacher-forced PixelCNN pass. `sample` fills the H * W pixels one at a
    time in one XLA-compiled `tf.while_loop` (TFP's own `Autoregressive`
    sampler would unroll H * W passes into the graph); pixel (r, c) needs
    only the rows r - R .. r of the image, R = `PixelCNN.rows_above`, so each
    step runs the network on that window of R + 1 rows, not on the image.
    `mean()` is deterministic: the greedy decode (each pixel set to
    1[p_i > 1/2] in turn) and the probabilities p_i along it; the true mean
    of an autoregressive model has no closed form.
    """

    def _row_probs(self, x, row):
        """p(x_(row, c) = 1 | x_<(row, c)) for every column c: [..., W, 1]."""
        return _row_probs(self._pixelcnn, x, self._context, row)

    def _fill(self, n, seed):
        """Fills the pixels in raster order: sampled (seed given) or greedy (seed None)."""
        x = tf.zeros(tf.concat([[n], tf.shape(self._sample0)], 0), self._sample0.dtype)
        greedy = seed is None
        seed = tf.zeros([2], tf.int32) if greedy else seed
        return _compiled_fill(self._pixelcnn)(x, self._context, seed, greedy)

    def _sample_n(self, n, seed=None):
        return self._fill(n, tf.cast(tfp.random.sanitize_seed(seed), tf.int32))

    def _mean(self):
        greedy = self._fill(1, None)[0]
        return self.distribution_fn(greedy).distribution.probs_parameter()


def _logits(pixelcnn, x, ctx):
    """PixelCNN logits for images x [..., h, W, 1] (maybe extra leading axes), ctx [..., h, W, C]."""
    x = tf.convert_to_tensor(x, ctx.dtype)
    shape = tf.broadcast_dynamic_shape(tf.shape(x)[:-3], tf.shape(ctx)[:-3])
    images = tf.broadcast_to(x, tf.concat([shape, tf.shape(x)[-3:]], 0))
    ctx = tf.broadcast_to(ctx, tf.concat([shape, tf.shape(ctx)[-3:]], 0))
    out = pixelcnn([tf.reshape(images, tf.concat([[-1], tf.shape(x)[-3:]], 0)),
                    tf.reshape(ctx, tf.concat([[-1], tf.shape(ctx)[-3:]], 0))])
    return tf.reshape(out, tf.concat([shape, tf.shape(x)[-3:]], 0))


def _row_probs(pixelcnn, x, context, row):
    """The rows r - R .. r decide row r exactly (the window lies inside the image)."""
    height = context.shape[-3]
    window = min(pixelcnn.rows_above + 1, height)
    start = tf.clip_by_value(row - pixelcnn.rows_above, 0, height - window)
    rows = start + tf.range(window)                                        # static size for XLA
    window_logits = _logits(pixelcnn, tf.gather(x, rows, axis=-3),
                            tf.gather(context, rows, axis=-3))
    return tf.sigmoid(tf.gather(window_logits, row - start, axis=-3))       # [..., W, 1]


def _fill_pixels(pixelcnn, x, context, seed, greedy):
    """Fills x [n, ..., H, W, 1] pixel by pixel in one `tf.while_loop`."""
    height, width = context.shape[-3], context.shape[-2]
    rows = tf.eye(height, dtype=x.dtype)[:, :, tf.newaxis, tf.newaxis]     # [H, H, 1, 1]
    columns = tf.eye(width, dtype=x.dtype)[:, :, tf.newaxis]               # [W, W, 1]

    def body(i, x):
        row, column = i // width, i % width
        probs = _row_probs(pixelcnn, x, context, row)                      # [..., W, 1]
        if greedy:
            value = tf.cast(probs > 0.5, x.dtype)
        else:
            noise = tf.random.stateless_uniform(
                tf.shape(probs), tf.random.experimental.stateless_fold_in(seed, i), dtype=x.dtype)
            value = tf.cast(noise < probs, x.dtype)
        mask = rows[row] * columns[column]                                 # [H, W, 1], one pixel
        filled = x * (1.0 - mask) + value[..., tf.newaxis, :, :] * mask
        filled.set_shape(x.shape)    # the broadcasts inside lost the static shape
        return i + 1, filled

    return tf.while_loop(lambda i, _: i < height * width, body, (tf.constant(0), x))[1]


# One XLA-compiled fill per PixelCNN layer, kept across calls so that repeated
# eager `sample()` / `mean()` calls reuse the compiled loop instead of
# recompiling it (a new `tf.function` per call would trace and compile anew).
_COMPILED_FILLS = weakref.WeakKeyDictionary()


def _compiled_fill(pixelcnn):
    if pixelcnn not in _COMPILED_FILLS:
        layer = weakref.ref(pixelcnn)    # the cached function must not keep the layer alive

        def fill(x, context, seed, greedy):
            return _fill_pixels(layer(), x, context, seed, greedy)

        _COMPILED_FILLS[pixelcnn] = tf.function(fill, jit_compile=True)
    return _COMPILED_FILLS[pixelcnn]


def make_autoregressive_bernoulli(pixelcnn, context, image_shape):
    """p(x|c) for a context feature map c [..., H, W, C_ctx] (batch shape [...]).

    Args:
      pixelcnn: a built `PixelCNN` with one output channel.
      context: [..., H, W, C_ctx], e.g. the decoder's map of z (float32 from here on if
        a mixed-precision decoder computed it in bfloat16 or float16: the PixelCNN's
        logits are distribution parameters).
      image_shape: (H, W, 1).

    Returns:
      `AutoregressiveBernoulli`, batch shape [...], event shape (H, W, 1).
    """
    context = families.full_precision(context)
    image_shape = tuple(int(d) for d in image_shape)
    if tuple(context.shape[-3:-1]) != image_shape[:2]:
        raise ValueError(f"The context map's height and width {tuple(context.shape[-3:-1])} "
                         f"must equal the image's {image_shape[:2]}.")

    def distribution_fn(x):
        return tfd.Independent(tfd.Bernoulli(logits=_logits(pixelcnn, x, context),
                                             dtype=context.dtype),
                               reinterpreted_batch_ndims=3)

    sample0 = tf.zeros(tf.concat([tf.shape(context)[:-3], image_shape], 0), context.dtype)
    dist = AutoregressiveBernoulli(distribution_fn, sample0=sample0, num_steps=1)
    dist._pixelcnn = pixelcnn
    dist._context = context
    return dist
