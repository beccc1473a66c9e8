"""L-BFGS with a fixed step and no line search, as both CNNMRF implementations run it.

:class:`LBFGS` is dsanno's L-BFGS (chainer-neural-style ``lbfgs.py``) by default and, configured
as ``LBFGS(history_size=25, ys_floor=0.0, scale_first_step=True, pair='step', tolerance_x=0.0,
tolerance_fun=0.0)``, the authors' ``mylbfgs`` (CNNMRF ``mylib/myoptimizer.lua``, a copy of
Torch's ``optim.lbfgs`` with a gradient mask) as ``transfer_CNNMRF_wrapper.lua`` calls it: with
the same float32 arithmetic (each pair, scaling, direction and step rounded as Torch rounds it)
and the same stopping tests in the same order (:data:`STOPS`). The caller stops after the
level's number of updates, which is mylbfgs's ``maxIter``.

Adam needs nothing here: :class:`chainer.optimizers.Adam` has the same ``setup``/``update``
interface as :class:`LBFGS`. :class:`LBFGSB` runs SciPy's L-BFGS-B, neural-doodle's optimiser
(line searches, bounds on the pixels), behind the same interface.
"""
import queue
import threading
import weakref

import chainer
from chainer import backend
from chainer import optimizer
import numpy
import scipy.optimize

PAIRS = ('difference', 'step')
"""The curvature pair's s: ``'difference'`` x_t - x_{t-1} (dsanno), ``'step'`` the step as added
to x (Torch's ``t * d``)."""

STOPS = {
    'gradient': "the gradient's L1 norm is at most tolerance_fun (sum |g| <= tolerance_fun)",
    'step': "the previous step's L1 norm is at most tolerance_x (sum |t d| <= tolerance_x)",
    'energy': 'the energy changed by less than tolerance_x (|f - f_old| < tolerance_x)',
    'direction': 'the L-BFGS direction does not descend (g.d > -tolerance_x)',
    'converged': "SciPy's L-BFGS-B ended on its own (no further progress along its search)",
}
"""Why an :class:`LBFGS` or an :class:`LBFGSB` stopped (their ``stopped``): a one-line
explanation of each."""

_default_hyperparam = optimizer.Hyperparameter()
_default_hyperparam.lr = 1.0
_default_hyperparam.history_size = 10
_default_hyperparam.curvature_eps = 1e-10
_default_hyperparam.ys_floor = 1e-5
_default_hyperparam.scale_first_step = False
_default_hyperparam.pair = 'difference'
_default_hyperparam.tolerance_x = None
_default_hyperparam.tolerance_fun = None


