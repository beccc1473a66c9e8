import chainer
import chainer.functions as F
import numpy
import pytest
from chainer import gradient_check

from chainer_mrf.losses import content_loss, mrf_loss, patch_coverage, total_variation


def _grid(n, k, stride):
    """CNNMRF's patch starts along an axis: every stride-th, plus the last one (0-based)."""
    starts = list(range(0, n - k + 1, stride))
    return starts if starts[-1] == n - k else starts + [n - k]


def _extract(feature, k, ys, xs):
    """Patches of a (1, C, H, W) map at the given starts, (P, C*k*k) in im2col layout."""
    cols = F.im2col(feature, k)[:, :, ys][:, :, :, xs]
    return F.transpose(F.reshape(cols, (cols.shape[1], -1)))


def _grad(loss, x):
    x.cleargrad()
    loss.backward()
    return x.grad


# --- MRF, dsanno: weight * mean((Psi - Psi_NN)^2) ------------------------------------------

def test_mrf_mean_known_answer():
    patches = chainer.Variable(numpy.array([[1., 2., 3.], [0., -1., 4.]]))
    target = numpy.array([[1., 0., 1.], [2., -1., 1.]])
    loss = mrf_loss(patches, target, weight=0.5)
    # differences 0, 2, 2, -2, 0, 3: squares sum to 21 over 6 elements
    assert loss.array == pytest.approx(0.5 * 21 / 6, rel=1e-15)
    expected = 2 * 0.5 * numpy.array([[0., 2., 2.], [-2., 0., 3.]]) / 6
    numpy.testing.assert_allclose(_grad(loss, patches), expected, rtol=1e-15)


def test_mrf_mean_equals_dsanno_graph():
    """dsanno: ``style_weight * F.mean_squared_error(patch, nearest_neighbor_patch)``."""
    rng = numpy.random.RandomState(0)
    data = rng.uniform(0, 5, (40, 27)).astype(numpy.float32)
    target = rng.uniform(0, 5, (40, 27)).astype(numpy.float32)
    ours, theirs = chainer.Variable(data.copy()), chainer.Variable(data.copy())
    loss = mrf_loss(ours, target)
    reference = 0.2 * F.mean_squared_error(theirs, target)
    assert loss.dtype == numpy.float32
    numpy.testing.assert_allclose(loss.array, reference.array, rtol=1e-6)
    numpy.testing.assert_allclose(_grad(loss, ours), _grad(reference, theirs), rtol=1e-6)


@pytest.mark.parametrize('averaged', [False, True])
def test_mrf_matched_bank_gives_zero_loss_and_gradient(averaged):
    rng = numpy.random.RandomState(1)
    feature = chainer.Variable(rng.uniform(0, 3, (1, 4, 6, 5)).astype(numpy.float32))
    ys, xs = _grid(6, 3, 2), _grid(5, 3, 2)

    def extract(f):
        return _extract(f, 3, ys, xs)

    patches = extract(feature)
    coverage = patch_coverage(extract, feature) if averaged else None
    loss = mrf_loss(patches, patches.array.copy(), weight=1e-4, coverage=coverage)
    assert loss.array == 0
    assert not numpy.any(_grad(loss, feature))


def test_mrf_target_gets_no_gradient():
    patches = chainer.Variable(numpy.ones((2, 3)))
    target = chainer.Variable(numpy.zeros((2, 3)))
    mrf_loss(patches, target).backward()
    assert target.grad is None and patches.grad is not None


def test_mrf_rejects_mismatched_shapes():
    patches = chainer.Variable(numpy.ones((2, 3)))
    with pytest.raises(ValueError):
        mrf_loss(patches, numpy.zeros((3, 2)))
    with pytest.raises(ValueError):
        mrf_loss(patches, numpy.zeros((2, 3)), coverage=numpy.ones((2, 2)))


