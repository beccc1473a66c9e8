"""The doodle preset's parts (neural-doodle's, docs/algorithm.md "The doodle preset"): the
matching normalised pixel by pixel with the map appended per layer, its smoothness term, its
noise start, its images at their own sizes, SciPy's L-BFGS-B step by step, and a tiny doodle
end to end with the real VGG16."""
import threading

import chainer
import numpy
import pytest
import scipy.optimize
from chainer import gradient_check

from chainer_mrf import image, inputs, losses, mrf, optimizers, patches, presets
from chainer_mrf import pyramid, semantic
from chainer_mrf.synthesis import synthesize
from helpers import two_textures


# --- the matching ------------------------------------------------------------------------

def test_pixel_features_and_map_by_hand():
    # Two pixels: features (3, 4) and (0, 0) (a dead ReLU), map colours (2, 0) and (1, 1).
    features = numpy.array([[[[3., 0.]], [[4., 0.]]]], numpy.float32)
    labels = numpy.array([[[[2., 1.]], [[0., 1.]]]], numpy.float32)
    got = mrf.matching_features(features, labels, 9.0, 'pixel')[0, :, 0]
    # Features to norm 1 (a zero pixel stays zero), the map to norm sqrt(9) = 3.
    root = 3 / numpy.sqrt(2)
    numpy.testing.assert_allclose(got, [[0.6, 0.], [0.8, 0.], [3., root], [0., root]],
                                  rtol=1e-6)
    # The originals' normalisation appends weight x map and leaves the features as they are.
    numpy.testing.assert_array_equal(mrf.matching_features(features, labels, 9.0, 'patch'),
                                     numpy.concatenate([features, 9 * labels], axis=1))


def test_a_map_appended_per_layer_by_hand():
    # A 4 x 8 map, left half label (1, 0), right half (0, 1), at a relu3 layer 2 x 2 (pooled
    # by 4 in neural-doodle) and at a layer 1 x 3 (an area average across the boundary).
    labels = numpy.zeros((1, 2, 4, 8), numpy.float32)
    labels[:, 0, :, :4] = labels[:, 1, :, 4:] = 1
    at_layer = semantic.downsample_map(labels, (2, 2))
    numpy.testing.assert_array_equal(at_layer[0, :, 0], [[1, 0], [0, 1]])
    middle = semantic.downsample_map(labels, (1, 3))[0, :, 0, 1]  # half of each region
    numpy.testing.assert_allclose(middle, [0.5, 0.5], rtol=1e-6)
    columns = mrf.map_columns(semantic.downsample_map(labels, (1, 3)), 10.0, 'pixel')[0, :, 0]
    # Each pixel's map vector at norm sqrt(10), whatever its mixture.
    numpy.testing.assert_allclose(numpy.linalg.norm(columns, axis=0), [10 ** 0.5] * 3,
                                  rtol=1e-6)
    numpy.testing.assert_allclose(columns[:, 1], [5 ** 0.5, 5 ** 0.5], rtol=1e-6)


def _doodle_scores(query_features, query_map, style_features, style_map, weight):
    """neural-doodle's matching, written from doodle.py: patches (N, C + M, 3, 3); each
    pixel's first C channels divided by 3 x their norm, the rest by sqrt(9 / weight) x
    theirs (zero norms left at zero here), then every query-style dot product."""
    def normalised(features, labels):
        full = numpy.concatenate([features, labels], axis=1).astype(numpy.float64)
        cut = patches.extract_patches_array(full, 3).reshape(-1, full.shape[1], 3, 3)
        channels = features.shape[1]
        parts = []
        for part, scale in ((cut[:, :channels], 3.0), (cut[:, channels:],
                                                          numpy.sqrt(9.0 / weight))):
            norms = numpy.sqrt((part ** 2).sum(axis=1, keepdims=True))
            parts.append(part / numpy.maximum(norms, 1e-30) / scale)
        return numpy.concatenate(parts, axis=1).reshape(len(cut), -1)
    return normalised(query_features, query_map) @ normalised(style_features, style_map).T


