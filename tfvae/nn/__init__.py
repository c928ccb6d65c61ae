"""Networks: Keras 3 layers that map tensors to tensors (MLP and conv encoders/decoders,
the gated PixelCNN, MADE, weight normalization). Never distributions."""
