"""The authors' rotated and scaled copies of the style image, whose patches form the style bank.

CNNMRF does not sample style patches from the style image alone: at every pyramid level it builds
(2R+1)(2S+1) copies of the level's style image (``transfer_CNNMRF_wrapper.lua``, ``build_mrf``):

.. code-block:: text

    for r = -R..R:                                  rotations outer
        alpha = r * pi/24                           7.5 degrees a step, in radians
        box = computeBB(W, H, alpha)                mylib/helper.lua
        rotated = image.rotate(style, alpha, 'bilinear')[rows box.y, columns box.x]
        for s = -S..S:                              scales inner
            longer = floor(max(h, w) * torch.pow(1.05, s))
            copy = image.scale(rotated, longer, 'bilinear')

``style`` is the level's preprocessed style image (Caffe space: BGR, mean subtracted, resized to
the level), so the rotation's uncovered corners are 0, the mean colour. Torch's ``image.rotate``
turns the picture counterclockwise as displayed (row 0 at the top) for a positive angle, like
``numpy.rot90``. This module reproduces each step: :func:`crop_box` (``computeBB``),
:func:`rotate_bilinear` (torch/image ``rotateBilinear``) and :func:`style_copies` (the loops).

Details that differ from a plain reading of the method (``docs/algorithm.md``, "Where this
project departs from the originals, and why"):

- The box is not mirror-symmetric in the angle: for -alpha the construction intersects other
  edges, so boxes for +alpha and -alpha differ by a pixel (384 x 298: columns 14-369 and rows
  24-273 at +7.5 degrees, 15-368 and 25-272 at -7.5 degrees).
- ``computeBB`` only floors. Where its box leaves the image (wide images at larger angles, tiny
  images), Torch's indexing fails (index 0 or past the end) or wraps a negative index around to
  the last column. Here the box is clipped to the image instead (the same section of
  ``docs/algorithm.md``), which changes nothing wherever the authors' code works; a box that
  collapses raises ValueError.
- The box is centred on (W/2, H/2) in 1-based pixels, the rotation on ((W+1)/2, (H+1)/2):
  half a pixel apart, one reason the margins differ by a pixel.
- ``torch.pow(1.05, s)`` runs in the default tensor type, single precision, so the factor is
  float32(1.05 ** s) computed from float32(1.05): a longer side of 380 becomes 398 at s = 1, not
  399.
"""
import math
import numbers

import numpy
from chainer import backend

from chainer_mrf import image

#: Largest rotation (degrees, exclusive) for which the authors' box construction is used: from
#: there on its box leaves even a square image (100 x 100 at 45 degrees: x from -0.41), and at
#: 90 degrees its lines are parallel.
MAX_ANGLE = 45.0


def crop_box(width, height, angle_degrees):
    """The authors' crop box (``computeBB``) for a copy rotated by ``angle_degrees``.

    In 1-based pixel coordinates with centre (x0, y0) = (W/2, H/2), the rotation takes a point
    to r(x, y) = (x0 + (x-x0) cos a + (y-y0) sin a, y0 - (x-x0) sin a + (y-y0) cos a). For a > 0,
    P is where the rotated top edge r(1,1)-r(W,1) crosses the line x = 1, Q where the horizontal
    through P crosses the rotated right edge r(W,1)-r(W,H), and the box spans x from W - Qx to
    Qx, y from Qy to H - Qy. For a < 0, P lies on x = W, Q on the rotated left edge
    r(1,1)-r(1,H), and x spans Qx to W - Qx. For a = 0 the box is the whole image. Each bound
    is floored, then clipped to the image (a difference from the authors' code, which fails or
    wraps around there; see the module's notes).

    The arithmetic follows ``computeBB`` operation by operation in double precision, so the
    floors agree with the authors' even where a bound is within rounding of an integer.

    Args:
        width (int): the image's width W.
        height (int): the image's height H.
        angle_degrees (float): the rotation, counterclockwise as displayed; the authors use
            r * 7.5 for r = -R..R. Must lie strictly between -45 and 45.

    Returns:
        tuple of int: ``(x_min, x_max, y_min, y_max)``, 1-based and inclusive as Torch indexes:
        the crop keeps columns ``x_min..x_max`` and rows ``y_min..y_max``. In 0-based NumPy
        terms, ``array[..., y_min - 1:y_max, x_min - 1:x_max]`` (see :func:`crop_slices`).

    Raises:
        ValueError: a size is not a positive integer; the angle is not a finite number in
            (-45, 45); or the box collapses for this image size and angle (an image 1 pixel wide
            or high at a non-zero angle, or one so small or elongated that the box is empty).

    Examples:
        >>> crop_box(384, 298, 7.5)
        (14, 369, 24, 273)
        >>> crop_box(384, 298, -7.5)
        (15, 368, 25, 272)
        >>> crop_box(5, 4, 0)
        (1, 5, 1, 4)
    """
    width, height = _sizes(width, height)
    return _crop_box(width, height, math.radians(_angle(angle_degrees)), angle_degrees)


