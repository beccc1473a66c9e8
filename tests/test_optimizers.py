import chainer
import chainer.functions as F
import numpy
import pytest
from chainer import serializers

from chainer_mrf.optimizers import LBFGS


class Point(chainer.Link):
    def __init__(self, x):
        super().__init__()
        with self.init_scope():
            self.x = chainer.Parameter(numpy.array(x))


def _quadratic(n=6, seed=0):
    """A, b of 0.5 x'Ax - b'x with A symmetric positive definite, eigenvalues in [1, 3]."""
    rng = numpy.random.RandomState(seed)
    q, _ = numpy.linalg.qr(rng.standard_normal((n, n)))
    return q @ numpy.diag(numpy.linspace(1, 3, n)) @ q.T, rng.standard_normal(n)


def _energy(x, a, b):
    return 0.5 * F.sum(x * F.matmul(a.astype(x.dtype), x[:, None])[:, 0]) - F.sum(b * x)


def _step(opt, link, grad):
    """One update with a given gradient; returns the step taken."""
    before = link.x.array.copy()
    link.x.grad = numpy.asarray(grad, link.x.dtype)
    opt.update()
    return link.x.array - before


def _state(link):
    return link.x.update_rule.state


def _kept(state):
    """The kept pairs (s, y, rho), oldest first: the rows whose rho is set, in ring order."""
    size = len(state['rho'])
    rows = [(int(state['newest']) + 1 + k) % size for k in range(size)]
    rows = [i for i in rows if state['rho'][i] > 0]
    return state['s'][rows], state['y'][rows], state['rho'][rows]


def _dense_inverse_hessian(pairs, h0):
    """BFGS inverse Hessian from h0 * I updated with the pairs (s, y, rho), oldest first."""
    h = h0 * numpy.eye(len(pairs[0][0]))
    for s, y, rho in pairs:
        v = numpy.eye(len(s)) - rho * numpy.outer(y, s)
        h = v.T @ h @ v + rho * numpy.outer(s, s)
    return h


@pytest.mark.parametrize('settings', [{}, {'history_size': 25, 'ys_floor': 0.0,
                                            'scale_first_step': True}])
@pytest.mark.parametrize('dtype', [numpy.float64, numpy.float32])
def test_converges_on_a_convex_quadratic(settings, dtype):
    a, b = _quadratic()
    link = Point(numpy.zeros(6, dtype))
    opt = LBFGS(**settings).setup(link)
    for _ in range(40):
        opt.update(_energy, link.x, a, b)
    assert link.x.dtype == dtype
    tolerance = 1e-10 if dtype == numpy.float64 else 1e-4
    numpy.testing.assert_allclose(link.x.array, numpy.linalg.solve(a, b), atol=tolerance)


def test_direction_of_one_pair_by_hand():
    opt = LBFGS().setup(Point([0., 0.]))
    link = opt.target
    _step(opt, link, [-1., 0.])  # x = (1, 0): s = (1, 0)
    step = _step(opt, link, [1., 2.])  # y = (2, 2): y's = 2, y'y = 8, h0 = 1/4, rho = 1/2
    # alpha = 1/2; q = (1, 2) - (1, 1) = (0, 1); q = (0, 1/4); beta = 1/4; d = q + (1/4)(1, 0)
    numpy.testing.assert_allclose(step, [-0.25, -0.25], rtol=1e-13)


