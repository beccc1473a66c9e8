"""A synthesis's inputs: loading and checking them, then resizing, preprocessing and the start.

Two steps, so that a command line can check everything before it creates a file and the
synthesis reads each file once:

1. :func:`load_inputs` reads the content, the style images, the semantic maps and a start image
   file, and checks that they fit one another and the configuration (:class:`Inputs`).
2. :func:`prepare` resizes and preprocesses them as the configuration's original does, applies
   dsanno's colour options and makes the full-size start image (:class:`Prepared`).

:func:`configure` settles the options that depend on the inputs (no content term without a
content image), :func:`synthesis_shapes` gives the sizes :func:`prepare` resizes to without
resizing anything (for :mod:`chainer_mrf.memory`'s estimate), and :func:`noise` draws a random
start at a level's size.
"""
import collections
import math
import os

import numpy

from chainer_mrf import colour, semantic
from chainer_mrf import image as image_lib

COLOUR_OPTIONS = ('keep_color', 'luminance_only', 'match_color_histogram')
"""The configuration fields that take the content image's colours."""

START_KEYWORDS = ('content', 'random', 'map')
"""The ``initial_image`` values that name a start rather than an image file."""

NOISES = ('uniform', 'normal', 'pixels')
"""The random starts: dsanno's uniform +-20 around the mean, the authors' 0.001 x randn,
neural-doodle's pixels uniform in [16, 240]."""

NOISE_PIXELS = (16, 240)
"""The pixel range of the ``'pixels'`` start (neural-doodle's ``--seed-range``)."""

PREPROCESSINGS = {'dsanno': image_lib.DSANNO, 'cnnmrf': image_lib.CNNMRF,
                  'doodle': image_lib.DOODLE}
"""The network input spaces of the originals, by the configuration's ``preprocessing``."""

#: What :func:`load_inputs` returns: the content (or ``None``) and every style as ``uint8``
#: RGB arrays, the content map (or ``None``) and one style map per style (or ``None``), each
#: a float32 (1, N, H, W) map at its image's loaded size, and the start image file's pixels
#: (``uint8`` RGB) where ``initial_image`` names a file, else ``None``.
Inputs = collections.namedtuple('Inputs', 'content styles content_map style_maps start')

#: What :func:`prepare` returns, in the network's space and resized: ``content`` (or ``None``)
#: and ``styles``, (1, 3, H, W) each, after the colour options; ``chroma``, the content's I
#: and Q under ``luminance_only`` (else ``None``); the content map and the list of style maps
#: at their images' sizes (or ``None`` each); ``start``, the full-size start image (or ``None``
#: for a random one); ``shape``, the output's (H, W); ``preprocessing``, how to turn an
#: optimised image back into pixels.
Prepared = collections.namedtuple(
    'Prepared', 'content styles chroma content_map style_maps start shape preprocessing')


def load_inputs(content, style, *, content_map=None, style_map=None, preset=None):
    """Loads a synthesis's images and maps and checks that they fit, before any work.

    Args:
        content (image or None): the content image (a path, a Pillow image or an RGB array;
            :func:`chainer_mrf.image.load_image`), or ``None`` for a texture or a doodle.
        style (image or sequence of images): one style image or several.
        content_map (map or None): the content's semantic map, or the doodle. Default: ``None``.
        style_map (map or sequence of maps or None): one map per style image. Default:
            ``None``.
        preset (chainer_mrf.presets.Preset or None): the configuration, checked against the
            inputs (:func:`check_inputs`); its ``initial_image`` file, if it names one, is
            loaded. ``None`` checks nothing of a configuration. Default: ``None``.

    Returns:
        Inputs: the loaded images and maps.

    Raises:
        ValueError: no style image; a map on one side only, of another size than its image,
            or with another channel count than the other side's
            (:func:`chainer_mrf.semantic.check_maps`; paths name the file); not one style map
            per style image; a mismatch with the configuration (:func:`check_inputs`); an
            unreadable image.
        FileNotFoundError: for a missing file.
    """
    style_sources = _several(style)
    if not style_sources:
        raise ValueError('at least one style image is needed')
    content_rgb = None if content is None else image_lib.load_image(content)
    styles = [image_lib.load_image(s) for s in style_sources]
    map_sources = [] if style_map is None else _several(style_map)
    loaded = None
    style_maps = [None] * len(styles)
    if content_map is not None or map_sources:
        if map_sources and len(map_sources) != len(styles):
            raise ValueError('%d style maps for %d style images: give one map per style image, '
                             'in the same order' % (len(map_sources), len(styles)))
        loaded = None if content_map is None else semantic.load_map(content_map)
        style_maps = [semantic.load_map(m) for m in map_sources] or [None]
        content_name = _source_name(content_map, 'the content map')
        for i, (style_rgb, style_loaded) in enumerate(zip(styles, style_maps)):
            semantic.check_maps(
                loaded, style_loaded, None if content_rgb is None else content_rgb.shape[:2],
                style_rgb.shape[:2], content_name=content_name,
                style_name=_source_name(map_sources[i] if map_sources else None,
                                        'the style map' if len(styles) == 1
                                        else 'style map %d' % (i + 1)))
    start = None
    if preset is not None and preset.initial_image not in START_KEYWORDS:
        start = image_lib.load_image(preset.initial_image)
    inputs = Inputs(content_rgb, styles, loaded, style_maps, start)
    if preset is not None:
        check_inputs(inputs, preset)
    return inputs


