"""The VGG layers that Chainer runs slowly on a CPU, for one image at a time.

Chainer's CPU convolution builds the whole im2col matrix (nine copies of the input, 265 MB for
conv1_2 at 384x298), transposes it inside ``numpy.tensordot`` and returns a strided result, so
it reaches about a third of the machine's matrix-multiply rate; its max pooling goes through an
N-dimensional im2col too. Here:

- :func:`convolution_3x3` ('same' 3x3, stride 1, the only convolution in VGG) works in strips of
  output rows. A strip's input rows are copied three times, shifted by one column each way
  (a few MiB, so they stay in cache; no padded copy of the input): those copies, read one and
  two rows further on, are the windows of the three filter rows, so three matrix products
  write the strip of the output in place, already (C, H, W), from a third of im2col's copying.
  Its backward pass is the transposed convolution, a function of the same kind, so it is
  differentiable again; it keeps no input, because the weights are constants (the network's
  weights are not optimised). The ReLU that follows every VGG convolution is applied to each
  strip, and its backward mask likewise.
- On the CPU the strips run in :data:`THREADS` threads (every ``THREADS``-th strip each, their
  count a multiple of it; :class:`chainer_mrf.vgg.VGG` asks for them for large images only,
  ``threads=1`` otherwise), with NumPy's bundled OpenBLAS told to use one thread meanwhile
  (:func:`_blas_threads`; where it cannot be told, the same strips run in the calling thread):
  so the copies, the bias and the ReLU, which NumPy runs on one core, are spread over every core
  as the products are. Rounding: each output is the same sum as in one thread (the strips and
  each strip's three products are the same; BLAS's result does not depend on its thread count,
  which the tests check exactly); only the strip widths follow :data:`THREADS`, and with them
  how BLAS blocks a product (float32 rounding of the same sum, within a few units in the last
  place; the tests compare with Chainer at 1e-5). conv1_1's backward (the col2im scatter below)
  adds each thread's strips into a map of its own and sums the maps, which reorders the
  additions on the rows where two strips meet (one rounding more there, the same in one
  thread or several). The backward of a layer that doubles the channels (conv2_1, conv3_1,
  conv4_1) now correlates rather than scatters (:class:`_Convolution3x3Transpose`): the same
  sum of 9 C_out products per input, in BLAS's order instead of nine partial sums added by
  col2im (float32 rounding of the same sum).
- :func:`max_pooling_2x2` (2x2, stride 2, ceil mode) takes the maximum of four strided views and
  keeps which one won (the first on ties, as Chainer) for its backward pass (first order).

The same code runs on CuPy arrays (every array operation goes through the input's array
module; the products are cuBLAS's), so a GPU run needs no cuDNN: CuPy 14 ships no cuDNN bindings,
and Chainer's own GPU convolution without them is a full im2col. Where cuDNN is present and
enabled (``chainer.should_use_cudnn('>=auto')``), the GPU takes Chainer's cuDNN functions
instead. The GPU path's choices (:func:`gpu_choices`): strips of up to :data:`GPU_STRIP_BYTES`
(a whole VGG map at the usual sizes: a GPU needs wide products, not a cache-sized block), and a
product into a strided strip of the output computed whole and then copied (CuPy writes ``out=``
through a temporary anyway). ``EMULATE_GPU`` makes NumPy arrays take those choices too, which is
how the tests run the GPU's code on the CPU.
"""
import concurrent.futures
import contextlib
import ctypes
import glob
import os

import chainer
import chainer.functions as F
from chainer import function_node
from chainer.backends import cuda
import numpy

STRIP_BYTES = 8 << 20
"""Bytes of a strip's working block (measured here: 4 to 12 MiB run within 10 % of each
other; smaller strips make the matrix products too narrow, larger ones leave the cache)."""

GPU_STRIP_BYTES = 256 << 20
"""The same on a GPU: large enough that a VGG map at 384 px is one strip (conv1_2's block at
384 x 298 is 88 MiB), so each layer is three cuBLAS products over the whole map."""

