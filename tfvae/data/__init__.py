"""Data: named datasets as deterministic `tf.data` pipelines (`datasets`), their files
and hashes (`files`), the offline image patches and 2-D toy densities, and the
class-balanced labelled subsets of semi-supervised training (`labelled`)."""
