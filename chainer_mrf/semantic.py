"""Semantic maps (neural-doodle, Champandard 2016) for the MRF matching (``docs/algorithm.md``,
"Colour options, semantic maps, several style images").

Each image may come with a map of labelled regions of its own size: a colour image (each colour a
label) or an array of N channels (e.g. one-hot). The map is resized with its image, downsampled
to each MRF layer's resolution, scaled by a semantic weight and appended to the feature channels
before patches are extracted, so a patch of the result matches only style patches from the same
kind of region. Only the feature channels enter the loss: the map channels steer the matching.

A map here is a float32 array of shape (1, N, H, W), like a preprocessed image, values in [0, 1].
The steps, in the order a synthesis takes them::

    content_map, style_map = load_map('content_sem.png'), load_map('style_sem.png')
    check_maps(content_map, style_map, content_rgb.shape[:2], style_rgb.shape[:2],
               content_name='content_sem.png', style_name='style_sem.png')
    content_map = resize_map(content_map, content_size)   # as the content image is resized
    # at each level and MRF layer:
    layer_map = downsample_map(content_map, feature.shape[2:])
    queries = append_map(feature, layer_map, semantic_weight)   # matching only
"""
import os

import chainer
import numpy
from chainer import backend

from chainer_mrf import image

MAP_SUFFIX = '_sem.png'
"""What neural-doodle appends to an image's name, less its extension, to name its map:
``Monet_sem.png`` beside ``Monet.jpg``."""


def find_map(image_path, suffix=MAP_SUFFIX):
    """The semantic map kept beside an image under neural-doodle's name, if there is one.

    Nothing is read: the map is ``<the image's path without extension><suffix>`` where that is a
    file. The library never looks for maps itself (:func:`chainer_mrf.synthesize` takes them
    explicitly); the command line does, unless told not to.

    Args:
        image_path (str, os.PathLike or other): the image's path; anything else (a Pillow image,
            an array) has no place beside which a map could be.
        suffix (str): appended to the path without its extension. Default: :data:`MAP_SUFFIX`.

    Returns:
        str or None: the map's path, ``None`` where no such file exists.

    Examples:
        >>> find_map('samples/Monet.jpg')  # doctest: +SKIP
        'samples/Monet_sem.png'
        >>> find_map('/nonexistent/Monet.jpg') is None
        True
        >>> find_map(numpy.zeros((2, 2, 3), numpy.uint8)) is None
        True
    """
    if not isinstance(image_path, (str, os.PathLike)):
        return None
    path = os.path.splitext(os.fsdecode(image_path))[0] + suffix
    return path if os.path.isfile(path) else None


def load_map(source):
    """Loads a semantic map.

    - A path, a Pillow image or a ``uint8`` array is an image: it is read as the photos are
      (:func:`chainer_mrf.image.load_image`: grayscale and palette images become RGB, alpha is
      composited onto white) and its three channels are scaled to [0, 1].
    - A floating-point or boolean array of shape (H, W) or (H, W, N) is used as it is, one
      channel per label (``True`` is 1); its values must be finite and in [0, 1]. So is a map
      as this function returns it, (1, N, H, W), so that a loaded map can be passed on.

    Args:
        source (str, os.PathLike, PIL.Image.Image or numpy.ndarray): the map.

    Returns:
        numpy.ndarray: float32 map of shape (1, N, H, W), N = 3 for an image.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file cannot be read (one line, ``cannot read image PATH: REASON``, as
            :func:`chainer_mrf.image.load_image` says it, or the map does not fit in memory);
            the array has another shape or dtype, no pixels, or values outside [0, 1].
        TypeError: ``source`` is of another type.

    Shape:
        Output: (1, N, H, W).

    Examples:
        >>> load_map(numpy.array([[0, 255]], numpy.uint8)).tolist()
        [[[[0.0, 1.0]], [[0.0, 1.0]], [[0.0, 1.0]]]]
        >>> load_map(numpy.eye(2, dtype=bool)).shape
        (1, 1, 2, 2)
    """
    if isinstance(source, numpy.ndarray) and source.dtype != numpy.uint8:
        return _channels_map(source)
    rgb = image.load_image(source)
    try:
        return (rgb.transpose(2, 0, 1)[None] / numpy.float32(255)).astype(numpy.float32,
                                                                          copy=False)
    except MemoryError:
        name = (os.fspath(source) if isinstance(source, (str, os.PathLike))
                else '<%s>' % type(source).__name__)
        raise ValueError('cannot read image %r: its %d x %d pixels do not fit in memory as a '
                         'semantic map' % ((name,) + rgb.shape[1::-1])) from None


