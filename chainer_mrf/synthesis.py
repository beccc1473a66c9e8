"""``synthesize``: the coarse-to-fine loop that minimises the MRF, content and regulariser terms.

The library never prints or writes files: it reports each step through ``callback`` and returns
the image; ``scripts/generate.py`` turns the steps into progress lines, saved images and a trace.
Everything that differs between the originals comes from the preset's fields
(:class:`chainer_mrf.presets.Preset`).
"""
import dataclasses
import math
import os
import time
import typing

import chainer
import numpy

from chainer_mrf import image as image_lib
from chainer_mrf import losses, matching, patches, presets, pyramid, style_copies
from chainer_mrf import weights as weights_lib
from chainer_mrf.optimizers import LBFGS
from chainer_mrf.vgg import VGG

_PREPROCESSING = {'dsanno': image_lib.DSANNO, 'cnnmrf': image_lib.CNNMRF}


@dataclasses.dataclass(frozen=True)
class Step:
    """What ``callback`` receives after each optimiser step.

    Attributes:
        level (int): pyramid level, 0 for the coarsest.
        levels (int): number of levels in this run.
        iteration (int): steps done so far, counted across levels (dsanno's counter).
        level_iteration (int): steps done so far at this level.
        seconds (float): wall time of this step.
        timings (dict): ``seconds`` split by phase: ``vgg_forward``, ``matching``,
            ``vgg_backward`` and ``other`` (patch extraction, the loss terms and their
            gradients, the optimiser's update). On a GPU, each phase ends with a synchronisation
            so that it counts its own kernels.
        flops (dict): the floating-point operations of the step's dense products, counted
            analytically: ``vgg_forward`` and ``vgg_backward`` (the convolutions; the backward
            pass computes input gradients only, the same count), ``matching`` (2 P S D per
            style layer, P synthesised and S style patches of length D).
        losses (dict): every energy term by name (``content_4_2``, ``style_3_2``, ``tv``...),
            evaluated at the image before the step, as floats.
        x (array): the image after the step, preprocessed, (1, 3, H, W), on the device.
        preprocessing (image.Preprocessing): how to turn ``x`` back into an image.
    """

    level: int
    levels: int
    iteration: int
    level_iteration: int
    seconds: float
    timings: typing.Dict[str, float]
    flops: typing.Dict[str, int]
    losses: typing.Dict[str, float]
    x: typing.Any
    preprocessing: image_lib.Preprocessing

    def image(self):
        """The current image as RGB ``uint8`` (H, W, 3) on the host."""
        return image_lib.deprocess(chainer.backend.CpuDevice().send(self.x),
                                   self.preprocessing)


