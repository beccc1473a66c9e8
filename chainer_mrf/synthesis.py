"""``synthesize``: the coarse-to-fine loop that minimises the MRF, content and regulariser terms.

The library never prints or writes files: it reports each step through ``callback`` and returns
the image; ``scripts/generate.py`` turns the steps into progress lines, saved images and a trace.
"""
import dataclasses
import time
import typing

import chainer
import numpy

from chainer_mrf import image as image_lib
from chainer_mrf import losses, matching, patches, presets, pyramid
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
    losses: typing.Dict[str, float]
    x: typing.Any
    preprocessing: image_lib.Preprocessing

    def image(self):
        """The current image as RGB ``uint8`` (H, W, 3) on the host."""
        return image_lib.deprocess(chainer.backend.CpuDevice().send(self.x),
                                   self.preprocessing)


def synthesize(content, style, *, preset='dsanno', device=-1, callback=None, **options):
    """Stylises ``content`` with the MRF of ``style`` (Li & Wand 2016), coarse to fine.

    Args:
        content (str or PIL.Image.Image or numpy.ndarray): the content image (a path, a
            Pillow image or an RGB array; see :func:`chainer_mrf.image.load_image`).
        style (str or PIL.Image.Image or numpy.ndarray): the style image, likewise.
        preset (str or presets.Preset): whose defaults to use. Default: ``'dsanno'``.
        device (int or str): ``-1`` for the CPU, a GPU id (``0``) or a Chainer device
            specifier (``'@cupy:0'``). Default: ``-1``.
        callback (callable or None): called with a :class:`Step` after every optimiser step.
            Default: ``None``.
        **options: any field of :class:`chainer_mrf.presets.Preset` (``iterations``,
            ``width``, ``style_weight``, ``seed`` ...), overriding the preset's value.

    Returns:
        numpy.ndarray: the result, RGB ``uint8`` of shape (H, W, 3), H and W those of the
        resized content image.

    Raises:
        ValueError: for an unknown option, an impossible value, an unknown layer, an image
            too small for any level or a patch, or a GPU asked for without CuPy and CUDA.
        FileNotFoundError: for a missing image or weights file.

    Examples:
        >>> result = synthesize('photo.jpg', 'painting.jpg', iterations=50)  # doctest: +SKIP
        >>> save_image('out.png', result)  # doctest: +SKIP
    """
    config = presets.get_preset(preset).replace(**options)
    preprocessing = _PREPROCESSING[config.preprocessing]
    content_x, style_x = (_prepare(source, config, preprocessing) for source in (content, style))
    dev = _device(device)
    vgg = VGG(config.model, arch=config.arch, pooling=config.pooling)
    _check_layers(vgg, config)
    vgg.to_device(dev)
    levels = pyramid.SubsamplePyramid(config.resolution_num)
    strides = levels.strides(content_x.shape[3])
    rng = numpy.random.RandomState(config.seed)
    optimizer = _optimizer(config)
    x = None
    iteration = 0
    for level, stride in enumerate(strides):
        level_content = dev.send(levels.level(content_x, stride))
        level_style = dev.send(levels.level(style_x, stride))
        content_targets, banks = _level_targets(vgg, level_content, level_style, config)
        if x is None:
            x = _initial_image(level_content, config, rng, dev)
        else:
            x = levels.upsample(x, level_content.shape[2:])
        target = chainer.Link()
        with target.init_scope():
            target.x = chainer.Parameter(x)
        optimizer.setup(target)  # a fresh L-BFGS history at each level, as dsanno
        for level_iteration in range(1, config.iterations + 1):
            start = time.perf_counter()
            terms = _step(vgg, target, optimizer, content_targets, banks, config)
            iteration += 1
            if callback is not None:
                callback(Step(level, len(strides), iteration, level_iteration,
                              time.perf_counter() - start, terms, target.x.array,
                              preprocessing))
        x = target.x.array
    return image_lib.deprocess(chainer.backend.CpuDevice().send(x), preprocessing)


def _prepare(source, config, preprocessing):
    rgb = image_lib.load_image(source)
    height, width = rgb.shape[:2]
    rgb = image_lib.resize_pil(rgb, image_lib.dsanno_size(width, height, config.width))
    return image_lib.preprocess(rgb, preprocessing)


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
    return LBFGS(lr=config.lr, history_size=config.lbfgs_history)


def _level_targets(vgg, content, style, config):
    """Content features and the style patch banks of one level (computed once per level)."""
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        # The content's style-layer features are only looked at for their size: the image
        # being synthesised has the content's size.
        content_features = vgg(content, layers=config.content_layers + config.style_layers)
        style_features = vgg(style, layers=config.style_layers)
    for which, features in (('content', content_features), ('style', style_features)):
        for name in config.style_layers:
            height, width = features[name].shape[2:]
            if min(height, width) < config.patch_size:
                raise ValueError('the %s image is too small: %s is %dx%d at this level, '
                                 'smaller than a %d-pixel patch'
                                 % (which, name, width, height, config.patch_size))
    content_targets = {name: content_features[name].array for name in config.content_layers}
    banks = {name: matching.PatchBank(patches.extract_patches_array(feature.array,
                                                                    config.patch_size))
             for name, feature in style_features.items()}
    return content_targets, banks


def _initial_image(content, config, rng, dev):
    if config.initial_image == 'content':
        return content.copy()
    noise = rng.uniform(-20, 20, size=content.shape).astype(numpy.float32)
    return dev.send(noise)


def _step(vgg, target, optimizer, content_targets, banks, config):
    """One optimiser step; returns the energy terms at the image before the step."""
    target.cleargrads()
    features = vgg(target.x, layers=set(content_targets) | set(banks))
    terms = {}
    for name, reference in content_targets.items():
        terms['content_' + presets.short_name(name)] = losses.content_loss(
            features[name], reference, config.content_weight)
    for name, bank in banks.items():
        synthesised = patches.extract_patches(features[name], config.patch_size)
        indices, _ = matching.match(synthesised.array, bank,
                                    memory_budget=config.memory_budget)
        terms['style_' + presets.short_name(name)] = losses.mrf_loss(
            synthesised, bank.take(indices), config.style_weight)
    terms['tv'] = losses.total_variation(target.x, config.tv_weight)
    sum(terms.values()).backward()
    optimizer.update()
    return {name: float(value.array) for name, value in terms.items()}
