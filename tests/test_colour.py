"""dsanno's colour options: luminance, its standardisation, YIQ, colour histogram matching: known
answers, gradients, and where the library departs from dsanno (flat and grayscale images, chroma
of another size). Their values on generic images are dsanno's: ``test_colour_parity.py``."""
import numpy
import pytest

import chainer_mrf  # noqa: F401  (NumPy shims before chainer)
import chainer
from chainer import gradient_check
from chainer.backends import cuda

from chainer_mrf import colour
from chainer_mrf.image import DSANNO, preprocess
from helpers import needs_cuda

# dsanno's util.py matrices, written out here independently of the module's constants.
BGR_TO_YIQ = numpy.array([[0.114, 0.587, 0.299], [-0.322, -0.274, 0.596],
                          [0.312, -0.523, 0.211]])
YIQ_TO_BGR = numpy.array([[1, -1.106, 1.703], [1, -0.272, -0.647], [1, 0.956, 0.621]])


def images(shape=(1, 3, 6, 7), seed=0, scale=60.0):
    """Preprocessed-like images with correlated channels (a full-rank colour covariance)."""
    rng = numpy.random.RandomState(seed)
    mixing = numpy.array([[1.0, 0.3, 0.1], [0.2, 0.8, 0.4], [0.1, 0.5, 1.2]])
    x = numpy.einsum('ij,njhw->nihw', mixing, rng.standard_normal(shape)) * scale
    return (x + rng.uniform(-30, 30, (shape[0], 3, 1, 1))).astype(numpy.float32)


def y_of(x):
    """Float64 reference luminance, (N, 1, H, W)."""
    return numpy.einsum('c,nchw->nhw', BGR_TO_YIQ[0], x.astype(numpy.float64))[:, None]


def channel_stats(x):
    """Mean and covariance (divided by n - 1) of the three channels of one image."""
    pixels = x[0].reshape(3, -1).astype(numpy.float64)
    return pixels.mean(axis=1), numpy.cov(pixels)


# --- luminance ----------------------------------------------------------------------------------

def test_luminance_of_a_known_pixel():
    x = numpy.array([10, 20, 30], numpy.float32).reshape(1, 3, 1, 1)  # B, G, R
    y = colour.luminance(x)
    assert isinstance(y, chainer.Variable) and y.dtype == numpy.float32
    # 0.114 * 10 + 0.587 * 20 + 0.299 * 30
    numpy.testing.assert_allclose(y.array.ravel(), [21.85] * 3, rtol=1e-6)


def test_luminance_leaves_the_mean_subtracted_as_dsanno():
    # A grey pixel of value 100, preprocessed: every channel becomes Y(100) - Y(mean) =
    # 100 - (0.114 * 104 + 0.587 * 117 + 0.299 * 124) = 100 - 117.611.
    x = preprocess(numpy.full((1, 1, 3), 100, numpy.uint8), DSANNO)
    numpy.testing.assert_allclose(colour.luminance(x).array.ravel(), [-17.611] * 3, rtol=1e-5)


def test_luminance_gradient():
    rng = numpy.random.RandomState(1)
    x = rng.standard_normal((2, 3, 4, 3))
    gy = rng.standard_normal((2, 3, 4, 3))
    gradient_check.check_backward(colour.luminance, x, gy, dtype=numpy.float64)


def test_luminance_gradient_known_answer():
    # d(sum of all three output channels)/dx_c = 3 * coefficient_c at every pixel.
    x = chainer.Variable(images())
    chainer.functions.sum(colour.luminance(x)).backward()
    expected = 3 * numpy.array(colour.LUMINANCE_BGR, numpy.float32)[None, :, None, None]
    numpy.testing.assert_allclose(x.grad, numpy.broadcast_to(expected, x.shape), rtol=1e-6)


# --- match_luminance (keep_color's style) -------------------------------------------------------

def test_match_luminance_of_a_flat_style_is_the_content_mean():
    style = numpy.full((1, 3, 4, 4), -20.0, numpy.float32)  # dsanno: 0 / 0 = NaN
    content = images()
    out = colour.match_luminance(style, content)
    numpy.testing.assert_allclose(out, numpy.full(out.shape, y_of(content).mean()), rtol=1e-5)


