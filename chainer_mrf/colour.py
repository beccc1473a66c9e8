"""dsanno's three colour options, as pure functions on images (``docs/algorithm.md``, "Colour
options, semantic maps, several style images").

dsanno's ``chainer-neural-style`` offers them in ``run_mrf.py`` and implements them in
``src/util.py`` (the formulas), ``src/style_transfer_runner.py`` (``run``: what is done to the
inputs and outputs) and ``src/neural_style.py`` (``MRF``: what is done at each level and step):

- ``--match_color_histogram`` (:func:`match_color_histogram`): once, before anything else, the
  resized style is mapped affinely so that its colour mean and covariance are the content's.
- ``--luminance_only`` (:func:`luminance_only_inputs`, :func:`join_yiq`): once, content and style
  are replaced by their luminance Y in all three channels (the style's standardised to the
  content's mean and standard deviation) and the synthesis runs on that; every saved image takes
  its own Y and the content's I and Q.
- ``--keep_color`` (:func:`match_luminance`, :func:`luminance`): at each level the style is
  replaced by its luminance standardised to the content's, and the MRF features of the result
  come from VGG applied to ``luminance(x)``; the content term still compares ``x`` itself.

Every function works where dsanno's does: on images in the library's preprocessed space
(:func:`chainer_mrf.image.preprocess`: float32 (N, 3, H, W), BGR, the preset's mean subtracted,
values on the 0-255 scale), and none adds the mean back. Y, I and Q are linear and Y's
coefficients sum to 1, so on a mean-subtracted pixel they give the pixel's own Y, I, Q minus the
mean's: every formula here is that of the plain pixels, shifted by a constant.

Where dsanno's code breaks we do better, and say so at the function: a flat (constant-luminance)
image gives NaN in dsanno's standardisation and here a flat result; symmetric eigenvalue problems
are solved with ``eigh`` (dsanno's ``eig`` may return non-orthogonal eigenvectors for a repeated
eigenvalue, as a grayscale image's covariance has) and a singular content covariance gives no
NaN; :func:`join_yiq` refuses chroma of another size with a clear error (dsanno joins the
full-size chroma at every save, which fails inside NumPy at a coarse level).
"""
import chainer
import chainer.functions as F
import numpy
from chainer import backend

#: Y of a (B, G, R) pixel, dsanno's ``util.gray`` and first row of ``util.bgr_to_yiq``.
LUMINANCE_BGR = (0.114, 0.587, 0.299)

# dsanno's util.bgr_to_yiq and util.yiq_to_bgr, rows in (B, G, R) order. The second is the
# first's inverse only to its three printed decimals (see yiq_to_bgr).
_BGR_TO_YIQ = numpy.array([LUMINANCE_BGR, [-0.322, -0.274, 0.596], [0.312, -0.523, 0.211]],
                          dtype=numpy.float32)
_YIQ_TO_BGR = numpy.array([[1, -1.106, 1.703], [1, -0.272, -0.647], [1, 0.956, 0.621]],
                          dtype=numpy.float32)

# A 1x1 convolution writing Y into each of the three output channels.
_LUMINANCE_WEIGHT = numpy.tile(numpy.array(LUMINANCE_BGR, dtype=numpy.float32),
                               (3, 1))[:, :, None, None]

#: A luminance standard deviation below this (in 0-255 levels) counts as a flat image.
FLAT_STD = 1e-4

#: Added to the style covariance's eigenvalues before their inverse square root, as dsanno.
HISTOGRAM_EPS = 1e-6