def crop_slices(width, height, angle_degrees):
    """:func:`crop_box` as 0-based slices: ``array[..., rows, cols]`` is the crop.

    Args and Raises: as :func:`crop_box`.

    Returns:
        tuple of slice: ``(rows, cols)``, i.e. ``slice(y_min - 1, y_max)`` and
        ``slice(x_min - 1, x_max)``.

    Examples:
        >>> crop_slices(384, 298, 7.5)
        (slice(23, 273, None), slice(13, 369, None))
    """
    return _as_slices(crop_box(width, height, angle_degrees))


def rotate_bilinear(array, angle_degrees):
    """Rotates images about their centre as Torch's ``image.rotate(src, theta, 'bilinear')``.

    torch/image ``generic/image.c``, ``rotateBilinear`` (since torch/image PR #102, 2015), for a
    destination pixel (i, j) (column, row, 0-based) with centre (xc, yc) = ((W-1)/2, (H-1)/2):

    - source position x = cos t (i - xc) - sin t (j - yc) + xc,
      y = cos t (j - yc) + sin t (i - xc) + yc, where t is the angle as a C float; a positive
      angle turns the picture counterclockwise as displayed (90 degrees is ``numpy.rot90``);
    - bilinear interpolation between the four pixels around (x, y);
    - edges: a sample less than half a pixel outside the image takes the nearest edge pixels
      (so angle 0 is exactly the identity); further out the pixel is 0.

    Precision is Torch's for a FloatTensor: products in double, positions and weights rounded to
    float32, the interpolation in double, rounded to float32. A float64 input keeps float64
    positions and result (Torch rounds a DoubleTensor's result through a C float).

    Args:
        array (numpy.ndarray or cupy.ndarray): floating-point images, e.g. (C, H, W). Rotated on
            the array's own device; nothing is copied to the host.
        angle_degrees (float): the rotation, counterclockwise as displayed.

    Returns:
        numpy.ndarray or cupy.ndarray: the rotated images, same shape and dtype.

    Raises:
        ValueError: ``array`` has fewer than two axes, no pixels or an integer dtype, or the
            angle is not a finite number.

    Shape:
        Input: (..., H, W). Output: (..., H, W).

    Examples:
        >>> rotate_bilinear(numpy.array([[[1.0, 2.0], [3.0, 4.0]]]), 90).round(6).tolist()
        [[[2.0, 4.0], [1.0, 3.0]]]
    """
    if array.ndim < 2 or 0 in array.shape or array.dtype.kind != 'f':
        raise ValueError('rotate_bilinear takes a floating-point array of shape (..., H, W) '
                         'with pixels; got %s of shape %s' % (array.dtype, array.shape))
    return _rotate(array, math.radians(_finite(angle_degrees, 'angle_degrees')))