EMULATE_GPU = False
"""Tests only: NumPy arrays take the GPU path's choices (:func:`gpu_choices`), to check on a CPU
the code that a GPU runs."""


def gpu_choices(xp):
    """Whether arrays of ``xp`` take the GPU path's choices: CuPy's do, NumPy's under
    :data:`EMULATE_GPU`."""
    return xp is not numpy or EMULATE_GPU


def uses_cudnn(x):
    """Whether the layers run Chainer's cuDNN functions for ``x``: a CuPy array, with cuDNN
    present and enabled by Chainer's ``use_cudnn`` configuration."""
    return (chainer.backend.get_array_module(x) is not numpy and cuda.cudnn_enabled
            and chainer.should_use_cudnn('>=auto'))


def convolution_3x3(x, W, b=None, *, relu=False, threads=None):
    """3x3 convolution with stride 1 and zero padding 1, with constant weights.

    ``W`` and ``b`` are arrays, not parameters: no gradient is computed for them, only for
    ``x``.

    Args:
        x (chainer.Variable or array): the input, NumPy or CuPy float32.
        W (array): the filters, of ``x``'s array module.
        b (array or None): the biases; ``None`` adds none. Default: ``None``.
        relu (bool): apply a ReLU to the output (on the CPU, to each strip while it is in
            cache). Default: ``False``.
        threads (int or None): how many groups of strips the CPU path runs in threads, this
            pass and its backward (:func:`_in_parallel`); ``None`` takes :data:`THREADS`. A
            network passes one count to every layer of a pass (:class:`chainer_mrf.vgg.VGG`):
            switching between BLAS's threads and ours layer by layer costs more than either.
            Default: ``None``.

    Returns:
        chainer.Variable: the output, the same spatial size as ``x``.

    Shape:
        x: (N, C, H, W). W: (C_out, C, 3, 3). b: (C_out,). Output: (N, C_out, H, W).
    """
    if uses_cudnn(W):
        y = F.convolution_2d(x, W, b, pad=1)
        return F.relu(y) if relu else y
    return _Convolution3x3(W, b, relu, THREADS if threads is None else threads).apply((x,))[0]


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
    if uses_cudnn(x.array if isinstance(x, chainer.Variable) else x):
        return F.max_pooling_2d(x, 2, 2, cover_all=True)
    return _MaxPooling2x2().apply((x,))[0]


THREADS = min(2, os.cpu_count() or 1)
"""Threads that the CPU path's convolutions run their strips in (:func:`_in_parallel`), BLAS
on one thread meanwhile: so the strips' copies, bias and ReLU passes, which NumPy runs on one
core (releasing the GIL), run on every core as the products do. Strips come in multiples of
it. 1 runs them in the calling thread alone, with BLAS's own threads."""

_EXECUTOR = []


def _executor():
    """The threads that share the CPU path's work with the calling thread."""
    if not _EXECUTOR or _EXECUTOR[0][0] != THREADS:
        _EXECUTOR[:] = [(THREADS, concurrent.futures.ThreadPoolExecutor(
            max(1, THREADS - 1), thread_name_prefix='chainer_mrf_layers'))]
    return _EXECUTOR[0][1]


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


def _expand(image, active, r0, r1, out):
    """Fills ``out`` (C, 3, r1 - r0 + 2, W) with input rows ``r0 - 1`` to ``r1`` of ``image``
    (C, H, W), zero outside the image, shifted by each filter column: ``out[:, kx, j, w]`` is
    ``image[:, r0 - 1 + j, w + kx - 1]``. With ``active`` (like ``image``), the rows are taken
    as zero where ``active`` is not positive."""
    height = image.shape[1]
    xp = chainer.backend.get_array_module(image)
    top, bottom = max(0, r0 - 1), min(height, r1 + 1)
    d0, d1 = top - (r0 - 1), bottom - (r0 - 1)
    out[:, :, :d0] = 0
    out[:, :, d1:] = 0
    centre = out[:, 1, d0:d1]
    if active is None:
        centre[...] = image[:, top:bottom]
    else:
        xp.multiply(image[:, top:bottom], active[:, top:bottom] > 0, out=centre)
    out[:, 0, d0:d1, 1:] = centre[:, :, :-1]
    out[:, 0, d0:d1, 0] = 0
    out[:, 2, d0:d1, :-1] = centre[:, :, 1:]
    out[:, 2, d0:d1, -1] = 0