def luminance(x):
    """Y of each pixel in all three channels, differentiable: dsanno's ``util.gray``.

    A 1x1 convolution with the fixed weight ``W[o, c] = LUMINANCE_BGR[c]`` for every output
    channel ``o``, applied to the mean-subtracted input as it is, as dsanno does: the output is
    ``Y(pixel) - Y(mean)`` in every channel, where the network expects ``pixel_c - mean_c``, so
    VGG sees a grey image tinted by ``mean_c - Y(mean)`` (-13.6, -0.6, +6.4 levels in B, G, R for
    dsanno's mean). :func:`match_luminance` computes the style's Y in the same way, so the two
    sides of the matching agree.

    Args:
        x (chainer.Variable or array): preprocessed BGR images, NumPy or CuPy, any float dtype
            (the weight takes it; float32 for the network).

    Returns:
        chainer.Variable: the luminance images, of ``x``'s array module and dtype.

    Shape:
        x: (N, 3, H, W). Output: (N, 3, H, W), the three channels equal.

    Examples:
        >>> pixel = numpy.array([10, 20, 30], numpy.float32).reshape(1, 3, 1, 1)
        >>> luminance(pixel).array.ravel().astype(float).round(3).tolist()
        [21.85, 21.85, 21.85]
    """
    array = chainer.as_array(x)
    xp = backend.get_array_module(array)
    return F.convolution_2d(x, xp.asarray(_LUMINANCE_WEIGHT, dtype=array.dtype))


def match_luminance(style, content):
    """The style's luminance with the content luminance's mean and standard deviation.

    dsanno's ``util.luminance_only(style, content)`` (the style image of ``--keep_color``, at each
    level) and the standardisation of ``run`` under ``--luminance_only``: per image,
    ``(Y_s - mean(Y_s)) / std(Y_s) * std(Y_c) + mean(Y_c)``, population standard deviations, Y
    of the preprocessed pixels (see :func:`luminance`), the result copied to the three channels.
    The statistics are taken in float64 (a one-off per level), the result is float32.

    dsanno divides by ``std(Y_s)`` as it is, so a flat style gives NaN; here a standard deviation
    below :data:`FLAT_STD` counts as flat and the result is the content's mean luminance.

    Args:
        style (array): preprocessed BGR style images, NumPy or CuPy.
        content (array): preprocessed BGR content images, same array module and batch size (any
            height and width).

    Returns:
        array: float32 images of the style's shape, the three channels equal.

    Raises:
        ValueError: the images are not (N, 3, H, W) batches of the same size N.

    Shape:
        style: (N, 3, H_s, W_s). content: (N, 3, H_c, W_c). Output: (N, 3, H_s, W_s).
    """
    _check_pair(style, content)
    with chainer.no_backprop_mode():
        style_y = luminance(style).array[:, :1]
        content_y = luminance(content).array[:, :1]
    style_mean, style_std = _mean_std(style_y)
    content_mean, content_std = _mean_std(content_y)
    xp = backend.get_array_module(style_y)
    standard = (style_y - style_mean) / xp.maximum(style_std, FLAT_STD)
    return xp.repeat((standard * content_std + content_mean).astype(numpy.float32), 3, axis=1)


def bgr_to_yiq(x):
    """YIQ channels of preprocessed BGR images, with dsanno's matrix (``util.bgr_to_yiq``).

    ``Y = 0.114 B + 0.587 G + 0.299 R``, ``I = -0.322 B - 0.274 G + 0.596 R``,
    ``Q = 0.312 B - 0.523 G + 0.211 R``; I and Q are 0 on greys.

    Args:
        x (array): preprocessed BGR images, NumPy or CuPy.

    Returns:
        array: float32 (Y, I, Q) images.

    Raises:
        ValueError: ``x`` is not of shape (N, 3, H, W).

    Shape:
        x: (N, 3, H, W). Output: (N, 3, H, W).

    Examples:
        >>> red = numpy.array([0, 0, 1], numpy.float32).reshape(1, 3, 1, 1)
        >>> bgr_to_yiq(red).ravel().tolist() == numpy.float32([0.299, 0.596, 0.211]).tolist()
        True
    """
    return _mix(_BGR_TO_YIQ, x)


