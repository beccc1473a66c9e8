"""``synthesize``: the coarse-to-fine loop that minimises the MRF, content and regulariser terms.

The library never prints or writes files: it reports each step through ``callback`` and returns
the image; ``scripts/generate.py`` turns the steps into progress lines, saved images and a trace.
Everything that differs between the originals comes from the preset's fields
(:class:`chainer_mrf.presets.Preset`), including dsanno's colour options (:mod:`chainer_mrf.colour`);
semantic maps (:mod:`chainer_mrf.semantic`) and several style images are inputs, like the images.
"""
import collections
import dataclasses
import math
import os
import time
import typing

import chainer
import numpy

from chainer_mrf import colour, losses, matching, patches, presets, pyramid, semantic
from chainer_mrf import image as image_lib
from chainer_mrf import style_copies
from chainer_mrf import weights as weights_lib
from chainer_mrf.optimizers import LBFGS
from chainer_mrf.vgg import VGG

_PREPROCESSING = {'dsanno': image_lib.DSANNO, 'cnnmrf': image_lib.CNNMRF}

#: The preset fields that take the content image's colours.
COLOUR_OPTIONS = ('keep_color', 'luminance_only', 'match_color_histogram')


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
            pass computes input gradients only, the same count; with ``keep_color`` the network
            runs twice, on the image for the content and on its luminance for the MRF term),
            ``matching`` (2 P S D per style layer, P synthesised and S style patches of length
            D, semantic map channels included).
        losses (dict): every energy term by name (``content_4_2``, ``style_3_2``, ``tv``...),
            evaluated at the image before the step, as floats.
        x (array): the image after the step, preprocessed, (1, 3, H, W), on the device (with
            ``luminance_only``, the luminance image being optimised).
        preprocessing (image.Preprocessing): how to turn ``x`` back into an image.
        chroma (array or None): with ``luminance_only``, the content's I and Q at this level,
            (1, 2, H, W), which :meth:`image` joins with the luminance of ``x``; else ``None``.
            Default: ``None``.
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
    chroma: typing.Any = None

    def image(self):
        """The current image as RGB ``uint8`` (H, W, 3) on the host."""
        return _rgb(self.x, self.chroma, self.preprocessing)


#: What :func:`load_inputs` returns: the content (or ``None``) and every style as ``uint8``
#: RGB arrays, the content map (or ``None``) and one style map per style (or ``None``), each
#: a float32 (1, N, H, W) map at its image's loaded size.
Inputs = collections.namedtuple('Inputs', 'content styles content_map style_maps')


