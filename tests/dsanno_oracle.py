"""An independent oracle: dsanno's CNNMRF (chainer-neural-style, ``run_mrf.py``), neural style
(``run.py --method gram``) and colour options (``--keep_color``, ``--luminance_only``,
``--match_color_histogram``) step by step.

dsanno's code is Python 2 for Chainer 1; this is a line-by-line port to Python 3 and Chainer 7
(``Variable(..., volatile=True)`` becomes ``no_backprop_mode``, ``chainer.Link(x=shape)`` a Link
with one Parameter, ``zerograds`` ``cleargrads``, ``six.moves.range`` ``range``), keeping dsanno's
float dtypes. It imports only NumPy, Chainer and Pillow, never chainer_mrf: it uses none of
chainer_mrf's losses, patches, matching, Gram matrices, colour functions, optimizers, pyramid or
synthesis. The one exception is the network it is given: chainer_mrf's VGG16 (the network
dsanno's ``net.py`` describes: Caffe VGG16, ReLU outputs, 2x2 max pooling with Chainer's default
cover_all=True). Each part names the dsanno file and function it follows.

Besides running dsanno's loop (:func:`mrf`, :func:`neural_style`), it evaluates dsanno's energy
and takes dsanno's L-BFGS step along another implementation's trajectory (:func:`mrf_levels`,
:func:`neural_style_levels`, :func:`teacher_forced`), and states the float32 rounding bounds the
parity tests compare with (:func:`gamma`; not dsanno's, the tests' yardstick).
"""
import math
import warnings

import chainer
import chainer.functions as F
import numpy as np
from PIL import Image

MEAN = np.asarray([104, 117, 124], dtype=np.float32)  # net.py VGG.__init__ (BGR)


def open_and_resize_image(path, target_width):
    """style_transfer_runner.py open_and_resize_image, with net.py VGG.preprocess('RGB')."""
    image = Image.open(path).convert('RGB')
    width, height = image.size
    # Python 2's round(float(height * target_width) / width) rounds halves away from zero.
    target_height = int(math.floor(float(height * target_width) / width + 0.5))
    image = image.resize((target_width, target_height), Image.BILINEAR)
    image = np.asarray(image, dtype=np.float32)[:, :, ::-1]
    return np.expand_dims(np.rollaxis(image - MEAN, 2), 0)


def postprocess(x):
    """net.py VGG.postprocess('RGB'): float RGB (H, W, 3). (The runner then truncates to uint8.)"""
    return (np.transpose(x[0], (1, 2, 0)) + MEAN)[:, :, ::-1]


def pixel_difference(result, final):
    """|ours - dsanno's| per pixel and channel: chainer_mrf's uint8 ``result`` against the
    oracle's ``final`` array, in one convention (chainer_mrf rounds to uint8 where dsanno
    truncates, astype after clip)."""
    theirs = np.rint(postprocess(final)).clip(0, 255).astype(np.uint8)
    return np.abs(result.astype(int) - theirs.astype(int))


def total_variation(x):
    """util.py total_variation, newest version: per-channel [1, -1] kernels, unnormalised sum."""
    ch = x.shape[1]  # dsanno writes the 3x3 kernel banks out by hand; the same arrays
    wh = (np.identity(ch, dtype=np.float32)[:, :, None, None]
          * np.asarray([[1], [-1]], dtype=np.float32))  # (ch, ch, 2, 1)
    ww = (np.identity(ch, dtype=np.float32)[:, :, None, None]
          * np.asarray([[1, -1]], dtype=np.float32))  # (ch, ch, 1, 2)
    return F.sum(F.convolution_2d(x, W=wh) ** 2) + F.sum(F.convolution_2d(x, W=ww) ** 2)


def patch(x, ksize=3, stride=1, pad=0):
    """util.py patch: an identity convolution, (1, C, H, W) -> (1, C*k*k, H-k+1, W-k+1)."""
    ch = x.shape[1]
    w = np.identity(ch * ksize * ksize, dtype=np.float32).reshape(
        (ch * ksize * ksize, ch, ksize, ksize))
    return F.convolution_2d(x, W=w, stride=stride, pad=pad)


# Norms are raised to this before dividing; dsanno has no epsilon. It only changes a norm that is
# exactly 0 (dsanno: 0/0 = NaN); nearest_neighbor_patch counts those in ZERO_NORMS.
EPS = 1e-30
ZERO_NORMS = {'query': 0, 'style': 0}


