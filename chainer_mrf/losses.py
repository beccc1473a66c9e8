"""The energy terms as Chainer functions: MRF, content, total variation, and neural style's Gram.

Every term returns a scalar :class:`chainer.Variable`; the total energy is their sum, and one
``backward()`` gives the image gradient. Two behaviours are reproduced (see ``docs/algorithm.md``,
"The two presets side by side"):

- dsanno (chainer-neural-style ``neural_style.py``, class ``MRF``, and ``util.py``): per MRF layer
  ``0.2 * mean((Psi(x) - Psi_NN)**2)``, content ``1 * mean((F - F_c)**2)``, total variation
  ``1e-5 * sum of squared neighbour differences``; the layer losses are summed, with no division
  by the number of layers. These are the defaults below.
- CNNMRF (the authors' Torch code): the MRF gradient is averaged over overlapping patches
  (``mrf_loss`` with ``coverage``, weight 1e-4), content weight 2e1 with the same mean form, and
  ``total_variation(..., variant='cnnmrf')`` with weight 1e-3. Each weight is the authors' number
  as written; the ``1/2`` their gradients imply is built into the loss.
- neural-doodle (``doodle.py``): dsanno's mean forms (MRF weight 25, content 10) and its own
  smoothness term, ``total_variation(..., variant='doodle')`` with weight 1.

Neural style (Gatys et al. 2016), which the MRF method is defined against, replaces the MRF term by
:func:`gram_loss` as dsanno's ``NeuralStyle`` computes it (docs/algorithm.md,
"Neural style (Gram)").
"""
import chainer
import chainer.functions as F
from chainer import backend
from chainer import function_node
from chainer.utils import type_check

TV_VARIANTS = ('dsanno', 'cnnmrf', 'doodle')

METHODS = ('mrf', 'gram')
"""The style terms: ``'mrf'`` (CNNMRF's, :mod:`chainer_mrf.mrf`) or ``'gram'`` (neural style's,
:mod:`chainer_mrf.gram`)."""


class SquaredError(function_node.FunctionNode):
    """``scale * sum((x - target)**2 / coverage)`` against a constant target.

    One node for every squared-error term: it keeps only its input for the backward pass (not
    the difference, which would double the memory of the largest arrays, the patch matrices),
    and sends no gradient to the target.

    Args:
        target (array): the constant the input is compared with; same shape and dtype.
        scale (float): the factor in front of the sum.
        coverage (array or None): per-element divisors, same shape and dtype as ``target``;
            ``None`` divides by 1. Default: ``None``.

    Shape:
        input, target, coverage: any shape, all the same.
        output: ().
    """

    def __init__(self, target, scale, coverage=None):
        self.target = target
        self.scale = scale
        self.coverage = coverage

    def check_type_forward(self, in_types):
        type_check._argname(in_types, ('x',))
        x_type, = in_types
        type_check.expect(
            x_type.dtype.kind == 'f',
            x_type.dtype == self.target.dtype,
            x_type.shape == self.target.shape,
        )

    def forward(self, inputs):
        self.retain_inputs((0,))
        x, = inputs
        xp = backend.get_array_module(x)
        diff = x - self.target
        weighted = diff if self.coverage is None else diff / self.coverage
        # Flattened in memory order, so that patch matrices (transposed views) are not copied.
        order = 'F' if diff.flags.f_contiguous and weighted.flags.f_contiguous else 'C'
        return xp.asarray(diff.ravel(order).dot(weighted.ravel(order)) * self.scale,
                          dtype=x.dtype),

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        return _SquaredErrorGrad(self.target, 2.0 * self.scale, self.coverage).apply(
            (x, grad_outputs[0]))