def synthesize(content, style, *, preset='dsanno', device=-1, callback=None, **options):
    """Synthesises an image with the MRF of ``style`` (Li & Wand 2016), coarse to fine.

    With a ``content`` image this is style transfer; with ``content=None`` it is texture
    synthesis: no content term, a random start, the output ``size`` option.

    Args:
        content (str or PIL.Image.Image or numpy.ndarray or None): the content image (a path,
            a Pillow image or an RGB array; see :func:`chainer_mrf.image.load_image`), or
            ``None`` for texture synthesis.
        style (str or PIL.Image.Image or numpy.ndarray): the style image, likewise.
        preset (str or presets.Preset): whose defaults to use, ``'dsanno'`` or ``'cnnmrf'``.
            Default: ``'dsanno'``.
        device (int or str): ``-1`` for the CPU, a GPU id (``0``) or a Chainer device
            specifier (``'@cupy:0'``). Default: ``-1``.
        callback (callable or None): called with a :class:`Step` after every optimiser step.
            Default: ``None``.
        **options: any field of :class:`chainer_mrf.presets.Preset` (``iterations``,
            ``width``, ``style_weight``, ``seed`` ...), overriding the preset's value.

    Returns:
        numpy.ndarray: the result, RGB ``uint8`` of shape (H, W, 3): the resized content's
        size, or ``size`` in texture synthesis.

    Raises:
        ValueError: for an unknown option, an impossible value, an unknown layer, an image
            too small for any level or a patch, or a GPU asked for without CuPy and CUDA.
        FileNotFoundError: for a missing image or weights file.

    Examples:
        >>> result = synthesize('photo.jpg', 'painting.jpg', iterations=50)  # doctest: +SKIP
        >>> texture = synthesize(None, 'gravel.png', preset='cnnmrf')  # doctest: +SKIP
    """
    config = presets.get_preset(preset).replace(**options)
    if content is None:
        config = config.replace(content_layers=(), initial_image=(
            'random' if config.initial_image == 'content' else config.initial_image))
    preprocessing = _PREPROCESSING[config.preprocessing]
    style_rgb = image_lib.load_image(style)
    content_x, style_x, shape = _prepare_inputs(
        None if content is None else image_lib.load_image(content), style_rgb, config,
        preprocessing)
    start_x = _full_start(content_x, shape, config, preprocessing)
    dev = _device(device)
    arch, path = network(config)
    vgg = VGG(path, arch=arch, pooling=config.pooling)
    _check_layers(vgg, config)
    vgg.to_device(dev)
    levels = pyramid.PYRAMIDS[config.pyramid](config.resolution_num)
    factors = levels.factors(shape[1])
    rng = numpy.random.RandomState(config.seed)
    optimizer = _optimizer(config)
    x = terms = None
    iteration = 0
    for level, (factor, steps) in enumerate(zip(factors, config.per_level(len(factors)))):
        level_shape = levels.level_shape(shape, factor)
        if x is None:
            # A copy: the optimiser updates x in place, and a level may be a view of start_x.
            x = (dev.send(levels.level(start_x, factor)).copy() if start_x is not None
                 else _noise(level_shape, config, rng, dev))
        else:
            x = levels.upsample(x, level_shape)
        terms = None  # the last level's banks go before this level's are built
        terms = _Energy(vgg, config, dev,
                        None if content_x is None else dev.send(levels.level(content_x, factor)),
                        dev.send(levels.level(style_x, factor)), x)
        target = chainer.Link()
        with target.init_scope():
            target.x = chainer.Parameter(x)
        optimizer.setup(target)  # a fresh L-BFGS history at each level, as both originals
        for level_iteration in range(1, steps + 1):
            values, timings = terms.step(target, optimizer)
            iteration += 1
            if callback is not None:
                # A copy, so that a Step kept by the caller is not changed by later steps.
                callback(Step(level, len(factors), iteration, level_iteration,
                              sum(timings.values()), timings, dict(terms.flops), values,
                              target.x.array.copy(), preprocessing))
        x = target.x.array
    return image_lib.deprocess(chainer.backend.CpuDevice().send(x), preprocessing)


def network(config):
    """The architecture and weights file a configuration uses.

    ``arch='auto'`` (the authors' preset) takes VGG19 where ``models/vgg19.npz`` (or the
    ``model`` file) holds it, else VGG16, as the authors' code runs with either.

    Returns:
        tuple: ``(arch, path)``.
    """
    if config.model is not None:
        arch = None if config.arch == 'auto' else config.arch
        return arch or weights_lib.file_arch(config.model), config.model
    arch = config.arch
    if arch == 'auto':
        arch = 'vgg19' if os.path.isfile(weights_lib.default_path('vgg19')) else 'vgg16'
    return arch, weights_lib.default_path(arch)


def _prepare_inputs(content_rgb, style_rgb, config, preprocessing):
    """Preprocessed, resized content (or ``None``) and style, and the output's (H, W)."""
    side = config.width if config.size_rule == 'width' else config.max_size
    reference = style_rgb if content_rgb is None else content_rgb
    shape = _resized_shape(reference, side, config)[::-1]
    if content_rgb is None and config.size is not None:
        shape = config.size[::-1]
    style_side = side if content_rgb is not None else math.floor(side * config.texture_style_scale)
    style_x = _resize(style_rgb, _resized_shape(style_rgb, style_side, config), config,
                      preprocessing)
    content_x = (None if content_rgb is None
                 else _resize(content_rgb, shape[::-1], config, preprocessing))
    return content_x, style_x, shape


def _resized_shape(rgb, side, config):
    height, width = rgb.shape[:2]
    if config.size_rule == 'width':
        return image_lib.dsanno_size(width, height, side)
    return image_lib.cnnmrf_size(width, height, side)