class LBFGSRule(optimizer.UpdateRule):
    """L-BFGS update of one parameter; see :class:`LBFGS` for the algorithm and arguments.

    The state holds the previous gradient ``g`` and, for pair ``'difference'``, the previous
    iterate ``x`` or, for pair ``'step'``, the previous step ``step`` (x_t - x_{t-1} as
    computed, before it was added to x); the kept pairs ``s`` and ``y`` (one per row, in a ring
    of rows allocated once for the whole history: a growing array would be copied at each
    update, and held twice while it is), their ``rho`` (0 in the rows not yet filled), the row
    of the newest pair ``newest``, the initial scaling ``h0`` and, with a ``tolerance_x``, the
    previous step's L1 norm ``step_l1`` (float64, NaN before the first step); all arrays on the
    parameter's device, so Chainer's serializers can save and restore them. The keys follow
    ``pair`` and ``tolerance_x`` as they were when the state was made (at the first update
    after :meth:`LBFGS.setup` or :meth:`reset`).

    With a tolerance set, :meth:`update` computes the step but leaves the parameter alone:
    :class:`LBFGS` makes its stopping tests over all parameters, then applies the steps.
    """

    def __init__(self, parent_hyperparam=None):
        super().__init__(parent_hyperparam or _default_hyperparam)
        self._pending = None

    def init_state(self, param):
        xp = param.device.xp
        n, dtype = param.size, param.dtype
        hp = self.hyperparam
        self.state['step' if hp.pair == 'step' else 'x'] = xp.zeros(n, dtype)
        self.state['g'] = xp.zeros(n, dtype)
        size = hp.history_size
        self.state['s'] = xp.zeros((size, n), dtype)
        self.state['y'] = xp.zeros((size, n), dtype)
        self.state['rho'] = xp.zeros(size, dtype)
        self.state['newest'] = xp.full((), size - 1, dtype='i')
        self.state['h0'] = xp.ones((), dtype)
        if hp.tolerance_x is not None:
            self.state['step_l1'] = xp.full((), numpy.nan, numpy.float64)

    def reset(self, param):
        """Forgets the history: the next update is a first step again.

        Args:
            param (chainer.Variable): the parameter this rule updates.
        """
        self.t = 0
        self._pending = None
        if self.state is not None:
            with chainer.using_device(param.device):
                self.init_state(param)

    def _remember(self, s, y):
        """Keeps the pair (s, y) if it has positive curvature, dropping the oldest if full."""
        hp, state = self.hyperparam, self.state
        ys = y.dot(s)
        # Compared as a double, as Torch (a Lua number) and dsanno (NumPy 1's scalar promotion).
        if not float(ys) > hp.curvature_eps:
            return  # h0 stays that of the newest kept pair (1 before any)
        xp = backend.get_array_module(s)
        row = (int(state['newest']) + 1) % len(state['rho'])  # the oldest row, or an empty one
        state['s'][row] = s
        state['y'][row] = y
        # Kept pairs have y's > curvature_eps >= 0, so flooring y's equals dsanno's floor of |y's|.
        state['rho'][row] = xp.reciprocal(xp.maximum(ys, ys.dtype.type(hp.ys_floor)))
        state['newest'][...] = row
        state['h0'][...] = ys / y.dot(y)

    def _direction(self, g):
        """The two-loop recursion: H g for the inverse Hessian estimate H of the kept pairs."""
        state = self.state
        xp = backend.get_array_module(g)
        size, newest = len(state['rho']), int(state['newest'])
        # The kept rows, newest first; rows not yet filled hold rho = 0 and are left out.
        rows = [(newest - k) % size for k in range(int(xp.count_nonzero(state['rho'])))]
        pairs = [(state['s'][i], state['y'][i], state['rho'][i]) for i in rows]
        q = g.copy()
        alphas = []
        for s, y, rho in pairs:
            alpha = rho * s.dot(q)
            q -= alpha * y
            alphas.append(alpha)
        q *= state['h0']
        for (s, y, rho), alpha in zip(pairs[::-1], alphas[::-1]):
            q += (alpha - rho * y.dot(q)) * s
        return q

    def _update(self, param):
        hp, state = self.hyperparam, self.state
        xp = backend.get_array_module(param.array)
        x, g = param.array.ravel(), param.grad.ravel()
        first = self.t == 1
        testing = hp.tolerance_x is not None or hp.tolerance_fun is not None
        g_l1 = None
        if testing or (first and hp.scale_first_step):
            g_l1 = xp.abs(g).sum(dtype=numpy.float64)  # Torch's tmp1:sum(), a double
        step = param.dtype.type(hp.lr)
        if first:
            if hp.scale_first_step:
                # Torch's t = min(1, 1 / sum|g|) * lr in doubles, then rounded to the parameter's
                # dtype as x:add(t, d) does. 1 / fmax(sum, 1) is the same number as
                # min(1, 1 / sum) (and 1 at sum = 0, where 1 / sum is inf, or NaN, as Lua's min).
                step = ((1.0 / xp.fmax(g_l1, 1.0)) * hp.lr).astype(param.dtype)
        else:
            s = state['step'] if 'step' in state else x - state['x']
            self._remember(s, g - state['g'])
        if 'x' in state:
            state['x'][...] = x
        state['g'][...] = g
        direction = self._direction(g)
        delta = step * direction  # x_{t+1} = x_t - delta
        if not testing:
            self._apply(param, delta)
            return
        previous_l1 = state['step_l1'] if 'step_l1' in state else xp.float64(numpy.nan)
        # g.(H g) = -g.d for Torch's d = -H g, exactly (rounding is symmetric).
        tests = xp.stack([g_l1, xp.asarray(previous_l1, numpy.float64),
                          direction.dot(g).astype(numpy.float64)])
        self._pending = (delta, tests, first)

    def _apply(self, param, delta):
        """Takes the step: x -= delta; keeps what the next update's pair and tests need."""
        param.array -= delta.reshape(param.shape)
        state = self.state
        if 'step' in state:
            backend.get_array_module(delta).negative(delta, out=state['step'])
        if 'step_l1' in state:
            state['step_l1'][...] = abs(delta).sum(dtype=numpy.float64)

    # One xp-generic implementation serves NumPy and CuPy.
    update_core_cpu = _update
    update_core_gpu = _update


