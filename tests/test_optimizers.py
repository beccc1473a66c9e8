import collections
import re
import warnings

import chainer_mrf  # noqa: F401  (NumPy shims before chainer)
import chainer
import chainer.functions as F
import numpy
import pytest
from chainer import serializers

from chainer_mrf import optimizers
from chainer_mrf.optimizers import LBFGS, PAIRS, STOPS
from helpers import needs_cuda

import torch_lbfgs_oracle as oracle


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


# The authors' L-BFGS (mylbfgs of CNNMRF's mylib/myoptimizer.lua) against its port.

AUTHORS = {'history_size': 25, 'ys_floor': 0.0, 'scale_first_step': True, 'pair': 'step',
           'tolerance_x': 0.0, 'tolerance_fun': 0.0}
"""``LBFGS(**AUTHORS)`` is mylbfgs as transfer_CNNMRF_wrapper.lua configures it."""

STOP_OF = {'maxIter': None, 'initial tolFun': 'gradient', 'tolFun': 'gradient',
           'tolX step': 'step', 'tolX energy': 'energy', 'gtd': 'direction'}
"""The library's :attr:`LBFGS.stopped` for each way mylbfgs ends (maxIter: not stopped)."""

Run = collections.namedtuple('Run', 'x updates evaluations stopped energies kept')


def _smooth(n=300, seed=0):
    """A smooth, convex, non-quadratic energy in float32 and a start: pseudo-Huber terms with
    weights from 1e-3 to 1 around random centres, a chain coupling and a quartic.

    Fixed-step L-BFGS keeps almost every pair on it (more than the 25 kept, so the history is
    shifted), and after 100 updates it is still changing x without reaching a zero gradient.
    """
    rng = numpy.random.RandomState(seed)
    centre = rng.standard_normal(n).astype(numpy.float32)
    weight = numpy.exp(rng.uniform(numpy.log(1e-3), 0, n)).astype(numpy.float32)
    coupling, quartic = numpy.float32(2), numpy.float32(0.01)

    def fun(x):
        z = x - centre
        root = numpy.sqrt(numpy.float32(1) + z * z)
        dx = numpy.diff(x)
        f = (numpy.sum(weight * (root - 1), dtype=numpy.float64)
             + 0.5 * coupling * numpy.sum(dx * dx, dtype=numpy.float64)
             + 0.25 * quartic * numpy.sum(x ** 4, dtype=numpy.float64))
        g = weight * z / root + quartic * x ** 3
        g[:-1] -= coupling * dx
        g[1:] += coupling * dx
        return float(f), g

    return fun, rng.standard_normal(n).astype(numpy.float32) * 2


def _sequence(grads, energies=None):
    """An opfunc that returns the k-th energy (0 without) and gradient at its k-th call, whatever
    x is: the optimisers see only gradients (and energies), so any sequence can drive them."""
    grads = [numpy.asarray(g, numpy.float32) for g in grads]
    energies = list(energies) if energies is not None else [0.0] * len(grads)
    calls = iter(range(len(grads)))

    def fun(x):
        k = next(calls)
        return energies[k], grads[k].copy()

    return fun


def _run(fun, x0, max_iter, **settings):
    """The library through Chainer's protocol: at most ``max_iter`` updates, each given the
    gradient and energy at the current x; ends when ``stopped``. ``updates`` counts the steps
    taken, ``evaluations`` the calls of ``fun``, ``kept`` the pairs stored."""
    link = Point(numpy.array(x0, numpy.float32))
    opt = LBFGS(**settings).setup(link)
    updates, energies, kept, newest = 0, [], 0, None
    for _ in range(max_iter):
        f, g = fun(link.x.array.copy())
        energies.append(f)
        link.x.grad = g
        opt.update(energy=f)
        if opt.stopped:
            break
        updates += 1
        if newest is not None and int(_state(link)['newest']) != newest:
            kept += 1
        newest = int(_state(link)['newest'])
    return Run(link.x.array, updates, len(energies), opt.stopped, energies, kept)


