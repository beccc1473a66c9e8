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
import os
import typing

import numpy

from chainer_mrf import image, inputs, losses, matching, mrf, optimizers, pyramid, vgg

#: Layer shorthand of dsanno's command line: ``4_2`` means ``relu4_2``.
_SHORT_PREFIX = 'relu'

#: The allowed values of each field that names a strategy, taken from the module that
#: implements them (so that a new strategy needs no edit here, and none can drift).
CHOICES = {
    'method': losses.METHODS,
    'arch': vgg.ARCHS,
    'pooling': vgg.POOLINGS,
    'preprocessing': tuple(inputs.PREPROCESSINGS),
    'size_rule': tuple(image.SIZE_RULES),
    'pyramid': tuple(pyramid.PYRAMIDS),
    'optimizer': optimizers.OPTIMIZERS,
    'lbfgs_pair': optimizers.PAIRS,
    'overlap': mrf.OVERLAPS,
    'tv_variant': losses.TV_VARIANTS,
    'noise': inputs.NOISES,
    'bank_dtype': matching.BANK_DTYPES,
    'match_normalisation': mrf.NORMALISATIONS,
}


def layer_name(name):
    """``'4_2'`` -> ``'relu4_2'``; full names (``'relu4_2'``, ``'conv4_2'``) pass unchanged."""
    name = name.strip()
    return _SHORT_PREFIX + name if name[:1].isdigit() else name


def short_name(name):
    """``'relu4_2'`` -> ``'4_2'`` (loss terms are named as dsanno names them: ``style_4_2``)."""
    return name[len(_SHORT_PREFIX):] if name.startswith(_SHORT_PREFIX) else name