def _resize(rgb, size, config, preprocessing):
    """dsanno resizes 8-bit images with Pillow; the authors resize floats with Torch's rule
    (preprocessing is a per-channel affine map, so resizing after it is the same)."""
    if config.size_rule == 'width':
        return image_lib.preprocess(image_lib.resize_pil(rgb, size), preprocessing)
    return image_lib.resize_bilinear(image_lib.preprocess(rgb, preprocessing), size)


def _full_start(content_x, shape, config, preprocessing):
    """The full-size start image (content or a file), or ``None`` for a random start."""
    if config.initial_image == 'content':
        return content_x
    if config.initial_image == 'random':
        return None
    return _resize(image_lib.load_image(config.initial_image), shape[::-1], config,
                   preprocessing)


def _noise(shape, config, rng, dev):
    if config.noise == 'uniform':  # dsanno: +-20 around the mean
        noise = rng.uniform(-20, 20, size=(1, 3) + tuple(shape))
    else:  # the authors: randn * 0.001
        noise = rng.standard_normal((1, 3) + tuple(shape)) * 0.001
    return dev.send(noise.astype(numpy.float32))


def _device(spec):
    """A Chainer device from dsanno's GPU id (negative: the CPU) or a device specifier."""
    if isinstance(spec, int):
        spec = '@cupy:%d' % spec if spec >= 0 else '@numpy'
    if str(spec).startswith('@cupy') and not chainer.backends.cuda.available:
        raise ValueError('cannot use device %s: CuPy with a working CUDA is not available '
                         '(pip install "chainer-mrf[gpu]")' % spec)
    try:
        return chainer.get_device(spec)
    except Exception as e:  # Chainer raises several types for a bad specifier or device
        raise ValueError('cannot use device %s: %s' % (spec, ' '.join(str(e).split()))) from None


def _check_layers(vgg, config):
    for name in config.content_layers + config.style_layers:
        if name not in vgg.layer_names:
            raise ValueError('unknown %s layer %r (valid: %s)'
                             % (vgg.arch.upper(), name, ', '.join(vgg.layer_names)))


def _optimizer(config):
    if config.optimizer == 'adam':
        return chainer.optimizers.Adam(alpha=config.lr)
    return LBFGS(lr=config.lr, history_size=config.lbfgs_history,
                 ys_floor=config.lbfgs_ys_floor,
                 scale_first_step=config.lbfgs_scale_first_step)