def _against_oracle(make_fun, x0, max_iter, learning_rate=1.0, **tolerances):
    """mylbfgs and ``LBFGS(**AUTHORS)`` (with ``tolerances`` instead of theirs) on the same
    problem: the same end, number of steps and evaluations, energies and x, bit for bit."""
    settings = dict(AUTHORS, lr=learning_rate, **tolerances)
    theirs = oracle.mylbfgs(make_fun(), x0, maxIter=max_iter, nCorrection=25,
                            tolX=settings['tolerance_x'], tolFun=settings['tolerance_fun'],
                            learningRate=learning_rate)
    ours = _run(make_fun(), x0, max_iter, **settings)
    assert ours.stopped == STOP_OF[theirs.reason]
    assert ours.updates == theirs.steps
    assert ours.evaluations == theirs.evaluations
    assert ours.energies == theirs.f_hist
    numpy.testing.assert_array_equal(ours.x, theirs.x)
    return theirs, ours


@pytest.mark.parametrize('max_iter', [1, 2, 3, 26, 100])
def test_authors_lbfgs_is_mylbfgs_bit_for_bit(max_iter):
    """The trajectories are identical: the library rounds every pair, scaling, rho, alpha,
    beta, direction and step as Torch does (float32 tensors, double Lua numbers; see the
    oracle's docstring), and both use NumPy's float32 dot. The one sum that enters the
    trajectory, sum|g| of the first step, is accumulated in float64 in different orders, which
    would change t only if the two sums straddled a float32 rounding boundary of t."""
    theirs, ours = _against_oracle(lambda: _smooth()[0], _smooth()[1], max_iter)
    assert theirs.reason == 'maxIter' and ours.updates == max_iter
    if max_iter == 100:
        assert ours.kept > 25  # the full history was shifted
        assert theirs.f_hist[-1] < theirs.f_hist[0] / 100


def test_max_eval_never_binds():
    """Without a line search mylbfgs evaluates once per iteration: after n < maxIter iterations
    it has made n + 1 <= maxIter < 1.25 maxIter evaluations, and at n = maxIter its maxIter test
    comes first. So for every maxIter it ends by maxIter, as the library, which has no maxEval,
    after maxIter updates."""
    fun, x0 = _smooth(n=40)
    ours = Point(x0.copy())
    opt = LBFGS(**AUTHORS).setup(ours)
    for max_iter in range(1, 61):
        theirs = oracle.mylbfgs(fun, x0, maxIter=max_iter, nCorrection=25, tolX=0.0, tolFun=0.0)
        assert (theirs.reason, theirs.steps, theirs.evaluations) == ('maxIter', max_iter,
                                                                     max_iter)
        ours.x.grad = fun(ours.x.array.copy())[1]
        opt.update()
        assert opt.stopped is None
        numpy.testing.assert_array_equal(ours.x.array, theirs.x)


def test_the_oracle_implements_max_eval():
    """The test above can fail: a smaller maxEval than mylbfgs's default does end the run."""
    fun, x0 = _smooth(n=40)
    theirs = oracle.mylbfgs(fun, x0, maxIter=10, maxEval=4, nCorrection=25, tolX=0.0,
                            tolFun=0.0)
    assert (theirs.reason, theirs.steps, theirs.evaluations) == ('maxEval', 3, 4)


def _exact_quadratic():
    """f = |x - c|^2 from x = 0 with c = (1, -1, 0, ...): sum|g| = 4, so the first step is
    t = 1/4 to x = c/2; the pair s = c/2, y = c has y's = 1, h0 = 1/2, rho = 1, so the second
    step is c/2 and lands on c, all exactly in float32: the gradient there is exactly 0."""
    centre = numpy.zeros(8, numpy.float32)
    centre[:2] = 1, -1

    def fun(x):
        return float(numpy.sum((x - centre) ** 2)), numpy.float32(2) * (x - centre)

    return fun