@pytest.mark.parametrize('averaged', [False, True])
def test_mrf_check_backward(averaged):
    rng = numpy.random.RandomState(2)
    x = rng.standard_normal((7, 12))
    target = rng.standard_normal((7, 12))
    coverage = rng.randint(1, 5, (7, 12)).astype(numpy.float64) if averaged else None
    gradient_check.check_backward(
        lambda p: mrf_loss(p, target, weight=0.3, coverage=coverage), x,
        numpy.array(1.7), dtype=numpy.float64, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize('averaged', [False, True])
def test_mrf_check_double_backward(averaged):
    rng = numpy.random.RandomState(9)
    target = rng.standard_normal((5, 4))
    coverage = rng.randint(1, 4, (5, 4)).astype(numpy.float64) if averaged else None
    gradient_check.check_double_backward(
        lambda p: mrf_loss(p, target, weight=0.3, coverage=coverage),
        rng.standard_normal((5, 4)), numpy.array(1.1), rng.standard_normal((5, 4)),
        dtype=numpy.float64, atol=1e-9, rtol=1e-7)


# --- MRF, CNNMRF: gradient averaged over overlapping patches -----------------------------

def test_patch_coverage_counts_covering_patches():
    # 3x3 map, 2x2 patches at stride 1: corners lie in 1 patch, edges in 2, the centre in 4.
    feature = numpy.zeros((1, 2, 3, 3))
    coverage = patch_coverage(lambda f: _extract(f, 2, [0, 1], [0, 1]), feature)
    counts = numpy.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    # row i is the patch at (i // 2, i % 2); columns run over (channel, dy, dx)
    expected = [numpy.tile(counts[y:y + 2, x:x + 2].ravel(), 2) for y in (0, 1) for x in (0, 1)]
    numpy.testing.assert_array_equal(coverage, expected)


def test_mrf_averaged_known_answer():
    # 1x3 map, 1x2 patches [a, b] and [b, c]: b is covered twice.
    feature = chainer.Variable(numpy.array([[[[1., 4., 2.]]]]))

    def extract(f):
        return F.transpose(F.reshape(F.im2col(f, (1, 2)), (2, 2)))

    target = numpy.array([[0., 1.], [5., 2.]])
    loss = mrf_loss(extract(feature), target, weight=2.0,
                    coverage=patch_coverage(extract, feature))
    # differences [1, 3] and [-1, 0]; b's squares are halved: 2/2 * (1 + 9/2 + 1/2 + 0)
    assert loss.array == pytest.approx(6.0, rel=1e-15)
    # a: 2 * 1; b: 2 * (3 - 1) / 2; c: 2 * 0
    numpy.testing.assert_allclose(_grad(loss, feature), [[[[2., 2., 0.]]]], rtol=1e-15)


def _cnnmrf_mrf_gradient(feature, target, k, ys, xs, strength):
    """The authors' ``MRFMM:updateGradInput``, loop for loop (0-based)."""
    channels = feature.shape[1]
    grad = numpy.zeros(feature.shape[1:])
    confident = numpy.zeros(feature.shape[2:]) + 1e-10
    index = 0
    for y in ys:
        for x in xs:
            window = (slice(None), slice(y, y + k), slice(x, x + k))
            grad[window] += target[index].reshape(channels, k, k) - feature[0][window]
            confident[window[1:]] += 1
            index += 1
    return -strength * grad / confident


@pytest.mark.parametrize('size, stride', [((7, 6), 1), ((7, 6), 2), ((8, 9), 2)])
def test_mrf_averaged_gradient_is_the_authors_update(size, stride):
    rng = numpy.random.RandomState(3)
    feature = chainer.Variable(rng.uniform(0, 2, (1, 3) + size))
    ys, xs = _grid(size[0], 3, stride), _grid(size[1], 3, stride)

    def extract(f):
        return _extract(f, 3, ys, xs)

    patches = extract(feature)
    target = rng.uniform(0, 2, patches.shape)
    coverage = patch_coverage(extract, feature)
    loss = mrf_loss(patches, target, weight=1e-4, coverage=coverage)
    expected = _cnnmrf_mrf_gradient(feature.array, target, 3, ys, xs, 1e-4)
    numpy.testing.assert_allclose(_grad(loss, feature)[0], expected, rtol=1e-9, atol=1e-20)
    value = 0.5 * 1e-4 * numpy.sum((patches.array - target) ** 2 / coverage)
    assert loss.array == pytest.approx(value, rel=1e-12)


def test_patch_coverage_under_no_backprop_mode():
    feature = numpy.zeros((1, 1, 4, 4), numpy.float32)
    with chainer.no_backprop_mode():
        coverage = patch_coverage(lambda f: _extract(f, 3, [0, 1], [0, 1]), feature)
    assert coverage.dtype == numpy.float32 and coverage.shape == (4, 9)
    assert coverage.max() == 4 and coverage.min() == 1


# --- content: weight * mean((F - F_c)^2) -------------------------------------------------

def test_content_known_answer():
    features = chainer.Variable(numpy.array([[[[3., 1.], [2., 2.]]]]))
    target = numpy.array([[[[1., 1.], [2., 5.]]]])
    loss = content_loss(features, target, weight=2e1)
    assert loss.array == pytest.approx(2e1 * (4 + 9) / 4, rel=1e-15)
    expected = 2 * 2e1 * numpy.array([[[[2., 0.], [0., -3.]]]]) / 4
    numpy.testing.assert_allclose(_grad(loss, features), expected, rtol=1e-15)


def test_content_equals_dsanno_graph():
    """dsanno: ``content_weight * F.mean_squared_error(layer, content_layer)``."""
    rng = numpy.random.RandomState(4)
    data = rng.uniform(0, 9, (1, 8, 5, 6)).astype(numpy.float32)
    target = rng.uniform(0, 9, data.shape).astype(numpy.float32)
    ours, theirs = chainer.Variable(data.copy()), chainer.Variable(data.copy())
    loss = content_loss(ours, target)
    reference = 1.0 * F.mean_squared_error(theirs, target)
    numpy.testing.assert_allclose(loss.array, reference.array, rtol=1e-6)
    numpy.testing.assert_allclose(_grad(loss, ours), _grad(reference, theirs), rtol=1e-6)


def test_content_check_backward():
    rng = numpy.random.RandomState(5)
    target = rng.standard_normal((1, 3, 4, 5))
    gradient_check.check_backward(
        lambda f: content_loss(f, target, weight=2.5), rng.standard_normal(target.shape),
        numpy.array(0.6), dtype=numpy.float64, atol=1e-9, rtol=1e-7)


# --- total variation ---------------------------------------------------------------------

IMAGE = numpy.array([[[[1., 2., 4.], [0., 3., 3.]]]])


def test_tv_dsanno_known_answer():
    x = chainer.Variable(IMAGE.copy())
    loss = total_variation(x, weight=0.1)
    # vertical (-1)^2 + 1^2 + (-1)^2 = 3; horizontal 1 + 4 + 9 + 0 = 14
    assert loss.array == pytest.approx(0.1 * 17, rel=1e-15)
    # 2 * weight * sum over neighbours of (x - neighbour)
    expected = 0.2 * numpy.array([[[[0., -2., 3.], [-4., 4., -1.]]]])
    numpy.testing.assert_allclose(_grad(loss, x), expected, rtol=1e-15)


def test_tv_dsanno_equals_its_convolutions():
    """dsanno's ``util.total_variation``: per-channel [1, -1] kernels, sums of squares."""
    rng = numpy.random.RandomState(6)
    x = rng.uniform(-120, 130, (1, 3, 7, 9)).astype(numpy.float32)
    eye = numpy.eye(3, dtype=numpy.float32)[:, :, None, None]
    wh = eye * numpy.array([[1], [-1]], numpy.float32)
    ww = eye * numpy.array([[1, -1]], numpy.float32)
    ours, theirs = chainer.Variable(x.copy()), chainer.Variable(x.copy())
    loss = total_variation(ours)
    reference = 1e-5 * (F.sum(F.convolution_2d(theirs, wh) ** 2)
                        + F.sum(F.convolution_2d(theirs, ww) ** 2))
    numpy.testing.assert_allclose(loss.array, reference.array, rtol=1e-5)
    numpy.testing.assert_allclose(_grad(loss, ours), _grad(reference, theirs), rtol=1e-5,
                                  atol=1e-9)


def test_tv_cnnmrf_known_answer():
    x = chainer.Variable(IMAGE.copy())
    loss = total_variation(x, weight=0.1, variant='cnnmrf')
    # top-left 1x2 block: horizontal -1, -2; vertical 1, -1; halved
    assert loss.array == pytest.approx(0.05 * 7, rel=1e-15)
    expected = 0.1 * numpy.array([[[[0., -2., 2.], [-1., 1., 0.]]]])
    numpy.testing.assert_allclose(_grad(loss, x), expected, rtol=1e-15)


def _torch_tv_gradient(x, strength):
    """The Torch ``TVLoss:updateGradInput`` CNNMRF uses, on a (C, H, W) image."""
    grad = numpy.zeros_like(x)
    x_diff = x[:, :-1, :-1] - x[:, :-1, 1:]
    y_diff = x[:, :-1, :-1] - x[:, 1:, :-1]
    grad[:, :-1, :-1] += x_diff + y_diff
    grad[:, :-1, 1:] -= x_diff
    grad[:, 1:, :-1] -= y_diff
    return strength * grad


def test_tv_cnnmrf_gradient_is_the_authors_update():
    rng = numpy.random.RandomState(7)
    x = chainer.Variable(rng.uniform(-120, 130, (3, 6, 8)))
    loss = total_variation(x, weight=1e-3, variant='cnnmrf')
    numpy.testing.assert_allclose(_grad(loss, x), _torch_tv_gradient(x.array, 1e-3),
                                  rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize('variant', ['dsanno', 'cnnmrf'])
def test_tv_check_backward(variant):
    rng = numpy.random.RandomState(8)
    gradient_check.check_backward(
        lambda x: total_variation(x, weight=0.3, variant=variant),
        rng.standard_normal((1, 3, 4, 5)), numpy.array(1.3), dtype=numpy.float64,
        atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize('variant', ['dsanno', 'cnnmrf'])
def test_tv_check_double_backward(variant):
    rng = numpy.random.RandomState(9)
    x = rng.standard_normal((1, 3, 4, 5))
    gradient_check.check_double_backward(
        lambda x: total_variation(x, weight=0.3, variant=variant), x, numpy.array(1.3),
        rng.standard_normal(x.shape), dtype=numpy.float64, atol=1e-9, rtol=1e-7)


def test_tv_rejects_unknown_variant():
    with pytest.raises(ValueError, match='variant'):
        total_variation(chainer.Variable(IMAGE), variant='torch')