def nearest_neighbor_patch(x, patch, patch_norm, choose=None):
    """util.py nearest_neighbor_patch: dense product of normalised patches, argmax per query.

    ``choose(correlation)``, if given, returns the indices in place of dsanno's argmax (a test
    checks another implementation's choices against ``correlation`` and forces them)."""
    assert patch.shape[0] == 1 and patch_norm.shape[0] == 1
    z = x.array
    b, ch, h, w = z.shape
    z = z.transpose((1, 0, 2, 3)).reshape((ch, -1))
    norm = np.expand_dims(np.sum(z ** 2, axis=0) ** 0.5, 0)
    ZERO_NORMS['query'] += int((norm == 0).sum())
    z = z / np.broadcast_to(np.maximum(norm, EPS), z.shape)
    p = patch.array.reshape((ch, -1))
    p_norm = patch_norm.array.reshape((1, -1))
    ZERO_NORMS['style'] += int((p_norm == 0).sum())
    p_normalized = p / np.broadcast_to(np.maximum(p_norm, EPS), p.shape)
    correlation = z.T.dot(p_normalized)
    min_index = np.argmax(correlation, axis=1) if choose is None else choose(correlation)
    nearest_neighbor = p.take(min_index, axis=1).reshape((ch, b, h, w)).transpose((1, 0, 2, 3))
    return chainer.Variable(nearest_neighbor)


class LBFGS(object):
    """lbfgs.py LBFGS.update_one (as in dsanno/chainer-dfi; chainer-high-resolution-texture-
    transfer has the same algorithm as a Chainer 2 UpdateRule). ``setup`` starts a fresh state:
    dsanno calls ``optimizer.setup(link)`` at every level.
    """

    def __init__(self, lr=0.01, size=100):
        self.lr = lr
        self._size = size
        self._min_ro = 1e-5

    def setup(self, link):
        self.param = link.x
        self.state = {'s': []}  # init_state

    def update(self):
        param, state = self.param, self.state
        data = np.ravel(param.array)
        grad = np.ravel(param.grad)
        if 'x' not in state:
            state['x'] = data.copy()
            state['g'] = grad.copy()
            h0 = 1
        else:
            s = data - state['x']
            y = grad - state['g']
            state['x'][...] = data
            state['g'][...] = grad
            ys = np.dot(y.T, s)
            if ys > 1e-10:
                state['s'].append((s, y))
                if len(state['s']) > self._size:
                    state['s'] = state['s'][1:]
                h0 = np.dot(y.T, s) / np.dot(y.T, y)
            else:
                h0 = state['h0']
        state['h0'] = h0
        q = grad.copy()
        stack = []
        for s, y in state['s'][::-1]:
            ro_inv = np.dot(y.T, s)
            if np.abs(ro_inv) < self._min_ro:
                ro_inv = self._min_ro if ro_inv >= 0 else -self._min_ro
            ro = 1 / ro_inv  # NumPy 1.x made a floored ro (a Python float) and a, b float64
            a = ro * np.dot(s.T, q)
            q -= a * y
            stack.append((ro, a))
        q *= h0
        for s, y in state['s']:
            ro, a = stack.pop()
            b = ro * np.dot(y.T, q)
            q += (a - b) * s
        param.array -= self.lr * np.reshape(q, param.array.shape)


def mrf_levels(content_image, style_image, vgg, content_weight=1.0, style_weight=0.2,
               tv_weight=1e-5, content_layers=('4_2',), style_layers=('3_2', '4_2'),
               resolution_num=3, keep_color=False, match=None):
    """neural_style.py MRF.__fit's levels with run_mrf.py's defaults: for each, the level's
    content and its energy (MRF.__fit_one before the update; see :func:`gradient`).

    ``vgg`` is a chainer_mrf VGG16. ``match(name, correlation)``, if given, replaces the argmax
    of the style layer ``name`` (:func:`nearest_neighbor_patch`).
    """
    model = _model(vgg, content_layers, style_layers)

    def style_targets(style_layers_):
        style_patches = []
        for name in style_layers:
            p = patch(style_layers_[name])
            patch_norm = F.expand_dims(F.sum(p ** 2, axis=1) ** 0.5, 1)
            style_patches.append((name, (p, patch_norm)))
        return style_patches

    def style_loss(name, layer, style):
        """MRF.__fit_one's style term of one layer, unweighted."""
        style_patch, style_patch_norm = style
        p = patch(layer)
        choose = None if match is None else (lambda correlation: match(name, correlation))
        return F.mean_squared_error(
            p, nearest_neighbor_patch(p, style_patch, style_patch_norm, choose))

    return _levels(content_image, style_image, model, content_layers, style_targets, style_loss,
                   (content_weight, style_weight, tv_weight), resolution_num, keep_color)