@pytest.mark.parametrize('ys_floor', [1e-5, 0.0])
def test_direction_equals_dense_bfgs_from_the_same_pairs(ys_floor):
    a, b = _quadratic(n=8, seed=1)
    link = Point(numpy.zeros(8))
    opt = LBFGS(lr=0.5, ys_floor=ys_floor).setup(link)
    for _ in range(6):
        opt.update(_energy, link.x, a, b)
    link.cleargrads()
    _energy(link.x, a, b).backward()
    grad = link.x.grad.copy()
    step = _step(opt, link, grad)
    state = _state(link)
    kept_s, kept_y, kept_rho = _kept(state)
    assert len(kept_s) == 6  # every pair of a convex quadratic is kept
    assert len(state['s']) == 10  # the rows for the whole history exist from the start
    h = _dense_inverse_hessian(list(zip(kept_s, kept_y, kept_rho)), state['h0'])
    numpy.testing.assert_allclose(step, -0.5 * h @ grad, rtol=1e-10, atol=1e-14)
    s, y = kept_s[-1], kept_y[-1]
    assert state['h0'] == pytest.approx(y @ s / (y @ y), rel=1e-14)
    numpy.testing.assert_allclose(kept_rho, 1 / numpy.einsum('ij,ij->i', kept_s, kept_y),
                                  rtol=1e-14)


def test_first_step_is_a_gradient_step():
    link = Point([1., 2., 3.])
    step = _step(LBFGS(lr=0.7).setup(link), link, [4., -1., 2.])
    numpy.testing.assert_allclose(step, [-2.8, 0.7, -1.4], rtol=1e-13)


@pytest.mark.parametrize('grad, scale', [([4., -1., 2.], 1 / 7), ([0.2, -0.1, 0.3], 1.0)])
def test_cnnmrf_first_step_is_scaled_by_the_inverse_l1_norm(grad, scale):
    link = Point([1., 2., 3.])
    step = _step(LBFGS(lr=0.7, scale_first_step=True).setup(link), link, grad)
    numpy.testing.assert_allclose(step, -0.7 * scale * numpy.array(grad), rtol=1e-13)


@pytest.mark.parametrize('grad', [[0., 2.], [-1.5, 1.], [-1. + 4e-11, 1.]])
def test_pair_without_positive_curvature_is_dropped(grad):
    link = Point([0., 0.])
    opt = LBFGS().setup(link)
    _step(opt, link, [-1., 1.])  # s = (1, -1); y's = 0, -0.5, 4e-11 <= 1e-10
    step = _step(opt, link, grad)
    assert len(_kept(_state(link))[0]) == 0 and _state(link)['h0'] == 1
    numpy.testing.assert_allclose(step, -numpy.array(grad), rtol=1e-13)


@pytest.mark.parametrize('ys_floor, rho', [(1e-5, 1e5), (0.0, 5e6)])
def test_pair_above_the_curvature_threshold_is_kept_with_a_floored_rho(ys_floor, rho):
    link = Point([0., 0.])
    opt = LBFGS(ys_floor=ys_floor).setup(link)
    _step(opt, link, [-1., 1.])  # s = (1, -1)
    _step(opt, link, [-1. + 2e-7, 1.])  # y = (2e-7, 0): y's = 2e-7 > 1e-10, kept
    state = _state(link)
    assert len(_kept(state)[0]) == 1
    assert _kept(state)[2][0] == pytest.approx(rho, rel=1e-8)
    assert state['h0'] == pytest.approx(5e6, rel=1e-8)  # y's / y'y, not floored


def test_rejected_pair_keeps_the_previous_scaling():
    a, b = _quadratic()
    link = Point(numpy.zeros(6))
    opt = LBFGS().setup(link)
    for _ in range(3):
        opt.update(_energy, link.x, a, b)
    h0, kept = float(_state(link)['h0']), len(_state(link)['s'])
    _step(opt, link, _state(link)['g'])  # y = 0
    assert _state(link)['h0'] == h0 and len(_state(link)['s']) == kept


def test_history_is_capped_at_the_newest_pairs():
    a, b = _quadratic()
    link = Point(numpy.zeros(6))
    opt = LBFGS(history_size=3).setup(link)
    steps = []
    for _ in range(7):
        before = link.x.array.copy()
        opt.update(_energy, link.x, a, b)
        steps.append(link.x.array - before)
    state = _state(link)
    assert state['s'].shape == (3, 6) and state['y'].shape == (3, 6) and len(state['rho']) == 3
    # the pair made at update t holds the step of update t - 1
    numpy.testing.assert_allclose(state['s'], steps[-4:-1], rtol=1e-12)