class _SquaredErrorGrad(function_node.FunctionNode):
    """``gx = factor * gy * (x - target) / coverage``, in one new array.

    Built in place (one allocation and two passes, where Chainer's subtraction and product
    would make two full-size temporaries: the patch matrices are tens of MB); its own backward
    uses Chainer functions, so the loss stays twice differentiable.
    """

    def __init__(self, target, factor, coverage):
        self.target = target
        self.factor = factor
        self.coverage = coverage

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, gy = inputs
        gx = x - self.target  # keeps x's layout (a patch matrix is a transposed view)
        if self.coverage is not None:
            gx /= self.coverage
        gx *= gy * gy.dtype.type(self.factor)
        return gx,

    def backward(self, indexes, grad_outputs):
        x, gy = self.get_retained_inputs()
        ggx, = grad_outputs
        weighted = ggx * (1.0 if self.coverage is None else 1.0 / self.coverage)
        grads = {0: weighted * (gy * self.factor),
                 1: F.sum(weighted * (x - self.target)) * self.factor}
        return tuple(grads[i] for i in indexes)


def _constant(array, like, name):
    """``array`` as an array of ``like``'s shape (a Variable is cut from the graph)."""
    array = chainer.as_array(array)
    if array.shape != like.shape:
        raise ValueError('%s has shape %s, expected %s' % (name, array.shape, like.shape))
    return array


def mrf_loss(patches, target, weight=0.2, coverage=None):
    """MRF term of one layer: synthesised patches against their matched style patches.

    Without ``coverage`` (dsanno)::

        E = weight * mean((Psi - Psi_NN)**2)         dE/dPsi = 2 * weight * (Psi - Psi_NN) / (P*D)

    so after the patch extraction's backward pass (overlap summed) each feature pixel receives
    the sum over the patches covering it. dsanno's ``style_weight`` 0.2 applies to each layer
    (relu3_2 and relu4_2) and the layer losses are summed.

    With ``coverage`` (CNNMRF)::

        E = weight / 2 * sum((Psi - Psi_NN)**2 / coverage)

    whose gradient at a feature pixel u, after the extraction's overlap-add, is
    ``weight * sum_{i covers u} (Psi_i(u) - Psi_NN(i)(u)) / c(u)``: the authors' update, the
    difference accumulated over each patch footprint and divided per pixel by the number c(u)
    of patches covering it (their divisor is ``c(u) + 1e-10``; a relative difference of 1e-10,
    below float32 precision). The authors' weight is 1e-4 per layer (relu3_1 and relu4_1).

    Args:
        patches (chainer.Variable): the synthesised image's patches, one per row, from a
            differentiable extraction whose backward pass sums over overlaps.
        target (array or chainer.Variable): the matched style patch of each row, held
            constant (no gradient reaches it); same shape and dtype as ``patches``.
        weight (float): the layer's weight. Default: ``0.2`` (dsanno).
        coverage (array or None): for every element of ``patches``, the number of extracted
            patches covering its feature pixel (see :func:`patch_coverage`); ``None`` takes
            the mean instead. Default: ``None``.

    Returns:
        chainer.Variable: the scalar loss, of ``patches``' dtype.

    Raises:
        ValueError: if ``target`` or ``coverage`` does not have ``patches``' shape.

    Shape:
        patches, target, coverage: (P, D), D = C * k * k in any layout shared by the three.
        output: ().
    """
    target = _constant(target, patches, 'target')
    if coverage is None:
        return SquaredError(target, weight / target.size).apply((patches,))[0]
    coverage = _constant(coverage, patches, 'coverage')
    return SquaredError(target, 0.5 * weight, coverage).apply((patches,))[0]


def patch_coverage(extract, feature, keep=None):
    """How many extracted patches cover the feature pixel of each patch element.

    Works with any extraction that copies feature elements into patch elements (im2col on any
    grid, including CNNMRF's stride-2 grid with the last row and column added): its backward
    pass applied to ones counts, per feature element, the patch elements copied from it, that
    is the number of patches covering that pixel; extracting that count map gives it in patch
    layout.

    Args:
        extract (callable): the patch extraction, a linear map from a feature map to its patch
            matrix, e.g. ``lambda f: extract_patches(f, 3, stride=2)``.
        feature (array or chainer.Variable): a feature map; only its shape, dtype and device
            are used.
        keep (array or None): bool per patch; only the patches kept are counted (the authors
            leave out patches under the confidence threshold). A pixel no kept patch covers
            counts 1, so nothing divides by zero (its patches' differences are zero anyway).
            ``None`` counts every patch. Default: ``None``.

    Returns:
        array: ``extract``'s output for the count map, on ``feature``'s device, for
        ``mrf_loss(..., coverage=...)``. Compute it once per level and layer.

    Shape:
        feature: (1, C, H, W).
        output: (P, D), as ``extract``'s output.
    """
    xp = backend.get_array_module(feature)
    probe = chainer.Variable(xp.zeros(feature.shape, dtype=feature.dtype))
    with chainer.using_config('enable_backprop', True):
        patches = extract(probe)
    ones = xp.ones_like(patches.array)
    patches.grad = ones if keep is None else ones * keep[:, None]
    patches.backward()
    counts = chainer.as_array(extract(probe.grad))
    return counts if keep is None else xp.maximum(counts, 1)