@dataclasses.dataclass(frozen=True)
class Preset:
    """The options of one synthesis. Field defaults are dsanno's ``run_mrf.py``; :data:`CNNMRF`
    holds the authors' ``run_trans.lua`` / ``run_syn.lua``, :data:`DOODLE` neural-doodle's
    ``doodle.py`` and :data:`GRAM` dsanno's neural style (``run.py --method gram``).

    Fields that name a strategy say how the two originals differ; the numbers in brackets are
    the authors' values where they differ from dsanno's. A number may be given as a NumPy
    scalar, a tuple as a list or a 1-D array, a path as any ``os.PathLike``; they are stored as
    Python numbers, tuples and strings.

    Args:
        name (str): the preset's name. Default: ``'dsanno'``.
        method (str): the style term, ``'mrf'`` (CNNMRF's, :mod:`chainer_mrf.mrf`) or ``'gram'``
            (neural style's Gram matrices, :mod:`chainer_mrf.gram`; the fields of patches,
            style copies and maps are then unused, and maps are refused). Default: ``'mrf'``.
        arch (str): network, ``'vgg16'``, ``'vgg19'`` or ``'auto'`` (VGG19 where its weights
            were converted, else VGG16). Default: ``'vgg16'`` [``'auto'``].
        model (str or os.PathLike or None): weights file; ``None`` takes
            ``models/<arch>.npz``. Default: ``None``.
        pooling (str): ``'max'`` or ``'average'``. Default: ``'max'``.
        preprocessing (str): ``'dsanno'`` (0-255, mean (104, 117, 124)), ``'cnnmrf'``
            ([0, 1] x 256, mean (103.939, 116.779, 123.68)) or ``'doodle'`` (0-255, the same
            means). Default: ``'dsanno'``.
        size_rule (str): ``'width'`` (content and style resized to ``width``, heights following
            the aspect ratio, with Pillow's bilinear filter), ``'max_size'`` (longer side
            ``max_size``, Torch's bilinear rule) or ``'original'`` (every image at its own
            size, neural-doodle's). Default: ``'width'`` [``'max_size'``].
        width (int): the width of the ``'width'`` rule (dsanno's ``-w``). Default: 256.
        max_size (int): the longer side of the ``'max_size'`` rule. Default: 384.
        texture_style_scale (float): in texture synthesis (no content), the style image is
            resized to this fraction of the width or longer side. Default: 1.0 [0.5].
        size (tuple or None): texture synthesis only: the output's (width, height); ``None``
            takes the style image's shape at the full width or longer side. Default: ``None``.
        pyramid (str): ``'subsample'`` (levels ``x[..., ::s, ::s]`` for s = 4, 2, 1, a level
            narrower than 64 pixels skipped, results doubled by repetition) or ``'resize'``
            (levels of size ceil(size / s), bilinear resizes, results resized bilinearly).
            Default: ``'subsample'`` [``'resize'``].
        resolution_num (int): pyramid levels, 1 to 4 (factors 8, 4, 2, 1, the last ones
            taken). Default: 3.
        iterations (int or tuple of int): optimiser steps per level; a tuple gives one value
            per level, coarsest first. Default: 100.
        save_iter (int): the command line saves an image every this many steps, counted
            across levels. Default: 10.
        optimizer (str): ``'lbfgs'`` (fixed step, no line search), ``'adam'`` or
            ``'lbfgsb'`` (SciPy's L-BFGS-B with line searches, every pixel kept in [0, 255],
            ``lbfgs_history`` pairs; each step is one evaluation of the energy; neural-doodle's:
            :class:`chainer_mrf.optimizers.LBFGSB`). Default: ``'lbfgs'``.
        lr (float): L-BFGS step or Adam's alpha. Default: 1.0.
        lbfgs_history (int): L-BFGS pairs kept. Default: 10 [25].
        lbfgs_ys_floor (float): y's floor in L-BFGS's rho. Default: 1e-5 [0].
        lbfgs_scale_first_step (bool): scale the first step by min(1, 1/|g|_1). Default:
            ``False`` [``True``].
        lbfgs_pair (str): L-BFGS's curvature pair s: ``'difference'`` (x_t - x_(t-1), dsanno) or
            ``'step'`` (the step as computed, Torch's t d). Default: ``'difference'``
            [``'step'``].
        lbfgs_tolerance_x (float or None): Torch's tolX: a level ends before its last step
            when the L-BFGS direction does not descend, the step is at most this (sum of
            absolute values), or the energy changes by less; ``None``: never.
            Default: ``None`` [0.0].
        lbfgs_tolerance_fun (float or None): Torch's tolFun: a level ends when the sum of
            the gradient's absolute values is at most this; ``None``: never. Default: ``None``
            [0.0].
        content_layers (tuple of str): layers of the content term. Default: ``('relu4_2',)``.
        content_weight (float): weight of the content term (mean squared error). Default: 1.0
            [2e1].
        style_layers (tuple of str): layers of the MRF term. Default: ``('relu3_2',
            'relu4_2')`` [``('relu3_1', 'relu4_1')``].
        style_weight (float or tuple of float): weight of the MRF term, one for every layer or
            one per layer. Default: 0.2 [1e-4].
        overlap (str): how a feature pixel's gradient combines the patches covering it:
            ``'sum'`` (dsanno: mean squared error through the extraction) or ``'average'``
            (the authors: summed, then divided by the number of patches). Default: ``'sum'``
            [``'average'``].
        tv_weight (float): weight of the regulariser. Default: 1e-5 [1e-3].
        tv_variant (str): ``'dsanno'`` (every neighbour pair), ``'cnnmrf'`` (1/2, the
            top-left (H-1) x (W-1) block, as Torch's TVLoss) or ``'doodle'`` (the same block,
            each pixel's squared differences to the power 1.25, averaged:
            :func:`chainer_mrf.losses.total_variation`). Default: ``'dsanno'`` [``'cnnmrf'``].
        patch_size (int): side of the MRF patches. Default: 3.
        sample_stride (int): grid step of the style patches (last row and column always
            included). Default: 1 [2].
        synthesis_stride (int): grid step of the synthesised patches that are matched and
            receive a gradient (last row and column always included). Default: 1 [2].
        num_rotation (int): R: style copies rotated by r x ``rotation_step`` degrees for
            r = -R..R. Default: 0 [1].
        num_scale (int): S: style copies scaled by ``scale_step`` ** s for s = -S..S.
            Default: 0 [1].
        rotation_step (float): degrees between rotated copies. Default: 7.5.
        scale_step (float): factor between scaled copies. Default: 1.05.
        confidence_threshold (float or None): a synthesised patch whose best cosine similarity
            is below this gets no MRF gradient; ``None`` keeps every patch. A cosine lies in
            [-1, 1], and so must the threshold. Default: ``None`` [0.0].
        initial_image (str or os.PathLike): ``'content'``, ``'random'``, ``'map'`` (the
            content map painted in the style's colours, region by region:
            :func:`chainer_mrf.semantic.paint_map`) or the path of an image. Without a
            content image, ``'content'`` means ``'map'`` for a doodle and ``'random'`` for a
            texture. Default: ``'content'``.
        noise (str): the random start: ``'uniform'`` (+-20 around the mean), ``'normal'``
            (0.001 x standard normal) or ``'pixels'`` (pixels uniform in [16, 240],
            neural-doodle's). Default: ``'uniform'`` [``'normal'``].
        memory_budget (int): bytes the patch-matching scores may take at once. Default:
            256 MiB.
        memory_limit (int or None): the most bytes the synthesis may need at its peak, as
            :func:`chainer_mrf.memory.estimate` reckons it before anything is allocated; a
            larger estimate is refused (:class:`chainer_mrf.memory.MemoryRequestError`).
            ``None`` takes the memory available when the synthesis starts (the GPU's free
            memory on a GPU); a limit above it runs anyway, on purpose. Default: ``None``.
        bank_dtype (str): storage of the normalised style patches, ``'float32'`` or
            ``'float16'`` (scores are float32 either way). Default: ``'float32'``.
        seed (int or None): seed of the random start, 0 to 2**32 - 1. Default: ``None``.
        keep_color (bool): dsanno's ``--keep_color``: at each level the style is replaced by its
            luminance standardised to the content's, and the MRF features of the result are
            taken from its luminance (:func:`chainer_mrf.colour.luminance`), so the MRF term
            sees no colour and the content term keeps the content's. Needs a content image.
            Default: ``False``.
        luminance_only (bool): dsanno's ``--luminance_only``: the synthesis runs on the
            luminance of content and style (the style's standardised to the content's), and
            every image it returns or reports takes its own luminance and the content's chroma
            (YIQ's I and Q). Needs a content image. Default: ``False``.
        match_color_histogram (bool): dsanno's ``--match_color_histogram``: before anything
            else each style image is mapped affinely so that its colour mean and covariance
            are the content's. Needs a content image. Default: ``False``.
        semantic_weight (float): the scale of the semantic maps appended to the features for
            the matching (:mod:`chainer_mrf.semantic`), in the features' own units: VGG16's
            3x3 patches at relu3 and relu4 have norms of 10 000 to 40 000, and a 3x3 patch of
            one full map channel has norm 3 x weight. At the default, 1e4, a patch keeps to its
            own region in all but rare cases; half of it lets the features cross regions where
            they match much better (richer texture, looser layout), much more makes each region
            strict and its texture flatter (docs/usage.md). Under the ``'pixel'``
            normalisation the map's per-pixel cosine counts this many times the features'
            (neural-doodle's meaning: 10 there). Used only with maps. Default: 1e4.
        match_normalisation (str): what the matching's cross-correlation normalises:
            ``'patch'`` (whole patches, features and map together: dsanno and the authors) or
            ``'pixel'`` (each pixel's features and its map separately, neural-doodle's:
            :func:`chainer_mrf.mrf.matching_features`; not over several MPI ranks).
            Default: ``'patch'``.
        style_image_weights (tuple of float or None): with several style images, one factor
            per image multiplying the matching scores of that image's patches (a synthesised
            patch takes the patch with the highest weighted normalised cross-correlation);
            ``None`` weighs every image 1. Default: ``None``.
    """

    name: str = 'dsanno'
    method: str = 'mrf'
    arch: str = 'vgg16'
    model: typing.Optional[str] = None
    pooling: str = 'max'
    preprocessing: str = 'dsanno'
    size_rule: str = 'width'
    width: int = 256
    max_size: int = 384
    texture_style_scale: float = 1.0
    size: typing.Optional[typing.Tuple[int, int]] = None
    pyramid: str = 'subsample'
    resolution_num: int = 3
    iterations: typing.Union[int, typing.Tuple[int, ...]] = 100
    save_iter: int = 10
    optimizer: str = 'lbfgs'
    lr: float = 1.0
    lbfgs_history: int = 10
    lbfgs_ys_floor: float = 1e-5
    lbfgs_scale_first_step: bool = False
    lbfgs_pair: str = 'difference'
    lbfgs_tolerance_x: typing.Optional[float] = None
    lbfgs_tolerance_fun: typing.Optional[float] = None
    content_layers: typing.Tuple[str, ...] = ('relu4_2',)
    content_weight: float = 1.0
    style_layers: typing.Tuple[str, ...] = ('relu3_2', 'relu4_2')
    style_weight: typing.Union[float, typing.Tuple[float, ...]] = 0.2
    overlap: str = 'sum'
    tv_weight: float = 1e-5
    tv_variant: str = 'dsanno'
    patch_size: int = 3
    sample_stride: int = 1
    synthesis_stride: int = 1
    num_rotation: int = 0
    num_scale: int = 0
    rotation_step: float = 7.5
    scale_step: float = 1.05
    confidence_threshold: typing.Optional[float] = None
    initial_image: str = 'content'
    noise: str = 'uniform'
    memory_budget: int = 256 << 20
    memory_limit: typing.Optional[int] = None
    bank_dtype: str = 'float32'
    seed: typing.Optional[int] = None
    keep_color: bool = False
    luminance_only: bool = False
    match_color_histogram: bool = False
    semantic_weight: float = 1e4
    match_normalisation: str = 'patch'
    style_image_weights: typing.Optional[typing.Tuple[float, ...]] = None

    def __post_init__(self):
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _plain(getattr(self, field.name)))
        for field in ('content_layers', 'style_layers'):
            value = getattr(self, field)
            if isinstance(value, str):
                value = value.split(',')
            object.__setattr__(self, field, tuple(layer_name(v) for v in value if v.strip()))
        weights = self.style_image_weights
        if isinstance(weights, (int, float)) and not isinstance(weights, bool):
            # the command line parses a single value as a number
            object.__setattr__(self, 'style_image_weights', (weights,))
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

    def per_level(self, levels):
        """Steps for each of the last ``levels`` levels (dsanno skips the coarsest ones)."""
        if isinstance(self.iterations, int):
            return [self.iterations] * levels
        return list(self.iterations[-levels:])

    def per_layer_weights(self):
        """The MRF weight of each style layer, in order."""
        if isinstance(self.style_weight, tuple):
            return list(self.style_weight)
        return [self.style_weight] * len(self.style_layers)

    def _check(self):
        for field, allowed in CHOICES.items():
            if getattr(self, field) not in allowed:
                raise ValueError('%s must be one of %s, got %r'
                                 % (field, ', '.join(allowed), getattr(self, field)))
        for field in ('width', 'max_size', 'save_iter', 'lbfgs_history', 'patch_size',
                      'sample_stride', 'synthesis_stride', 'memory_budget'):
            _check_int(field, getattr(self, field), low=1)
        for field in ('num_rotation', 'num_scale'):
            _check_int(field, getattr(self, field), low=0)
        if self.resolution_num not in pyramid.LEVEL_COUNTS:
            raise ValueError('resolution_num must be 1, 2, 3 or 4, got %r'
                             % (self.resolution_num,))
        if isinstance(self.iterations, tuple):
            if len(self.iterations) != self.resolution_num:
                raise ValueError('iterations has %d values for %d levels (give one value, or '
                                 'one per level)' % (len(self.iterations), self.resolution_num))
            for value in self.iterations:
                _check_int('iterations', value, low=1)
        else:
            _check_int('iterations', self.iterations, low=1)
        if not self.style_layers:
            raise ValueError('style_layers is empty: the MRF term needs at least one layer')
        weights = self.style_weight if isinstance(self.style_weight, tuple) else (
            self.style_weight,)
        if isinstance(self.style_weight, tuple) and len(weights) != len(self.style_layers):
            raise ValueError('style_weight has %d values for %d style layers (give one value, '
                             'or one per layer)' % (len(weights), len(self.style_layers)))
        for value in weights:
            _check_number('style_weight', value)
        for field in ('content_weight', 'tv_weight', 'lbfgs_ys_floor', 'rotation_step'):
            _check_number(field, getattr(self, field))
        for field in ('lr', 'texture_style_scale', 'scale_step'):
            _check_number(field, getattr(self, field), positive=True)
        if self.num_rotation * self.rotation_step >= 45:
            # Past 45 degrees the authors' crop box leaves even a square image.
            raise ValueError('num_rotation x rotation_step must stay under 45 degrees, got '
                             '%d x %g' % (self.num_rotation, self.rotation_step))
        for field in ('lbfgs_tolerance_x', 'lbfgs_tolerance_fun'):
            if getattr(self, field) is not None:
                _check_number(field, getattr(self, field))
        if self.confidence_threshold is not None:
            # A cosine lies in [-1, 1]: a threshold above 1 would switch the MRF term off.
            _check_number('confidence_threshold', self.confidence_threshold, low=-1.0,
                          high=1.0)
        if self.size is not None:
            if len(self.size) != 2:
                raise ValueError('size must be (width, height), got %r' % (self.size,))
            for value in self.size:
                _check_int('size', value, low=1)
        for field in ('lbfgs_scale_first_step', 'keep_color', 'luminance_only',
                      'match_color_histogram'):
            if not isinstance(getattr(self, field), bool):
                raise ValueError('%s must be True or False' % field)
        _check_number('semantic_weight', self.semantic_weight, positive=True)
        if self.style_image_weights is not None:
            if not isinstance(self.style_image_weights, tuple) or not self.style_image_weights:
                raise ValueError('style_image_weights must be None or one number per style '
                                 'image, got %r' % (self.style_image_weights,))
            for value in self.style_image_weights:
                _check_number('style_image_weights', value, positive=True)
        if self.seed is not None:
            _check_int('seed', self.seed, low=0, high=2**32 - 1)  # NumPy's RandomState's range
        if self.memory_limit is not None:
            _check_int('memory_limit', self.memory_limit, low=1)
        if self.model is not None and not (isinstance(self.model, str) and self.model):
            raise ValueError('model must be None or the path of a weights file, got %r'
                             % (self.model,))
        if not isinstance(self.initial_image, str) or not self.initial_image:
            raise ValueError('initial_image must be %s or an image path'
                             % ', '.join(inputs.START_KEYWORDS))