class LBFGS(optimizer.GradientMethod):
    """Limited-memory BFGS with a fixed step and no line search: one gradient per update.

    At update t with gradient g_t at x_t:

    1. Stopping tests (only with ``tolerance_fun`` or ``tolerance_x`` set; see below).
    2. For t > 1, the pair s, y = g_t - g_{t-1} is kept if y's > ``curvature_eps`` (compared
       as doubles), dropping the oldest pair beyond ``history_size``; s is x_t - x_{t-1}
       (``pair='difference'``) or the step of update t - 1 as it was computed before being
       added to x (``pair='step'``: Torch's ``s = t * d``; in float32, x_{t-1} + step - x_{t-1}
       is rounded, so the two differ). Then h0 = y's / y'y of the newest kept pair (1 before
       any pair is kept) and rho = 1 / max(y's, ``ys_floor``).
    3. The two-loop recursion gives H g, H the L-BFGS inverse Hessian estimate built from the
       kept pairs on h0 * I (with no pairs, H g = h0 * g).
    4. x_{t+1} = x_t - step * H g, with step = ``lr``; at t = 1 (after :meth:`setup` or
       :meth:`reset`) H g = g and, with ``scale_first_step``, step = min(1, 1 / sum|g|) * lr,
       computed in float64 (sum|g| accumulated in float64) and then rounded to the parameter's
       dtype, as Torch computes it (1 at g = 0).

    The defaults are dsanno's (chainer-neural-style ``LBFGS(lr, size=10)``), without stopping
    tests. The authors' ``mylbfgs`` (CNNMRF ``mylib/myoptimizer.lua``; its wrapper passes
    learning rate 1, ``nCorrection`` 25, ``tolX`` 0, ``tolFun`` 0) is
    ``LBFGS(history_size=25, ys_floor=0.0, scale_first_step=True, pair='step',
    tolerance_x=0.0, tolerance_fun=0.0)``, and the caller makes at most the level's number of
    updates (``maxIter``); on NumPy its trajectory is bit-identical to a float32 port of
    mylbfgs (``tests/torch_lbfgs_oracle.py``).

    **Stopping tests.** mylbfgs evaluates f and g, tests sum|g| <= tolFun, then loops: pair,
    direction d = -H g, ``g.d > -tolX`` -> stop, step, re-evaluate (not in the last
    iteration), and, unless it was the last iteration, tests sum|g| <= tolFun, then
    sum|t d| <= tolX, then |f - f_old| < tolX. Here an update receives the gradient at the
    current x, so the tests mylbfgs makes after a step run at the start of the next update,
    before its pair is stored, and mylbfgs's first test at the first update. At each update:

    a. sum|g| <= ``tolerance_fun``: stop, ``'gradient'``;
    b. (not at the first update) sum|step| of the previous step <= ``tolerance_x``:
       ``'step'``;
    c. (not at the first update, and only if this update and the previous one were given an
       energy) |f - f_old| < ``tolerance_x`` (strict, as Torch's): ``'energy'``;
    d. after the pair is stored and the direction computed: g.(H g) < ``tolerance_x`` (Torch's
       ``gtd > -tolX`` with d = -H g): ``'direction'``.

    A test whose tolerance is None is not made. On a stop the parameters are left unchanged,
    :attr:`stopped` is set to the reason (a key of :data:`STOPS`) and later updates do nothing
    until :meth:`reset` or :meth:`setup` (:attr:`t` counts the stopping update, not the later
    ones); a caller ends the level there, as mylbfgs returns. Sums run over all parameters
    (with one, the image, exactly as mylbfgs's over its one tensor). Deviations from mylbfgs:
    the energy test is skipped without energies (the authors' ``feval`` returns 0 always, so
    with a positive tolX mylbfgs would stop after its first step; with their tolX = 0,
    |0 - 0| < 0 never holds); sum|g| and sum|step| are accumulated in float64 in NumPy's
    (CuPy's) order, not Torch's sequential one, which changes only their last bits.

    mylbfgs's ``maxEval`` (1.25 maxIter by default) never binds here: without a line search
    each iteration evaluates once, so after n < maxIter iterations it has made n + 1 <=
    maxIter < 1.25 maxIter evaluations, and at n = maxIter the maxIter test ends the loop
    first. So it is not implemented.

    Each parameter has its own history (a block-diagonal L-BFGS, as dsanno's); synthesis
    optimises one parameter, the image. Arrays stay on the parameter's device, in its dtype;
    the curvature test and the ring's bookkeeping read a few scalars per update from the
    device; the stopping tests add one read of three scalars per parameter and, with a
    ``lossfun`` and ``tolerance_x``, one of the loss.

    It is a :class:`chainer.optimizer.GradientMethod`, so it is used like
    :class:`chainer.optimizers.Adam`: ``setup(link)``, then ``update()`` after each
    ``backward()`` (or ``update(lossfun, *args)``), with hooks and serializers working as usual
    (with a tolerance set, the step is applied before the optimiser's ``'post'`` hooks but after
    the update rules' own hooks). :attr:`stopped` and the previous energy are not serialized.

    Args:
        lr (float): the fixed step length. Default: ``1.0``.
        history_size (int): the most (s, y) pairs kept, >= 1. Default: ``10`` (CNNMRF: 25).
        curvature_eps (float): a pair is kept only if y's exceeds this, >= 0. Default:
            ``1e-10`` (Torch's constant).
        ys_floor (float): y's is floored at this in rho, >= 0. Default: ``1e-5`` (CNNMRF: 0).
        scale_first_step (bool): scale the first step by min(1, 1 / sum|g|). Default:
            ``False`` (CNNMRF: ``True``).
        pair (str): the pair's s, one of :data:`PAIRS`: ``'difference'`` x_t - x_{t-1} or
            ``'step'`` the computed step. Default: ``'difference'`` (CNNMRF: ``'step'``).
        tolerance_x (float or None): Torch's ``tolX``, >= 0, for the tests ``'step'``,
            ``'energy'`` and ``'direction'``; None makes none of them. Default: ``None``
            (CNNMRF: 0.0).
        tolerance_fun (float or None): Torch's ``tolFun``, >= 0, for the test ``'gradient'``;
            None does not make it. Default: ``None`` (CNNMRF: 0.0).

    Attributes:
        stopped (str or None): why the optimiser stopped, a key of :data:`STOPS`; None while
            it runs.

    Raises:
        ValueError: if ``history_size`` < 1, ``curvature_eps`` or ``ys_floor`` < 0,
            ``pair`` is not in :data:`PAIRS`, or a tolerance is neither None nor >= 0.

    Shape:
        Any parameter shape; the history takes 2 * history_size * (parameter size) elements.

    Examples:
        >>> opt = LBFGS()  # doctest: +SKIP
        >>> opt.setup(image_link)  # doctest: +SKIP
        >>> for _ in range(100):  # doctest: +SKIP
        ...     image_link.cleargrads()
        ...     energy(image_link.x).backward()
        ...     opt.update()
        >>> opt.reset()  # before the next pyramid level  # doctest: +SKIP

        The authors' optimiser, stopping early as mylbfgs would:

        >>> opt = LBFGS(history_size=25, ys_floor=0.0, scale_first_step=True,
        ...             pair='step', tolerance_x=0.0, tolerance_fun=0.0)  # doctest: +SKIP
        >>> for _ in range(steps):  # doctest: +SKIP
        ...     opt.update(lossfun, image_link.x)
        ...     if opt.stopped:
        ...         break
    """

    def __init__(self, lr=_default_hyperparam.lr,
                 history_size=_default_hyperparam.history_size,
                 curvature_eps=_default_hyperparam.curvature_eps,
                 ys_floor=_default_hyperparam.ys_floor,
                 scale_first_step=_default_hyperparam.scale_first_step,
                 pair=_default_hyperparam.pair,
                 tolerance_x=_default_hyperparam.tolerance_x,
                 tolerance_fun=_default_hyperparam.tolerance_fun):
        super().__init__()
        if history_size < 1:
            raise ValueError('history_size must be at least 1, got %r' % (history_size,))
        if curvature_eps < 0 or ys_floor < 0:
            raise ValueError('curvature_eps and ys_floor must be >= 0, got %r and %r'
                             % (curvature_eps, ys_floor))
        if pair not in PAIRS:
            raise ValueError('pair must be one of %s, got %r' % (', '.join(PAIRS), pair))
        for name, value in (('tolerance_x', tolerance_x), ('tolerance_fun', tolerance_fun)):
            if value is not None and not value >= 0:
                raise ValueError('%s must be None (no test) or >= 0, got %r' % (name, value))
        self.hyperparam.lr = lr
        self.hyperparam.history_size = history_size
        self.hyperparam.curvature_eps = curvature_eps
        self.hyperparam.ys_floor = ys_floor
        self.hyperparam.scale_first_step = scale_first_step
        self.hyperparam.pair = pair
        self.hyperparam.tolerance_x = tolerance_x
        self.hyperparam.tolerance_fun = tolerance_fun
        self.stopped = None
        self._energy = None  # the energy at this update's x, until it is the previous one
        self._previous_energy = None

    lr = optimizer.HyperparameterProxy('lr')
    history_size = optimizer.HyperparameterProxy('history_size')
    curvature_eps = optimizer.HyperparameterProxy('curvature_eps')
    ys_floor = optimizer.HyperparameterProxy('ys_floor')
    scale_first_step = optimizer.HyperparameterProxy('scale_first_step')
    pair = optimizer.HyperparameterProxy('pair')
    tolerance_x = optimizer.HyperparameterProxy('tolerance_x')
    tolerance_fun = optimizer.HyperparameterProxy('tolerance_fun')

    def create_update_rule(self):
        return LBFGSRule(self.hyperparam)

    def setup(self, link):
        """Sets up the parameters of ``link`` with fresh histories; clears :attr:`stopped`.

        Args:
            link (chainer.Link): the link whose parameters to optimise.

        Returns:
            LBFGS: this optimiser.
        """
        super().setup(link)
        self.stopped = None
        self._previous_energy = None
        return self

    def reset(self):
        """Forgets every parameter's history, as at the start of a pyramid level.

        The next :meth:`update` is a first step; :attr:`stopped` is cleared to None. The update
        count :attr:`t` keeps counting.
        """
        self.stopped = None
        self._previous_energy = None
        for param in self.target.params():
            param.update_rule.reset(param)

    def update(self, lossfun=None, *args, energy=None, **kwds):
        """One L-BFGS update from the gradients, or does nothing once :attr:`stopped`.

        As :meth:`chainer.optimizer.GradientMethod.update`: with ``lossfun``, the gradients of
        ``lossfun(*args, **kwds)`` are computed first; otherwise those already computed are
        used.

        Args:
            lossfun (callable or None): returns the loss (a scalar :class:`chainer.Variable`).
                Default: ``None``.
            *args: ``lossfun``'s positional arguments.
            energy (float or None): the energy at the current parameters, for the test
                ``'energy'``; with ``lossfun`` its loss is used instead. Default: ``None``.
            **kwds: ``lossfun``'s keyword arguments.
        """
        if self.stopped is not None:
            return
        self._energy = energy
        if lossfun is not None:
            user_lossfun = lossfun

            def lossfun(*args, **kwds):
                loss = user_lossfun(*args, **kwds)
                self._energy = loss.array  # read from the device only if tested
                return loss
        super().update(lossfun, *args, **kwds)

    def call_hooks(self, timing='pre'):
        """Invokes the hooks; before the ``'post'`` ones, makes the tests and takes the steps.

        Args:
            timing (str): ``'pre'`` or ``'post'``. Default: ``'pre'``.
        """
        if timing == 'post':
            self._conclude()
        super().call_hooks(timing)

    def _conclude(self):
        """The stopping tests over all parameters, then the steps unless one stops."""
        hp = self.hyperparam
        rules = [param.update_rule for param in self.target.params()
                 if getattr(param.update_rule, '_pending', None) is not None]
        energy, previous_energy = self._energy, self._previous_energy
        self._energy, self._previous_energy = None, energy
        if not rules:
            return
        first = any(rule._pending[2] for rule in rules)
        # One read per parameter: sum|g|, the previous sum|step|, g.(H g).
        g_l1, step_l1, ghg = sum(backend.CpuDevice().send(rule._pending[1]) for rule in rules)
        tol_x, tol_fun = hp.tolerance_x, hp.tolerance_fun
        if tol_fun is not None and g_l1 <= tol_fun:
            self.stopped = 'gradient'
        elif tol_x is not None and not first and step_l1 <= tol_x:
            self.stopped = 'step'
        elif (tol_x is not None and not first and energy is not None
              and previous_energy is not None
              and abs(float(energy) - float(previous_energy)) < tol_x):
            self.stopped = 'energy'
        elif tol_x is not None and -ghg > -tol_x:
            self.stopped = 'direction'
        for param in self.target.params():
            rule = param.update_rule
            if getattr(rule, '_pending', None) is not None:
                if self.stopped is None:
                    with chainer.using_device(param.device):
                        rule._apply(param, rule._pending[0])
                rule._pending = None


