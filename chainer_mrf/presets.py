"""Every default of each reference implementation, in one place.

A preset is data: :func:`chainer_mrf.synthesize` and ``scripts/generate.py`` take their defaults
from here, so the library and the command line cannot drift apart. Behaviour that differs
between originals is a field naming a strategy, never a test of the preset's name.

Examples:
    >>> get_preset('dsanno').style_weight
    0.2
    >>> get_preset('dsanno').replace(iterations=5).iterations
    5
"""
import dataclasses
import typing

#: Layer shorthand of dsanno's command line: ``4_2`` means ``relu4_2``.
_SHORT_PREFIX = 'relu'


def layer_name(name):
    """``'4_2'`` -> ``'relu4_2'``; full names (``'relu4_2'``, ``'conv4_2'``) pass unchanged."""
    name = name.strip()
    return _SHORT_PREFIX + name if name[:1].isdigit() else name


def short_name(name):
    """``'relu4_2'`` -> ``'4_2'`` (loss terms are named as dsanno names them: ``style_4_2``)."""
    return name[len(_SHORT_PREFIX):] if name.startswith(_SHORT_PREFIX) else name


@dataclasses.dataclass(frozen=True)
class Preset:
    """The options of one synthesis, with the defaults of dsanno's ``run_mrf.py``.

    Args:
        name (str): the preset's name. Default: ``'dsanno'``.
        arch (str): network, ``'vgg16'`` or ``'vgg19'``. Default: ``'vgg16'``.
        model (str or None): weights file; ``None`` takes ``models/<arch>.npz``. Default:
            ``None``.
        pooling (str): ``'max'`` or ``'average'``. Default: ``'max'``.
        preprocessing (str): ``'dsanno'`` (0-255, mean (104, 117, 124)) or ``'cnnmrf'``.
            Default: ``'dsanno'``.
        width (int): content and style are resized to this width, heights following the
            aspect ratio (dsanno's ``-w``). Default: 256.
        resolution_num (int): pyramid levels, 1 to 3 (strides 4, 2, 1; a level narrower than
            64 pixels is skipped). Default: 3.
        iterations (int): optimiser steps per level (dsanno's ``--iter``). Default: 100.
        save_iter (int): the command line saves an image every this many steps, counted
            across levels. Default: 10.
        optimizer (str): ``'lbfgs'`` (fixed step, no line search) or ``'adam'``. Default:
            ``'lbfgs'``.
        lr (float): L-BFGS step or Adam's alpha. Default: 1.0.
        lbfgs_history (int): L-BFGS pairs kept. Default: 10.
        content_layers (tuple of str): layers of the content term. Default: ``('relu4_2',)``.
        content_weight (float): weight of the content term (mean squared error). Default: 1.0.
        style_layers (tuple of str): layers of the MRF term. Default:
            ``('relu3_2', 'relu4_2')``.
        style_weight (float): weight of the MRF term of each layer (mean squared error to the
            matched patches). Default: 0.2.
        tv_weight (float): weight of the regulariser (sum of squared neighbour differences).
            Default: 1e-5.
        patch_size (int): side of the MRF patches. Default: 3.
        initial_image (str): ``'content'`` or ``'random'`` (uniform +-20 around the mean).
            Default: ``'content'``.
        memory_budget (int): bytes the patch-matching scores may take at once. Default:
            256 MiB.
        seed (int or None): seed of the random initial image. Default: ``None``.
    """

    name: str = 'dsanno'
    arch: str = 'vgg16'
    model: typing.Optional[str] = None
    pooling: str = 'max'
    preprocessing: str = 'dsanno'
    width: int = 256
    resolution_num: int = 3
    iterations: int = 100
    save_iter: int = 10
    optimizer: str = 'lbfgs'
    lr: float = 1.0
    lbfgs_history: int = 10
    content_layers: typing.Tuple[str, ...] = ('relu4_2',)
    content_weight: float = 1.0
    style_layers: typing.Tuple[str, ...] = ('relu3_2', 'relu4_2')
    style_weight: float = 0.2
    tv_weight: float = 1e-5
    patch_size: int = 3
    initial_image: str = 'content'
    memory_budget: int = 256 << 20
    seed: typing.Optional[int] = None

    def __post_init__(self):
        for field in ('content_layers', 'style_layers'):
            value = getattr(self, field)
            if isinstance(value, str):
                value = value.split(',')
            object.__setattr__(self, field, tuple(layer_name(v) for v in value if v.strip()))
        self._check()

    def replace(self, **options):
        """A copy with ``options`` changed.

        Raises:
            ValueError: for an unknown option (the message lists the known ones) or an
                impossible value.
        """
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError('unknown option %s (known: %s)' % (
                ', '.join(unknown), ', '.join(f.name for f in dataclasses.fields(self))))
        return dataclasses.replace(self, **options)

    def _check(self):
        choices = {'arch': ('vgg16', 'vgg19'), 'pooling': ('max', 'average'),
                   'preprocessing': ('dsanno', 'cnnmrf'), 'optimizer': ('lbfgs', 'adam'),
                   'initial_image': ('content', 'random')}
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError('%s must be one of %s, got %r'
                                 % (field, ', '.join(allowed), getattr(self, field)))
        positive = {'width': 1, 'iterations': 1, 'save_iter': 1, 'lbfgs_history': 1,
                    'patch_size': 1, 'memory_budget': 1}
        for field, low in positive.items():
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError('%s must be a positive integer, got %r' % (field, value))
        if self.resolution_num not in (1, 2, 3):
            raise ValueError('resolution_num must be 1, 2 or 3, got %r' % (self.resolution_num,))
        for field in ('lr', 'content_weight', 'style_weight', 'tv_weight'):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
                    value >= 0 and value < float('inf')):
                raise ValueError('%s must be a finite number >= 0, got %r' % (field, value))
        if self.lr == 0:
            raise ValueError('lr must be positive')
        if not self.style_layers:
            raise ValueError('style_layers is empty: the MRF term needs at least one layer')
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError('seed must be a non-negative integer, got %r' % (self.seed,))


PRESETS = {
    'dsanno': Preset(),
}


def get_preset(preset):
    """A :class:`Preset` by name (``'dsanno'``), or ``preset`` itself if it is one.

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError('unknown preset %r (known: %s)' % (preset, ', '.join(sorted(PRESETS))))
    return PRESETS[preset]
