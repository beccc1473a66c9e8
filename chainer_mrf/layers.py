"""The VGG layers that Chainer runs slowly on a CPU, for one image at a time.

Chainer's CPU convolution builds the whole im2col matrix (nine copies of the input, 265 MB for
conv1_2 at 384x298), transposes it inside ``numpy.tensordot`` and returns a strided result, so
it reaches about a third of the machine's matrix-multiply rate; its max pooling goes through an
N-dimensional im2col too. Here:

- :func:`convolution_3x3` ('same' 3x3, stride 1, the only convolution in VGG) works in strips of
  output rows: a strip's im2col block (a few MiB, so it stays in cache) is built from nine
  slices, without padding the input, and one matrix product writes the strip of the output in
  place, already (C, H, W). Its backward pass is the transposed convolution, a function of the
  same kind, so it is differentiable again; it keeps no input, because the weights are constants
  (the network's weights are not optimised).
- :func:`max_pooling_2x2` (2x2, stride 2, ceil mode) takes the maximum of four strided views and
  keeps which one won (the first on ties, as Chainer) for its backward pass (first order).

On the GPU both call Chainer's functions (cuDNN), which are already fast there.
"""
import chainer
import chainer.functions as F
from chainer import function_node
import numpy

STRIP_BYTES = 6 << 20
"""Bytes of the im2col block of one strip (measured: 4 to 12 MiB all run within 5 % here)."""


def convolution_3x3(x, W, b=None, *, relu=False):
    """3x3 convolution with stride 1 and zero padding 1, with constant weights.

    ``W`` and ``b`` are arrays, not parameters: no gradient is computed for them, only for
    ``x``.

    Args:
        x (chainer.Variable or array): the input, NumPy or CuPy float32.
        W (array): the filters, of ``x``'s array module.
        b (array or None): the biases; ``None`` adds none. Default: ``None``.
        relu (bool): apply a ReLU to the output (on the CPU, to each strip while it is in
            cache). Default: ``False``.

    Returns:
        chainer.Variable: the output, the same spatial size as ``x``.

    Shape:
        x: (N, C, H, W). W: (C_out, C, 3, 3). b: (C_out,). Output: (N, C_out, H, W).
    """
    if chainer.backend.get_array_module(W) is not numpy:
        y = F.convolution_2d(x, W, b, pad=1)
        return F.relu(y) if relu else y
    return _Convolution3x3(W, b, relu).apply((x,))[0]


def max_pooling_2x2(x):
    """2x2 max pooling with stride 2, rounding the output size up (Chainer's ``cover_all``).

    Args:
        x (chainer.Variable or array): the input, NumPy or CuPy.

    Returns:
        chainer.Variable: the maxima of each 2x2 window (of the pixels it covers, at an odd
        edge).

    Shape:
        x: (N, C, H, W). Output: (N, C, ceil(H / 2), ceil(W / 2)).
    """
    if chainer.backend.get_array_module(x) is not numpy:
        return F.max_pooling_2d(x, 2, 2, cover_all=True)
    return _MaxPooling2x2().apply((x,))[0]


