"""An independent oracle: the authors' CNNMRF (chuanli11/CNNMRF, Torch) at one pyramid level,
written out from their code with NumPy and Chainer only (never chainer_mrf), in float64.

Each part names the Lua it follows:

- ``mylib/helper.lua`` ``computegrid(..., flag_all=1)``: the patch grid, its last start appended
  (:func:`starts`); ``transfer_CNNMRF_wrapper.lua`` ``build_mrf``: the style bank, every copy's
  patches on the sample grid, copy after copy (:func:`bank`).
- ``mylib/mrf.lua`` ``MRFMM:updateGradInput``: the normalised cross-correlation, its argmax, the
  confidence test (a patch whose best cosine is below the threshold adds nothing, not even to
  the count) and the update averaged over the kept patches covering each pixel
  (:func:`mrf_term`).
- ``mylib/content.lua`` ``ContentLoss`` with ``nn.MSECriterion`` (:func:`content_term`) and
  ``mylib/tv.lua`` ``TVLoss`` (:func:`tv_term`).
- The wrappers' module chain, on a VGG built here from a weights dict with chainer.functions
  (:func:`vgg`): each loss module adds its update to the gradient flowing back through it, so
  the image gradient is the sum of the terms' updates back-propagated through the network
  (:class:`Level` gives each term's update at its layer).

The authors' modules return no energy for the MRF term and the regulariser (only gradients);
the energies here are the functions whose gradients their updates are:
``weight / 2 * sum((Psi - Psi_NN)**2 / count)`` and ``weight / 2 * sum(dx**2 + dy**2)``.
"""
import chainer
import chainer.functions as F
import numpy

K = 3
"""The patch size of the authors' presets (``mrf_patch_size`` {3, 3})."""


def starts(n, stride):
    """``computegrid`` along one axis, 0-based: 0, stride, ... while a patch fits, and the last
    start ``n - K`` appended where the stride skips it (``flag_all == 1``)."""
    found = list(range(0, n - K + 1, stride))
    return found if found[-1] == n - K else found + [n - K]


def patches(feature, stride):
    """(P, C*K*K) float64 patches of a (C, H, W) map on the grid of :func:`starts`, row by row
    (``computeMRFnoTensor``), each flattened channel first; and the grid's row and column
    starts."""
    feature = numpy.asarray(feature, numpy.float64)
    rows, cols = starts(feature.shape[1], stride), starts(feature.shape[2], stride)
    return (numpy.array([feature[:, r:r + K, c:c + K].ravel() for r in rows for c in cols]),
            rows, cols)


def nearest(queries, parts, weights=None):
    """The dense score matrix ``weight * <q, s> / |s|``, its argmax, the winners' cosines (the
    authors' ``max_response``, divided by |q| as well) and the margin of each winner over the
    runner-up. ``weights`` (one per part, default 1) is not the authors'; the threshold compares
    the weighted cosine."""
    weights = [1.0] * len(parts) if weights is None else weights
    bank_ = numpy.concatenate(parts)
    factor = numpy.concatenate([numpy.full(len(p), w) for p, w in zip(parts, weights)])
    scores = queries @ bank_.T * (factor / numpy.linalg.norm(bank_, axis=1))[None]
    index = scores.argmax(1)
    ordered = numpy.sort(scores, axis=1)
    best = scores[numpy.arange(len(index)), index]
    return index, best / numpy.linalg.norm(queries, axis=1), ordered[:, -1] - ordered[:, -2]