def content_loss(features, target, weight=1.0):
    """Content term: ``weight * mean((F - F_c)**2)``, gradient ``2 * weight * (F - F_c) / N``.

    Both originals use this form (Chainer's and Torch's mean squared error); dsanno's weight is
    1 at relu4_2, CNNMRF's 2e1 at relu4_2.

    Args:
        features (chainer.Variable): the synthesised image's features at the content layer.
        target (array or chainer.Variable): the content image's features there, held constant.
        weight (float): the term's weight. Default: ``1.0`` (dsanno).

    Returns:
        chainer.Variable: the scalar loss, of ``features``' dtype.

    Raises:
        ValueError: if ``target`` does not have ``features``' shape.

    Shape:
        features, target: any shape, N elements (e.g. (1, C, H, W)).
        output: ().
    """
    target = _constant(target, features, 'target')
    return SquaredError(target, weight / target.size).apply((features,))[0]


def gram_matrix(features):
    """The Gram matrix of a feature map, normalised as dsanno's ``util.gram_matrix``.

    ``G = F F^T / (C H W)`` with F the (C, H W) matrix of the map: G[i, j] is the mean over the
    pixels of the product of channels i and j, divided by C as well.

    Args:
        features (chainer.Variable or array): one feature map.

    Returns:
        chainer.Variable: G, differentiable (twice) with respect to ``features``.

    Shape:
        features: (1, C, H, W).
        output: (C, C).

    Examples:
        >>> import numpy
        >>> gram_matrix(numpy.ones((1, 2, 3, 3), numpy.float32)).array
        array([[0.5, 0.5],
               [0.5, 0.5]], dtype=float32)
    """
    batch, channels, height, width = features.shape
    if batch != 1:
        raise ValueError('gram_matrix takes one feature map (1, C, H, W), got shape %s'
                         % (features.shape,))
    matrix = F.reshape(features, (channels, height * width))
    return F.matmul(matrix, matrix, transb=True) / features.dtype.type(channels * height * width)


def gram_loss(features, target, weight=100.0):
    """Neural style's term of one layer: ``weight * mean((G(F) - G_s)**2)``.

    G is :func:`gram_matrix` and G_s the style's Gram matrix at the same layer; dsanno's weight is
    100 for each of relu1_2, relu2_2, relu3_3 and relu4_3, the layer terms summed.

    Args:
        features (chainer.Variable): the synthesised image's features at the layer.
        target (array or chainer.Variable): the style's Gram matrix there, held constant.
        weight (float): the layer's weight. Default: ``100.0`` (dsanno).

    Returns:
        chainer.Variable: the scalar loss, of ``features``' dtype.

    Raises:
        ValueError: if ``target`` is not (C, C) for the C channels of ``features``.

    Shape:
        features: (1, C, H, W).
        target: (C, C).
        output: ().
    """
    gram = gram_matrix(features)
    target = _constant(target, gram, 'target')
    return SquaredError(target, weight / target.size).apply((gram,))[0]