def yiq_to_bgr(x):
    """Preprocessed BGR images from YIQ channels, with dsanno's matrix (``util.yiq_to_bgr``).

    ``B = Y - 1.106 I + 1.703 Q``, ``G = Y - 0.272 I - 0.647 Q``, ``R = Y + 0.956 I + 0.621 Q``.
    These are the inverse of :func:`bgr_to_yiq` only to three decimals: a round trip is exact on
    greys and off by at most 0.3 % of the largest channel elsewhere (below half a level on the
    0-255 scale), as in dsanno.

    Args:
        x (array): (Y, I, Q) images, NumPy or CuPy.

    Returns:
        array: float32 BGR images.

    Raises:
        ValueError: ``x`` is not of shape (N, 3, H, W).

    Shape:
        x: (N, 3, H, W). Output: (N, 3, H, W).
    """
    return _mix(_YIQ_TO_BGR, x)


def split_yiq(x):
    """Splits images into their luminance, in three channels, and their chroma (``util.
    split_bgr_to_yiq``).

    Args:
        x (array): preprocessed BGR images, NumPy or CuPy.

    Returns:
        tuple: ``(luma, iq)``, float32: Y copied to the three channels (an image the network
        takes), and the I and Q channels.

    Raises:
        ValueError: ``x`` is not of shape (N, 3, H, W).

    Shape:
        x: (N, 3, H, W). luma: (N, 3, H, W). iq: (N, 2, H, W).
    """
    yiq = bgr_to_yiq(x)
    xp = backend.get_array_module(yiq)
    return xp.repeat(yiq[:, :1], 3, axis=1), yiq[:, 1:]


def join_yiq(x, iq):
    """``--luminance_only``'s output: the Y of ``x`` with the chroma ``iq`` (``util.
    join_yiq_to_bgr``).

    Y is recomputed from ``x`` (the synthesis may have made its three channels differ) and joined
    with the content's I and Q, then converted back to BGR.

    Args:
        x (array): preprocessed BGR images, the synthesis result, NumPy or CuPy.
        iq (array): the content's chroma from :func:`split_yiq`, same array module, taken at the
            resolution of ``x`` (dsanno passes the full-size chroma at every save, which fails at
            a coarse level; here that is a ValueError).

    Returns:
        array: float32 preprocessed BGR images.

    Raises:
        ValueError: ``x`` is not of shape (N, 3, H, W), or ``iq`` not of ``x``'s batch size and
            (H, W) with two channels.

    Shape:
        x: (N, 3, H, W). iq: (N, 2, H, W). Output: (N, 3, H, W).
    """
    if iq.ndim != 4 or iq.shape != (x.shape[0], 2) + x.shape[2:]:
        raise ValueError('the chroma must have shape %s to join images of shape %s; got %s '
                         '(take it at the level\'s resolution)'
                         % ((x.shape[0], 2) + x.shape[2:], x.shape, iq.shape))
    xp = backend.get_array_module(x)
    return yiq_to_bgr(xp.concatenate([bgr_to_yiq(x)[:, :1], iq.astype(numpy.float32)], axis=1))


def luminance_only_inputs(content, style):
    """What ``--luminance_only`` synthesises from, as dsanno's ``run`` prepares it.

    The content becomes its Y in three channels, the style its Y standardised to the content's
    (:func:`match_luminance`); the content's chroma is kept for :func:`join_yiq`. dsanno does this
    once, on the full-size images, after :func:`match_color_histogram` when both are asked for.

    Args:
        content (array): preprocessed BGR content images, NumPy or CuPy.
        style (array): preprocessed BGR style images, same array module and batch size.

    Returns:
        tuple: ``(content_luma, style_luma, content_iq)``, float32.

    Raises:
        ValueError: the images are not (N, 3, H, W) batches of the same size N.

    Shape:
        content: (N, 3, H, W). style: (N, 3, H_s, W_s). Outputs: (N, 3, H, W), (N, 3, H_s, W_s),
        (N, 2, H, W).
    """
    content_luma, content_iq = split_yiq(content)
    return content_luma, match_luminance(style, content), content_iq