def style_copies(style, num_rotation=1, num_scale=1, rotation_step=7.5, scale_step=1.05):
    """The authors' (2R+1)(2S+1) rotated, cropped and rescaled copies of a style image.

    Copy ``(r + R) * (2S + 1) + (s + S)`` (rotations outer, scales inner, as in ``build_mrf``)
    is the style rotated by ``r * rotation_step`` degrees with :func:`rotate_bilinear`, cropped to
    :func:`crop_box`, then resized with :func:`chainer_mrf.image.resize_bilinear` so its longer
    side is ``floor(longer * f)`` with f = float32(float32(scale_step) ** s) (``torch.pow`` in
    single precision) and its other side ``side * new_longer // longer`` (Torch's
    ``image.scale(img, size)``, :func:`chainer_mrf.image.cnnmrf_size`). The copy with r = s = 0
    is the style itself.

    Args:
        style (numpy.ndarray or cupy.ndarray): the preprocessed style image of one pyramid level
            (Caffe space, so the rotation's uncovered 0 is the mean colour). Converted to
            float32; the copies stay on its device.
        num_rotation (int): R, rotations on each side of 0. Defaults to 1 (``run_trans.lua``
            test 1; the face tests use 3).
        num_scale (int): S, scales on each side of 1. Defaults to 1.
        rotation_step (float): degrees between rotations. Defaults to 7.5 (pi/24).
        scale_step (float): factor between scales. Defaults to 1.05.

    Returns:
        list of numpy.ndarray or cupy.ndarray: (2R+1)(2S+1) float32 arrays (C, H_i, W_i), each a
        new C-contiguous array.

    Raises:
        ValueError: ``style`` is not a floating-point (C, H, W) array with pixels; a count is
            negative or not an integer; a step is not a positive finite number;
            ``num_rotation * rotation_step`` is 45 degrees or more; a crop box collapses
            (see :func:`crop_box`) or a copy would have a side of 0 pixels.

    Shape:
        style: (C, H, W). Copies: (C, H_i, W_i).

    Examples:
        >>> copies = style_copies(numpy.zeros((3, 200, 256), numpy.float32))
        >>> [c.shape[1:] for c in copies]  # doctest: +NORMALIZE_WHITESPACE
        [(159, 224), (168, 236), (175, 247), (189, 243), (200, 256), (209, 268),
         (159, 226), (168, 238), (175, 249)]
    """
    if style.ndim != 3 or 0 in style.shape or style.dtype.kind != 'f':
        raise ValueError('style_copies takes a floating-point style image of shape (C, H, W) '
                         'with pixels; got %s of shape %s' % (style.dtype, style.shape))
    height, width = style.shape[1:]
    plan = copy_sizes(width, height, num_rotation, num_scale, rotation_step, scale_step)
    style = style.astype(numpy.float32, copy=False)
    step = math.radians(rotation_step)  # math.pi / 24 exactly for 7.5, as the authors' constant
    copies = []
    turned = None
    for r, rows, cols, size in plan:
        if turned is None or turned[0] != r:  # rotations outer: each is turned once
            turned = r, _rotate(style, step * r)
        copies.append(image.resize_bilinear(turned[1][:, rows, cols], size))
    return copies