def test_reset_clears_history_and_restarts_with_a_first_step():
    a, b = _quadratic()
    link = Point(numpy.zeros(6))
    opt = LBFGS(lr=0.5).setup(link)
    for _ in range(4):
        opt.update(_energy, link.x, a, b)
    opt.reset()
    state = _state(link)
    assert link.x.update_rule.t == 0 and len(_kept(state)[0]) == 0 and state['h0'] == 1
    step = _step(opt, link, [1., 2., 3., 4., 5., 6.])
    numpy.testing.assert_allclose(step, -0.5 * numpy.arange(1., 7.), rtol=1e-13)
    assert len(_kept(_state(link))[0]) == 0


def test_reset_before_any_update():
    link = Point([1., 1.])
    opt = LBFGS().setup(link)
    opt.reset()
    numpy.testing.assert_allclose(_step(opt, link, [2., 0.]), [-2., 0.], rtol=1e-13)


def test_state_round_trips_through_a_serializer(tmp_path):
    a, b = _quadratic()
    links, opts = [], []
    for _ in range(2):
        links.append(Point(numpy.zeros(6)))
        opts.append(LBFGS(history_size=4).setup(links[-1]))
    for _ in range(5):
        opts[0].update(_energy, links[0].x, a, b)
    serializers.save_npz(str(tmp_path / 'opt.npz'), opts[0])
    links[1].x.array[...] = links[0].x.array
    serializers.load_npz(str(tmp_path / 'opt.npz'), opts[1])
    for link, opt in zip(links, opts):
        for _ in range(3):
            opt.update(_energy, link.x, a, b)
    numpy.testing.assert_array_equal(links[0].x.array, links[1].x.array)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError):
        LBFGS(history_size=0)
    with pytest.raises(ValueError):
        LBFGS(curvature_eps=-1.0)
    with pytest.raises(ValueError):
        LBFGS(ys_floor=-1e-5)


@pytest.mark.parametrize('make', [lambda: LBFGS(), lambda: chainer.optimizers.Adam(alpha=0.1)])
def test_same_call_pattern_as_adam(make):
    a, b = _quadratic()
    link = Point(numpy.zeros(6, numpy.float32))
    opt = make()
    opt.setup(link)
    energies = []
    for _ in range(30):
        link.cleargrads()
        energy = _energy(link.x, a, b)
        energy.backward()
        opt.update()
        energies.append(float(energy.array))
    assert energies[-1] < energies[0]
    assert energies[-1] == pytest.approx(float(-0.5 * b @ numpy.linalg.solve(a, b)), abs=0.05)


def test_full_history_drops_the_oldest_pairs():
    a, b = _quadratic()
    link = Point(numpy.zeros(6))
    opt = LBFGS(lr=0.5, history_size=3).setup(link)
    xs, grads = [], []
    for _ in range(7):
        link.cleargrads()
        _energy(link.x, a, b).backward()
        xs.append(link.x.array.copy())
        grads.append(link.x.grad.copy())
        opt.update()
    # The kept pairs are the last three (s, y) of the iterates before the last update.
    pairs = [(xs[i + 1] - xs[i], grads[i + 1] - grads[i]) for i in range(3, 6)]
    kept_s, kept_y, _ = _kept(_state(link))
    numpy.testing.assert_array_equal(kept_s, [s for s, _ in pairs])
    numpy.testing.assert_array_equal(kept_y, [y for _, y in pairs])
    s, y = pairs[-1]
    h = _dense_inverse_hessian([(s, y, 1 / (y @ s)) for s, y in pairs], y @ s / (y @ y))
    numpy.testing.assert_allclose(xs[-1] - link.x.array, 0.5 * h @ grads[-1], rtol=1e-10)