def _strip_rows(channels, width):
    return max(1, STRIP_BYTES // (channels * 9 * width * 4))


def _taps(height, r0, r1):
    """For each filter row ``ky``: the output rows ``[d0, d1)`` of the strip ``[r0, r1)`` whose
    input row ``r + ky - 1`` lies inside the image, and that input row range."""
    n = r1 - r0
    for ky in range(3):
        a0, a1 = r0 + ky - 1, r1 + ky - 1
        d0, d1 = max(0, -a0), n - max(0, a1 - height)
        yield ky, d0, d1, slice(a0 + d0, a1 - (n - d1))


_SHIFTS = ((0, slice(1, None), slice(None, -1)),   # kx = 0: input column w - 1
           (1, slice(None), slice(None)),           # kx = 1: column w
           (2, slice(None, -1), slice(1, None)))    # kx = 2: column w + 1


def _im2col(x, r0, r1, out):
    """Fills ``out`` (C, 3, 3, r1 - r0, W) with the zero-padded 3x3 windows of output rows
    ``[r0, r1)`` of the map ``x`` (C, H, W)."""
    for ky, d0, d1, rows in _taps(x.shape[1], r0, r1):
        for kx, dst, src in _SHIFTS:
            o = out[:, ky, kx]
            o[:, :d0] = 0
            o[:, d1:] = 0
            o[:, d0:d1, dst] = x[:, rows, src]
            if kx != 1:  # the column that falls outside the image
                o[:, d0:d1, 0 if kx == 0 else -1] = 0
    return out


def _col2im_add(cols, r0, r1, gx):
    """The adjoint of :func:`_im2col`: adds ``cols`` (C, 3, 3, r1 - r0, W) into ``gx``
    (C, H, W) where the windows were taken."""
    for ky, d0, d1, rows in _taps(gx.shape[1], r0, r1):
        for kx, dst, src in _SHIFTS:
            gx[:, rows, src] += cols[:, ky, kx, d0:d1, dst]


def _strips(height, rows):
    for r0 in range(0, height, rows):
        yield r0, min(height, r0 + rows)


def _correlate(x, matrix, bias, relu=False):
    """``y = matrix @ im2col(x) + bias`` strip by strip, then ``max(y, 0)`` if ``relu``:
    (N, C, H, W) -> (N, C_out, H, W)."""
    n, channels, height, width = x.shape
    out_channels = matrix.shape[0]
    y = numpy.empty((n, out_channels, height, width), dtype=x.dtype)
    rows = _strip_rows(channels, width)
    buffer = numpy.empty(channels * 9 * min(rows, height) * width, dtype=x.dtype)
    for image, out in zip(x, y):
        out = out.reshape(out_channels, height * width)
        for r0, r1 in _strips(height, rows):
            cols = _im2col(image, r0, r1, buffer[:channels * 9 * (r1 - r0) * width].reshape(
                channels, 3, 3, r1 - r0, width))
            strip = out[:, r0 * width:r1 * width]
            numpy.matmul(matrix, cols.reshape(channels * 9, -1), out=strip)
            # While the strip is still in cache:
            if bias is not None:
                strip += bias[:, None]
            if relu:
                numpy.maximum(strip, 0, out=strip)
    return y


def _scatter(gy, matrix_t, channels):
    """``gx = col2im(matrix_t @ gy)`` strip by strip: (N, C_out, H, W) -> (N, C, H, W)."""
    n, out_channels, height, width = gy.shape
    gx = numpy.zeros((n, channels, height, width), dtype=gy.dtype)
    rows = _strip_rows(channels, width)
    buffer = numpy.empty(channels * 9 * min(rows, height) * width, dtype=gy.dtype)
    for image, out in zip(gy, gx):
        image = image.reshape(out_channels, height * width)
        for r0, r1 in _strips(height, rows):
            cols = buffer[:channels * 9 * (r1 - r0) * width].reshape(channels * 9, -1)
            numpy.matmul(matrix_t, image[:, r0 * width:r1 * width], out=cols)
            _col2im_add(cols.reshape(channels, 3, 3, r1 - r0, width), r0, r1, out)
    return gx


class _Convolution3x3(function_node.FunctionNode):
    """y = W * x + b on the CPU, or max(W * x + b, 0); backward:
    :class:`_Convolution3x3Transpose` (after the ReLU's mask)."""

    def __init__(self, W, b, relu=False):
        self.W = W
        self.b = b
        self.relu = relu

    def forward_cpu(self, inputs):
        x, = inputs
        x = numpy.ascontiguousarray(x)
        if self.relu:
            self.retain_outputs((0,))
        return _correlate(x, self.W.reshape(self.W.shape[0], -1), self.b, self.relu),

    def backward(self, indexes, grad_outputs):
        gy, = grad_outputs
        if self.relu:
            y, = self.get_retained_outputs()
            gy = gy * (y.array > 0)  # Chainer casts the mask in the product, no float copy
        return _Convolution3x3Transpose(self.W).apply((gy,))


class _Convolution3x3Transpose(function_node.FunctionNode):
    """gx = W^T * gy, the adjoint of :class:`_Convolution3x3` without bias.

    Of the two ways to compute it, it takes the one with the smaller im2col block: scattering
    ``W^T gy`` back with col2im when the input has fewer channels than the output (conv1_1's
    3 against 64), else correlating ``gy`` with the flipped, transposed filters.
    """

    def __init__(self, W):
        self.W = W

    def forward_cpu(self, inputs):
        gy, = inputs
        gy = numpy.ascontiguousarray(gy)
        out_channels, channels = self.W.shape[:2]
        if channels < out_channels:
            return _scatter(gy, numpy.ascontiguousarray(
                self.W.reshape(out_channels, -1).T), channels),
        flipped = numpy.ascontiguousarray(self.W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        return _correlate(gy, flipped.reshape(channels, -1), None),

    def backward(self, indexes, grad_outputs):
        return _Convolution3x3(self.W, None).apply(grad_outputs)


def _pool_views(x):
    """The four (N, C, ceil(H/2), ceil(W/2)) views of an input padded to even sides."""
    return [x[:, :, dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)]


class _MaxPooling2x2(function_node.FunctionNode):
    """2x2/2 ceil-mode max pooling on the CPU; backward routes each gradient to its maximum."""

    def forward_cpu(self, inputs):
        x, = inputs
        n, c, h, w = x.shape
        self.shape = x.shape
        padded = x
        if h % 2 or w % 2:  # an odd edge: its windows cover one pixel and -inf padding
            padded = numpy.full((n, c, h + h % 2, w + w % 2), -numpy.inf, dtype=x.dtype)
            padded[:, :, :h, :w] = x
        v0, v1, v2, v3 = _pool_views(padded)
        # The first maximum in window order wins a tie, as in Chainer: strict comparisons.
        top, bottom = numpy.maximum(v0, v1), numpy.maximum(v2, v3)
        lower = bottom > top
        self.winner = numpy.where(lower, (v3 > v2).view(numpy.uint8) + numpy.uint8(2),
                                  (v1 > v0).view(numpy.uint8))
        y = numpy.maximum(top, bottom, out=top)
        return y,

    def backward(self, indexes, grad_outputs):
        return _MaxPooling2x2Grad(self).apply(grad_outputs)


class _MaxPooling2x2Grad(function_node.FunctionNode):
    """Sends each output gradient to its window's maximum (first-order only: synthesis needs
    no second derivatives)."""

    def __init__(self, pooling):
        self.pooling = pooling

    def forward_cpu(self, inputs):
        gy, = inputs
        n, c, h, w = self.pooling.shape
        gx = numpy.zeros((n, c, h + h % 2, w + w % 2), dtype=gy.dtype)
        winner = self.pooling.winner
        for k, view in enumerate(_pool_views(gx)):
            numpy.multiply(gy, winner == k, out=view)
        return gx[:, :, :h, :w],

    def backward(self, indexes, grad_outputs):
        # Chainer's default would return no gradient, silently wrong.
        raise NotImplementedError('second derivatives of max_pooling_2x2 are not implemented')