def synthesize(content, style, *, content_map=None, style_map=None, preset='dsanno', device=-1,
               callback=None, **options):
    """Synthesises an image with the MRF of ``style`` (Li & Wand 2016), coarse to fine.

    With a ``content`` image this is style transfer; with ``content=None`` it is texture
    synthesis: no content term, a random start, the output ``size`` option. Semantic maps steer
    the matching (:mod:`chainer_mrf.semantic`): a patch of the result takes style patches of its
    own region; ``content=None`` with a ``content_map`` is a neural doodle, the result taking the
    map's shape (resized as a content image would be, or to ``size``).

    Args:
        content (str or PIL.Image.Image or numpy.ndarray or None): the content image (a path,
            a Pillow image or an RGB array; see :func:`chainer_mrf.image.load_image`), or
            ``None`` for texture synthesis or a doodle.
        style (image or sequence of images): the style image, likewise, or a list of them:
            each level's style bank holds the patches of all (weighted by the
            ``style_image_weights`` option).
        content_map (image or array or None): the content's semantic map, of the content
            image's size (:func:`chainer_mrf.semantic.load_map`: a colour image, or an (H, W, N)
            array of values in [0, 1]); without a content image, the doodle to synthesise.
            Default: ``None``.
        style_map (map or sequence of maps or None): the style's map, of its size, or one per
            style image. Maps come on both sides or on neither. Default: ``None``.
        preset (str or presets.Preset): whose defaults to use, ``'dsanno'`` or ``'cnnmrf'``.
            Default: ``'dsanno'``.
        device (int or str): ``-1`` for the CPU, a GPU id (``0``) or a Chainer device
            specifier (``'@cupy:0'``). Default: ``-1``.
        callback (callable or None): called with a :class:`Step` after every optimiser step.
            Default: ``None``.
        **options: any field of :class:`chainer_mrf.presets.Preset` (``iterations``,
            ``width``, ``style_weight``, ``keep_color``, ``semantic_weight``, ``seed`` ...),
            overriding the preset's value.

    Returns:
        numpy.ndarray: the result, RGB ``uint8`` of shape (H, W, 3): the resized content's
        size, or in texture synthesis ``size``, else the resized content map's or first style's.

    Raises:
        ValueError: for an unknown option, an impossible value, an unknown layer, an image
            too small for any level or a patch, a GPU asked for without CuPy and CUDA, a colour
            option without a content image, or maps that do not fit (see :func:`load_inputs`).
        FileNotFoundError: for a missing image, map or weights file.

    Examples:
        >>> result = synthesize('photo.jpg', 'painting.jpg', iterations=50)  # doctest: +SKIP
        >>> texture = synthesize(None, 'gravel.png', preset='cnnmrf')  # doctest: +SKIP
        >>> doodle = synthesize(None, 'monet.jpg', content_map='doodle.png',
        ...                     style_map='monet_sem.png')  # doctest: +SKIP
    """
    config = presets.get_preset(preset).replace(**options)
    inputs = load_inputs(content, style, content_map=content_map, style_map=style_map,
                         preset=config)
    if inputs.content is None:
        # No content term; and for the content start, a doodle takes its painted map, a
        # texture noise.
        start = config.initial_image
        if start == 'content':
            start = 'random' if inputs.content_map is None else 'map'
        config = config.replace(content_layers=(), initial_image=start)
    preprocessing = _PREPROCESSING[config.preprocessing]
    prepared = _prepare_inputs(inputs, config, preprocessing)
    start_x = _full_start(prepared, config, preprocessing)
    dev = _device(device)
    arch, path = network(config)
    vgg = VGG(path, arch=arch, pooling=config.pooling)
    _check_layers(vgg, config)
    vgg.to_device(dev)
    levels = pyramid.PYRAMIDS[config.pyramid](config.resolution_num)
    factors = levels.factors(prepared.shape[1])
    rng = numpy.random.RandomState(config.seed)
    optimizer = _optimizer(config)
    # The maps are full-size at every level: each layer's map is area-averaged from them.
    content_map = None if prepared.content_map is None else dev.send(prepared.content_map)
    style_maps = [None if m is None else dev.send(m) for m in prepared.style_maps]
    x = terms = chroma = None
    iteration = 0
    for level, (factor, steps) in enumerate(zip(factors, config.per_level(len(factors)))):
        level_shape = levels.level_shape(prepared.shape, factor)
        if x is None:
            # A copy: the optimiser updates x in place, and a level may be a view of start_x.
            x = (dev.send(levels.level(start_x, factor)).copy() if start_x is not None
                 else _noise(level_shape, config, rng, dev))
        else:
            x = levels.upsample(x, level_shape)
        content_x = (None if prepared.content is None
                     else dev.send(levels.level(prepared.content, factor)))
        styles = [dev.send(levels.level(s, factor)) for s in prepared.styles]
        if config.keep_color:
            # dsanno: each level's style becomes its luminance, standardised to the content's.
            styles = [colour.match_luminance(s, content_x) for s in styles]
        if prepared.chroma is not None:
            # Y, I and Q are linear, so the level of the chroma is the chroma of the level.
            chroma = dev.send(levels.level(prepared.chroma, factor))
        terms = None  # the last level's banks go before this level's are built
        terms = _Energy(vgg, config, dev, content_x, styles, x, content_map, style_maps)
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
                              target.x.array.copy(), preprocessing, chroma))
        x = target.x.array
    return _rgb(x, chroma, preprocessing)


