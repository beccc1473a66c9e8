"""An independent oracle: dsanno's CNNMRF (chainer-neural-style, ``run_mrf.py``) and neural style
(``run.py --method gram``) step by step.

dsanno's code is Python 2 for Chainer 1; this is a line-by-line port to Python 3 and Chainer 7
(``Variable(..., volatile=True)`` becomes ``no_backprop_mode``, ``chainer.Link(x=shape)`` a Link
with one Parameter, ``zerograds`` ``cleargrads``). It uses none of chainer_mrf's losses, patches,
matching, Gram matrices, optimizers, pyramid or synthesis: only its VGG16 (the network dsanno's ``net.py``
describes: Caffe VGG16, ReLU outputs, 2x2 max pooling with Chainer's default cover_all=True) and
NumPy/Chainer. Each part names the dsanno file and function it follows.
"""
import math

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


def nearest_neighbor_patch(x, patch, patch_norm):
    """util.py nearest_neighbor_patch: dense product of normalised patches, argmax per query."""
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
    min_index = np.argmax(correlation, axis=1)
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


def mrf(content_image, style_image, vgg, epoch_num, lr=1.0, content_weight=1.0,
        style_weight=0.2, tv_weight=1e-5, content_layers=('4_2',), style_layers=('3_2', '4_2'),
        resolution_num=3, callback=None):
    """neural_style.py MRF.__fit with run_mrf.py's defaults (initial_image='content').

    ``vgg`` is a chainer_mrf VGG16; ``callback(epoch, x, loss_info)`` as dsanno's. Returns the
    final image array, preprocessed (1, 3, H, W).
    """
    model = _model(vgg, content_layers, style_layers)

    def style_targets(style_layers_):
        style_patches = []
        for name in style_layers:
            p = patch(style_layers_[name])
            patch_norm = F.expand_dims(F.sum(p ** 2, axis=1) ** 0.5, 1)
            style_patches.append((name, (p, patch_norm)))
        return style_patches

    def fit_one(link, optimizer, content_targets, style_patches):
        return _fit_one(model, link, optimizer, content_targets, style_patches, _mrf_loss,
                        content_weight, style_weight, tv_weight)

    return _fit(content_image, style_image, model, content_layers, style_targets, fit_one,
                epoch_num, lr, resolution_num, 'content', callback)


def _model(vgg, content_layers, style_layers):
    """net.py VGG.__call__: {'4_2': relu4_2, ...} of the layers asked for."""
    names = sorted(set(content_layers) | set(style_layers))

    def model(x):
        out = vgg(x, layers=['relu' + name for name in names])
        return {name: out['relu' + name] for name in names}
    return model


def _fit(content_image, style_image, model, content_layers, style_targets, fit_one, epoch_num,
         lr, resolution_num, initial_image, callback):
    """The level loop that dsanno's MRF.__fit and NeuralStyle.__fit share (written twice
    there): the targets of each level from the subsampled content and style, the start (the
    content, the given array, or the previous level doubled by repetition and cropped), a
    fresh L-BFGS, ``epoch_num`` steps."""
    optimizer = LBFGS(lr, size=10)  # style_transfer_runner.py run: the same for both methods
    input_image = None
    width = content_image.shape[-1]
    base_epoch = 0
    for stride in [4, 2, 1][-resolution_num:]:
        if width // stride < 64:
            continue
        content_x = content_image[:, :, ::stride, ::stride]
        style_x = style_image[:, :, ::stride, ::stride]
        with chainer.no_backprop_mode():
            content_layers_ = model(content_x)
            content_targets = [(name, content_layers_[name]) for name in content_layers]
            targets = style_targets(model(style_x))
        if input_image is None:
            input_image = content_x if isinstance(initial_image, str) else initial_image
        else:
            input_image = input_image.repeat(2, 2).repeat(2, 3)
            h, w = content_x.shape[-2:]
            input_image = input_image[:, :, :h, :w]
        link = chainer.Link()
        with link.init_scope():
            link.x = chainer.Parameter(np.zeros(input_image.shape, dtype=np.float32))
        link.x.array[:] = input_image
        optimizer.setup(link)
        for epoch in range(epoch_num):
            loss_info = fit_one(link, optimizer, content_targets, targets)
            if callback:
                callback(base_epoch + epoch, link.x, loss_info)
        base_epoch += epoch_num
        input_image = link.x.array
    return link.x.array


def gram_matrix(x):
    """util.py gram_matrix: a batched F F^T over (b, ch, w*h), divided by ch * w * h."""
    b, ch, h, w = x.shape
    v = F.reshape(x, (b, ch, w * h))
    return F.batch_matmul(v, v, transb=True) / np.float32(ch * w * h)


def neural_style(content_image, style_image, vgg, epoch_num, initial_image, lr=1.0,
                 content_weight=5.0, style_weight=100.0, tv_weight=1e-3,
                 content_layers=('3_3', '4_3'), style_layers=('1_2', '2_2', '3_3', '4_3'),
                 resolution_num=1, callback=None):
    """neural_style.py NeuralStyle.__fit with run.py's defaults (keep_color=False).

    ``initial_image`` is ``'content'`` or the random start itself: dsanno draws
    ``xp.random.normal(0, 1, size=content_x.shape).astype(np.float32) * 0.001`` from the unseeded
    global generator, which no test can repeat, so the test passes the array it gives
    chainer_mrf. Returns the final image array, preprocessed (1, 3, H, W).
    """
    model = _model(vgg, content_layers, style_layers)

    def style_targets(style_layers_):
        return [(name, gram_matrix(style_layers_[name])) for name in style_layers]

    def fit_one(link, optimizer, content_targets, style_grams):
        return _fit_one(model, link, optimizer, content_targets, style_grams, _gram_loss,
                        content_weight, style_weight, tv_weight)

    return _fit(content_image, style_image, model, content_layers, style_targets, fit_one,
                epoch_num, lr, resolution_num, initial_image, callback)


def _mrf_loss(layer, style):
    """MRF.__fit_one's style term of one layer, unweighted."""
    style_patch, style_patch_norm = style
    p = patch(layer)
    return F.mean_squared_error(p, nearest_neighbor_patch(p, style_patch, style_patch_norm))


def _gram_loss(layer, style_gram):
    """NeuralStyle.__fit_one's style term of one layer, unweighted."""
    return F.mean_squared_error(gram_matrix(layer), chainer.Variable(style_gram.array))


def _fit_one(model, link, optimizer, content_layers, style_targets, style_loss, content_weight,
             style_weight, tv_weight):
    """neural_style.py MRF.__fit_one and NeuralStyle.__fit_one (keep_color=False), which differ
    only in the style term (``style_loss``): losses at x, then one update."""
    link.cleargrads()
    layers = model(link.x)
    loss_info = []
    loss = chainer.Variable(np.zeros((), dtype=np.float32))
    for name, content_layer in content_layers:
        content_loss = content_weight * F.mean_squared_error(
            layers[name], chainer.Variable(content_layer.array))
        loss_info.append(('content_' + name, float(content_loss.array)))
        loss += content_loss
    for name, target in style_targets:
        style_loss_ = style_weight * style_loss(layers[name], target)
        loss_info.append(('style_' + name, float(style_loss_.array)))
        loss += style_loss_
    tv_loss = tv_weight * total_variation(link.x)
    loss_info.append(('tv', float(tv_loss.array)))
    loss += tv_loss
    loss.backward()
    optimizer.update()
    return loss_info
