"""Training: the one loop for every zoo entry (`train`), its callbacks (resumable
checkpoints with early stopping, TensorBoard summaries, guards) and the SavedModel
export (`export`)."""