def mrf(content_image, style_image, vgg, epoch_num, lr=1.0, callback=None, **options):
    """neural_style.py MRF.__fit with run_mrf.py's defaults (initial_image='content'); the
    options are :func:`mrf_levels`'.

    ``callback(epoch, x, loss_info)`` as dsanno's. Returns the final image array, preprocessed
    (1, 3, H, W).
    """
    return _fit(mrf_levels(content_image, style_image, vgg, **options), epoch_num, lr,
                'content', callback)


def neural_style_levels(content_image, style_image, vgg, content_weight=5.0,
                        style_weight=100.0, tv_weight=1e-3, content_layers=('3_3', '4_3'),
                        style_layers=('1_2', '2_2', '3_3', '4_3'), resolution_num=1,
                        keep_color=False):
    """neural_style.py NeuralStyle.__fit's levels with run.py's defaults, as
    :func:`mrf_levels`."""
    model = _model(vgg, content_layers, style_layers)

    def style_targets(style_layers_):
        return [(name, gram_matrix(style_layers_[name])) for name in style_layers]

    def style_loss(name, layer, style_gram):
        """NeuralStyle.__fit_one's style term of one layer, unweighted."""
        return F.mean_squared_error(gram_matrix(layer), chainer.Variable(style_gram.array))

    return _levels(content_image, style_image, model, content_layers, style_targets, style_loss,
                   (content_weight, style_weight, tv_weight), resolution_num, keep_color)


def neural_style(content_image, style_image, vgg, epoch_num, initial_image, lr=1.0,
                 callback=None, **options):
    """neural_style.py NeuralStyle.__fit with run.py's defaults; the options are
    :func:`neural_style_levels`'.

    ``initial_image`` is ``'content'`` or the random start itself: dsanno draws
    ``xp.random.normal(0, 1, size=content_x.shape).astype(np.float32) * 0.001`` from the unseeded
    global generator, which no test can repeat, so the test passes the array it gives
    chainer_mrf. Returns the final image array, preprocessed (1, 3, H, W).
    """
    return _fit(neural_style_levels(content_image, style_image, vgg, **options), epoch_num, lr,
                initial_image, callback)


def _model(vgg, content_layers, style_layers):
    """net.py VGG.__call__: {'4_2': relu4_2, ...} of the layers asked for."""
    names = sorted(set(content_layers) | set(style_layers))

    def model(x):
        out = vgg(x, layers=['relu' + name for name in names])
        return {name: out['relu' + name] for name in names}
    return model


def _levels(content_image, style_image, model, content_layers, style_targets, style_loss,
            weights, resolution_num, keep_color):
    """The levels of dsanno's MRF.__fit and NeuralStyle.__fit (written twice there): the
    targets of each level from the subsampled content and style (with ``keep_color``, the
    style's luminance standardised to the content's, ``util.luminance_only``); yields
    ``(content_x, energy)``, ``energy(x)`` giving ``(loss, loss_info)`` at a Variable ``x``."""
    width = content_image.shape[-1]
    for stride in [4, 2, 1][-resolution_num:]:
        if width // stride < 64:
            continue
        content_x = content_image[:, :, ::stride, ::stride]
        if keep_color:
            style_x = luminance_only(style_image[:, :, ::stride, ::stride], content_x)
        else:
            style_x = style_image[:, :, ::stride, ::stride]
        with chainer.no_backprop_mode():
            content_layers_ = model(content_x)
            content_targets = [(name, content_layers_[name]) for name in content_layers]
            targets = style_targets(model(style_x))

        def energy(x, content_targets=content_targets, targets=targets, seen={}):
            return _energy(model, x, content_targets, targets, style_loss, weights, keep_color,
                           seen)
        # For a test's rounding bounds: the targets, and the style layers' last features.
        energy.targets, energy.seen = targets, energy.__defaults__[-1]
        yield content_x, energy


