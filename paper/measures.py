"""Measures of results for ``docs/figures.md``: how alike two images are, how far apart their
colours are, and after how many iterations a run's energy settled.

- :func:`ms_ssim`: multi-scale structural similarity (Wang, Simoncelli and Bovik 2003) on
  luminance, to find which of our results is closest to each of the authors' reference images.
- :func:`colour_distance`: the sliced Wasserstein-1 distance between two images' colours in
  CIELAB (:func:`srgb_to_lab`, :func:`sliced_wasserstein`), to say how far a method moves the
  colours.
- :func:`settled`: the iterations a level needed to settle.

Like ``paper/figures.py`` this module is no part of the library and is not installed with it;
it needs only NumPy, SciPy and Pillow.
"""
import numpy
import scipy.ndimage
from PIL import Image

#: The exponents of the five scales of MS-SSIM, finest first (Wang et al. 2003, as in their
#: reference code ``msssim.m``). They sum to 1.0001, and are used as published.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

# SSIM's constants for 8-bit images: C1 = (K1 L)^2, C2 = (K2 L)^2 with K1 = 0.01, K2 = 0.03,
# L = 255.
_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2
_SIGMA = 1.5
# SciPy's Gaussian reaches int(truncate * sigma + 0.5) = 5 pixels each way: the 11-tap window.
_RADIUS = 5
_TRUNCATE = 3.5
_WINDOW = 2 * _RADIUS + 1

# sRGB (D65) linear RGB to CIE XYZ, and the D65 white's XYZ (IEC 61966-2-1, as Bruce
# Lindbloom lists them).
_RGB_TO_XYZ = numpy.array([[0.4124564, 0.3575761, 0.1804375],
                           [0.2126729, 0.7151522, 0.0721750],
                           [0.0193339, 0.1191920, 0.9503041]])
_WHITE = numpy.array([0.95047, 1.0, 1.08883])


def _fibonacci_directions(count):
    """``count`` unit vectors spread evenly over the sphere by the golden-angle spiral; the
    first component runs through ``1 - (2i + 1) / count``."""
    i = numpy.arange(count)
    first = 1.0 - (2.0 * i + 1.0) / count
    radius = numpy.sqrt(1.0 - first ** 2)
    angle = i * numpy.pi * (3.0 - numpy.sqrt(5.0))
    return numpy.stack([first, radius * numpy.cos(angle), radius * numpy.sin(angle)], axis=1)


#: The 64 unit directions of :func:`sliced_wasserstein`, as (L*, a*, b*) components: a fixed
#: golden-angle spiral, the same on every machine. Their L* components are the odd multiples
#: of 1/64 from -63/64 to 63/64, so the mean of their absolute values is exactly 1/2.
DIRECTIONS = _fibonacci_directions(64)