def test_match_luminance_rejects_other_shapes():
    with pytest.raises(ValueError, match='batches differ'):
        colour.match_luminance(images((2, 3, 4, 4)), images((1, 3, 4, 4)))
    with pytest.raises(ValueError, match=r'style must be images of shape \(N, 3, H, W\)'):
        colour.match_luminance(numpy.zeros((3, 4, 4), numpy.float32), images())


# --- YIQ (luminance_only) -----------------------------------------------------------------------

def test_bgr_to_yiq_known_answers():
    red = numpy.array([0, 0, 1], numpy.float32).reshape(1, 3, 1, 1)
    numpy.testing.assert_allclose(colour.bgr_to_yiq(red).ravel(), [0.299, 0.596, 0.211],
                                  rtol=1e-6)
    grey = numpy.full((1, 3, 2, 2), 57.0, numpy.float32)
    yiq = colour.bgr_to_yiq(grey)
    assert yiq.dtype == numpy.float32
    numpy.testing.assert_allclose(yiq[:, 0], 57.0, rtol=1e-6)
    numpy.testing.assert_allclose(yiq[:, 1:], 0.0, atol=1e-5)


def test_yiq_round_trip():
    grey = numpy.full((1, 3, 2, 2), -33.0, numpy.float32)
    numpy.testing.assert_allclose(colour.yiq_to_bgr(colour.bgr_to_yiq(grey)), grey, rtol=1e-5)
    x = images((2, 3, 4, 5))
    back = colour.yiq_to_bgr(colour.bgr_to_yiq(x))
    # dsanno's inverse is rounded to three decimals: the round trip is (YIQ_TO_BGR @ BGR_TO_YIQ).
    expected = numpy.einsum('ij,njhw->nihw', YIQ_TO_BGR @ BGR_TO_YIQ, x.astype(numpy.float64))
    numpy.testing.assert_allclose(back, expected, rtol=1e-5, atol=1e-3)
    assert numpy.abs(back - x).max() <= 0.003 * numpy.abs(x).max()


def test_split_and_join_yiq():
    # Their values are dsanno's (test_colour_parity); here, a round trip.
    x = images((1, 3, 3, 4), seed=6)
    luma, iq = colour.split_yiq(x)
    assert luma.shape == x.shape and iq.shape == (1, 2, 3, 4)
    # Joining an image's own luminance with its own chroma gives it back, to the round trip.
    numpy.testing.assert_allclose(colour.join_yiq(luma, iq),
                                  colour.yiq_to_bgr(colour.bgr_to_yiq(x)), rtol=1e-5, atol=1e-3)


def test_join_yiq_refuses_chroma_of_another_level():
    x = images((1, 3, 4, 4))
    full_iq = colour.split_yiq(images((1, 3, 8, 8)))[1]
    with pytest.raises(ValueError, match=r'chroma must have shape \(1, 2, 4, 4\)'):
        colour.join_yiq(x, full_iq)


# --- match_color_histogram ----------------------------------------------------------------------

def test_histogram_matching_known_answers():
    content = images((1, 3, 9, 9), seed=13)
    # A style that is the content up to a scale and offset maps back onto the content.
    numpy.testing.assert_allclose(colour.match_color_histogram(2.5 * content + 7, content),
                                  content, atol=1e-3)
    # Matching an image to itself changes it only by the 1e-6 on the eigenvalues.
    numpy.testing.assert_allclose(colour.match_color_histogram(content, content), content,
                                  atol=1e-3)