def upsample(input_image, shape):
    """The next level's start in MRF.__fit and NeuralStyle.__fit: each pixel repeated 2 x 2,
    cropped to ``shape``'s (H, W)."""
    input_image = input_image.repeat(2, 2).repeat(2, 3)
    h, w = shape[-2:]
    return input_image[:, :, :h, :w]


def _fit(levels, epoch_num, lr, initial_image, callback):
    """The loop of dsanno's MRF.__fit and NeuralStyle.__fit: at each level a start (the
    content, the given array, or the previous level upsampled), a fresh L-BFGS, ``epoch_num``
    steps."""
    optimizer = LBFGS(lr, size=10)  # style_transfer_runner.py run: the same for both methods
    input_image = None
    base_epoch = 0
    for content_x, energy in levels:
        link = _image_link(_start(input_image, content_x, initial_image))
        optimizer.setup(link)
        for epoch in range(epoch_num):
            link.cleargrads()
            loss, loss_info = energy(link.x)
            loss.backward()
            optimizer.update()
            if callback:
                callback(base_epoch + epoch, link.x, loss_info)
        base_epoch += epoch_num
        input_image = link.x.array
    return link.x.array


def _start(previous, content_x, initial_image):
    """A level's start in MRF.__fit and NeuralStyle.__fit: at the first (no ``previous``
    image) the content or the given array, else the previous level's image upsampled."""
    if previous is None:
        return content_x if isinstance(initial_image, str) else initial_image
    return upsample(previous, content_x.shape)


def _image_link(input_image):
    """dsanno's ``chainer.Link(x=input_image.shape)``, then ``link.x.data[:] = input_image``."""
    link = chainer.Link()
    with link.init_scope():
        link.x = chainer.Parameter(np.zeros(input_image.shape, dtype=np.float32))
    link.x.array[:] = input_image
    return link


def gradient(energy, x):
    """The terms (a dict) and the gradient of a level's ``energy`` at the array ``x``, as
    dsanno's __fit_one computes them before its update."""
    x = chainer.Variable(np.array(x, dtype=np.float32))
    loss, loss_info = energy(x)
    loss.backward()
    return dict(loss_info), x.grad


def teacher_forced(levels, steps, lr=1.0, initial_image='content'):
    """dsanno's loop along another implementation's trajectory (teacher forcing).

    ``steps[l]`` lists that implementation's steps at level ``l`` of ``levels``
    (:func:`mrf_levels` or :func:`neural_style_levels`), each ``(x, grad, x_next)``: the image
    before the step, the gradient it computed there and the image after. For each step this
    yields a dict: ``losses`` and ``grad``, dsanno's terms and gradient at ``x``
    (:func:`gradient`); ``x_next``, dsanno's L-BFGS update of ``x`` when it is fed the given
    (x, grad) history (a fresh L-BFGS at each level); and at a level's first step ``start``,
    dsanno's start of the level (the content or ``initial_image``, or the previous level's
    last given ``x_next`` upsampled), else None; ``lbfgs``, the L-BFGS's kept pairs ``s`` and
    ``h0`` after the update (for :func:`lbfgs_bound`); ``energy``, the level's (with its
    ``targets`` and, in ``seen``, the style layers' features at ``x``). So every step compares inputs that are equal, and no difference in
    rounding is carried from one step to the next.
    """
    optimizer = LBFGS(lr, size=10)
    previous = None
    for level_steps, (content_x, energy) in zip(steps, levels):  # no level past the steps
        start = _start(previous, content_x, initial_image)
        link = _image_link(start)
        optimizer.setup(link)
        for x, grad, x_next in level_steps:
            losses, oracle_grad = gradient(energy, x)
            link.x.array[...] = x
            link.x.grad = np.array(grad, dtype=np.float32)
            optimizer.update()
            lbfgs = dict(s=list(optimizer.state['s']), h0=optimizer.state['h0'])
            yield dict(losses=losses, grad=oracle_grad, x_next=link.x.array.copy(),
                       start=start, lbfgs=lbfgs, energy=energy)
            start = None
            previous = x_next