def match_color_histogram(style, content):
    """The style's colours mapped so their mean and covariance are the content's (dsanno's
    ``util.match_color_histogram``).

    Per image, with ``mu`` the channel means and ``Sigma`` the channel covariances (``numpy.cov``:
    divided by n - 1), ``style' = Sigma_c^(1/2) (Sigma_s + 1e-6 I)^(-1/2) (style - mu_s) + mu_c``,
    both square roots symmetric, from an eigendecomposition. dsanno applies it to the resized
    preprocessed images; the map commutes with the channel order and the mean subtraction, so it
    gives the same colours on RGB. The result is not clipped (nor is dsanno's).

    Computed in float64 (a one-off), returned as float32. Departures from dsanno, each only
    where its result is wrong: ``eigh`` instead of ``eig`` (a repeated eigenvalue, as a grayscale
    image's covariance has, can give ``eig`` non-orthogonal eigenvectors), and eigenvalues that
    rounding makes slightly negative are raised to 0 (a grayscale content would otherwise give
    NaN). A grayscale style, whose covariance is singular, gives finite values: its null
    directions hold no variation to amplify.

    Args:
        style (numpy.ndarray): preprocessed BGR style images.
        content (numpy.ndarray): preprocessed BGR content images, same batch size (any height
            and width).

    Returns:
        numpy.ndarray: float32 images of the style's shape.

    Raises:
        ValueError: the images are not NumPy (N, 3, H, W) batches of the same size N.

    Shape:
        style: (N, 3, H_s, W_s). content: (N, 3, H_c, W_c). Output: (N, 3, H_s, W_s).
    """
    _check_pair(style, content)
    if not isinstance(style, numpy.ndarray) or not isinstance(content, numpy.ndarray):
        raise ValueError('match_color_histogram takes NumPy arrays (it runs once, on the host)')
    out = numpy.empty(style.shape, dtype=numpy.float32)
    for i, (style_image, content_image) in enumerate(zip(style, content)):
        pixels = style_image.reshape(3, -1).astype(numpy.float64)
        target = content_image.reshape(3, -1).astype(numpy.float64)
        transform = (_symmetric_power(numpy.cov(target), 0.5)
                     @ _symmetric_power(numpy.cov(pixels), -0.5, HISTOGRAM_EPS))
        matched = transform @ (pixels - pixels.mean(axis=1, keepdims=True))
        out[i] = (matched + target.mean(axis=1, keepdims=True)).reshape(style_image.shape)
    return out


def _symmetric_power(matrix, power, offset=0.0):
    """``matrix ** power`` of a symmetric positive semi-definite matrix, eigenvalues + offset."""
    values, vectors = numpy.linalg.eigh(matrix)
    # Rounding can leave a singular covariance's zero eigenvalues slightly negative.
    values = numpy.maximum(values, 0.0) + offset
    return (vectors * values ** power) @ vectors.T


def _mix(matrix, x):
    """Applies a 3x3 colour matrix to the channels of (N, 3, H, W) images, in float32."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError('expected images of shape (N, 3, H, W), got %s' % (x.shape,))
    xp = backend.get_array_module(x)
    return xp.einsum('ij,njhw->nihw', xp.asarray(matrix), x.astype(numpy.float32, copy=False))


def _mean_std(y):
    """Per-image mean and population standard deviation of (N, 1, H, W), in float64."""
    y = y.astype(numpy.float64)
    return y.mean(axis=(1, 2, 3), keepdims=True), y.std(axis=(1, 2, 3), keepdims=True)


def _check_pair(style, content):
    """Raises ValueError unless both are (N, 3, H, W) batches of the same N."""
    for name, x in (('style', style), ('content', content)):
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError('the %s must be images of shape (N, 3, H, W), got %s'
                             % (name, x.shape))
    if style.shape[0] != content.shape[0]:
        raise ValueError('style and content batches differ in size: %d and %d'
                         % (style.shape[0], content.shape[0]))