class _Stop(Exception):
    """Ends SciPy's minimisation from inside its objective: the level's steps are spent."""


class LBFGSB:
    """SciPy's L-BFGS-B (``scipy.optimize.minimize(method='L-BFGS-B')``), neural-doodle's
    optimiser, one energy evaluation per :meth:`update`.

    SciPy drives its own loop and calls the objective; the synthesis drives the steps and
    reports each. So SciPy runs in a thread of its own whose objective hands each point it
    asks for to :meth:`update` and waits for the energy and gradient there: each update answers
    the point the parameter holds and moves the parameter to the next point SciPy asks for.
    Every step is then one evaluation, as neural-doodle counts them (``maxfun``); line-search
    trials are steps too. SciPy computes in float64 on the CPU; the energy is evaluated at the
    float32 point (on the parameter's device), as neural-doodle evaluates it.

    The level ends after its steps (:meth:`finish` hands back the last iterate SciPy accepted,
    what ``fmin_l_bfgs_b`` returns) or when SciPy stops on its own (:attr:`stopped` is
    ``'converged'``): its tolerances are 0, as neural-doodle's ``factr`` and ``pgtol``.

    Args:
        history_size (int): the pairs kept (``maxcor``, neural-doodle's ``m``). Default: 5.
        lower (tuple of float): each channel's lowest value (broadcast over the image);
            neural-doodle's bounds are the pixels' [0, 255]. Default: ``(-inf,)``.
        upper (tuple of float): each channel's highest value. Default: ``(inf,)``.

    Examples:
        >>> optimizer = LBFGSB(lower=(-104.0, -117.0, -124.0), upper=(151.0, 138.0, 131.0))
        >>> optimizer.setup(target)  # doctest: +SKIP
    """

    def __init__(self, history_size=5, lower=(-numpy.inf,), upper=(numpy.inf,)):
        if not (isinstance(history_size, int) and history_size >= 1):
            raise ValueError('history_size must be an integer >= 1, got %r' % (history_size,))
        self.history_size = history_size
        self.lower, self.upper = lower, upper
        self.target = None
        self.stopped = None
        self._thread = None

    def setup(self, target):
        """Starts a level on ``target``'s one parameter, moved into the bounds first (so that
        SciPy's first point is the parameter as it is)."""
        self.finish()
        param, = target.params()
        self.target = target
        self.stopped = None
        xp = backend.get_array_module(param.array)
        lower, upper = (xp.asarray(bound, numpy.float32) for bound in self._bounds(param.shape))
        xp.clip(param.array, lower, upper, out=param.array)
        return self

    def _bounds(self, shape):
        """The lowest and highest values of every element of a parameter of ``shape``, float64
        (read-only broadcast views)."""
        per_channel = (1, -1) + (1,) * (len(shape) - 2)
        return tuple(numpy.broadcast_to(numpy.asarray(bound, numpy.float64).reshape(per_channel),
                                        shape) for bound in (self.lower, self.upper))

    def update(self, energy):
        """Answers SciPy's point (the parameter) with ``energy`` and the parameter's gradient,
        then moves the parameter to the next point SciPy asks for.

        Args:
            energy (float): the energy at the parameter.
        """
        param, = self.target.params()
        if self._thread is None:
            self._start(param)
        self._replies.put((float(energy), _host(param.grad).astype(numpy.float64).ravel()))
        kind, value = self._requests.get()
        if kind == 'error':
            self._thread = None
            raise value
        if kind == 'done':
            self._thread = None
            self.stopped = 'converged'
        param.array[...] = param.device.send(value.reshape(param.shape).astype(numpy.float32))

    def finish(self):
        """Ends the level: stops SciPy's thread, and puts its last accepted iterate (or the
        start, before SciPy accepted one) in the parameter."""
        if self._thread is not None:
            self._replies.put(None)
            self._thread.join()
            self._thread = None
            param, = self.target.params()
            param.array[...] = param.device.send(
                self._accepted[0].reshape(param.shape).astype(numpy.float32))

    def _start(self, param):
        x0 = _host(param.array).astype(numpy.float64).ravel()
        lower, upper = (bound.ravel() for bound in self._bounds(param.shape))
        self._requests, self._replies = queue.Queue(), queue.Queue()
        self._accepted = [x0]
        self._thread = threading.Thread(
            target=_minimise, daemon=True, name='chainer-mrf L-BFGS-B',
            args=(x0, lower, upper, self.history_size, self._requests, self._replies,
                  self._accepted))
        self._thread.start()
        # An optimiser dropped in mid-level (an error, an interrupt) lets its thread go.
        weakref.finalize(self, self._replies.put, None)
        kind, value = self._requests.get()  # SciPy's first point: the parameter itself
        if kind == 'error':
            raise value