# A non-descending direction at tolX = 0, found by a search over gradient sequences. All four
# pairs are kept (y's > 1e-10, so in exact arithmetic H is positive definite), but their
# rho = 1 / y's run from 6.6e4 down to 4.6e-19 and the float32 y's and two-loop recursion cancel
# badly: g.(H g) = -9.6e32 (g * H g = (6.0e32, -1.6e33), so no order of the dot's sum changes its
# sign), that is g.d = +9.6e32 > -0.
NON_DESCENDING = [[134.64541625976562, -1471.3853759765625],
                  [-2305.91845703125, -1694.7196044921875],
                  [-2568.434326171875, -1718.7421875],
                  [-9129.9501953125, -2319.181640625],
                  [-10128.9931640625, -2410.603271484375]]

# A zero step at lr = 1: the first step is (0.25, -0.75) (t = 1 / 4e15); the next gradient, 3e-38,
# scaled by h0 = 2.5e-16, underflows, and so does every term of the two-loop recursion: t d = 0.
ZERO_STEP = [[-1e15, 3e15], [3e-38, -3e-38], [1e-9, 1e-9]]


@pytest.mark.parametrize('make_fun, x0, max_iter, tolerances, reason, steps', [
    (lambda: _sequence([[0., 0., 0.], [1., 1., 1.]]), numpy.ones(3, numpy.float32), 5, {},
     'initial tolFun', 0),
    (_exact_quadratic, numpy.zeros(8, numpy.float32), 10, {}, 'tolFun', 2),
    (lambda: _sequence(ZERO_STEP), numpy.zeros(2, numpy.float32), 3, {}, 'tolX step', 2),
    (lambda: _sequence(NON_DESCENDING), numpy.zeros(2, numpy.float32), 5, {}, 'gtd', 4),
    (lambda: _smooth()[0], _smooth()[1], 200, {'tolerance_fun': 0.1}, 'tolFun', 50),
    (lambda: _smooth()[0], _smooth()[1], 200, {'tolerance_x': 1e-4}, 'tolX energy', 40),
    (lambda: _smooth()[0], _smooth()[1], 200, {'tolerance_x': 1e-5}, 'gtd', 50),
    (lambda: _sequence([[1., -2.], [3., 1.], [2., 2.]], [5.0, 4.0, 4.0005]),
     numpy.zeros(2, numpy.float32), 3, {'tolerance_x': 1e-3}, 'tolX energy', 2),
    (lambda: _sequence([[1., -2.], [1e-3, -1e-3]], [5.0, 3.0]), numpy.zeros(2, numpy.float32),
     5, {'tolerance_x': 1e-3}, 'gtd', 1),
])
def test_each_stop_is_mylbfgs(make_fun, x0, max_iter, tolerances, reason, steps):
    theirs, ours = _against_oracle(make_fun, x0, max_iter, **tolerances)
    assert theirs.reason == reason and theirs.steps == steps
    if reason == 'initial tolFun':
        numpy.testing.assert_array_equal(ours.x, x0)


def test_without_energies_the_energy_test_is_skipped_where_mylbfgs_would_stop():
    """The documented deviation: the authors' feval returns 0 always, so with a positive tolX
    mylbfgs stops after its first step (|0 - 0| < tolX); the library, given no energy, goes on.
    (With their tolX = 0 the test never fires: |f - f_old| < 0 is impossible.)"""
    grads = [[1., -2.], [3., 1.], [2., 2.], [1., 3.]]
    theirs = oracle.mylbfgs(_sequence(grads), numpy.zeros(2, numpy.float32), maxIter=4,
                            nCorrection=25, tolX=1e-3, tolFun=0.0)
    assert (theirs.reason, theirs.steps) == ('tolX energy', 1)
    link = Point(numpy.zeros(2, numpy.float32))
    opt = LBFGS(**dict(AUTHORS, tolerance_x=1e-3)).setup(link)
    for grad in grads:
        _step(opt, link, grad)
    assert opt.stopped is None and link.x.update_rule.t == 4


