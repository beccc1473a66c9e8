"""An independent oracle: the authors' L-BFGS, ``mylbfgs`` of CNNMRF's ``mylib/myoptimizer.lua``.

mylbfgs is Torch's ``optim.lbfgs`` with a gradient mask (``g:cmul(mask)``, "add by chris");
CNNMRF's ``transfer_CNNMRF_wrapper.lua`` calls it once per pyramid level with a fresh state,
``maxIter`` = the level's iterations, ``nCorrection`` = 25, ``tolX`` = ``tolFun`` = 0, no line
search, learning rate 1 and a mask of ones. This is a line-by-line port of the Lua function to
NumPy, in the same order, for a float32 ``x``; it uses nothing of chainer_mrf. Only the fixed-step
path is ported (the wrapper passes no ``lineSearch``), and the ``state`` table is the fresh one
the wrapper passes (``state.nIter`` starts at 0, so the first iteration is a gradient step).

Float and double: Lua numbers are doubles; the wrapper makes float32 the default tensor type, so
every tensor here (``x``, ``g``, ``d``, the pairs, ``ro``, ``al``, ``be``, ``q``, ``r``) is
float32. A tensor method that returns a number returns a double holding the float32 result
(``dot``: BLAS ``sdot``, here ``numpy.dot`` of float32 vectors) or, for ``sum``, a double
accumulated in double from the first element to the last (Torch's ``accreal``; here a float64
``cumsum``). Arithmetic on those numbers (``ys``, ``Hdiag = ys / y:dot(y)``, ``1 / ys``, ``t``,
``al[i] - be[i]``, ``abs(f - f_old)``) is done on Python floats (doubles), and a number is rounded
to float32 where Torch rounds it: when stored into a float tensor (``ro[i]``, ``al[i]``,
``be[i]``) or passed as a tensor method's scalar (``mul(Hdiag)``, ``add(t, d)``,
``add(-al[i], y)``, ``mul(t)``). ``f`` is whatever ``opfunc`` returns, as a float.
"""
import collections

import numpy as np

REASONS = ('maxIter', 'maxEval', 'tolFun', 'tolX step', 'tolX energy', 'gtd', 'initial tolFun')
"""Why :func:`mylbfgs` returned: the verbose messages of mylbfgs (and the end of its loop)."""

Result = collections.namedtuple('Result', 'x f_hist evaluations reason steps')
Result.__doc__ = """mylbfgs's return values (x, f_hist, currentFuncEval), why it ended (one of
:data:`REASONS`) and how many steps ``x:add(t, d)`` it made."""


def _sum(tensor):
    """``tensor:sum()`` of a FloatTensor: accumulated in double, first element to last."""
    return float(np.cumsum(tensor, dtype=np.float64)[-1]) if tensor.size else 0.0


def _dot(a, b):
    """``a:dot(b)`` of FloatTensors: the float32 BLAS dot, as a double."""
    return float(np.dot(a, b))


def _div(a, b):
    """Lua's ``a / b`` on doubles (IEEE: inf or NaN at b = 0, where Python raises)."""
    with np.errstate(divide='ignore', invalid='ignore'):
        return float(np.float64(a) / np.float64(b))


def _lua_min(a, b):
    """Lua's ``math.min(a, b)``: b only if b < a (so min(1, NaN) is 1)."""
    return b if b < a else a