def mrf_term(feature, parts, *, weight, stride, overlap='average', weights=None,
             threshold=None, extra=None):
    """The MRF term of a (C, H, W) feature map against the bank ``parts`` (float64 patch arrays,
    one per style copy): energy, gradient (C, H, W), indices, kept patches, cosines, the
    matching margins and the queries' norms (the scale of a margin).

    ``overlap='average'`` is the authors' ``MRFMM:updateGradInput`` loop by loop; ``'sum'`` is
    dsanno's mean squared error through the extraction (its gradient summed over overlaps).
    ``threshold`` is ``threshold_conf`` (``None``: keep every patch). ``extra`` holds columns
    appended to the queries for the matching only (a content map's).
    """
    channels, height, width = feature.shape
    queries, rows, cols = patches(feature, stride)
    dim = queries.shape[1]
    matched_on = queries if extra is None else numpy.hstack([queries, extra])
    index, cosine, margin = nearest(matched_on, parts, weights)
    targets = numpy.concatenate(parts)[index, :dim]
    keep = numpy.ones(len(index), bool) if threshold is None else cosine >= threshold
    windows = [(r, c) for r in rows for c in cols]
    found = dict(index=index, keep=keep, margin=margin, cosine=cosine,
                 norm=numpy.linalg.norm(matched_on, axis=1))
    if overlap == 'sum':
        diff = (queries - targets) * keep[:, None]
        grad = numpy.zeros(feature.shape)
        for (r, c), d in zip(windows, diff):
            grad[:, r:r + K, c:c + K] += 2 * weight * d.reshape(channels, K, K) / diff.size
        return dict(found, energy=weight * (diff ** 2).sum() / diff.size, grad=grad)
    # gradTO accumulates target - source over the kept patches, gradTO_confident counts them
    # (from 1e-10, so a pixel no kept patch covers divides 0 by 1e-10).
    grad_to = numpy.zeros(feature.shape)
    confident = numpy.full((height, width), 1e-10)
    for (r, c), kept, target, source in zip(windows, keep, targets, queries):
        if kept:  # sel_response >= self.threshold_conf
            grad_to[:, r:r + K, c:c + K] += (target - source).reshape(channels, K, K)
            confident[r:r + K, c:c + K] += 1
    grad_to /= confident
    # gradInput = gradOutput + gradTO * strength * (-1): the term's own part.
    grad = -weight * grad_to
    energy = sum(weight / 2 * ((source - target).reshape(channels, K, K) ** 2
                               / confident[r:r + K, c:c + K]).sum()
                 for (r, c), kept, target, source in zip(windows, keep, targets, queries)
                 if kept)
    return dict(found, energy=energy, grad=grad)


def content_term(feature, target, weight):
    """``ContentLoss``: ``strength * MSECriterion`` (size-averaged); its gradient
    ``strength * 2 (F - F_c) / N``."""
    diff = numpy.asarray(feature, numpy.float64) - target
    return weight * (diff ** 2).mean(), weight * 2 * diff / diff.size


def tv_term(x, weight):
    """``TVLoss:updateGradInput`` on a (C, H, W) image, transcribed, and the energy it is the
    gradient of: the differences of the top-left (H-1) x (W-1) block only."""
    x = numpy.asarray(x, numpy.float64)
    x_diff = x[:, :-1, :-1] - x[:, :-1, 1:]
    y_diff = x[:, :-1, :-1] - x[:, 1:, :-1]
    grad = numpy.zeros(x.shape)
    grad[:, :-1, :-1] += x_diff + y_diff
    grad[:, :-1, 1:] -= x_diff
    grad[:, 1:, :-1] -= y_diff
    return weight / 2 * ((x_diff ** 2).sum() + (y_diff ** 2).sum()), weight * grad


def vgg(weights):
    """Caffe's VGG from ``weights`` (``{'conv1_1/W': (out, in, 3, 3), 'conv1_1/b': (out,),
    ...}``), in float64: 3x3 convolutions padded by 1, each followed by a ReLU, and 2x2 max
    pooling of stride 2 rounding up (Caffe's ceil mode) before each block but the first.

    Returns:
        callable: ``forward(x, layers)``, ``x`` a (1, 3, H, W) array or Variable, ``layers``
        ReLU names (``'relu3_1'``); returns ``{name: Variable}``.
    """
    convs = sorted({key.split('/')[0] for key in weights},
                   key=lambda name: tuple(int(i) for i in name[4:].split('_')))
    arrays = {key: numpy.asarray(value, numpy.float64) for key, value in weights.items()}

    def forward(x, layers):
        last = max(convs.index(name.replace('relu', 'conv')) for name in layers)
        out, h, block = {}, x, convs[0][4]
        for name in convs[:last + 1]:
            if name[4] != block:
                h, block = F.max_pooling_2d(h, 2, 2, cover_all=True), name[4]
            h = F.relu(F.convolution_2d(h, arrays[name + '/W'], arrays[name + '/b'], pad=1))
            if 'relu' + name[4:] in layers:
                out['relu' + name[4:]] = h
        return out
    return forward