def load_inputs(content, style, *, content_map=None, style_map=None, preset='dsanno'):
    """Loads a synthesis's images and maps and checks that they fit, before any work.

    :func:`synthesize` starts with this; ``scripts/generate.py`` calls it before it creates
    anything, so that every mistake in the inputs is one line naming the file to fix.

    Args:
        content (image or None): the content image, as :func:`synthesize` takes it.
        style (image or sequence of images): one style image or several.
        content_map (map or None): the content's semantic map, or the doodle. Default: ``None``.
        style_map (map or sequence of maps or None): one map per style image. Default:
            ``None``.
        preset (str or presets.Preset): the configuration (its colour options and
            ``style_image_weights`` are checked against the inputs). Default: ``'dsanno'``.

    Returns:
        Inputs: the loaded images and maps (:data:`Inputs`).

    Raises:
        ValueError: no style image; a colour option without a content image; as many
            ``style_image_weights`` or style maps as style images not given; a map on one
            side only, of another size than its image, or with another channel count than the
            other side's (:func:`chainer_mrf.semantic.check_maps`; paths name the file).
        FileNotFoundError: for a missing file.
    """
    config = presets.get_preset(preset)
    style_sources = _several(style)
    if not style_sources:
        raise ValueError('at least one style image is needed')
    content_rgb = None if content is None else image_lib.load_image(content)
    styles = [image_lib.load_image(s) for s in style_sources]
    if content_rgb is None:
        asked = [name for name in COLOUR_OPTIONS if getattr(config, name)]
        if asked:
            # Each of them takes the content image's colours; a doodle or texture has none.
            raise ValueError('%s need%s a content image: without one there are no colours to '
                             'keep or match' % (' and '.join(asked), 's' if len(asked) == 1
                                                else ''))
    if config.initial_image == 'map' and content_map is None:
        raise ValueError("initial_image 'map' paints the content map: give a content_map "
                         "(and style maps)")
    weights = config.style_image_weights
    if weights is not None and len(weights) != len(styles):
        raise ValueError('style_image_weights has %d values for %d style images (give one per '
                         'style image)' % (len(weights), len(styles)))
    map_sources = [] if style_map is None else _several(style_map)
    if content_map is None and not map_sources:
        return Inputs(content_rgb, styles, None, [None] * len(styles))
    if map_sources and len(map_sources) != len(styles):
        raise ValueError('%d style maps for %d style images: give one map per style image, in '
                         'the same order' % (len(map_sources), len(styles)))
    loaded = None if content_map is None else semantic.load_map(content_map)
    style_maps = [semantic.load_map(m) for m in map_sources] or [None]
    content_name = _source_name(content_map, 'the content map')
    for i, (style_rgb, style_loaded) in enumerate(zip(styles, style_maps)):
        semantic.check_maps(
            loaded, style_loaded, None if content_rgb is None else content_rgb.shape[:2],
            style_rgb.shape[:2], content_name=content_name,
            style_name=_source_name(map_sources[i] if map_sources else None, 'the style map'
                                    if len(styles) == 1 else 'style map %d' % (i + 1)))
    return Inputs(content_rgb, styles, loaded, style_maps)


def _several(sources):
    """A list of sources from one source or a list or tuple of them."""
    return list(sources) if isinstance(sources, (list, tuple)) else [sources]


def _source_name(source, default):
    """How a message names an input: its path, else ``default``."""
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else default


def _rgb(x, chroma, preprocessing):
    """An optimised image as RGB ``uint8`` on the host, joined with ``chroma`` if given."""
    cpu = chainer.backend.CpuDevice()
    x = cpu.send(x)
    if chroma is not None:
        x = colour.join_yiq(x, cpu.send(chroma))
    return image_lib.deprocess(x, preprocessing)


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