def check_inputs(inputs, config):
    """Checks loaded inputs against a configuration.

    Args:
        inputs (Inputs): as :func:`load_inputs` returns them.
        config (chainer_mrf.presets.Preset): the configuration.

    Raises:
        ValueError: a colour option without a content image; with one, ``size`` (the output
            takes the content's shape) or no content layer (``content_weight=0`` drops the
            content term); the ``'map'`` start without a content map; not one
            ``style_image_weights`` value per style image; semantic maps with the ``'gram'``
            method.
    """
    if inputs.content is not None:
        if config.size is not None:
            # It would be ignored: say so rather than make an image of another size.
            raise ValueError('size sets the shape of a texture or a doodle; with a content '
                             'image the output takes its shape (set width or max_size)')
        if not config.content_layers:
            raise ValueError('content_layers is empty: a content image needs a content layer '
                             '(content_weight 0 drops the content term)')
    else:
        asked = [name for name in COLOUR_OPTIONS if getattr(config, name)]
        if asked:
            # Each of them takes the content image's colours; a doodle or texture has none.
            raise ValueError('%s need%s a content image: without one there are no colours to '
                             'keep or match' % (' and '.join(asked), 's' if len(asked) == 1
                                                else ''))
    if config.method == 'gram' and (inputs.content_map is not None
                                    or inputs.style_maps[0] is not None):
        # A Gram matrix sums over every position: there is no matching for a map to steer.
        raise ValueError("semantic maps steer the MRF term's matching: the gram method has "
                         "none (use method 'mrf')")
    if config.initial_image == 'map' and inputs.content_map is None:
        raise ValueError("initial_image 'map' paints the content map: give a content_map "
                         "(and style maps)")
    weights = config.style_image_weights
    if weights is not None and len(weights) != len(inputs.styles):
        raise ValueError('style_image_weights has %d values for %d style images (give one per '
                         'style image)' % (len(weights), len(inputs.styles)))


def configure(config, inputs):
    """The configuration as these inputs use it.

    Without a content image there is no content term, and the ``'content'`` start means the
    painted map for a doodle (a content map given) and noise for a texture.

    Returns:
        chainer_mrf.presets.Preset: ``config``, or a copy with those fields settled.
    """
    if inputs.content is not None:
        return config
    start = config.initial_image
    if start == 'content':
        start = 'random' if inputs.content_map is None else 'map'
    return config.replace(content_layers=(), initial_image=start)


def synthesis_shapes(inputs, config):
    """The sizes :func:`prepare` resizes to, from the loaded sizes alone (no pixel is touched).

    The output takes the content's shape under the size rule (``width`` or ``max_size``), else
    the content map's (a doodle), else the first style's (a texture); without a content image
    ``size``, if set, is the output's shape. Each style image is resized under the same rule,
    to the same side with a content image and to ``texture_style_scale`` of it without.

    Args:
        inputs (Inputs): the loaded inputs (only their shapes are read).
        config (chainer_mrf.presets.Preset): the configuration, after :func:`configure`.

    Returns:
        tuple: ``(shape, style_shapes)``: the output's (H, W), and a list of each style
        image's (H, W) after resizing, in the order of ``inputs.styles``.

    Examples:
        >>> card = Inputs(numpy.zeros((72, 96, 3), numpy.uint8),
        ...               [numpy.zeros((80, 80, 3), numpy.uint8)], None, [None], None)
        >>> from chainer_mrf import presets
        >>> synthesis_shapes(card, presets.get_preset('dsanno'))
        ((192, 256), [(256, 256)])
    """
    side = config.width if config.size_rule == 'width' else config.max_size
    if inputs.content is None and config.size is not None:
        shape = config.size[::-1]
    else:
        if inputs.content is not None:
            reference = inputs.content.shape[:2]
        elif inputs.content_map is not None:
            reference = inputs.content_map.shape[2:]
        else:
            reference = inputs.styles[0].shape[:2]
        shape = _resized_shape(reference, side, config)[::-1]
    style_side = (side if inputs.content is not None
                  else math.floor(side * config.texture_style_scale))
    return shape, [_resized_shape(rgb.shape[:2], style_side, config)[::-1]
                   for rgb in inputs.styles]