def copy_sizes(width, height, num_rotation=1, num_scale=1, rotation_step=7.5, scale_step=1.05):
    """Where each copy of :func:`style_copies` comes from and its size, without any pixel: what
    a memory estimate (:mod:`chainer_mrf.memory`) needs to know of the copies.

    Args:
        width (int): the style's width.
        height (int): the style's height.
        num_rotation (int): R, as :func:`style_copies`. Default: 1.
        num_scale (int): S, as :func:`style_copies`. Default: 1.
        rotation_step (float): degrees between rotations. Default: 7.5.
        scale_step (float): factor between scales. Default: 1.05.

    Returns:
        list of tuple: ``(r, rows, cols, size)`` for each copy in :func:`style_copies`' order:
        the rotation index (the style is turned by ``r * rotation_step`` degrees), the row and
        column slices of the crop of the turned style, and the copy's (width, height).

    Raises:
        ValueError: as :func:`style_copies`, for the counts, the steps, the angle, a crop box
            that collapses or a copy with a side of 0 pixels.

    Examples:
        >>> [size for *_, size in copy_sizes(256, 200, num_rotation=0)]
        [(243, 189), (256, 200), (268, 209)]
    """
    width, height = _sizes(width, height)
    num_rotation = _count(num_rotation, 'num_rotation')
    num_scale = _count(num_scale, 'num_scale')
    rotation_step = _positive_step(rotation_step, 'rotation_step')
    scale_step = _positive_step(scale_step, 'scale_step')
    if num_rotation * rotation_step >= MAX_ANGLE:
        raise ValueError('num_rotation * rotation_step must stay below %g degrees (the authors\' '
                         'crop box is not defined beyond); got %d x %g'
                         % (MAX_ANGLE, num_rotation, rotation_step))
    step = math.radians(rotation_step)
    plan = []
    for r in range(-num_rotation, num_rotation + 1):
        rows, cols = _as_slices(_crop_box(width, height, step * r, rotation_step * r))
        crop_height, crop_width = rows.stop - rows.start, cols.stop - cols.start
        for s in range(-num_scale, num_scale + 1):
            longer = math.floor(max(crop_height, crop_width) * _torch_pow(scale_step, s))
            if longer < 1:
                raise ValueError('a %d x %d crop scaled by %g ** %d has no pixels'
                                 % (crop_width, crop_height, scale_step, s))
            plan.append((r, rows, cols, image.cnnmrf_size(crop_width, crop_height, longer)))
    return plan


def _crop_box(width, height, alpha, angle_degrees):
    """:func:`crop_box` for validated sizes and an angle ``alpha`` in radians (named in errors by
    ``angle_degrees``)."""
    if alpha == 0:
        return 1, width, 1, height
    if width < 2 or height < 2:
        raise ValueError('cannot crop a %d x %d image rotated by %g degrees: its edges are '
                         'points, the crop box is not defined' % (width, height, angle_degrees))
    x0, y0 = width / 2, height / 2
    cos, sin = math.cos(alpha), math.sin(alpha)

    def turned(x, y):
        # r(p), with computeBB's order of operations
        return (x0 + (x - x0) * cos + (y - y0) * sin, y0 - (x - x0) * sin + (y - y0) * cos)

    top_left, top_right = turned(1, 1), turned(width, 1)
    if alpha > 0:
        p = _intersection((1, 1), (1, height), top_left, top_right)
        q = _intersection(p, (p[0] + 1, p[1]), top_right, turned(width, height))
        x_min, x_max = width - q[0], q[0]
    else:
        p = _intersection((width, 1), (width, height), top_left, top_right)
        q = _intersection(p, (p[0] - 1, p[1]), top_left, turned(1, height))
        x_min, x_max = q[0], width - q[0]
    y_min, y_max = q[1], height - q[1]
    bounds = (x_min, x_max, y_min, y_max)
    if x_min <= x_max and y_min <= y_max:
        box = (max(math.floor(x_min), 1), min(math.floor(x_max), width),
               max(math.floor(y_min), 1), min(math.floor(y_max), height))
        if box[0] <= box[1] and box[2] <= box[3]:
            return box
    raise ValueError('the crop box of a %d x %d image rotated by %g degrees collapses (x from %g '
                     'to %g, y from %g to %g): the image is too small or too elongated for this '
                     'rotation' % ((width, height, angle_degrees) + bounds))


def _intersection(a, b, c, d):
    """Where line a-b meets line c-d (Cramer's rule, in computeBB's order of operations).

    The lines are never parallel here: both sides are at least 2 and the angle is below 45 degrees.
    """
    ab = a[0] * b[1] - a[1] * b[0]
    cd = c[0] * d[1] - c[1] * d[0]
    denominator = (a[0] - b[0]) * (c[1] - d[1]) - (a[1] - b[1]) * (c[0] - d[0])
    return ((ab * (c[0] - d[0]) - (a[0] - b[0]) * cd) / denominator,
            (ab * (c[1] - d[1]) - (a[1] - b[1]) * cd) / denominator)