def _plain(value):
    """A field's value as the Python value the checks expect: NumPy scalars as Python numbers
    (``numpy.int64(64)`` is the width 64), sequences and arrays as tuples, paths as strings."""
    if isinstance(value, (numpy.generic, numpy.ndarray)) and numpy.ndim(value) == 0:
        return value.item()
    if isinstance(value, (list, tuple, numpy.ndarray)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _check_int(field, value, low, high=None):
    if (not isinstance(value, int) or isinstance(value, bool) or value < low
            or (high is not None and value > high)):
        raise ValueError('%s must be an integer %s, got %r' % (
            field, '>= %d' % low if high is None else 'from %d to %d' % (low, high), value))


def _check_number(field, value, low=0.0, positive=False, high=None):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
            low <= value < float('inf')) or (positive and value == 0) or (
            high is not None and value > high):
        raise ValueError('%s must be a finite number %s, got %r' % (
            field, ('%s %s' % ('>' if positive else '>=', low)) if high is None
            else 'from %s to %s' % (low, high), value))


#: The authors' Torch code (chuanli11/CNNMRF, ``run_trans.lua`` test 1 and ``run_syn.lua``).
CNNMRF = Preset(
    name='cnnmrf', arch='auto', preprocessing='cnnmrf', size_rule='max_size', max_size=384,
    texture_style_scale=0.5, pyramid='resize', resolution_num=3, iterations=100,
    lbfgs_history=25, lbfgs_ys_floor=0.0, lbfgs_scale_first_step=True,
    content_layers=('relu4_2',), content_weight=2e1, style_layers=('relu3_1', 'relu4_1'),
    style_weight=1e-4, overlap='average', tv_weight=1e-3, tv_variant='cnnmrf',
    sample_stride=2, synthesis_stride=2, num_rotation=1, num_scale=1,
    confidence_threshold=0.0, noise='normal', lbfgs_pair='step', lbfgs_tolerance_x=0.0,
    lbfgs_tolerance_fun=0.0)