#: The inputs in the network's space, resized: ``content`` (or ``None``) and ``styles``
#: (1, 3, H, W) each, after the colour options; ``chroma`` the content's I and Q under
#: ``luminance_only`` (else ``None``); the maps at their images' sizes (or ``None``); ``shape``
#: the output's (H, W).
_Prepared = collections.namedtuple('_Prepared',
                                   'content styles chroma content_map style_maps shape')


def _prepare_inputs(inputs, config, preprocessing):
    """Resizes and preprocesses the inputs, then applies the colour options as dsanno's ``run``
    does: histogram matching first, on the resized images, then the luminance split."""
    side = config.width if config.size_rule == 'width' else config.max_size
    if inputs.content is not None:
        reference = inputs.content.shape[:2]
    elif inputs.content_map is not None:
        reference = inputs.content_map.shape[2:]
    else:
        reference = inputs.styles[0].shape[:2]
    shape = _resized_shape(reference, side, config)[::-1]
    if inputs.content is None and config.size is not None:
        shape = config.size[::-1]
    style_side = (side if inputs.content is not None
                  else math.floor(side * config.texture_style_scale))
    styles = [_resize(rgb, _resized_shape(rgb.shape[:2], style_side, config), config,
                      preprocessing) for rgb in inputs.styles]
    content = (None if inputs.content is None
               else _resize(inputs.content, shape[::-1], config, preprocessing))
    chroma = None
    if config.match_color_histogram:
        styles = [colour.match_color_histogram(style, content) for style in styles]
    if config.luminance_only:
        split = [colour.luminance_only_inputs(content, style) for style in styles]
        content, chroma = split[0][0], split[0][2]
        styles = [style for _, style, _ in split]
    content_map = (None if inputs.content_map is None
                   else semantic.resize_map(inputs.content_map, shape[::-1], config.size_rule))
    style_maps = [None if m is None else
                  semantic.resize_map(m, style.shape[:1:-1], config.size_rule)
                  for m, style in zip(inputs.style_maps, styles)]
    return _Prepared(content, styles, chroma, content_map, style_maps, shape)


def _resized_shape(shape, side, config):
    """(width, height) of an image of (height, width) ``shape`` under the preset's size rule."""
    height, width = shape
    if config.size_rule == 'width':
        return image_lib.dsanno_size(width, height, side)
    return image_lib.cnnmrf_size(width, height, side)


def _resize(rgb, size, config, preprocessing):
    """dsanno resizes 8-bit images with Pillow; the authors resize floats with Torch's rule
    (preprocessing is a per-channel affine map, so resizing after it is the same)."""
    if config.size_rule == 'width':
        return image_lib.preprocess(image_lib.resize_pil(rgb, size), preprocessing)
    return image_lib.resize_bilinear(image_lib.preprocess(rgb, preprocessing), size)


def _full_start(prepared, config, preprocessing):
    """The full-size start image (the content, the painted map or a file), or ``None`` for a
    random start."""
    if config.initial_image == 'content':
        return prepared.content
    if config.initial_image == 'random':
        return None
    if config.initial_image == 'map':
        # From the styles as they are matched: after the colour options (so in luminance under
        # luminance_only, as the image optimised).
        return semantic.paint_map(prepared.content_map, prepared.styles, prepared.style_maps)
    start = _resize(image_lib.load_image(config.initial_image), prepared.shape[::-1], config,
                    preprocessing)
    # luminance_only synthesises the luminance: a start image joins it as its own luminance.
    return start if prepared.chroma is None else colour.split_yiq(start)[0]


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


#: One MRF layer of a level: its name and weight, the synthesis grid, the style bank, the
#: coverage of the overlap average (or ``None``), and with a content map the query buffer: the
#: synthesised patches' columns then the map's, the latter filled once (or ``None``).
_Layer = collections.namedtuple('_Layer', 'name weight grid bank coverage queries')

# The luminance's 1x1 convolution: 3 inputs x 3 outputs, a multiply and an add per pixel.
_LUMINANCE_FLOPS_PER_PIXEL = 2 * 3 * 3