def test_histogram_matching_a_style_with_a_repeated_eigenvalue():
    # Colours whitened exactly, then given the covariance 40 * [[5, 1, 1], [1, 5, 1], [1, 1, 5]]
    # (eigenvalues 280, 160, 160), kept in float64 so the repeated eigenvalue stays exact:
    # numpy.linalg.eig, as dsanno calls it, returns non-orthogonal eigenvectors for it.
    def sqrtm(matrix):
        values, vectors = numpy.linalg.eigh(matrix)
        return (vectors * numpy.sqrt(values)) @ vectors.T
    noise = numpy.random.RandomState(20).standard_normal((3, 120))
    noise -= noise.mean(axis=1, keepdims=True)
    white = numpy.linalg.solve(sqrtm(numpy.cov(noise)), noise)
    style = (sqrtm(40 * (numpy.eye(3) * 4 + 1)) @ white).reshape(1, 3, 10, 12)
    content = images((1, 3, 8, 8), seed=21)
    out_mean, out_cov = channel_stats(colour.match_color_histogram(style, content))
    content_mean, content_cov = channel_stats(content)
    numpy.testing.assert_allclose(out_mean, content_mean, atol=1e-3)
    numpy.testing.assert_allclose(out_cov, content_cov, atol=1e-3 * numpy.abs(content_cov).max())


def test_histogram_matching_a_grayscale_style_gives_no_nan():
    gray = images((1, 1, 10, 10), seed=14)[:, :1]
    style = numpy.repeat(gray, 3, axis=1) - numpy.array([104, 117, 124], numpy.float32)[
        None, :, None, None]  # a grey image, preprocessed: equal channels, singular covariance
    content = images((1, 3, 8, 8), seed=15)
    out = colour.match_color_histogram(style, content)
    assert numpy.isfinite(out).all()
    numpy.testing.assert_allclose(channel_stats(out)[0], channel_stats(content)[0], atol=1e-3)
    # The style varies along (1, 1, 1) only (up to the float32 rounding of the preprocessing,
    # which the whitening amplifies to hundredths of a level): so does the result.
    values = numpy.linalg.eigvalsh(channel_stats(out)[1])
    assert values[:2].max() < 1e-5 * values[2]


def test_histogram_matching_a_grayscale_content_gives_no_nan():
    style = images((1, 3, 8, 8), seed=16)
    content = numpy.repeat(images((1, 3, 6, 6), seed=17)[:, :1], 3, axis=1)
    out = colour.match_color_histogram(style, content)
    assert numpy.isfinite(out).all()
    numpy.testing.assert_allclose(out[:, 0], out[:, 1], atol=1e-3)
    numpy.testing.assert_allclose(out[:, 0], out[:, 2], atol=1e-3)


def test_histogram_matching_takes_numpy_batches():
    with pytest.raises(ValueError, match='batches differ'):
        colour.match_color_histogram(images((2, 3, 4, 4)), images((1, 3, 4, 4)))
    with pytest.raises(ValueError, match='NumPy'):
        colour.match_color_histogram(chainer.Variable(images()), images())


# --- GPU ----------------------------------------------------------------------------------------

@needs_cuda
def test_gpu_matches_cpu():
    cp = cuda.cupy
    style, content = images((1, 3, 8, 9), seed=18), images((1, 3, 6, 7), seed=19)
    x = chainer.Variable(cp.asarray(content))
    y = colour.luminance(x)
    assert isinstance(y.array, cp.ndarray)
    numpy.testing.assert_allclose(cp.asnumpy(y.array), colour.luminance(content).array,
                                  rtol=1e-5, atol=1e-4)
    chainer.functions.sum(y).backward()
    assert isinstance(x.grad, cp.ndarray)
    numpy.testing.assert_allclose(
        cp.asnumpy(colour.match_luminance(cp.asarray(style), cp.asarray(content))),
        colour.match_luminance(style, content), rtol=1e-5, atol=1e-3)
    gpu = colour.luminance_only_inputs(cp.asarray(content), cp.asarray(style))
    for on_gpu, on_cpu in zip(gpu, colour.luminance_only_inputs(content, style)):
        assert isinstance(on_gpu, cp.ndarray) and on_gpu.dtype == numpy.float32
        numpy.testing.assert_allclose(cp.asnumpy(on_gpu), on_cpu, rtol=1e-5, atol=1e-3)
    numpy.testing.assert_allclose(
        cp.asnumpy(colour.join_yiq(cp.asarray(content), gpu[2])),
        colour.join_yiq(content, colour.split_yiq(content)[1]), rtol=1e-5, atol=1e-3)