def prepare(inputs, config):
    """Resizes and preprocesses the inputs, then applies the colour options as dsanno's ``run``
    does: histogram matching first, on the resized images, then the luminance split.

    Args:
        inputs (Inputs): the loaded inputs.
        config (chainer_mrf.presets.Preset): the configuration, after :func:`configure`.

    Returns:
        Prepared: the inputs in the network's space, at their synthesis sizes.
    """
    preprocessing = PREPROCESSINGS[config.preprocessing]
    shape, style_shapes = synthesis_shapes(inputs, config)
    styles = [_resize(rgb, style_shape[::-1], config)
              for rgb, style_shape in zip(inputs.styles, style_shapes)]
    content = None if inputs.content is None else _resize(inputs.content, shape[::-1], config)
    chroma = None
    if config.match_color_histogram:
        styles = [colour.match_color_histogram(style, content) for style in styles]
    if config.luminance_only:
        split = [colour.luminance_only_inputs(content, style) for style in styles]
        content, chroma = split[0][0], split[0][2]
        styles = [style for _, style, _ in split]
    content_map = (None if inputs.content_map is None
                   else semantic.resize_map(inputs.content_map, shape[::-1], config.size_rule))
    style_maps = (None if inputs.style_maps[0] is None else
                  [semantic.resize_map(m, style.shape[:1:-1], config.size_rule)
                   for m, style in zip(inputs.style_maps, styles)])
    start = None
    if config.initial_image == 'content':
        start = content
    elif config.initial_image == 'map':
        # From the styles as they are matched: after the colour options (so in luminance under
        # luminance_only, as the image optimised).
        start = semantic.paint_map(content_map, styles, style_maps)
    elif config.initial_image != 'random':
        pixels = (inputs.start if inputs.start is not None
                  else image_lib.load_image(config.initial_image))
        start = _resize(pixels, shape[::-1], config)
        # luminance_only synthesises the luminance: a start image joins it as its own luminance.
        start = start if chroma is None else colour.split_yiq(start)[0]
    return Prepared(content, styles, chroma, content_map, style_maps, start, shape,
                    preprocessing)


def noise(shape, kind, rng, preprocessing=image_lib.DSANNO):
    """A random start image of a level.

    Args:
        shape (tuple of int): the level's (H, W).
        kind (str): one of :data:`NOISES`: ``'uniform'`` (dsanno: +-20 around the mean),
            ``'normal'`` (the authors: 0.001 x randn) or ``'pixels'`` (neural-doodle: every
            value uniform in :data:`NOISE_PIXELS`, as pixels).
        rng (numpy.random.RandomState): the generator.
        preprocessing (chainer_mrf.image.Preprocessing): the network's input space, which
            ``'pixels'`` maps its values into. Default: dsanno's.

    Returns:
        numpy.ndarray: float32, (1, 3, H, W), in the network's space.
    """
    if kind == 'uniform':
        return rng.uniform(-20, 20, size=(1, 3) + tuple(shape)).astype(numpy.float32)
    if kind == 'pixels':
        pixels = rng.uniform(*NOISE_PIXELS, size=(1, 3) + tuple(shape))
        return preprocessing.from_pixels(pixels).astype(numpy.float32)
    # Cast, then scaled in float32, as both originals round it (dsanno's
    # ``normal(...).astype(float32) * 0.001``, Torch's ``randn(...):float():mul(0.001)``).
    return (rng.standard_normal((1, 3) + tuple(shape)).astype(numpy.float32)
            * numpy.float32(0.001))


def _several(sources):
    """A list of sources from one source or a list or tuple of them."""
    return list(sources) if isinstance(sources, (list, tuple)) else [sources]


def _source_name(source, default):
    """How a message names an input: its path, else ``default``."""
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else default


def _resized_shape(shape, side, config):
    """(width, height) of an image of (height, width) ``shape`` under the size rule."""
    height, width = shape
    return image_lib.SIZE_RULES[config.size_rule](width, height, side)


def _resize(rgb, size, config):
    """dsanno resizes 8-bit images with Pillow; the authors resize floats with Torch's rule
    (preprocessing is a per-channel affine map, so resizing after it is the same)."""
    preprocessing = PREPROCESSINGS[config.preprocessing]
    if config.size_rule != 'max_size':  # dsanno's rule, and neural-doodle's Pillow images
        return image_lib.preprocess(image_lib.resize_pil(rgb, size), preprocessing)
    return image_lib.resize_bilinear(image_lib.preprocess(rgb, preprocessing), size)