def total_variation(x, weight=1e-5, variant='dsanno'):
    """Total variation regulariser of the (preprocessed) image, per channel.

    ``variant='dsanno'`` (its ``util.total_variation``)::

        E = weight * (sum_{i<H-1, j} (x[i+1, j] - x[i, j])**2
                      + sum_{i, j<W-1} (x[i, j+1] - x[i, j])**2)

    every vertical and horizontal neighbour pair, an unnormalised sum over channels and pixels.

    ``variant='cnnmrf'`` (the Torch ``TVLoss`` CNNMRF uses)::

        E = weight / 2 * sum_{i<H-1, j<W-1} ((x[i+1, j] - x[i, j])**2
                                             + (x[i, j+1] - x[i, j])**2)

    only the differences taken from the top-left (H-1) x (W-1) block: the last row's horizontal
    and the last column's vertical differences are left out. Its gradient is the authors'
    update; their weight is 1e-3.

    ``variant='doodle'`` (neural-doodle's ``total_variation_loss``, its smoothness 1)::

        E = weight * mean_{c, i<H-1, j<W-1} ((x[i+1, j] - x[i, j])**2
                                            + (x[i, j+1] - x[i, j])**2) ** 1.25

    the same differences as ``'cnnmrf'``, each pixel's pair raised to the power 1.25 and
    averaged over channels and pixels: closer to an edge-keeping total variation (power 1 of
    the gradient's magnitude would be the L1 norm) than a squared smoothness.

    Args:
        x (chainer.Variable): the image, in the network's input space.
        weight (float): the term's weight. Default: ``1e-5`` (dsanno).
        variant (str): ``'dsanno'``, ``'cnnmrf'`` or ``'doodle'``. Default: ``'dsanno'``.

    Returns:
        chainer.Variable: the scalar loss, of ``x``'s dtype.

    Raises:
        ValueError: if ``variant`` is unknown.

    Shape:
        x: (..., H, W), e.g. (1, 3, H, W); H, W >= 2.
        output: ().
    """
    if variant not in TV_VARIANTS:
        raise ValueError('unknown total variation variant %r (expected one of: %s)'
                         % (variant, ', '.join(TV_VARIANTS)))
    if variant == 'doodle':
        # Chainer's functions: the power makes it no quadratic form for the node below.
        dy, dx = _differences(x, slice(None, -1))
        return weight * F.mean((dy * dy + dx * dx) ** 1.25)
    edge = slice(None, -1) if variant == 'cnnmrf' else slice(None)
    scale = 0.5 * weight if variant == 'cnnmrf' else weight
    return _TotalVariation(scale, edge).apply((x,))[0]


def _differences(x, edge):
    """The vertical and horizontal neighbour differences of ``x`` that the variant sums."""
    return (x[..., 1:, edge] - x[..., :-1, edge]), (x[..., edge, 1:] - x[..., edge, :-1])


class _TotalVariation(function_node.FunctionNode):
    """``scale * (sum(dy**2) + sum(dx**2))``; gradient ``2 * scale * D^T D x``.

    One node instead of four slices: a slice's backward scatters with ``add.at``, which took
    as long as the rest of the term.
    """

    def __init__(self, scale, edge):
        self.scale = scale
        self.edge = edge

    def forward(self, inputs):
        self.retain_inputs((0,))
        x, = inputs
        xp = backend.get_array_module(x)
        total = sum(d.ravel().dot(d.ravel()) for d in _differences(x, self.edge))
        return xp.asarray(total * self.scale, dtype=x.dtype),

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        gy, = grad_outputs
        return _DifferencesGram(self.edge).apply((x,))[0] * (gy * (2.0 * self.scale)),


class _DifferencesGram(function_node.FunctionNode):
    """``x -> D^T D x`` for the difference operator D of :func:`_differences`: linear and
    self-adjoint, so its backward is itself (the term stays twice differentiable)."""

    def __init__(self, edge):
        self.edge = edge

    def forward(self, inputs):
        x, = inputs
        xp = backend.get_array_module(x)
        dy, dx = _differences(x, self.edge)
        out = xp.zeros_like(x)
        edge = self.edge
        out[..., 1:, edge] += dy
        out[..., :-1, edge] -= dy
        out[..., edge, 1:] += dx
        out[..., edge, :-1] -= dx
        return out,

    def backward(self, indexes, grad_outputs):
        return _DifferencesGram(self.edge).apply(grad_outputs)