def _as_slices(box):
    """1-based inclusive ``(x_min, x_max, y_min, y_max)`` -> 0-based ``(rows, cols)`` slices."""
    x_min, x_max, y_min, y_max = box
    return slice(y_min - 1, y_max), slice(x_min - 1, x_max)


def _rotate(array, alpha):
    """:func:`rotate_bilinear` for a validated array and an angle in radians."""
    xp = backend.get_array_module(array)
    real = numpy.float64 if array.dtype == numpy.float64 else numpy.float32  # Torch's `real`
    theta = float(numpy.float32(alpha))  # rotateBilinear receives a C float
    cos, sin = math.cos(theta), math.sin(theta)
    height, width = array.shape[-2:]
    x_centre, y_centre = real((width - 1) / 2), real((height - 1) / 2)
    dx = (xp.arange(width, dtype=real) - x_centre).astype(numpy.float64)
    dy = (xp.arange(height, dtype=real) - y_centre).astype(numpy.float64)[:, None]
    # Offsets from the centre are computed in double and stored in `real`, as in C.
    x = (cos * dx - sin * dy).astype(real) + x_centre
    y = (cos * dy + sin * dx).astype(real) + y_centre
    x_floor, y_floor = xp.floor(x), xp.floor(y)
    x_fraction, y_fraction = x - x_floor, y - y_floor  # in `real`, as Torch's weights
    x0, x1, x_covered = _neighbours(xp, x_floor.astype(numpy.int64), x_fraction, width)
    y0, y1, y_covered = _neighbours(xp, y_floor.astype(numpy.int64), y_fraction, height)
    wx, wy = x_fraction.astype(numpy.float64), y_fraction.astype(numpy.float64)
    flat = array.reshape(array.shape[:-2] + (height * width,))

    def at(row, col):
        return xp.take(flat, row * width + col, axis=-1)

    value = ((1 - wx) * (1 - wy) * at(y0, x0) + wx * (1 - wy) * at(y0, x1)
             + (1 - wx) * wy * at(y1, x0) + wx * wy * at(y1, x1))
    return xp.where(x_covered & y_covered, value, 0).astype(array.dtype)


def _neighbours(xp, low, weight, size):
    """Torch's edge rule along one axis: the two source indices (clipped, so every gather is in
    range) and where the sample is covered.

    A sample less than half a pixel beyond the first or last pixel takes that pixel for both
    neighbours; one further out is not covered (0).
    """
    high = low + 1
    keep_last = (high == size) & (weight < 0.5)
    keep_first = (low == -1) & (weight > 0.5)
    covered = ((high < size) | keep_last) & ((low >= 0) | keep_first)
    high = xp.where(keep_last, low, high)
    low = xp.where(keep_first, high, low)
    return xp.clip(low, 0, size - 1), xp.clip(high, 0, size - 1), covered


def _torch_pow(base, exponent):
    """``torch.pow(base, exponent)`` on numbers with the FloatTensor default: C ``pow`` of two
    floats, returned as a float."""
    return float(numpy.float32(math.pow(float(numpy.float32(base)), exponent)))


def _sizes(width, height):
    for name, value in (('width', width), ('height', height)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError('%s must be a positive integer, got %r' % (name, value))
    return int(width), int(height)


def _finite(value, name):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value)):
        raise ValueError('%s must be a finite number, got %r' % (name, value))
    return float(value)


def _angle(angle_degrees):
    angle = _finite(angle_degrees, 'angle_degrees')
    if abs(angle) >= MAX_ANGLE:
        raise ValueError('angle_degrees must lie strictly between -%g and %g (the authors\' crop '
                         'box is not defined beyond), got %g' % (MAX_ANGLE, MAX_ANGLE, angle))
    return angle


def _count(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError('%s must be a non-negative integer, got %r' % (name, value))
    return int(value)


def _positive_step(value, name):
    value = _finite(value, name)
    if value <= 0:
        raise ValueError('%s must be positive, got %g' % (name, value))
    return value
