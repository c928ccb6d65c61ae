"""Normalizing flows (book ch. 3, §4.4): TFP bijectors whose parameters live in
Keras 3 layers or come, per datapoint, from the encoder."""