#: neural-doodle (alexjc/neural-doodle ``doodle.py``, its defaults; ``docs/algorithm.md``,
#: "The doodle preset"): its layers, weights, smoothness term, noise start, average pooling,
#: float16 bank and L-BFGS-B with 5 pairs over 3 phases of 100 evaluations, every image at its
#: own size, the matching normalised pixel by pixel with the map's weight 10.
DOODLE = Preset(
    name='doodle', arch='auto', pooling='average', preprocessing='doodle',
    size_rule='original', pyramid='resize', resolution_num=3, iterations=100,
    optimizer='lbfgsb', lbfgs_history=5, content_layers=('relu4_2',), content_weight=10.0,
    style_layers=('relu3_1', 'relu4_1'), style_weight=25.0, tv_weight=1.0,
    tv_variant='doodle', initial_image='random', noise='pixels', bank_dtype='float16',
    semantic_weight=10.0, match_normalisation='pixel')

#: dsanno's neural style (chainer-neural-style ``run.py --method gram``, ``NeuralStyle``): the
#: Gram term at relu1_2, relu2_2, relu3_3 and relu4_3, content at relu3_3 and relu4_3, one level
#: of 2000 steps from 0.001 x randn, the same L-BFGS as dsanno's MRF.
GRAM = Preset(
    name='gram', method='gram', iterations=2000, save_iter=100, resolution_num=1,
    content_layers=('relu3_3', 'relu4_3'), content_weight=5.0,
    style_layers=('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3'), style_weight=100.0,
    tv_weight=1e-3, initial_image='random', noise='normal')

PRESETS = {
    'dsanno': Preset(),
    'cnnmrf': CNNMRF,
    'doodle': DOODLE,
    'gram': GRAM,
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
