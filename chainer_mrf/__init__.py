"""chainer-mrf: CNNMRF image synthesis (Li & Wand, CVPR 2016) in Chainer."""
from chainer_mrf import _compat  # noqa: F401  (must run before chainer is imported)