def test_a_zero_step_at_a_tiny_learning_rate():
    theirs, ours = _against_oracle(lambda: _sequence([[1e-20, -1e-20]] * 3),
                                   numpy.ones(2, numpy.float32), 3, learning_rate=1e-30)
    assert (theirs.reason, ours.stopped, ours.updates) == ('tolX step', 'step', 1)
    numpy.testing.assert_array_equal(ours.x, [1., 1.])


def test_step_pair_is_torch_and_differs_from_the_difference_pair():
    """x_{t-1} + step - x_{t-1} is rounded in float32, so the pairs, and then the iterates,
    differ; Torch keeps s = t * d, the 'step' pair."""
    fun, x0 = _smooth()
    theirs = oracle.mylbfgs(fun, x0, maxIter=10, nCorrection=25, tolX=0.0, tolFun=0.0)
    step = _run(fun, x0, 10, **AUTHORS)
    difference = _run(fun, x0, 10, **dict(AUTHORS, pair='difference'))
    numpy.testing.assert_array_equal(step.x, theirs.x)
    assert not numpy.array_equal(difference.x, theirs.x)
    numpy.testing.assert_allclose(difference.x, theirs.x, rtol=0, atol=1e-4)
    assert difference.stopped is None and difference.updates == 10


def test_step_pair_holds_the_computed_step():
    link = Point(numpy.array([1e4, 0.1], numpy.float32))
    opt = LBFGS(pair='step').setup(link)
    before = link.x.array.copy()
    _step(opt, link, [1e-4 / 3, 1e-4 / 3])
    computed = -numpy.float32(1e-4 / 3) * numpy.float32(1)
    numpy.testing.assert_array_equal(_state(link)['step'], [computed, computed])
    assert link.x.array[0] - before[0] != computed  # 1e4 absorbs most of it
    assert 'x' not in _state(link)


def test_default_makes_no_test_even_at_a_zero_gradient():
    link = Point(numpy.array([1., 2.], numpy.float32))
    opt = LBFGS(scale_first_step=True).setup(link)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no division by sum|g| = 0
        for grad in ([0., 0.], [0., 0.], [1., 0.], [0., 0.]):
            _step(opt, link, grad)
            assert opt.stopped is None
    assert link.x.update_rule.t == 4
    numpy.testing.assert_array_equal(link.x.array, [0., 2.])
    assert set(_state(link)) == {'x', 'g', 's', 'y', 'rho', 'newest', 'h0'}  # as before


@pytest.mark.parametrize('lr', [1.0, 0.3])
def test_first_step_is_torchs_min_of_1_and_the_inverse_l1_norm_in_doubles(lr):
    rng = numpy.random.RandomState(3)
    grad = rng.standard_normal(500).astype(numpy.float32)
    link = Point(numpy.zeros(500, numpy.float32))
    _step(LBFGS(lr=lr, scale_first_step=True).setup(link), link, grad)
    total = numpy.abs(grad).sum(dtype=numpy.float64)
    t = numpy.float32(min(1.0, 1.0 / total) * lr)
    numpy.testing.assert_array_equal(link.x.array, -(t * grad))
    # The float32 form the library had differs here, so this test tells the two apart.
    old = numpy.float32(lr) / numpy.maximum(numpy.abs(grad).sum(), numpy.float32(1))
    assert not numpy.array_equal(link.x.array, -(old * grad))