def gram_matrix(x):
    """util.py gram_matrix: a batched F F^T over (b, ch, w*h), divided by ch * w * h."""
    b, ch, h, w = x.shape
    v = F.reshape(x, (b, ch, w * h))
    return F.batch_matmul(v, v, transb=True) / np.float32(ch * w * h)


def _energy(model, x, content_layers, style_targets, style_loss, weights, keep_color, seen):
    """neural_style.py MRF.__fit_one and NeuralStyle.__fit_one up to ``loss.backward()``,
    which differ only in the style term (``style_loss(name, layer, target)``): with
    ``keep_color`` the style term sees the network's features of ``util.gray(x)``. Returns the
    loss and dsanno's ``loss_info``; ``seen`` keeps each style layer's features (arrays)."""
    content_weight, style_weight, tv_weight = weights
    layers = model(x)
    if keep_color:
        trans_layers = model(gray(x))
    else:
        trans_layers = layers
    loss_info = []
    loss = chainer.Variable(np.zeros((), dtype=np.float32))
    for name, content_layer in content_layers:
        content_loss = content_weight * F.mean_squared_error(
            layers[name], chainer.Variable(content_layer.array))
        loss_info.append(('content_' + name, float(content_loss.array)))
        loss += content_loss
    for name, target in style_targets:
        seen[name] = trans_layers[name].array
        style_loss_ = style_weight * style_loss(name, trans_layers[name], target)
        loss_info.append(('style_' + name, float(style_loss_.array)))
        loss += style_loss_
    tv_loss = tv_weight * total_variation(x)
    loss_info.append(('tv', float(tv_loss.array)))
    loss += tv_loss
    return loss, loss_info


# --- Colour (util.py; style_transfer_runner.py run) -----------------------------------------


def gray(x):
    """util.py gray: each output channel 0.114 B + 0.587 G + 0.299 R, a 1x1 convolution."""
    w = np.asarray([[[[0.114]], [[0.587]], [[0.299]]], [[[0.114]], [[0.587]], [[0.299]]],
                    [[[0.114]], [[0.587]], [[0.299]]]], dtype=np.float32)
    return F.convolution_2d(x, W=w)


def luminance_only(x, y):
    """util.py luminance_only: the luminance of x standardised to the mean and (population)
    standard deviation of y's, per image, in float32, copied to the three channels."""
    w = np.asarray([0.114, 0.587, 0.299], dtype=np.float32)
    x_shape = x.shape
    y_shape = y.shape

    x = x.reshape(x_shape[:2] + (-1,))
    xl = np.zeros((x.shape[0], 1, x.shape[2]), dtype=np.float32)
    for i in range(len(x)):
        xl[i, :] = w.dot(x[i])
    xl_mean = np.mean(xl, axis=2, keepdims=True)
    xl_std = np.std(xl, axis=2, keepdims=True)

    y = y.reshape(y_shape[:2] + (-1,))
    yl = np.zeros((y.shape[0], 1, y.shape[2]), dtype=np.float32)
    for i in range(len(y)):
        yl[i, :] = w.dot(y[i])
    yl_mean = np.mean(yl, axis=2, keepdims=True)
    yl_std = np.std(yl, axis=2, keepdims=True)

    xl = (xl - xl_mean) / xl_std * yl_std + yl_mean
    return np.repeat(xl, 3, axis=1).reshape(x_shape)


def bgr_to_yiq(x):
    """util.py bgr_to_yiq: a float32 3 x 3 matrix on the channels."""
    transform = np.asarray([[0.114, 0.587, 0.299], [-0.322, -0.274, 0.596],
                            [0.312, -0.523, 0.211]], dtype=np.float32)
    n, c, h, w = x.shape
    x = x.transpose((1, 0, 2, 3)).reshape((c, -1))
    x = transform.dot(x)
    return x.reshape((c, n, h, w)).transpose((1, 0, 2, 3))


def yiq_to_bgr(x):
    """util.py yiq_to_bgr: a float32 3 x 3 matrix on the channels (bgr_to_yiq's inverse to
    three decimals)."""
    transform = np.asarray([[1, -1.106, 1.703], [1, -0.272, -0.647], [1, 0.956, 0.621]],
                           dtype=np.float32)
    n, c, h, w = x.shape
    x = x.transpose((1, 0, 2, 3)).reshape((c, -1))
    x = transform.dot(x)
    return x.reshape((c, n, h, w)).transpose((1, 0, 2, 3))