def _channels_map(array):
    """Validates an N-channel float or boolean array and returns it as a (1, N, H, W) map."""
    values = array[..., None] if array.ndim == 2 else array
    if values.ndim == 4 and values.shape[0] == 1:
        values = values[0].transpose(1, 2, 0)  # a loaded map
    if values.ndim != 3 or 0 in values.shape or values.dtype.kind not in 'fb':
        raise ValueError('a semantic map array must be uint8 (an image), or floating point or '
                         'boolean of shape (H, W), (H, W, N) or (1, N, H, W) with pixels; got %s '
                         'of shape %s'
                         % (array.dtype, array.shape))
    values = values.astype(numpy.float32)
    if not numpy.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise ValueError('semantic map values must be finite and in [0, 1]; got values from %g '
                         'to %g' % (values.min(), values.max()))
    return numpy.ascontiguousarray(values.transpose(2, 0, 1)[None])


def check_maps(content_map, style_map, content_shape=None, style_shape=None, *,
               content_name='the content map', style_name='the style map'):
    """Checks the maps of a synthesis against each other and their images, before resizing.

    Each check names the file to fix, in one line: a map given on one side only; a map whose
    (H, W) is not its image's; two maps with different channel counts.

    Args:
        content_map (array or None): the content's map, (1, N, H, W), or ``None``.
        style_map (array or None): the style's map, or ``None``.
        content_shape (tuple of int or None): (H, W) of the content image as loaded; ``None``
            skips its size check (texture synthesis has no content image). Default: ``None``.
        style_shape (tuple of int or None): (H, W) of the style image as loaded; ``None`` skips
            its size check. Default: ``None``.
        content_name (str): how messages name the content map, e.g. its file. Default:
            ``'the content map'``.
        style_name (str): how messages name the style map. Default: ``'the style map'``.

    Raises:
        ValueError: one of the three mismatches.

    Examples:
        >>> check_maps(None, None)  # no maps: nothing to check
        >>> check_maps(numpy.zeros((1, 3, 2, 4)), None, content_name='a_sem.png')
        Traceback (most recent call last):
        ...
        ValueError: a semantic map for the content (a_sem.png) needs one for the style too
    """
    if content_map is None and style_map is None:
        return
    sides = (('content', content_map, content_shape, content_name),
             ('style', style_map, style_shape, style_name))
    for (side, given, _, name), (other, missing, _, _) in zip(sides, sides[::-1]):
        if given is not None and missing is None:
            raise ValueError('a semantic map for the %s (%s) needs one for the %s too'
                             % (side, name, other))
    for side, semantic_map, shape, name in sides:
        if shape is not None and tuple(semantic_map.shape[2:]) != tuple(shape):
            raise ValueError('semantic map %s is %dx%d but the %s image is %dx%d: resize the map '
                             'to its image' % ((name,) + semantic_map.shape[:1:-1]
                                               + (side,) + tuple(shape[::-1])))
    if content_map.shape[1] != style_map.shape[1]:
        raise ValueError('semantic maps %s (%d channels) and %s (%d channels) must have the same '
                         'number of channels' % (content_name, content_map.shape[1],
                                                 style_name, style_map.shape[1]))