def ms_ssim(a, b):
    """Multi-scale structural similarity of two images' luminance (Wang, Simoncelli and Bovik,
    "Multi-scale structural similarity for image quality assessment", 2003).

    Each image becomes its luminance, ITU-R BT.601 ``Y = 0.299 R + 0.587 G + 0.114 B`` on the
    0-255 scale (a 2-D array is taken as luminance already). If the sizes differ, ``b``'s
    luminance is resized to ``a``'s with Pillow's bicubic filter first: the authors' reference
    images may be a pixel off our results' sizes.

    At each scale ``j`` the means, variances and covariance are taken over an 11 x 11 Gaussian
    window (sigma 1.5, normalised to sum 1), at every position where the whole window lies
    inside the image (the "valid" convolution of Wang's reference code: no border is padded,
    each side loses 5 pixels). With ``C1 = (0.01 * 255)^2`` and ``C2 = (0.03 * 255)^2``::

        cs_j   = mean over positions of (2 s_ab + C2) / (s_a^2 + s_b^2 + C2)
        ssim_M = mean over positions of (2 m_a m_b + C1) (2 s_ab + C2)
                                         / ((m_a^2 + m_b^2 + C1) (s_a^2 + s_b^2 + C2))
        MS-SSIM = ssim_M^w_M * prod over j < M of cs_j^w_j

    where ``M`` is the coarsest scale, so that luminance is compared there only. Between
    scales both images are averaged over 2 x 2 blocks (an odd last row or column is averaged
    with itself, as the reference code's symmetric border does). There are 5 scales with the
    exponents :data:`MS_SSIM_WEIGHTS` when the shorter side is at least 176 pixels (the
    coarsest scale must hold one 11 x 11 window); a smaller image gets as many scales as fit,
    with the first exponents renormalised to sum 1, so that an image under 22 pixels has one
    scale and its MS-SSIM is its plain SSIM. A term below 0 (anticorrelated structure) counts
    as 0, as in TensorFlow's ``tf.image.ssim_multiscale``, since a negative number has no real
    fractional power: the result lies in [0, 1].

    Args:
        a (numpy.ndarray): uint8 RGB, (H, W, 3), or luminance, a real (H, W) array on 0-255.
        b (numpy.ndarray): likewise, of any size; resized to ``a``'s if it differs.

    Returns:
        float: 1 for identical images, less the less alike they are; symmetric in ``a`` and
        ``b`` when they have the same size.

    Raises:
        ValueError: if an image is not such an array, holds a non-finite value, or has a side
        under 11 pixels.

    Examples:
        >>> flat = numpy.full((16, 16, 3), 100, numpy.uint8)
        >>> ms_ssim(flat, flat)
        1.0
        >>> round(ms_ssim(flat, flat + numpy.uint8(20)), 4)  # constant: luminance term alone
        0.9836
    """
    ya, yb = _luminance(a, 'a'), _luminance(b, 'b')
    if yb.shape != ya.shape:
        resized = Image.fromarray(yb.astype(numpy.float32)).resize(
            (ya.shape[1], ya.shape[0]), Image.Resampling.BICUBIC)
        yb = numpy.asarray(resized, numpy.float64)
    side = min(ya.shape)
    if side < _WINDOW:
        raise ValueError('ms_ssim needs images of at least %d x %d pixels, got %s'
                         % (_WINDOW, _WINDOW, 'x'.join(map(str, ya.shape))))
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and -(-side // 2) >= _WINDOW:
        side = -(-side // 2)
        scales += 1
    terms = []
    for scale in range(scales):
        ssim, cs = _windowed(ya, yb)
        terms.append(cs)
        if scale < scales - 1:
            ya, yb = _halve(ya), _halve(yb)
    terms[-1] = ssim
    weights = numpy.array(MS_SSIM_WEIGHTS[:scales])
    if scales < len(MS_SSIM_WEIGHTS):
        weights /= weights.sum()
    return float(numpy.prod(numpy.maximum(terms, 0.0) ** weights))


def _luminance(image, name):
    """BT.601 luminance of uint8 RGB (H, W, 3) as float64 on 0-255, or a real 2-D array as
    float64; ``name`` is the argument's, for the message."""
    array = numpy.asarray(image)
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == numpy.uint8:
        return array.astype(numpy.float64) @ numpy.array([0.299, 0.587, 0.114])
    if array.ndim == 2 and (numpy.issubdtype(array.dtype, numpy.integer)
                            or numpy.issubdtype(array.dtype, numpy.floating)):
        array = array.astype(numpy.float64)
        if not numpy.isfinite(array).all():
            raise ValueError('%s holds a non-finite value' % name)
        return array
    raise ValueError('%s must be uint8 RGB (H, W, 3) or a real luminance array (H, W), got '
                     '%s of shape %s' % (name, array.dtype, array.shape))


def _windowed(a, b):
    """SSIM and the contrast-structure term, each averaged over the positions of a whole
    11 x 11 Gaussian window."""
    def blur(values):
        # Filtered in full, then cut to the positions whose window lies inside the image, so
        # that the border mode (SciPy's default, 'reflect') never enters the result.
        full = scipy.ndimage.gaussian_filter(values, _SIGMA, truncate=_TRUNCATE)
        return full[_RADIUS:-_RADIUS, _RADIUS:-_RADIUS]

    mean_a, mean_b = blur(a), blur(b)
    var_a = blur(a * a) - mean_a ** 2
    var_b = blur(b * b) - mean_b ** 2
    covariance = blur(a * b) - mean_a * mean_b
    luminance = (2 * mean_a * mean_b + _C1) / (mean_a ** 2 + mean_b ** 2 + _C1)
    cs = (2 * covariance + _C2) / (var_a + var_b + _C2)
    return (luminance * cs).mean(), cs.mean()


def _halve(values):
    """2 x 2 block means; an odd last row or column is repeated, i.e. averaged with itself."""
    height, width = values.shape
    values = numpy.pad(values, ((0, height % 2), (0, width % 2)), mode='edge')
    return values.reshape(values.shape[0] // 2, 2, values.shape[1] // 2, 2).mean(axis=(1, 3))


def srgb_to_lab(rgb):
    """CIELAB (D65) of 8-bit sRGB colours, by the standard formulas.

    ``c = v / 255`` is linearised (``c / 12.92`` up to 0.04045, else
    ``((c + 0.055) / 1.055)^2.4``), taken to XYZ by the sRGB matrix and divided by the D65
    white (0.95047, 1, 1.08883); with ``f(t) = t^(1/3)`` above ``(6/29)^3`` and
    ``t / (3 (6/29)^2) + 4/29`` below, ``L* = 116 f(Y) - 16``, ``a* = 500 (f(X) - f(Y))``,
    ``b* = 200 (f(Y) - f(Z))``.

    Args:
        rgb (numpy.ndarray): uint8, any shape ending in 3 (a colour, a list, an image).

    Returns:
        numpy.ndarray: float64 (L*, a*, b*), the same shape.

    Raises:
        ValueError: if ``rgb`` is not uint8 with a last axis of 3.

    Shape:
        (..., 3) -> (..., 3).

    Examples:
        >>> srgb_to_lab(numpy.array([255, 0, 0], numpy.uint8)).round(2).tolist()
        [53.24, 80.09, 67.2]
    """
    rgb = numpy.asarray(rgb)
    if rgb.dtype != numpy.uint8 or rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise ValueError('srgb_to_lab needs uint8 colours with a last axis of 3, got %s of '
                         'shape %s' % (rgb.dtype, rgb.shape))
    c = rgb / 255.0
    linear = numpy.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    t = linear @ _RGB_TO_XYZ.T / _WHITE
    delta = 6.0 / 29.0
    f = numpy.where(t > delta ** 3, numpy.cbrt(t), t / (3 * delta ** 2) + 4.0 / 29.0)
    return numpy.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                        200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def sliced_wasserstein(x, y):
    """Sliced Wasserstein-1 distance between two sets of 3-D points, each point of a set
    weighing alike, over the 64 fixed :data:`DIRECTIONS`::

        SW(x, y) = 1/64 * sum over k of  integral from 0 to 1 of |F_xk^-1(q) - F_yk^-1(q)| dq

    where ``F_xk^-1`` is the quantile function (inverse cumulative distribution) of the
    projections ``d_k . x_i``. Each 1-D distance is exact, for any two set sizes ``n`` and
    ``m``: both quantile functions are steps, at multiples of ``1/n`` and ``1/m``, so the
    integral is a sum over the union of their steps (for ``n = m``, the mean absolute
    difference of the two sorted projections). Moving every point of a set by a vector ``v``
    moves it ``mean over k of |d_k . v|`` away, e.g. exactly ``t / 2`` for ``v = (t, 0, 0)``.

    Args:
        x (numpy.ndarray): the points, real (n, 3).
        y (numpy.ndarray): the points, real (m, 3).

    Returns:
        float: the distance, in the points' units; 0 for sets with the same distribution.

    Raises:
        ValueError: if a set is not a non-empty real (n, 3) array of finite values.

    Shape:
        (n, 3), (m, 3) -> scalar.

    Examples:
        >>> sliced_wasserstein(numpy.zeros((2, 3)), numpy.array([[10.0, 0, 0]]))
        5.0
    """
    x, y = _points(x, 'x'), _points(y, 'y')
    n, m = len(x), len(y)
    # The steps of both quantile functions, in units of 1/(n m): integers, so that equal
    # steps of the two merge exactly. On the interval ending at p, x's quantile is its
    # ((p - 1) // m)-th smallest projection and y's its ((p - 1) // n)-th.
    ends = numpy.union1d(numpy.arange(1, n + 1) * m, numpy.arange(1, m + 1) * n)
    widths = numpy.diff(ends, prepend=0) / (n * m)
    at_x, at_y = (ends - 1) // m, (ends - 1) // n
    sorted_x = numpy.sort(DIRECTIONS @ x.T, axis=1)
    sorted_y = numpy.sort(DIRECTIONS @ y.T, axis=1)
    # One direction at a time: all 64 at once would hold (n + m) x 64 differences, 120 MB
    # for two 384 x 298 images.
    return float(numpy.mean([widths @ numpy.abs(px[at_x] - py[at_y])
                             for px, py in zip(sorted_x, sorted_y)]))


def _points(points, name):
    """``points`` as float64 (n, 3), checked; ``name`` is the argument's, for the message."""
    array = numpy.asarray(points)
    if (array.ndim != 2 or array.shape[1] != 3 or len(array) == 0
            or not (numpy.issubdtype(array.dtype, numpy.integer)
                    or numpy.issubdtype(array.dtype, numpy.floating))):
        raise ValueError('%s must be a non-empty real (n, 3) array, got %s of shape %s'
                         % (name, array.dtype, array.shape))
    array = array.astype(numpy.float64)
    if not numpy.isfinite(array).all():
        raise ValueError('%s holds a non-finite value' % name)
    return array


def colour_distance(a, b):
    """How far apart two images' colours are: the sliced Wasserstein-1 distance between their
    pixels' CIELAB colours (:func:`srgb_to_lab`, :func:`sliced_wasserstein`).

    Only the colours' distribution counts, not where they lie: shuffling an image's pixels,
    or tiling it, leaves the distance to any other image unchanged, and the images may differ
    in size (each pixel weighs ``1 / (its image's pixel count)``). The unit is CIELAB's, that
    of Delta E*ab: a shift of every pixel's L* by ``t`` gives exactly ``t / 2`` (the mean
    ``|L*|`` component of :data:`DIRECTIONS`).

    Args:
        a (numpy.ndarray): uint8 RGB, (H, W, 3).
        b (numpy.ndarray): uint8 RGB, (H', W', 3), any size.

    Returns:
        float: 0 for images with the same colours, symmetric in ``a`` and ``b``.

    Raises:
        ValueError: if an image is not a non-empty uint8 (H, W, 3) array.

    Examples:
        >>> black = numpy.zeros((4, 4, 3), numpy.uint8)
        >>> colour_distance(black, black)
        0.0
        >>> round(colour_distance(black, black + numpy.uint8(255)), 4)  # L* from 0 to 100
        50.0
    """
    for name, rgb in (('a', a), ('b', b)):
        rgb = numpy.asarray(rgb)
        if rgb.dtype != numpy.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
            raise ValueError('%s must be a non-empty uint8 RGB image (H, W, 3), got %s of '
                             'shape %s' % (name, rgb.dtype, rgb.shape))
    return sliced_wasserstein(srgb_to_lab(a).reshape(-1, 3), srgb_to_lab(b).reshape(-1, 3))


def settled(energies, tolerance=0.01):
    """The iterations needed to settle: the 1-based step after which a level's energy stays
    within ``tolerance`` (relative) of its final value.

    That is the smallest ``i`` with ``E_j <= (1 + tolerance) E_final`` for every step
    ``j >= i``. Only an excess counts: a step below the final energy is settled.

    Args:
        energies (sequence of float): the energy after each step of one level, positive.
        tolerance (float): the relative excess allowed, at least 0. Default: 0.01.

    Returns:
        int: between 1 (settled from the first step) and ``len(energies)`` (only the last).

    Raises:
        ValueError: if ``energies`` is empty, not 1-D, or holds a value that is not finite
            and positive, or if ``tolerance`` is negative or not finite.

    Examples:
        >>> settled([10.0, 5.0, 1.05, 1.001, 1.0])
        4
        >>> settled([10.0, 5.0, 1.05, 1.001, 1.0], tolerance=0.1)
        3
    """
    values = numpy.asarray(energies, dtype=numpy.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError('energies must be a non-empty 1-D sequence, got shape %s'
                         % (values.shape,))
    if not (numpy.isfinite(values).all() and (values > 0).all()):
        raise ValueError('energies must be finite and positive')
    if not (numpy.isfinite(tolerance) and tolerance >= 0):
        raise ValueError('tolerance must be finite and at least 0, got %r' % (tolerance,))
    above = numpy.flatnonzero(values > (1.0 + tolerance) * values[-1])
    # The last step above the band is followed by the first that stays in it.
    return int(above[-1]) + 2 if len(above) else 1