def _col2im_add(cols, r0, r1, gx):
    """The adjoint of taking the zero-padded 3x3 windows of output rows ``[r0, r1)``: adds
    ``cols`` (C, 3, 3, r1 - r0, W) into ``gx`` (C, H, W) where each window lies."""
    for ky, d0, d1, rows in _taps(gx.shape[1], r0, r1):
        for kx, dst, src in _SHIFTS:
            gx[:, rows, src] += cols[:, ky, kx, d0:d1, dst]


def _strips(x, channels, copies, parts=1):
    """Splits the maps ``x`` (N, C_x, H, W) into strips of output rows whose working block
    (``copies`` shifted copies of ``channels`` channels) fills about :data:`STRIP_BYTES`, and
    into at least ``parts`` strips per image, their count a multiple of ``parts``.

    Returns:
        tuple: the strips, a list of ``(n, r0, r1)`` (image ``n``, rows ``[r0, r1)``), and the
        size of a flat buffer large enough for the block of any of them (``r1 - r0 + 2`` rows),
        which a worker reuses for each of its strips, so that it stays in cache.
    """
    count, _, height, width = x.shape
    xp = chainer.backend.get_array_module(x)
    limit = GPU_STRIP_BYTES if gpu_choices(xp) else STRIP_BYTES
    rows = max(1, limit // (channels * copies * width * x.itemsize) - 2)
    number = -(-height // rows)
    number = -(-number // parts) * parts
    rows = -(-height // min(height, number))
    strips = [(n, r0, min(height, r0 + rows)) for n in range(count)
              for r0 in range(0, height, rows)]
    return strips, channels * copies * (min(rows, height) + 2) * width


@contextlib.contextmanager
def _single_threaded_blas(blas):
    """BLAS (``blas``: :func:`_blas_threads`) on one thread inside the block (each of our
    threads then runs its own products); the previous count restored after."""
    get, set_ = blas
    previous = get()
    set_(1)
    try:
        yield
    finally:
        set_(previous)


def _in_parallel(xp, work, strips, size, dtype, parts):
    """Runs ``work(k, group, buffer)`` for the groups ``strips[k::parts]``, each with a
    buffer of ``size`` elements: on the CPU path with NumPy's bundled OpenBLAS
    (:func:`_blas_threads`), one group per thread and BLAS on one thread, so that the strips'
    copies and element-wise passes run on every core too; else one group after another in this
    thread (the same groups, so the same results). Also in this thread where BLAS itself was
    set to one thread (``OPENBLAS_NUM_THREADS=1``, as for each of several MPI ranks sharing the
    cores): threads of ours would oversubscribe the cores as BLAS's would."""
    groups = [strips[k::parts] for k in range(parts) if strips[k::parts]]
    blas = _blas_threads() if not gpu_choices(xp) else None
    if blas is None or len(groups) < 2 or blas[0]() < 2:
        buffer = xp.empty(size, dtype=dtype)
        for k, group in enumerate(groups):
            work(k, group, buffer)
        return
    executor = _executor()
    with _single_threaded_blas(blas):
        others = [executor.submit(work, k, group, xp.empty(size, dtype=dtype))
                  for k, group in enumerate(groups) if k]
        try:
            work(0, groups[0], xp.empty(size, dtype=dtype))
        finally:
            for future in others:
                future.result()


_MIN_DEPTH = 32
"""The shortest products (3 C) :func:`_correlate` runs as three; below, one of 9 C."""


def _tap_matrices(W):
    """(C_out, C, 3, 3) filters as three (C_out, 3 C) matrices, one per filter row ``ky``,
    with columns in the (c, kx) order of :func:`_expand`'s rows."""
    xp = chainer.backend.get_array_module(W)
    return xp.ascontiguousarray(W.transpose(2, 0, 1, 3)).reshape(3, W.shape[0], -1)


_BLAS_THREADS = []
"""The functions that read and set the thread count of NumPy's BLAS, once looked up
(:func:`_blas_threads`)."""

_NUMPY_BLAS = (('libscipy_openblas64_*', 'scipy_openblas_%s_num_threads64_'),
               ('libopenblas64_*', 'openblas_%s_num_threads64_'),
               ('libscipy_openblas*', 'scipy_openblas_%s_num_threads'),
               ('libopenblas*', 'openblas_%s_num_threads'))
"""The OpenBLAS that NumPy's wheels bundle (in ``numpy.libs``), by file name, and the names of
its thread-count functions (NumPy 2's ``scipy-openblas64``, NumPy 1.26's ``openblas64_``)."""


def _blas_threads():
    """``(get, set)``: ctypes functions that read and set the thread count of the OpenBLAS that
    NumPy's wheel bundles; ``None`` where there is none (another BLAS: the strips then run in
    one thread)."""
    if not _BLAS_THREADS:
        found = None
        folder = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), 'numpy.libs')
        for pattern, name in _NUMPY_BLAS:
            for path in sorted(glob.glob(os.path.join(folder, pattern + '.so*'))):
                try:
                    library = ctypes.CDLL(path)
                    get, set_ = (getattr(library, name % verb) for verb in ('get', 'set'))
                except (OSError, AttributeError):
                    continue
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                found = get, set_
                break
            if found:
                break
        _BLAS_THREADS.append(found)
    return _BLAS_THREADS[0]


def _matmul(xp, a, b, out):
    """``out[...] = a @ b``: in place where ``out`` is contiguous or on the CPU path; on the GPU
    path into a strided ``out``, as a whole product and a copy."""
    if out.flags.c_contiguous or not gpu_choices(xp):
        xp.matmul(a, b, out=out)
    else:
        out[...] = xp.matmul(a, b)


def _correlate(x, matrices, bias=None, relu=False, active=None, threads=1):
    """3x3 'same' correlation strip by strip, plus ``bias``, then ``max(y, 0)`` if ``relu``:
    (N, C, H, W) -> (N, C_out, H, W). With ``active`` (a map like ``x``), ``x`` is taken as
    zero where ``active`` is not positive (a ReLU's backward, applied strip by strip).

    A strip's three column-shifted copies (:func:`_expand`) hold every window: the rows of
    filter row ``ky`` are the same block read ``ky`` rows further on, a (3 C, rows x W) matrix
    with a uniform row stride that BLAS reads in place. So the output strip is three matrix
    products (``matrices`` from :func:`_tap_matrices`), from a third of the copying of im2col.
    """
    count, channels, height, width = x.shape
    out_channels = matrices.shape[1]
    xp = chainer.backend.get_array_module(x)
    y = xp.empty((count, out_channels, height, width), dtype=x.dtype)
    flat = y.reshape(count, out_channels, height * width)
    # Products with few rows (3 C, e.g. 9 for an RGB image) run far below the machine's rate:
    # there the three views are stacked into one matrix, im2col's, for a single product.
    stacked = (None if 3 * channels >= _MIN_DEPTH else
               matrices.transpose(1, 0, 2).reshape(out_channels, 9 * channels))

    def work(k, group, buffer):
        partial = None
        for n, r0, r1 in group:
            rows = r1 - r0
            block = buffer[:channels * 3 * (rows + 2) * width].reshape(
                channels, 3, rows + 2, width)
            _expand(x[n], None if active is None else active[n], r0, r1, block)
            block = block.reshape(channels * 3, (rows + 2) * width)
            strip = flat[n, :, r0 * width:r1 * width]
            views = [block[:, ky * width:(ky + rows) * width] for ky in range(3)]
            if stacked is not None:
                _matmul(xp, stacked, xp.concatenate(views), strip)
            else:
                _matmul(xp, matrices[0], views[0], strip)
                if partial is None:
                    partial = xp.empty(strip.size, dtype=x.dtype)
                part = partial[:strip.size].reshape(strip.shape)
                for ky in (1, 2):
                    xp.matmul(matrices[ky], views[ky], out=part)
                    strip += part  # while the strip is in cache, as the bias and ReLU below
            if bias is not None:
                strip += bias[:, None]
            if relu:
                xp.maximum(strip, 0, out=strip)

    strips, size = _strips(x, channels, 3, threads)
    _in_parallel(xp, work, strips, size, x.dtype, threads)
    return y


def _scatter(gy, matrix_t, channels, active=None, threads=1):
    """``gx = col2im(matrix_t @ gy)`` strip by strip: (N, C_out, H, W) -> (N, C, H, W); with
    ``active``, ``gy`` is taken as zero where ``active`` is not positive.

    A strip's windows reach one row beyond it each way, so each group of strips that
    :func:`_in_parallel` forms adds into a map of its own, and those are summed at the end (in
    threads or not alike; a few channels: this serves conv1_1)."""
    count, out_channels, height, width = gy.shape
    xp = chainer.backend.get_array_module(gy)
    gx = xp.zeros((count, channels, height, width), dtype=gy.dtype)
    gy = gy.reshape(count, out_channels, height * width)
    if active is not None:
        active = active.reshape(gy.shape)
    # A strip's block: its nine window rows per input channel and its masked gradient.
    strips, size = _strips(gx, channels * 9 + out_channels, 1, threads)
    sums = [gx] + [xp.zeros_like(gx) for _ in range(1, min(threads, len(strips)))]

    def work(k, group, buffer):
        for n, r0, r1 in group:
            rows = r1 - r0
            block = buffer[:channels * 9 * rows * width].reshape(channels, 3, 3, rows, width)
            strip = gy[n, :, r0 * width:r1 * width]
            if active is not None:
                masked = buffer[block.size:block.size + strip.size].reshape(strip.shape)
                strip = xp.multiply(strip, active[n, :, r0 * width:r1 * width] > 0,
                                    out=masked)
            xp.matmul(matrix_t, strip, out=block.reshape(channels * 9, -1))
            _col2im_add(block, r0, r1, sums[k][n])

    _in_parallel(xp, work, strips, size, gy.dtype, threads)
    for other in sums[1:]:
        gx += other
    return gx


class _Convolution3x3(function_node.FunctionNode):
    """y = W * x + b, or max(W * x + b, 0), on NumPy or CuPy; backward:
    :class:`_Convolution3x3Transpose`, masked by the ReLU's output."""

    def __init__(self, W, b, relu=False, threads=1):
        self.W = W
        self.b = b
        self.relu = relu
        self.threads = threads

    def forward(self, inputs):
        x, = inputs
        x = chainer.backend.get_array_module(x).ascontiguousarray(x)
        if self.relu:
            self.retain_outputs((0,))
        return _correlate(x, _tap_matrices(self.W), self.b, self.relu, threads=self.threads),

    def backward(self, indexes, grad_outputs):
        active = self.get_retained_outputs()[0].array if self.relu else None
        return _Convolution3x3Transpose(self.W, active, self.threads).apply(grad_outputs)


class _Convolution3x3Transpose(function_node.FunctionNode):
    """gx = W^T * (gy masked where ``active`` <= 0), the adjoint of :class:`_Convolution3x3`
    without bias (and the backward of its ReLU, applied strip by strip rather than in one
    pass over the whole map).

    Of the two ways to compute it, it takes the one with the smaller im2col block: scattering
    ``W^T gy`` back with col2im (nine rows per input channel) when the input has less than a
    third of the output's channels (conv1_1's 3 against 64), else correlating ``gy`` (three
    rows per output channel) with the flipped, transposed filters, which also runs its strips
    in threads (a VGG layer that doubles the channels: six rows per input channel, not nine).
    """

    def __init__(self, W, active=None, threads=1):
        self.W = W
        self.active = active
        self.threads = threads

    def forward(self, inputs):
        gy, = inputs
        xp = chainer.backend.get_array_module(gy)
        gy = xp.ascontiguousarray(gy)
        out_channels, channels = self.W.shape[:2]
        if 3 * channels < out_channels:
            return _scatter(gy, xp.ascontiguousarray(
                self.W.reshape(out_channels, -1).T), channels, self.active, self.threads),
        flipped = self.W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        return _correlate(gy, _tap_matrices(flipped), active=self.active,
                          threads=self.threads),

    def backward(self, indexes, grad_outputs):
        gx = _Convolution3x3(self.W, None, threads=self.threads).apply(grad_outputs)[0]
        return (gx if self.active is None
                else gx * (self.active > 0).astype(gx.dtype)),



def _pool_views(x):
    """The four (N, C, ceil(H/2), ceil(W/2)) views of an input padded to even sides."""
    return [x[:, :, dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)]


class _MaxPooling2x2(function_node.FunctionNode):
    """2x2/2 ceil-mode max pooling, NumPy or CuPy; backward routes each gradient to its maximum."""

    def forward(self, inputs):
        x, = inputs
        xp = chainer.backend.get_array_module(x)
        n, c, h, w = x.shape
        self.shape = x.shape
        padded = x
        if h % 2 or w % 2:  # an odd edge: its windows cover one pixel and -inf padding
            padded = xp.full((n, c, h + h % 2, w + w % 2), -numpy.inf, dtype=x.dtype)
            padded[:, :, :h, :w] = x
        # Rows first: pairs of whole rows are contiguous, so the full-size passes are fast and
        # only the half-size ones read every other element.
        top, bottom = padded[:, :, 0::2], padded[:, :, 1::2]
        columns = xp.maximum(top, bottom)
        lower = bottom > top
        left, right = columns[..., 0::2], columns[..., 1::2]
        lower_left, lower_right = lower[..., 0::2], lower[..., 1::2]
        # Chainer's winner is the first maximum in row-major window order: so on a tie
        # between the columns, a top-right maximum beats a bottom-left one.
        right_wins = (right > left) | ((right == left) & lower_left & ~lower_right)
        row = xp.where(right_wins, lower_right, lower_left)
        self.winner = row.view(numpy.uint8) * numpy.uint8(2) + right_wins.view(numpy.uint8)
        return xp.maximum(left, right),

    def backward(self, indexes, grad_outputs):
        return _MaxPooling2x2Grad(self).apply(grad_outputs)


class _MaxPooling2x2Grad(function_node.FunctionNode):
    """Sends each output gradient to its window's maximum (first-order only: synthesis needs
    no second derivatives)."""

    def __init__(self, pooling):
        self.pooling = pooling

    def forward(self, inputs):
        gy, = inputs
        xp = chainer.backend.get_array_module(gy)
        n, c, h, w = self.pooling.shape
        gx = xp.empty((n, c, h + h % 2, w + w % 2), dtype=gy.dtype)  # the views cover it
        winner = self.pooling.winner
        for k, view in enumerate(_pool_views(gx)):
            xp.multiply(gy, winner == k, out=view)
        return gx[:, :, :h, :w],

    def backward(self, indexes, grad_outputs):
        # Chainer's default would return no gradient, silently wrong.
        raise NotImplementedError('second derivatives of max_pooling_2x2 are not implemented')
