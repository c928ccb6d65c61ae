"""What every tfvae model shares: the example shape it builds from and its seeds.

A mixin for `keras.Model` subclasses that set `self.image_shape` (one
example's shape) and `self.seed`: `.keras` files rebuild the model from
`[None, *image_shape]`, and sampling noise comes from two Keras seed
generators (training; evaluation) or an explicit stateless seed.
"""

import keras
import tensorflow as tf


class ExampleModelMixin:
    """Build config from `image_shape`; train/eval seed generators from `seed`."""

    def _make_seed_generators(self, seed):
        self.seed_generator = keras.random.SeedGenerator(seed, name="train_seed")
        self.eval_seed_generator = keras.random.SeedGenerator(
            None if seed is None else seed + 1, name="eval_seed")

    def _seed(self, seed, generator):
        """`seed` as a stateless int32 [2] seed, or the generator's next one."""
        return tf.cast(generator.next() if seed is None else seed, tf.int32)

    def get_build_config(self):
        return {"input_shape": [None, *self.image_shape]}

    def build_from_config(self, config):
        self.build(tuple(config["input_shape"]))