def resize_map(semantic_map, size, size_rule='width'):
    """Resizes a map to the synthesis size the way its image is resized.

    - ``'width'`` (dsanno): Pillow's bilinear filter on 8-bit values
      (:func:`chainer_mrf.image.resize_pil`), three channels at a time; the map is rounded to
      1/255 first, which leaves a map read from an image file exactly as it was.
    - ``'max_size'`` (the authors): Torch's bilinear rule in float
      (:func:`chainer_mrf.image.resize_bilinear`).

    Args:
        semantic_map (numpy.ndarray): the map, values in [0, 1].
        size (tuple of int): ``(width, height)`` of the result.
        size_rule (str): the preset's ``size_rule``, ``'width'``, ``'max_size'`` or
            ``'original'`` (as ``'width'``). Default: ``'width'``.

    Returns:
        numpy.ndarray: the float32 map at ``size``.

    Raises:
        ValueError: an unknown ``size_rule``, or a size that is not positive.

    Shape:
        semantic_map: (1, N, H, W). Output: (1, N, size[1], size[0]).
    """
    if size_rule == 'max_size':
        return image.resize_bilinear(semantic_map, size)
    if size_rule not in ('width', 'original'):  # Pillow's images, as inputs resizes them
        raise ValueError('size_rule must be one of %s, got %r'
                         % (', '.join(image.SIZE_RULES), size_rule))
    channels = semantic_map.shape[1]
    levels = numpy.rint(numpy.clip(semantic_map[0], 0, 1) * 255).astype(numpy.uint8)
    # resize_pil takes RGB: pad the channels to a multiple of three with zeros.
    levels = numpy.concatenate(
        [levels, numpy.zeros((-channels % 3,) + levels.shape[1:], numpy.uint8)])
    resized = [image.resize_pil(levels[i:i + 3].transpose(1, 2, 0), size)
               for i in range(0, len(levels), 3)]
    stacked = numpy.concatenate(resized, axis=2).transpose(2, 0, 1)[None, :channels]
    return (stacked / numpy.float32(255)).astype(numpy.float32)


def downsample_map(semantic_map, shape):
    """A map at a feature layer's resolution, by area averaging.

    Each feature pixel of a layer behind k poolings summarises about a 2^k square of pixels; the
    area average (:func:`chainer_mrf.image.resize_bilinear`, which averages when it shrinks)
    gives it the share of each region in its square, as neural-doodle's average pooling of the
    map does. Point sampling (plain bilinear) would read 2 of every 8 pixels at relu4 and could
    drop a thin region. Taking the target size from the feature map, rather than pooling k times,
    fits VGG's ceil-mode pooling sizes whatever they are; go from the full-size map at every
    level, so coarse levels lose nothing to an earlier subsampling.

    Args:
        semantic_map (array): the map, NumPy or CuPy.
        shape (tuple of int): (H, W) of the feature map, e.g. ``feature.shape[2:]``.

    Returns:
        array: the float32 map at ``shape``, of ``semantic_map``'s array module.

    Shape:
        semantic_map: (1, N, H, W). Output: (1, N, shape[0], shape[1]).

    Examples:
        >>> halves = numpy.zeros((1, 1, 4, 4), numpy.float32); halves[..., 2:] = 1
        >>> downsample_map(halves, (2, 2))[0, 0].tolist()
        [[0.0, 1.0], [0.0, 1.0]]
    """
    return image.resize_bilinear(semantic_map.astype(numpy.float32, copy=False),
                                 (shape[1], shape[0]))


def append_map(features, semantic_map, semantic_weight):
    """Features with ``semantic_weight * map`` appended as extra channels, for the matching only.

    Extract patches from the result (content map) and from the style (style map), build the bank
    and match as usual. Patches are flattened channel first (:mod:`chainer_mrf.patches`), so the
    first ``C * ksize**2`` entries of a matched patch are its features: compare only those in
    the loss.

    Args:
        features (chainer.Variable or array): a feature map, NumPy or CuPy; its data is used
            (no gradient flows).
        semantic_map (array): the map at the features' resolution (:func:`downsample_map`),
            same array module.
        semantic_weight (float): the map's scale against the features, > 0. neural-doodle
            defaults to 10 but scales its maps to 0-255 and normalises each part separately, so
            its value does not carry over; a preset sets it.

    Returns:
        array: float32, the feature channels then the map channels.

    Raises:
        ValueError: the map is not at the features' batch size and (H, W), the two are on
            different array modules, or ``semantic_weight`` is not positive.

    Shape:
        features: (1, C, H, W). semantic_map: (1, N, H, W). Output: (1, C + N, H, W).
    """
    features = chainer.as_array(features)
    xp = backend.get_array_module(features)
    if backend.get_array_module(semantic_map) is not xp:
        raise ValueError('the features and the semantic map are on different devices')
    if (semantic_map.shape[0], semantic_map.shape[2:]) != (features.shape[0], features.shape[2:]):
        raise ValueError('a semantic map of shape %s does not fit features of shape %s '
                         '(downsample_map it first)' % (semantic_map.shape, features.shape))
    if not semantic_weight > 0:
        raise ValueError('semantic_weight must be > 0, got %r' % (semantic_weight,))
    weighted = semantic_map.astype(numpy.float32, copy=False) * numpy.float32(semantic_weight)
    return xp.concatenate([features.astype(numpy.float32, copy=False), weighted], axis=1)