def test_pixel_matching_is_neural_doodles(monkeypatch):
    rng = numpy.random.RandomState(0)
    style = numpy.maximum(rng.standard_normal((1, 6, 9, 8)), 0).astype(numpy.float32)
    style[:, :, 2, 3] = 0  # a dead pixel: neural-doodle's 0 / 0
    query = numpy.maximum(rng.standard_normal((1, 6, 7, 7)), 0).astype(numpy.float32)
    style_map = rng.uniform(0, 1, (1, 3, 9, 8)).astype(numpy.float32)
    query_map = rng.uniform(0, 1, (1, 3, 7, 7)).astype(numpy.float32)
    config = presets.get_preset('doodle')
    found = {}
    monkeypatch.setattr(losses, 'mrf_loss',
                        lambda synthesised, matched, *a: found.setdefault('m', matched))
    terms = mrf.mrf_terms(_FixedFeatures(style), [numpy.zeros((1, 3, 9, 8), numpy.float32)],
                          {'relu3_1': (6, 7, 7)},
                          # float32: float16's rounding would swap near ties
                          config.replace(style_layers=('relu3_1',), bank_dtype='float32'),
                          style_maps=[style_map], content_map=query_map)
    terms[0](chainer.Variable(query))
    scores = _doodle_scores(query, query_map, style, style_map, 10.0)
    expected = patches.extract_patches_array(style, 3)[scores.argmax(axis=1)]
    # The bank keeps normalised patches: times their pixel norms, the features come back.
    numpy.testing.assert_allclose(found['m'], expected, rtol=1e-5, atol=1e-6)
    # The map weighs: at semantic weight 10 most patches take a patch of their own colours,
    # and the features still decide among them (the matches differ from the map's alone).
    assert (scores.argmax(axis=1)
            != _doodle_scores(0 * query, query_map, style, style_map, 10.0).argmax(axis=1)).any()


class _FixedFeatures:
    """A stand-in network whose only layer's feature map is ``features``."""

    def __init__(self, features):
        self.features = features

    def __call__(self, x, layers):
        return {name: chainer.Variable(self.features) for name in layers}

    def shapes(self, shape, layers):
        return {name: self.features.shape[1:] for name in layers}


def test_pixel_normalisation_refuses_several_ranks():
    class TwoRanks:
        mpi_comm, rank, size, intra_size = None, 0, 2, 2
    with pytest.raises(ValueError, match="match_normalisation 'pixel'.*does not shard"):
        synthesize(None, numpy.zeros((8, 8, 3), numpy.uint8), preset='doodle', comm=TwoRanks())


# --- the smoothness term, the start, the sizes -------------------------------------------

def test_doodle_smoothness_known_answer_and_gradient():
    rng = numpy.random.RandomState(1)
    x = rng.uniform(-50, 50, (1, 3, 5, 6))
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    expected = 0.5 * ((dy ** 2 + dx ** 2) ** 1.25).mean()
    got = losses.total_variation(chainer.Variable(x.astype(numpy.float32)), 0.5, 'doodle')
    numpy.testing.assert_allclose(float(got.array), expected, rtol=1e-5)
    gradient_check.check_backward(lambda v: losses.total_variation(v, 0.5, 'doodle'), x,
                                  numpy.array(1.0), eps=1e-3, rtol=1e-4, atol=1e-4)


def test_pixels_noise_is_neural_doodles_seed_range():
    rng = numpy.random.RandomState(0)
    x = inputs.noise((40, 50), 'pixels', rng, image.DOODLE)
    pixels = x + numpy.array(image.DOODLE.mean_bgr, numpy.float32).reshape(1, 3, 1, 1)
    assert x.dtype == numpy.float32 and x.shape == (1, 3, 40, 50)
    assert pixels.min() >= 16 - 1e-4 and pixels.max() <= 240 + 1e-4
    assert abs(float(pixels.mean()) - 128) < 2 and pixels.max() - pixels.min() > 220


def test_images_keep_their_own_size():
    loaded = inputs.Inputs(numpy.zeros((72, 96, 3), numpy.uint8),
                           [numpy.zeros((50, 80, 3), numpy.uint8)], None, [None], None)
    assert inputs.synthesis_shapes(loaded, presets.get_preset('doodle')) == ((72, 96), [(50, 80)])
    doodle = loaded._replace(content=None, content_map=numpy.zeros((1, 3, 30, 40)))
    assert inputs.synthesis_shapes(doodle, presets.get_preset('doodle'))[0] == (30, 40)


def test_four_levels():
    assert pyramid.ResizePyramid(4).factors(352) == [8, 4, 2, 1]
    assert presets.get_preset('doodle').replace(resolution_num=4).resolution_num == 4


# --- SciPy's L-BFGS-B, step by step ------------------------------------------------------

_A = numpy.diag(numpy.linspace(1.0, 30.0, 12)).astype(numpy.float32)
_B = numpy.linspace(-40.0, 40.0, 12).astype(numpy.float32)
_LOWER, _UPPER = (-1.0, -2.0, -0.5), (1.5, 2.0, 0.5)


def _energy(x):
    """A convex quadratic in float32, its minimum outside the bounds for some values."""
    x = x.reshape(-1)
    gradient = _A @ x - _B
    return float(0.5 * x @ (_A @ x) - _B @ x), gradient


def _target():
    target = chainer.Link()
    with target.init_scope():
        target.x = chainer.Parameter(numpy.full((1, 3, 2, 2), 3.0, numpy.float32))
    return target


def _steps(optimizer, target, steps):
    """Our loop: evaluate at the parameter, update; returns the points evaluated."""
    points = []
    for _ in range(steps):
        points.append(target.x.array.copy())
        energy, gradient = _energy(target.x.array)
        target.x.grad = gradient.reshape(target.x.shape)
        optimizer.update(energy=energy)
        if optimizer.stopped:
            break
    return points