def split_bgr_to_yiq(x):
    """util.py split_bgr_to_yiq: (Y in three channels, I and Q)."""
    x = bgr_to_yiq(x)
    y = x[:, 0:1, :, :]
    iq = x[:, 1:, :, :]
    return np.repeat(y, 3, axis=1), iq


def join_yiq_to_bgr(y, iq):
    """util.py join_yiq_to_bgr: the Y of ``y`` with the chroma ``iq``, back to BGR."""
    y = bgr_to_yiq(y)[:, 0:1, :, :]
    return yiq_to_bgr(np.concatenate((y, iq), axis=1))


def match_color_histogram(x, y):
    """util.py match_color_histogram: x's colours mapped to y's mean and covariance,
    ``b_sigma a_sigma_inv (a - a_mean) + b_mean`` with symmetric square roots from ``eig``
    (float64 covariances, float32 means and result)."""
    z = np.zeros_like(x)
    shape = x[0].shape
    for i in range(len(x)):
        a = x[i].reshape((3, -1))
        a_mean = np.mean(a, axis=1, keepdims=True)
        a_var = np.cov(a)
        d, v = np.linalg.eig(a_var)
        d += 1e-6
        a_sigma_inv = v.dot(np.diag(d ** (-0.5))).dot(v.T)

        b = y[i].reshape((3, -1))
        b_mean = np.mean(b, axis=1, keepdims=True)
        b_var = np.cov(b)
        d, v = np.linalg.eig(b_var)
        b_sigma = v.dot(np.diag(d ** 0.5)).dot(v.T)

        transform = b_sigma.dot(a_sigma_inv)
        with warnings.catch_warnings():
            # eig of a symmetric matrix may come back complex with zero imaginary parts; the
            # assignment drops them, as in dsanno's code (NumPy warns that it does).
            warnings.simplefilter('ignore', getattr(np, 'ComplexWarning', None)
                                  or np.exceptions.ComplexWarning)
            z[i, :] = (transform.dot(a - a_mean) + b_mean).reshape(shape)
    return z


def run_inputs(content_image, style_image, match_color_histogram_=False, luminance_only_=False):
    """style_transfer_runner.py run, from the loaded images to what the synthesis takes:
    ``--match_color_histogram`` first, then ``--luminance_only`` (content and style replaced by
    their Y, the style's standardised over its three equal channels in float32). Returns
    ``(content_image, style_image, content_iq)``, ``content_iq`` None without
    ``luminance_only``; a saved image is then ``join_yiq_to_bgr(x, content_iq)``."""
    content_iq = None
    if match_color_histogram_:
        style_image = match_color_histogram(style_image, content_image)
    if luminance_only_:
        content_image, content_iq = split_bgr_to_yiq(content_image)
        style_image, style_iq = split_bgr_to_yiq(style_image)
        content_mean = np.mean(content_image, axis=(1, 2, 3), keepdims=True)
        content_std = np.std(content_image, axis=(1, 2, 3), keepdims=True)
        style_mean = np.mean(style_image, axis=(1, 2, 3), keepdims=True)
        style_std = np.std(style_image, axis=(1, 2, 3), keepdims=True)
        style_image = (style_image - style_mean) / style_std * content_std + content_mean
    return content_image, style_image, content_iq


# --- Rounding bounds (the parity tests' yardstick, not dsanno's) ------------------------------

U = 2.0 ** -24
"""The unit roundoff of float32 (round to nearest)."""

LAMBDA = 8.0
"""The confidence parameter of the probabilistic bounds in :func:`gamma`."""


def gamma(n):
    """A bound on the relative rounding error of a float32 sum of ``n`` terms (or a dot
    product of length ``n``) computed in any order, relative to the sum of the terms'
    magnitudes: the smaller of the worst case ``n u / (1 - n u)`` (Higham, *Accuracy and
    Stability of Numerical Algorithms*, 2nd ed., Lemma 3.1) and Higham and Mary's
    probabilistic ``exp(lambda sqrt(n) u + n u^2 / (1 - u)) - 1`` (SIAM J. Sci. Comput. 41(5),
    2019, Theorem 2.4), which holds with probability at least ``1 - 2 n exp(-lambda^2 (1 -
    u)^2 / 2)`` when the rounding errors are independent and of mean zero: with lambda =
    :data:`LAMBDA` = 8, at least 1 - 1.3e-14 n (1 - 1e-6 for ten million terms). Both
    implementations' errors are within it, so their difference is within twice it.
    """
    worst = n * U / (1 - n * U) if n * U < 1 else math.inf
    return min(worst, math.expm1(LAMBDA * math.sqrt(n) * U + n * U * U / (1 - U)))