def bank(forward, styles, layer, stride):
    """``build_mrf``'s bank at ``layer``: the patches of every copy of every style image on the
    sample grid, in order (a list of float64 arrays, one per copy)."""
    with chainer.no_backprop_mode():
        return [patches(forward(numpy.asarray(copy, numpy.float64)[None], [layer])[layer]
                        .array[0], stride)[0] for copies in styles for copy in copies]


class Level:
    """The authors' energy of one level (the wrappers' ``build_mrf`` and module chain): built
    once from the content and style copies, then evaluated at any image.

    Args:
        weights (dict): the network's weights (:func:`vgg`).
        content (array or None): the level's content image, (1, 3, H, W), in the network's
            space; ``None`` for texture synthesis (no content term).
        styles (list of list of array): each style image's copies (3, h, w), in the authors'
            order.
        content_layers, mrf_layers (sequence of str): ReLU names.
        content_weight (float), mrf_weights (sequence of float, one per MRF layer),
        sample_stride, synthesis_stride (int), threshold (float or None), tv_weight (float):
            the authors' parameters.
        image_weights (sequence of float or None): each style image's factor on the matching
            scores (not the authors'); ``None``: 1.
    """

    def __init__(self, weights, content, styles, *, content_layers, content_weight, mrf_layers,
                 mrf_weights, sample_stride, synthesis_stride, threshold, tv_weight,
                 image_weights=None):
        self.forward = vgg(weights)
        self.content_weight, self.tv_weight = content_weight, tv_weight
        self.synthesis_stride, self.threshold = synthesis_stride, threshold
        self.mrf_weights = dict(zip(mrf_layers, mrf_weights))
        image_weights = [1.0] * len(styles) if image_weights is None else image_weights
        self.copy_weights = [w for copies, w in zip(styles, image_weights) for _ in copies]
        self.targets = {}
        if content is not None:
            with chainer.no_backprop_mode():
                self.targets = {name: v.array for name, v in self.forward(
                    numpy.asarray(content, numpy.float64), content_layers).items()}
        self.banks = {name: bank(self.forward, styles, name, sample_stride)
                      for name in mrf_layers}

    def __call__(self, x):
        """The terms at the image ``x`` (1, 3, H, W) and each term's gradient.

        Returns:
            dict: ``energy`` ({term: float}, a term named ``('content', layer)``,
            ``('mrf', layer)`` or ``('tv', None)``); ``grad`` ({term: array}, the term's
            gradient with respect to its layer's features, (1, C, h, w), or to the image for
            ``('tv', None)``: the update each of the authors' modules adds to the gradient
            flowing back through it); ``mrf`` ({layer: :func:`mrf_term`'s dict}).
        """
        with chainer.no_backprop_mode():
            features = self.forward(numpy.asarray(x, numpy.float64),
                                    list(self.targets) + list(self.banks))
        energy, grad, mrf = {}, {}, {}
        for name, target in self.targets.items():
            energy['content', name], grad['content', name] = content_term(
                features[name].array, target, self.content_weight)
        for name, parts in self.banks.items():
            mrf[name] = mrf_term(features[name].array[0], parts, weight=self.mrf_weights[name],
                                 stride=self.synthesis_stride, weights=self.copy_weights,
                                 threshold=self.threshold)
            energy['mrf', name], grad['mrf', name] = mrf[name]['energy'], mrf[name]['grad'][None]
        energy['tv', None], tv_grad = tv_term(x[0], self.tv_weight)
        grad['tv', None] = tv_grad[None]
        return dict(energy=energy, grad=grad, mrf=mrf)