def _minimise(x0, lower, upper, history_size, requests, replies, accepted):
    """SciPy's L-BFGS-B in its thread, asking ``requests`` for each evaluation."""
    def evaluate(x):
        requests.put(('evaluate', x.copy()))
        reply = replies.get()
        if reply is None:
            raise _Stop
        return reply

    def accept(xk):
        accepted[:] = [numpy.array(xk)]  # the last only: finish() needs no more

    try:
        result = scipy.optimize.minimize(
            evaluate, x0, jac=True, method='L-BFGS-B',
            bounds=scipy.optimize.Bounds(lower, upper),
            callback=accept,
            options=dict(maxcor=history_size, ftol=0.0, gtol=0.0, maxfun=2 ** 31 - 1,
                         maxiter=2 ** 31 - 1))
    except _Stop:
        return
    except BaseException as error:  # handed to the caller's thread, raised there
        requests.put(('error', error))
        return
    accept(result.x)
    requests.put(('done', result.x))


def _host(array):
    """A NumPy array of ``array`` (a copy from a GPU)."""
    return chainer.backend.CpuDevice().send(array)


OPTIMIZERS = ('lbfgs', 'adam', 'lbfgsb')
"""The optimisers :func:`create` makes."""


def create(name='lbfgs', *, lr=1.0, history_size=10, ys_floor=1e-5, scale_first_step=False,
           pair='difference', tolerance_x=None, tolerance_fun=None, lower=(-numpy.inf,),
           upper=(numpy.inf,)):
    """An optimiser of the image by name.

    The authors' L-BFGS is ``create('lbfgs', history_size=25, ys_floor=0.0,
    scale_first_step=True, pair='step', tolerance_x=0.0, tolerance_fun=0.0)``.

    Args:
        name (str): ``'lbfgs'`` (:class:`LBFGS`) or ``'adam'`` (:class:`chainer.optimizers.Adam`
            with ``alpha=lr``; the other arguments are L-BFGS's and ignored). Default:
            ``'lbfgs'``.
        lr (float): the step (Adam's alpha). Default: 1.0.
        history_size (int): L-BFGS pairs kept. Default: 10.
        ys_floor (float): L-BFGS's floor of y's in rho. Default: 1e-5.
        scale_first_step (bool): L-BFGS's first step scaled by min(1, 1 / sum|g|). Default:
            ``False``.
        pair (str): L-BFGS's pair, one of :data:`PAIRS`. Default: ``'difference'``.
        tolerance_x (float or None): L-BFGS's ``tolX`` (tests ``'step'``, ``'energy'``,
            ``'direction'``), None for none. Default: ``None``.
        tolerance_fun (float or None): L-BFGS's ``tolFun`` (test ``'gradient'``), None for
            none. Default: ``None``.
        lower (tuple of float): ``'lbfgsb'`` only (:class:`LBFGSB`, which also takes
            ``history_size``): each channel's lowest value. Default: ``(-inf,)``.
        upper (tuple of float): ``'lbfgsb'`` only: each channel's highest value. Default:
            ``(inf,)``.

    Returns:
        chainer.Optimizer or LBFGSB: not yet set up.

    Raises:
        ValueError: for an unknown name, or an L-BFGS argument :class:`LBFGS` rejects.
    """
    if name == 'adam':
        return chainer.optimizers.Adam(alpha=lr)
    if name == 'lbfgsb':
        return LBFGSB(history_size, lower, upper)
    if name != 'lbfgs':
        raise ValueError('optimizer must be one of %s, got %r' % (', '.join(OPTIMIZERS), name))
    return LBFGS(lr=lr, history_size=history_size, ys_floor=ys_floor,
                 scale_first_step=scale_first_step, pair=pair, tolerance_x=tolerance_x,
                 tolerance_fun=tolerance_fun)