def _scipy_points(x0, steps):
    """SciPy's own run from the same start, evaluated at float32 points as ours."""
    lower = numpy.repeat(_LOWER, 4).astype(numpy.float64)
    upper = numpy.repeat(_UPPER, 4).astype(numpy.float64)
    points = []

    def fun(x):
        point = numpy.clip(x, lower, upper).astype(numpy.float32)
        points.append(point.reshape(1, 3, 2, 2))
        energy, gradient = _energy(point)
        return energy, gradient.astype(numpy.float64)
    result = scipy.optimize.minimize(
        fun, numpy.clip(x0.ravel().astype(numpy.float64), lower, upper), jac=True,
        method='L-BFGS-B', bounds=scipy.optimize.Bounds(lower, upper),
        options=dict(maxcor=5, ftol=0.0, gtol=0.0, maxfun=steps))
    return points[:steps], result


def test_lbfgsb_evaluates_the_points_scipy_does():
    target = _target()
    optimizer = optimizers.create('lbfgsb', history_size=5, lower=_LOWER, upper=_UPPER)
    optimizer.setup(target)
    ours = _steps(optimizer, target, 15)
    theirs, _ = _scipy_points(numpy.full((1, 3, 2, 2), 3.0), 15)
    assert len(ours) == 15
    for mine, scipys in zip(ours, theirs):
        numpy.testing.assert_array_equal(mine, scipys)
    # Every point within the bounds (the start was outside them: moved in first).
    for point in ours:
        assert (point.reshape(3, 4) >= numpy.array(_LOWER)[:, None]).all()
        assert (point.reshape(3, 4) <= numpy.array(_UPPER)[:, None]).all()
    optimizer.finish()


def test_lbfgsb_ends_with_the_last_accepted_iterate_and_lets_its_thread_go():
    before = threading.active_count()
    target = _target()
    optimizer = optimizers.LBFGSB(5, _LOWER, _UPPER).setup(target)
    _steps(optimizer, target, 6)
    assert threading.active_count() == before + 1
    optimizer.finish()
    assert threading.active_count() == before
    # The parameter holds an iterate SciPy accepted: its energy is the lowest evaluated.
    evaluated = [_energy(p)[0] for p in _scipy_points(numpy.full((1, 3, 2, 2), 3.0), 6)[0]]
    assert _energy(target.x.array)[0] == pytest.approx(min(evaluated), rel=1e-6)


def test_lbfgsb_ends_the_level_when_scipy_stops():
    target = _target()
    optimizer = optimizers.LBFGSB(5, _LOWER, _UPPER).setup(target)
    points = _steps(optimizer, target, 500)
    assert optimizer.stopped == 'converged' and len(points) < 500
    assert optimizer.stopped in optimizers.STOPS
    _, result = _scipy_points(numpy.full((1, 3, 2, 2), 3.0), 500)
    numpy.testing.assert_allclose(target.x.array.ravel(), result.x, rtol=1e-6, atol=1e-6)


# --- end to end --------------------------------------------------------------------------

def test_a_tiny_doodle_with_the_doodle_preset(vgg16_path):
    style, style_labels = two_textures()
    doodle = numpy.zeros((56, 72, 2), numpy.float32)  # top: the dots' region, bottom: stripes'
    doodle[:28, :, 1] = doodle[28:, :, 0] = 1
    steps = []
    result = synthesize(None, style, content_map=doodle, style_map=style_labels,
                        preset='doodle', resolution_num=2, iterations=(8, 12), seed=0,
                        model=vgg16_path, arch='vgg16', callback=steps.append)
    assert result.shape == (56, 72, 3)  # the doodle's own size
    assert [s.level for s in steps] == [0] * 8 + [1] * 12
    assert sorted(steps[0].losses) == ['style_3_1', 'style_4_1', 'tv']
    green = result[..., 1].astype(float) - result[..., 0]
    # The top takes the green dots' colours, the bottom the red stripes'.
    assert green[:20].mean() > green[36:].mean() + 40
    assert result.min() >= 0 and steps[-1].losses['style_3_1'] < steps[0].losses['style_3_1']


def test_a_pixel_bank_scores_plain_dot_products_and_keeps_dead_pixels_at_zero():
    bank = mrf.style_bank([numpy.zeros((1, 4, 5, 5), numpy.float32)], normalisation='pixel',
                          bank_dtype='float16')
    assert bank.bank_dtype == numpy.float16
    assert numpy.isfinite(bank.patches).all() and not bank.patches.any()
    assert (bank.inverse_norms == 1).all()
    assert (mrf.style_bank([numpy.ones((1, 4, 5, 5), numpy.float32)]).inverse_norms
            == numpy.float32(1 / 6)).all()  # 'patch': 1 / |36 ones|