MAJOR_SHARE = 1e-3
"""The share of a content map's pixels a colour must cover to be a region of its own in
:func:`paint_map`; rarer colours (anti-aliased edges, JPEG noise) join the nearest region."""
MATCH_DISTANCE = 0.2
"""How far (Euclidean, map values in [0, 1]) a style map's colour may lie from a content region's
and still count as that region in :func:`paint_map`."""


def paint_map(content_map, styles, style_maps):
    """The content map painted region by region in the style's colours: a doodle's start.

    A region is a colour of the content map covering at least :data:`MAJOR_SHARE` of it; every
    other content pixel joins the region of the nearest colour. Each region takes the mean of
    the style pixels (of every style image) whose map colour lies within
    :data:`MATCH_DISTANCE` of the region's, or, where none does, the mean of all style pixels.
    Started from it, a doodle's regions get the painting's structure at once; from noise they
    come out in place but flat (``docs/figures.md``).

    Args:
        content_map (numpy.ndarray): the content map at the output's size, values in [0, 1].
        styles (sequence of numpy.ndarray): the style images, in any per-pixel linear space
            (the network's preprocessed one, say): the result is in the same space.
        style_maps (sequence of numpy.ndarray): one map per style image, of its size.

    Returns:
        numpy.ndarray: float32, the painted map, of ``content_map``'s (H, W).

    Raises:
        ValueError: as many maps as style images not given, a map not of its image's size, or
            channel counts that differ.

    Shape:
        content_map: (1, N, H, W). styles[i]: (1, C, h_i, w_i). style_maps[i]: (1, N, h_i, w_i).
        Output: (1, C, H, W).

    Examples:
        >>> halves = numpy.zeros((1, 1, 2, 2), numpy.float32); halves[..., 1] = 1
        >>> style = numpy.array([[[[10., 20.]]]], numpy.float32)
        >>> paint_map(halves, [style], [numpy.array([[[[0., 1.]]]], numpy.float32)])[0, 0]
        array([[10., 20.],
               [10., 20.]], dtype=float32)
    """
    if len(styles) != len(style_maps):
        raise ValueError('paint_map needs one map per style image, got %d maps for %d images'
                         % (len(style_maps), len(styles)))
    channels = content_map.shape[1]
    for style, style_map in zip(styles, style_maps):
        if style_map.shape[1] != channels or style_map.shape[2:] != style.shape[2:]:
            raise ValueError('a style map of shape %s does not fit its image of shape %s and '
                             'the content map of shape %s' % (style_map.shape, style.shape,
                                                              content_map.shape))
    pixels = content_map[0].reshape(channels, -1).T
    colours, counts = numpy.unique(numpy.rint(pixels * 255).astype(numpy.uint8), axis=0,
                                   return_counts=True)
    major = colours[counts >= MAJOR_SHARE * len(pixels)]
    regions = (major if len(major) else colours).astype(numpy.float32) / 255
    style_pixels = numpy.concatenate([m[0].reshape(channels, -1).T for m in style_maps])
    style_values = numpy.concatenate([s[0].reshape(s.shape[1], -1).T for s in styles])
    region_of_style, distance = _nearest(style_pixels, regions)
    fallback = style_values.mean(axis=0)
    paints = numpy.empty((len(regions), style_values.shape[1]), numpy.float32)
    for k in range(len(regions)):
        members = (region_of_style == k) & (distance <= MATCH_DISTANCE)
        paints[k] = style_values[members].mean(axis=0) if members.any() else fallback
    region_of_content, _ = _nearest(pixels, regions)
    painted = paints[region_of_content].T.reshape((1, -1) + content_map.shape[2:])
    return numpy.ascontiguousarray(painted)


def _nearest(pixels, regions):
    """The nearest of ``regions`` (K, N) to each of ``pixels`` (P, N), and its distance; one
    region at a time, so that memory stays O(P)."""
    best = numpy.full(len(pixels), numpy.inf, numpy.float32)
    index = numpy.zeros(len(pixels), numpy.intp)
    for k, region in enumerate(regions):
        distance = ((pixels - region) ** 2).sum(axis=1)
        closer = distance < best
        best[closer] = distance[closer]
        index[closer] = k
    return index, numpy.sqrt(best)