def test_stopped_is_kept_until_reset_or_setup():
    link = Point(numpy.array([1., 2.], numpy.float32))
    opt = LBFGS(**AUTHORS).setup(link)
    _step(opt, link, [1., 1.])
    _step(opt, link, [0., 0.])
    assert opt.stopped == 'gradient'
    state = {key: value.copy() for key, value in _state(link).items()}
    x = link.x.array.copy()
    calls = []
    for _ in range(2):
        _step(opt, link, [5., -3.])
        opt.update(lambda: calls.append(1))
    assert opt.stopped == 'gradient' and not calls
    numpy.testing.assert_array_equal(link.x.array, x)
    for key, value in state.items():
        numpy.testing.assert_array_equal(_state(link)[key], value)
    opt.reset()
    assert opt.stopped is None
    numpy.testing.assert_array_equal(_step(opt, link, [1., 0.]), [-1., 0.])  # a first step
    _step(opt, link, [0., 0.])
    assert opt.stopped == 'gradient'
    opt.setup(link)
    assert opt.stopped is None


def test_the_energy_comes_from_the_loss_function():
    """``update(lossfun, ...)`` tests the loss it returns, as mylbfgs tests opfunc's f."""
    a, b = _quadratic(n=6, seed=0)

    def opfunc(x):
        variable = chainer.Variable(x.copy())
        loss = _energy(variable, a, b)
        loss.backward()
        return float(loss.array), variable.grad

    x0 = numpy.zeros(6, numpy.float32)
    theirs = oracle.mylbfgs(opfunc, x0, maxIter=50, nCorrection=25, tolX=1e-3, tolFun=0.0)
    assert theirs.reason == 'tolX energy'
    link = Point(x0.copy())
    opt = LBFGS(**dict(AUTHORS, tolerance_x=1e-3)).setup(link)
    calls = 0
    for calls in range(1, 51):
        opt.update(_energy, link.x, a, b, energy=1e9 * calls)  # the loss, not this, is tested
        if opt.stopped:
            break
    assert (opt.stopped, calls - 1) == ('energy', theirs.steps)
    numpy.testing.assert_array_equal(link.x.array, theirs.x)


def test_the_energy_test_needs_this_and_the_previous_energy():
    grads = [[1., -2.], [3., 1.], [2., 2.], [1., 3.]]
    for energies, stopped in [([5., 4., 4.], 'energy'), ([5., None, 4.], None),
                              ([None, 4., 4.], 'energy'), ([None] * 3, None)]:
        link = Point(numpy.zeros(2, numpy.float32))
        opt = LBFGS(**dict(AUTHORS, tolerance_x=1e-3)).setup(link)
        for grad, energy in zip(grads, energies):
            link.x.grad = numpy.asarray(grad, numpy.float32)
            opt.update(energy=energy)
        assert opt.stopped == stopped


def test_stops_are_tested_over_all_parameters():
    class Two(chainer.Link):
        def __init__(self):
            super().__init__()
            with self.init_scope():
                self.a = chainer.Parameter(numpy.ones(2, numpy.float32))
                self.b = chainer.Parameter(numpy.ones(3, numpy.float32))

    link = Two()
    opt = LBFGS(**AUTHORS).setup(link)
    link.a.grad, link.b.grad = numpy.zeros(2, numpy.float32), numpy.ones(3, numpy.float32)
    opt.update()
    assert opt.stopped is None
    numpy.testing.assert_array_equal(
        link.b.array, numpy.full(3, numpy.float32(1) - numpy.float32(1 / 3), numpy.float32))
    link.a.grad, link.b.grad = numpy.zeros(2, numpy.float32), numpy.zeros(3, numpy.float32)
    opt.update()
    assert opt.stopped == 'gradient'
    numpy.testing.assert_array_equal(
        link.b.array, numpy.full(3, numpy.float32(1) - numpy.float32(1 / 3), numpy.float32))