class _Energy:
    """The energy of one level: content targets and style banks are built once, here."""

    def __init__(self, vgg, config, dev, content, style, x):
        self.vgg = vgg
        self.config = config
        self.dev = dev
        with chainer.no_backprop_mode(), chainer.using_config('train', False):
            self.content = ({} if content is None else
                            {name: v.array for name, v in
                             vgg(content, layers=config.content_layers).items()})
            # The start image's features give the synthesis grids and the patch coverage.
            start = vgg(x, layers=config.style_layers)
        k = config.patch_size
        grids = {}
        for name in config.style_layers:
            height, width = _fits(start[name], k, name, 'synthesised')
            grids[name] = dict(rows=patches.grid_starts(height, k, config.synthesis_stride),
                               cols=patches.grid_starts(width, k, config.synthesis_stride))
        banks = self._banks(style)
        self.layers = []
        for name, weight in zip(config.style_layers, config.per_layer_weights()):
            coverage = (self._coverage(start[name], grids[name])
                        if config.overlap == 'average' else None)
            self.layers.append((name, weight, grids[name], banks[name], coverage))
        convolutions = vgg.flops(x.shape[2:], set(self.content) | set(config.style_layers))
        self.flops = {'vgg_forward': convolutions, 'vgg_backward': convolutions,
                      'matching': sum(2 * len(grid['rows']) * len(grid['cols']) * bank.size
                                      * bank.dim for _, _, grid, bank, _ in self.layers)}

    def _banks(self, style):
        """One patch bank per style layer over every style copy (rotations and scales)."""
        config = self.config
        copies = style_copies.style_copies(style[0], config.num_rotation, config.num_scale,
                                           config.rotation_step, config.scale_step)
        parts = {name: [] for name in config.style_layers}
        k = config.patch_size
        for copy in copies:
            with chainer.no_backprop_mode(), chainer.using_config('train', False):
                features = self.vgg(copy[None], layers=config.style_layers)
            for name, feature in features.items():
                height, width = _fits(feature, k, name, 'style')
                parts[name].append(patches.extract_patches_array(
                    feature.array, k,
                    rows=patches.grid_starts(height, k, config.sample_stride),
                    cols=patches.grid_starts(width, k, config.sample_stride)))
        # Each layer's parts are let go once its bank holds them.
        return {name: matching.PatchBank(parts.pop(name),
                                         bank_dtype=numpy.dtype(config.bank_dtype))
                for name in list(parts)}

    def step(self, target, optimizer):
        """One optimiser step.

        The loss terms are built on detached copies of the features, so that the gradient of
        the terms and VGG's backward pass run (and are timed) apart; VGG's backward then
        starts from the features' gradients, which is the same chain rule.

        Returns:
            tuple: the energy terms at the image before the step, and the step's seconds by
            phase (see :class:`Step`).
        """
        clock = _Clock(self.dev)
        values = self._gradient(target, clock)  # its graph is freed before the update
        optimizer.update()
        clock.lap('other')
        return values, clock.seconds

    def _gradient(self, target, clock):
        """Sets ``target.x.grad`` to the energy's gradient; returns the terms as floats."""
        config = self.config
        target.cleargrads()
        features = self.vgg(target.x, layers=set(self.content) | set(config.style_layers))
        clock.lap('vgg_forward')
        leaves = {name: chainer.Variable(feature.array) for name, feature in features.items()}
        terms = {}
        for name, reference in self.content.items():
            terms['content_' + presets.short_name(name)] = losses.content_loss(
                leaves[name], reference, config.content_weight)
        for name, weight, grid, bank, coverage in self.layers:
            synthesised = patches.extract_patches(leaves[name], config.patch_size, **grid)
            clock.lap('other')
            threshold = config.confidence_threshold
            indices, scores = matching.match(synthesised.array, bank,
                                             memory_budget=config.memory_budget,
                                             cosine=threshold is not None)
            matched = bank.take(indices)
            clock.lap('matching')
            if threshold is not None:
                matched, coverage = self._drop_unconfident(
                    synthesised, matched, scores >= threshold, coverage, features[name], grid)
            terms['style_' + presets.short_name(name)] = losses.mrf_loss(
                synthesised, matched, weight, coverage)
        terms['tv'] = losses.total_variation(target.x, config.tv_weight, config.tv_variant)
        sum(terms.values()).backward()
        clock.lap('other')
        chainer.backward([features[name] for name in leaves],
                         [leaves[name].grad_var for name in leaves])
        clock.lap('vgg_backward')
        return {name: float(value.array) for name, value in terms.items()}

    def _drop_unconfident(self, synthesised, matched, keep, coverage, feature, grid):
        """Patches below the confidence threshold get no MRF gradient (the authors' rule):
        their target is themselves, and they leave the coverage count."""
        if bool(keep.all()):
            return matched, coverage
        xp = chainer.backend.get_array_module(matched)
        matched = xp.where(keep[:, None], matched, synthesised.array)
        if coverage is not None:
            coverage = self._coverage(feature, grid, keep)
        return matched, coverage

    def _coverage(self, feature, grid, keep=None):
        return losses.patch_coverage(
            lambda f: patches.extract_patches(f, self.config.patch_size, **grid), feature, keep)


class _Clock:
    """Wall time by phase; on a GPU it synchronises at each lap, so that a phase counts the
    kernels it launched rather than the ones still running from the one before."""

    def __init__(self, dev):
        self._sync = (dev.device.synchronize if isinstance(dev, chainer.backend.GpuDevice)
                      else None)
        self.seconds = {}
        self._last = time.perf_counter()

    def lap(self, phase):
        """Charges the time since the last lap to ``phase``."""
        if self._sync is not None:
            self._sync()
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now


def _fits(feature, k, name, which):
    """(height, width) of a feature map, after checking that a patch fits in it."""
    height, width = feature.shape[2:]
    if min(height, width) < k:
        raise ValueError('the %s image is too small: %s is %dx%d, smaller than a %d-pixel '
                         'patch' % (which, name, width, height, k))
    return height, width
