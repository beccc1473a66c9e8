"""chainer-mrf: CNNMRF image synthesis (Li & Wand, CVPR 2016) in Chainer.

Public names: :func:`synthesize`, :func:`get_preset`, :class:`VGG16`, :class:`VGG19`,
:func:`load_image`, :func:`save_image`.
"""
import importlib

from chainer_mrf import _compat  # noqa: F401  (must run before chainer is imported)

# Public name -> module. Imported on first use, so that ``import chainer_mrf`` stays light and
# ``python -m chainer_mrf.fetch`` does not find its own module imported by the package.
_PUBLIC = {
    'synthesize': 'chainer_mrf.synthesis',
    'get_preset': 'chainer_mrf.presets',
    'VGG16': 'chainer_mrf.vgg',
    'VGG19': 'chainer_mrf.vgg',
    'load_image': 'chainer_mrf.image',
    'save_image': 'chainer_mrf.image',
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError('module %r has no attribute %r' % (__name__, name))
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__():
    return sorted(list(globals()) + __all__)