def test_authors_state_round_trips_through_a_serializer(tmp_path):
    fun, x0 = _smooth(n=20)
    links = [Point(x0.copy()) for _ in range(2)]
    opts = [LBFGS(**AUTHORS).setup(link) for link in links]
    for _ in range(5):
        links[0].x.grad = fun(links[0].x.array.copy())[1]
        opts[0].update()
    assert {'step', 'step_l1'} <= set(_state(links[0])) and 'x' not in _state(links[0])
    serializers.save_npz(str(tmp_path / 'opt.npz'), opts[0])
    links[1].x.array[...] = links[0].x.array
    serializers.load_npz(str(tmp_path / 'opt.npz'), opts[1])
    for link, opt in zip(links, opts):
        for _ in range(3):
            link.x.grad = fun(link.x.array.copy())[1]
            opt.update()
    numpy.testing.assert_array_equal(links[0].x.array, links[1].x.array)
    for key, value in _state(links[0]).items():
        numpy.testing.assert_array_equal(_state(links[1])[key], value)
    assert _state(links[1])['step_l1'] == numpy.abs(_state(links[1])['step']).sum(dtype=float)


def test_stops_are_explained():
    assert set(STOPS) == {'gradient', 'step', 'energy', 'direction', 'converged'}
    assert all(isinstance(text, str) and '\n' not in text and text for text in STOPS.values())
    assert PAIRS == ('difference', 'step')


@pytest.mark.parametrize('settings, message', [
    ({'pair': 'iterate'}, 'pair must be one of difference, step'),
    ({'tolerance_x': -1e-9}, 'tolerance_x must be None (no test) or >= 0'),
    ({'tolerance_fun': -1.0}, 'tolerance_fun must be None (no test) or >= 0'),
    ({'tolerance_fun': float('nan')}, 'tolerance_fun must be None (no test) or >= 0'),
])
def test_bad_pairs_and_tolerances_are_rejected(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LBFGS(**settings)
    with pytest.raises(ValueError, match=re.escape(message)):
        optimizers.create('lbfgs', **settings)


def test_create_passes_the_pair_and_tolerances():
    opt = optimizers.create('lbfgs', history_size=25, ys_floor=0.0, scale_first_step=True,
                            pair='step', tolerance_x=0.0, tolerance_fun=0.0)
    assert (opt.pair, opt.tolerance_x, opt.tolerance_fun) == ('step', 0.0, 0.0)
    default = optimizers.create('lbfgs')
    assert (default.pair, default.tolerance_x, default.tolerance_fun) == ('difference', None,
                                                                          None)


@needs_cuda
def test_authors_lbfgs_on_cupy_follows_mylbfgs():
    """On CuPy the dots and sums run in cuBLAS's and CUB's orders, so the trajectory equals
    the oracle's to rounding, and the stops are the same."""
    from chainer.backends import cuda
    fun, x0 = _smooth()
    theirs = oracle.mylbfgs(fun, x0, maxIter=10, nCorrection=25, tolX=0.0, tolFun=0.0)
    link = Point(x0.copy())
    link.to_device('@cupy:0')
    opt = LBFGS(**AUTHORS).setup(link)
    for _ in range(10):
        link.x.grad = cuda.to_gpu(fun(cuda.to_cpu(link.x.array))[1])
        opt.update()
    assert opt.stopped is None
    numpy.testing.assert_allclose(cuda.to_cpu(link.x.array), theirs.x, rtol=1e-3, atol=1e-3)
    for grads, stopped, steps in [([[0., 0.]], 'gradient', 0), (ZERO_STEP, 'step', 2),
                                  ([[1., 0.], [1., 0.], [0., 0.]], 'gradient', 2)]:
        link = Point(numpy.zeros(2, numpy.float32))
        link.to_device('@cupy:0')
        opt = LBFGS(**AUTHORS).setup(link)
        updates = 0
        for grad in grads:
            link.x.grad = cuda.to_gpu(numpy.asarray(grad, numpy.float32))
            opt.update()
            if opt.stopped:
                break
            updates += 1
        assert (opt.stopped, updates) == (stopped, steps)