def mylbfgs(opfunc, x, maxIter=20, maxEval=None, nCorrection=100, tolX=1e-9, tolFun=1e-5,
            learningRate=1.0, mask=None):
    """mylbfgs(opfunc, x, config, state, mask) with a fresh state and no line search.

    Args:
        opfunc (callable): ``opfunc(x) -> (f, g)``, f a number, g a float32 array of x's size.
        x (numpy.ndarray): the float32 start; not modified (mylbfgs updates it in place; this
            returns the updated copy).
        maxIter (int): Default: 20 (Torch's).
        maxEval (float or None): None is mylbfgs's default, ``maxIter * 1.25``.
        nCorrection (int): Default: 100 (Torch's).
        tolX (float): Default: 1e-9 (Torch's).
        tolFun (float): Default: 1e-5 (Torch's).
        learningRate (float): Default: 1.
        mask (numpy.ndarray or None): multiplies each gradient; None is the wrapper's ones.

    Returns:
        Result: x, f_hist, the number of evaluations, the reason and the number of steps.
    """
    x = np.array(x, dtype=np.float32).ravel()
    if maxEval is None:
        maxEval = maxIter * 1.25
    if mask is None:
        mask = np.ones(x.size, np.float32)  # torch.Tensor(input_image:size()):fill(1)
    mask = np.asarray(mask, np.float32).ravel()
    steps = 0

    def evaluate(at):
        f, g = opfunc(at.copy())
        g = np.array(g, dtype=np.float32).ravel() * mask  # g:cmul(mask)
        return float(f), g

    # evaluate initial f(x) and df/dx
    f, g = evaluate(x)
    f_hist = [f]
    currentFuncEval = 1

    # check optimality of initial point
    tmp1 = np.abs(g)
    if _sum(tmp1) <= tolFun:
        return Result(x, f_hist, currentFuncEval, 'initial tolFun', steps)

    d = t = old_dirs = old_stps = Hdiag = g_old = f_old = None
    ro = np.zeros(nCorrection, np.float32)  # zeros(nCorrection): the default (float) type
    reason = 'maxIter'  # the loop's end when maxIter is 0

    nIter = 0
    state_nIter = 0
    while nIter < maxIter:
        nIter += 1
        state_nIter += 1
        # compute gradient descent direction
        if state_nIter == 1:
            d = -g  # g:clone():mul(-1)
            old_dirs = []
            old_stps = []
            Hdiag = 1.0
        else:
            y = g - g_old  # g:clone():add(-1, g_old)
            s = d * np.float32(t)  # d:clone():mul(t)
            ys = _dot(y, s)
            if ys > 1e-10:
                if len(old_dirs) == nCorrection:
                    old_dirs = old_dirs[1:]  # shift history by one
                    old_stps = old_stps[1:]
                old_dirs.append(s)
                old_stps.append(y)
                Hdiag = ys / _dot(y, y)

            k = len(old_dirs)
            for i in range(k):
                ro[i] = np.float32(_div(1, _dot(old_stps[i], old_dirs[i])))
            al = np.zeros(nCorrection, np.float32)
            be = np.zeros(nCorrection, np.float32)
            q = [None] * (k + 1)
            r = [None] * (k + 1)
            q[k] = -g  # q[k+1] = g:clone():mul(-1)
            for i in range(k - 1, -1, -1):
                al[i] = np.float32(_dot(old_dirs[i], q[i + 1]) * float(ro[i]))
                q[i] = q[i + 1] + np.float32(-float(al[i])) * old_stps[i]
            r[0] = q[0] * np.float32(Hdiag)  # multiply by initial Hessian
            for i in range(k):
                be[i] = np.float32(_dot(old_stps[i], r[i]) * float(ro[i]))
                r[i + 1] = r[i] + np.float32(float(al[i]) - float(be[i])) * old_dirs[i]
            d = r[k].copy()  # d:copy(r[k+1])

        g_old = g.copy()
        f_old = f

        # directional derivative
        gtd = _dot(g, d)
        if gtd > -tolX:
            reason = 'gtd'
            break

        # reset initial guess for step size
        if state_nIter == 1:
            tmp1 = np.abs(g)
            t = _lua_min(1.0, _div(1, _sum(tmp1))) * learningRate
        else:
            t = learningRate

        # no line search, simply move with fixed-step
        x += np.float32(t) * d  # x:add(t, d)
        steps += 1
        lsFuncEval = 0
        if nIter != maxIter:
            f, g = evaluate(x)
            lsFuncEval = 1
            f_hist.append(f)

        currentFuncEval += lsFuncEval

        # check conditions
        if nIter == maxIter:
            reason = 'maxIter'
            break
        if currentFuncEval >= maxEval:
            reason = 'maxEval'
            break
        tmp1 = np.abs(g)
        if _sum(tmp1) <= tolFun:
            reason = 'tolFun'
            break
        tmp1 = np.abs(d * np.float32(t))  # tmp1:copy(d):mul(t):abs()
        if _sum(tmp1) <= tolX:
            reason = 'tolX step'
            break
        if abs(f - f_old) < tolX:
            reason = 'tolX energy'
            break

    return Result(x, f_hist, currentFuncEval, reason, steps)