class _Energy:
    """The energy of one level: content targets, style banks and map patches are built once,
    here.

    Args:
        vgg (VGG): the network, on ``dev``.
        config (presets.Preset): the options.
        dev (chainer.backend.Device): the device.
        content (array or None): the level's content image.
        styles (list of array): the level's style images (after ``keep_color``).
        x (array): the level's start image (its features give the grids).
        content_map (array or None): the full-size content map, on ``dev``.
        style_maps (list): the full-size map of each style image (or ``None`` each), on ``dev``.
    """

    def __init__(self, vgg, config, dev, content, styles, x, content_map, style_maps):
        self.vgg = vgg
        self.config = config
        self.dev = dev
        with chainer.no_backprop_mode(), chainer.using_config('train', False):
            self.content = ({} if content is None else
                            {name: v.array for name, v in
                             vgg(content, layers=config.content_layers).items()})
            # The start image's features give the synthesis grids, the patch coverage and
            # the map columns of the queries.
            start = vgg(x, layers=config.style_layers)
        k = config.patch_size
        grids = {}
        for name in config.style_layers:
            height, width = _fits(start[name], k, name, 'synthesised')
            grids[name] = dict(rows=patches.grid_starts(height, k, config.synthesis_stride),
                               cols=patches.grid_starts(width, k, config.synthesis_stride))
        banks = self._banks(styles, style_maps)
        self.layers = []
        for name, weight in zip(config.style_layers, config.per_layer_weights()):
            coverage = (self._coverage(start[name], grids[name])
                        if config.overlap == 'average' else None)
            queries = None
            if content_map is not None:
                # The features' columns are overwritten at every step; the map's stay.
                queries = patches.extract_patches_array(semantic.append_map(
                    start[name], semantic.downsample_map(content_map, start[name].shape[2:]),
                    config.semantic_weight), k, **grids[name])
            self.layers.append(_Layer(name, weight, grids[name], banks[name], coverage,
                                      queries))
        shape = x.shape[2:]
        if config.keep_color:
            # Two passes: the image for the content term, its luminance for the MRF term.
            convolutions = (vgg.flops(shape, self.content) + vgg.flops(shape, config.style_layers)
                            + _LUMINANCE_FLOPS_PER_PIXEL * shape[0] * shape[1])
        else:
            convolutions = vgg.flops(shape, set(self.content) | set(config.style_layers))
        self.flops = {'vgg_forward': convolutions, 'vgg_backward': convolutions,
                      'matching': sum(2 * len(layer.grid['rows']) * len(layer.grid['cols'])
                                      * layer.bank.size * layer.bank.dim
                                      for layer in self.layers)}

    def _banks(self, styles, style_maps):
        """One patch bank per style layer over every style image and copy (rotations and
        scales), the maps appended where given, each image's scores weighted."""
        config = self.config
        parts = {name: [] for name in config.style_layers}
        owners = []  # the style image of each part, in bank order
        k = config.patch_size
        for owner, (style, style_map) in enumerate(zip(styles, style_maps)):
            copies = self._copies(style[0])
            map_copies = (None if style_map is None
                          else self._map_copies(style_map, style.shape[2:]))
            for i, copy in enumerate(copies):
                with chainer.no_backprop_mode(), chainer.using_config('train', False):
                    features = self.vgg(copy[None], layers=config.style_layers)
                for name, feature in features.items():
                    height, width = _fits(feature, k, name, 'style')
                    array = feature.array
                    if map_copies is not None:
                        array = semantic.append_map(array, semantic.downsample_map(
                            map_copies[i], (height, width)), config.semantic_weight)
                    parts[name].append(patches.extract_patches_array(
                        array, k, rows=patches.grid_starts(height, k, config.sample_stride),
                        cols=patches.grid_starts(width, k, config.sample_stride)))
                owners.append(owner)
        banks = {}
        for name in list(parts):
            sizes = [len(part) for part in parts[name]]
            # Each layer's parts are let go once its bank holds them.
            banks[name] = matching.PatchBank(parts.pop(name),
                                             bank_dtype=numpy.dtype(config.bank_dtype))
            _weigh(banks[name], sizes, owners, config.style_image_weights)
        return banks

    def _copies(self, array):
        config = self.config
        return style_copies.style_copies(array, config.num_rotation, config.num_scale,
                                         config.rotation_step, config.scale_step)

    def _map_copies(self, style_map, level_shape):
        """The map of each style copy, (1, N, h, w) each."""
        if self.config.num_rotation == self.config.num_scale == 0:
            # One copy, the style itself: each layer's map is area-averaged straight from the
            # full-size map, as the content's is.
            return [style_map]
        # The copies are rotated and scaled from the level's style image: the map goes through
        # the same steps from the map at the level's size.
        level_map = semantic.downsample_map(style_map, level_shape)
        return [copy[None] for copy in self._copies(level_map[0])]

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
        if config.keep_color:
            # dsanno: the MRF term sees the luminance of x, the content term x itself.
            features = self.vgg(target.x, layers=self.content) if self.content else {}
            mrf_features = self.vgg(colour.luminance(target.x), layers=config.style_layers)
        else:
            features = self.vgg(target.x, layers=set(self.content) | set(config.style_layers))
            mrf_features = features
        clock.lap('vgg_forward')
        # (feature, leaf) pairs; without keep_color a layer in both terms has one leaf.
        leaves = {('content', name): (features[name], chainer.Variable(features[name].array))
                  for name in features}
        for name in config.style_layers:
            if mrf_features is not features:
                leaves[('mrf', name)] = (mrf_features[name],
                                         chainer.Variable(mrf_features[name].array))
        mrf_kind = 'content' if mrf_features is features else 'mrf'
        terms = {}
        for name, reference in self.content.items():
            terms['content_' + presets.short_name(name)] = losses.content_loss(
                leaves[('content', name)][1], reference, config.content_weight)
        for layer in self.layers:
            feature, leaf = leaves[(mrf_kind, layer.name)]
            synthesised = patches.extract_patches(leaf, config.patch_size, **layer.grid)
            queries = synthesised.array
            if layer.queries is not None:
                layer.queries[:, :queries.shape[1]] = queries
                queries = layer.queries
            clock.lap('other')
            threshold = config.confidence_threshold
            indices, scores = matching.match(queries, layer.bank,
                                             memory_budget=config.memory_budget,
                                             cosine=threshold is not None)
            # The map columns steered the matching; the loss compares the features only.
            matched = layer.bank.take(indices)[:, :synthesised.shape[1]]
            clock.lap('matching')
            coverage = layer.coverage
            if threshold is not None:
                matched, coverage = self._drop_unconfident(
                    synthesised, matched, scores >= threshold, coverage, feature, layer.grid)
            terms['style_' + presets.short_name(layer.name)] = losses.mrf_loss(
                synthesised, matched, layer.weight, coverage)
        terms['tv'] = losses.total_variation(target.x, config.tv_weight, config.tv_variant)
        sum(terms.values()).backward()
        clock.lap('other')
        chainer.backward([feature for feature, _ in leaves.values()],
                         [leaf.grad_var for _, leaf in leaves.values()])
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


def _weigh(bank, sizes, owners, weights):
    """Multiplies the scores of each style image's patches by its weight.

    :func:`chainer_mrf.matching.match` ranks the products <q, s_j> scaled by
    ``bank.inverse_norms[j]``, so scaling an image's entries there scales its scores and
    nothing else (the stored patches, the loss's targets, are untouched).

    Args:
        bank (matching.PatchBank): the bank, its parts in the order of ``sizes``.
        sizes (list of int): the number of patches of each part.
        owners (list of int): the style image of each part.
        weights (tuple of float or None): one per style image; ``None`` leaves the bank as it is.
    """
    if weights is None or all(w == 1 for w in weights):
        return
    start = 0
    for size, owner in zip(sizes, owners):
        bank.inverse_norms[start:start + size] *= numpy.float32(weights[owner])
        start += size


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
