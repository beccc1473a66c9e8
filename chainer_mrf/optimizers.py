"""L-BFGS with a fixed step and no line search, as both CNNMRF implementations run it.

Adam needs nothing here: :class:`chainer.optimizers.Adam` has the same ``setup``/``update``
interface as :class:`LBFGS`.
"""
import chainer
from chainer import backend
from chainer import optimizer

_default_hyperparam = optimizer.Hyperparameter()
_default_hyperparam.lr = 1.0
_default_hyperparam.history_size = 10
_default_hyperparam.curvature_eps = 1e-10
_default_hyperparam.ys_floor = 1e-5
_default_hyperparam.scale_first_step = False


class LBFGSRule(optimizer.UpdateRule):
    """L-BFGS update of one parameter; see :class:`LBFGS` for the algorithm and arguments.

    The state holds the previous iterate ``x`` and gradient ``g``, the kept pairs ``s`` and
    ``y`` (one per row, in a ring of rows allocated once for the whole history: a growing
    array would be copied at each update, and held twice while it is), their ``rho`` (0 in
    the rows not yet filled), the row of the newest pair ``newest``, and the initial scaling
    ``h0``, all arrays on the parameter's device, so Chainer's serializers can save and restore
    them.
    """

    def __init__(self, parent_hyperparam=None):
        super().__init__(parent_hyperparam or _default_hyperparam)

    def init_state(self, param):
        xp = param.device.xp
        n, dtype = param.size, param.dtype
        self.state['x'] = xp.zeros(n, dtype)
        self.state['g'] = xp.zeros(n, dtype)
        size = self.hyperparam.history_size
        self.state['s'] = xp.zeros((size, n), dtype)
        self.state['y'] = xp.zeros((size, n), dtype)
        self.state['rho'] = xp.zeros(size, dtype)
        self.state['newest'] = xp.full((), size - 1, dtype='i')
        self.state['h0'] = xp.ones((), dtype)

    def reset(self, param):
        """Forgets the history: the next update is a first step again.

        Args:
            param (chainer.Variable): the parameter this rule updates.
        """
        self.t = 0
        if self.state is not None:
            with chainer.using_device(param.device):
                self.init_state(param)

    def _remember(self, s, y):
        """Keeps the pair (s, y) if it has positive curvature, dropping the oldest if full."""
        hp, state = self.hyperparam, self.state
        ys = y.dot(s)
        if not ys > hp.curvature_eps:
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
        step = param.dtype.type(hp.lr)
        if self.t == 1:
            if hp.scale_first_step:
                # Torch's min(1, 1 / |g|_1), without a division by zero at g = 0.
                step = step / xp.maximum(xp.abs(g).sum(), param.dtype.type(1))
        else:
            self._remember(x - state['x'], g - state['g'])
        state['x'][...] = x
        state['g'][...] = g
        param.array -= step * self._direction(g).reshape(param.shape)

    # One xp-generic implementation serves NumPy and CuPy.
    update_core_cpu = _update
    update_core_gpu = _update