#: Output channels of net.py VGG's convolutions (VGG16's), for :func:`backward_gamma`.
CHANNELS = {'1_1': 64, '1_2': 64, '2_1': 128, '2_2': 128, '3_1': 256, '3_2': 256, '3_3': 256,
            '4_1': 512, '4_2': 512, '4_3': 512}


def backward_gamma(deepest):
    """A model bound on the relative (2-norm) rounding error of a float32 input gradient taken
    back from the layer ``deepest`` through VGG: the sum of :func:`gamma` (9 C) over the
    convolutions on the way (each one's input gradient is a reduction over the 3 x 3 x C of its
    outputs; ReLU masks and max-pooling routes are exact), each layer's error carried to the
    input without gain (first order in u)."""
    names = list(CHANNELS)
    return sum(gamma(9 * CHANNELS[name]) for name in names[:names.index(deepest) + 1])


def lbfgs_bound(state, grad, x_next):
    """A first-order bound, element by element, on the rounding error of one float32 update of
    dsanno's L-BFGS (:class:`LBFGS`, after its ``update``: its kept pairs and h0 in ``state``)
    at the gradient ``grad``, giving ``x_next``: each dot product of length n within
    :func:`gamma` (n) of its magnitudes (h0 and rho within two of them and a division), every
    other operation within u, the errors carried through the two-loop recursion in float64."""
    grad = np.ravel(grad).astype(np.float64)
    g = gamma(grad.size)
    q, error = grad.copy(), np.zeros(grad.size)

    def scalar(rho, vector):
        """rho * vector.q and its error bound."""
        value = rho * vector.dot(q)
        return value, (abs(rho) * (np.abs(vector).dot(error) + g * np.abs(vector).dot(np.abs(q)))
                       + (2 * g + 2 * U) * abs(value))
    pairs = [(s.astype(np.float64), y.astype(np.float64)) for s, y in state['s']]
    alphas = []
    for s, y in pairs[::-1]:
        a, a_error = scalar(1 / max(y.dot(s), 1e-5), s)
        alphas.append((a, a_error))
        q_next = q - a * y
        error = error + a_error * np.abs(y) + U * (np.abs(a * y) + np.abs(q_next))
        q = q_next
    h0 = float(state['h0'])
    error = abs(h0) * error + (2 * g + U) * abs(h0) * np.abs(q) + U * abs(h0) * np.abs(q)
    q = h0 * q
    for s, y in pairs:
        a, a_error = alphas.pop()
        b, b_error = scalar(1 / max(y.dot(s), 1e-5), y)
        q_next = q + (a - b) * s
        error = (error + (a_error + b_error + U * abs(a - b)) * np.abs(s)
                 + U * (np.abs((a - b) * s) + np.abs(q_next)))
        q = q_next
    return (error + U * np.abs(np.ravel(x_next))).reshape(np.shape(x_next))


def step_mismatches(record, x, grad, x_next, rtol):
    """What differs between another implementation's step and dsanno's in ``record``
    (:func:`teacher_forced`'s), in words: its gradient ``grad`` at ``x`` against dsanno's,
    beyond ``rtol`` relative in the 2-norm; its update ``x_next`` against dsanno's L-BFGS
    update fed the same history, beyond twice :func:`lbfgs_bound`."""
    found = []
    gap = np.linalg.norm(grad - record['grad']) / np.linalg.norm(record['grad'])
    if not gap <= rtol:
        found.append('gradients differ by %.2e relative (> %.2e)' % (gap, rtol))
    excess = np.abs(x_next - record['x_next']) - 2 * lbfgs_bound(record['lbfgs'], grad,
                                                                 record['x_next'])
    if not (excess <= 0).all():
        found.append('updates: %d values past the rounding bound, by up to %.3g (the step '
                     'moved them by up to %.3g)' % ((~(excess <= 0)).sum(), excess.max(),
                                                   np.abs(x_next - x).max()))
    return found