class LBFGS(optimizer.GradientMethod):
    """Limited-memory BFGS with a fixed step and no line search: one gradient per update.

    At update t with gradient g_t at x_t:

    1. For t > 1, the pair s = x_t - x_{t-1}, y = g_t - g_{t-1} is kept if y's >
       ``curvature_eps``, dropping the oldest pair beyond ``history_size``; then
       h0 = y's / y'y of the newest kept pair (1 before any pair is kept) and
       rho = 1 / max(y's, ``ys_floor``).
    2. The two-loop recursion gives d = H g, H the L-BFGS inverse Hessian estimate built from
       the kept pairs on h0 * I (with no pairs, d = h0 * g).
    3. x_{t+1} = x_t - step * d, with step = ``lr``; at t = 1 (after :meth:`setup` or
       :meth:`reset`) d = g, and with ``scale_first_step`` step = lr * min(1, 1 / |g|_1).

    The defaults are dsanno's (chainer-neural-style ``LBFGS(lr, size=10)``); CNNMRF's Torch
    ``lbfgs`` (learning rate 1, ``nCorrection`` 25, no ``ys`` floor) is
    ``LBFGS(history_size=25, ys_floor=0.0, scale_first_step=True)``.

    Each parameter has its own history (a block-diagonal L-BFGS, as dsanno's); synthesis
    optimises one parameter, the image. Arrays stay on the parameter's device, in its dtype;
    the curvature test reads one scalar per update from the device.

    It is a :class:`chainer.optimizer.GradientMethod`, so it is used like
    :class:`chainer.optimizers.Adam`: ``setup(link)``, then ``update()`` after each
    ``backward()`` (or ``update(lossfun, *args)``), with hooks and serializers working as usual.

    Args:
        lr (float): the fixed step length. Default: ``1.0``.
        history_size (int): the most (s, y) pairs kept, >= 1. Default: ``10`` (CNNMRF: 25).
        curvature_eps (float): a pair is kept only if y's exceeds this, >= 0. Default:
            ``1e-10``.
        ys_floor (float): y's is floored at this in rho, >= 0. Default: ``1e-5`` (CNNMRF: 0).
        scale_first_step (bool): scale the first step by min(1, 1 / |g|_1). Default: ``False``
            (CNNMRF: ``True``).

    Raises:
        ValueError: if ``history_size`` < 1, or ``curvature_eps`` or ``ys_floor`` < 0.

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
    """

    def __init__(self, lr=_default_hyperparam.lr,
                 history_size=_default_hyperparam.history_size,
                 curvature_eps=_default_hyperparam.curvature_eps,
                 ys_floor=_default_hyperparam.ys_floor,
                 scale_first_step=_default_hyperparam.scale_first_step):
        super().__init__()
        if history_size < 1:
            raise ValueError('history_size must be at least 1, got %r' % (history_size,))
        if curvature_eps < 0 or ys_floor < 0:
            raise ValueError('curvature_eps and ys_floor must be >= 0, got %r and %r'
                             % (curvature_eps, ys_floor))
        self.hyperparam.lr = lr
        self.hyperparam.history_size = history_size
        self.hyperparam.curvature_eps = curvature_eps
        self.hyperparam.ys_floor = ys_floor
        self.hyperparam.scale_first_step = scale_first_step

    lr = optimizer.HyperparameterProxy('lr')
    history_size = optimizer.HyperparameterProxy('history_size')
    curvature_eps = optimizer.HyperparameterProxy('curvature_eps')
    ys_floor = optimizer.HyperparameterProxy('ys_floor')
    scale_first_step = optimizer.HyperparameterProxy('scale_first_step')

    def create_update_rule(self):
        return LBFGSRule(self.hyperparam)

    def reset(self):
        """Forgets every parameter's history, as at the start of a pyramid level.

        The next :meth:`update` is a first step. The update count :attr:`t` keeps counting.
        """
        for param in self.target.params():
            param.update_rule.reset(param)


OPTIMIZERS = ('lbfgs', 'adam')
"""The optimisers :func:`create` makes."""


def create(name='lbfgs', *, lr=1.0, history_size=10, ys_floor=1e-5, scale_first_step=False):
    """An optimiser of the image by name.

    Args:
        name (str): ``'lbfgs'`` (:class:`LBFGS`) or ``'adam'`` (:class:`chainer.optimizers.Adam`
            with ``alpha=lr``). Default: ``'lbfgs'``.
        lr (float): the step (Adam's alpha). Default: 1.0.
        history_size (int): L-BFGS pairs kept. Default: 10.
        ys_floor (float): L-BFGS's floor of y's in rho. Default: 1e-5.
        scale_first_step (bool): L-BFGS's first step scaled by min(1, 1 / |g|_1). Default:
            ``False``.

    Returns:
        chainer.Optimizer: not yet set up.

    Raises:
        ValueError: for an unknown name.
    """
    if name == 'adam':
        return chainer.optimizers.Adam(alpha=lr)
    if name != 'lbfgs':
        raise ValueError('optimizer must be one of %s, got %r' % (', '.join(OPTIMIZERS), name))
    return LBFGS(lr=lr, history_size=history_size, ys_floor=ys_floor,
                 scale_first_step=scale_first_step)
