"""Patch extraction from a feature map, differentiable, with the overlap-add as its backward.

A patch is a ``ksize x ksize`` window of a (1, C, H, W) feature map, flattened in the im2col
order (channel, ky, kx) to a vector of length ``C * ksize**2``; patches are listed in row-major
order of their top-left corners. The corners form a grid: ``rows x cols`` of start indices, by
default every ``stride``-th position (no padding), or any increasing starts such as the authors'
grid of :func:`grid_starts`.

Every copy is a strided slice, on NumPy and CuPy alike: the starts are split into arithmetic runs
(one run for a plain stride, two for the authors' grid), so no index array is built or moved to
the device. Extraction costs about one copy of the patch matrix, as ``F.im2col`` does, instead of
the identity convolution dsanno uses (a ``C*k*k x C x k x k`` filter bank, dearer than VGG).

Layout: the patch matrix is a transposed view of a C-contiguous (C*k*k, P) array (NumPy calls it
F-contiguous). Keep it so downstream: elementwise operations between two such views, and the
backward here, are ~10x faster on a CPU than when one operand is row-major and has to be read
across (:meth:`chainer_mrf.matching.PatchBank.take` returns targets in this layout).
"""
import chainer
from chainer import function_node
import numpy


def grid_starts(n, ksize, stride):
    """The authors' patch grid along one axis, 0-based (``docs/algorithm.md``, "The two presets
    side by side": their style bank and synthesised patches).

    Starts ``0, stride, 2*stride, ...`` up to ``n - ksize``, with ``n - ksize`` appended when the
    stride skips it, so the last row and column of the map are always covered.

    Args:
        n (int): the axis length (feature pixels).
        ksize (int): the patch size.
        stride (int): the grid step, >= 1.

    Returns:
        numpy.ndarray: int64 starts, strictly increasing.

    Raises:
        ValueError: if ``n < ksize``, or ``ksize`` or ``stride`` is below 1.

    Examples:
        >>> grid_starts(10, 3, 2).tolist()
        [0, 2, 4, 6, 7]
    """
    _check_sizes(n, ksize, stride)
    starts = numpy.arange(0, n - ksize + 1, stride, dtype=numpy.int64)
    if starts[-1] != n - ksize:
        starts = numpy.append(starts, n - ksize)
    return starts


def extract_patches(x, ksize=3, stride=1, *, rows=None, cols=None):
    """Differentiable patch extraction; the backward adds each patch's gradient back in place.

    Args:
        x (chainer.Variable or array): the feature map, NumPy or CuPy, any float dtype.
        ksize (int): the patch size. Default: 3.
        stride (int): the step of the default grid. Default: 1.
        rows (sequence of int or None): row starts (host integers, strictly increasing, each in
            ``[0, H - ksize]``); ``None`` takes ``0, stride, ...`` while a patch fits.
            Default: ``None``.
        cols (sequence of int or None): column starts, as ``rows``. Default: ``None``.

    Returns:
        chainer.Variable: the patches (see the module's note on layout).

    Raises:
        ValueError: on a bad shape, size or start.

    Shape:
        x: (1, C, H, W). Output: (len(rows) * len(cols), C * ksize**2), patch
        ``i * len(cols) + j`` starting at (rows[i], cols[j]); element ``(c * ksize + ky) * ksize
        + kx`` of a patch is ``x[0, c, row + ky, col + kx]``.
    """
    grid = _Grid(chainer.as_array(x).shape, ksize, stride, rows, cols)
    return _ExtractPatches(grid).apply((x,))[0]


def extract_patches_array(x, ksize=3, stride=1, *, rows=None, cols=None):
    """:func:`extract_patches` for arrays, without the graph (style bank building).

    Args and Shape: as :func:`extract_patches`, ``x`` a NumPy or CuPy array.

    Returns:
        array: the patches, of ``x``'s array module and dtype.
    """
    return _ExtractPatches(_Grid(x.shape, ksize, stride, rows, cols)).forward((x,))[0]


def overlap_add(patches, shape, ksize=3, stride=1, *, rows=None, cols=None):
    """The adjoint of :func:`extract_patches`: sums each patch into the map where it was taken.

    Pixels covered by several patches receive the sum of their values; ``overlap_add`` of all ones
    gives the coverage count map that CNNMRF divides its gradient by. Differentiable (its backward
    is extraction).

    Args:
        patches (chainer.Variable or array): patch vectors in the layout of
            :func:`extract_patches`.
        shape (tuple of int): the feature map's shape ``(1, C, H, W)``.
        ksize, stride, rows, cols: the grid, as :func:`extract_patches`. Defaults: 3, 1, ``None``,
            ``None``.

    Returns:
        chainer.Variable: the map.

    Raises:
        ValueError: on a bad shape, size or start, or if ``patches`` does not fit the grid.

    Shape:
        patches: (len(rows) * len(cols), C * ksize**2). Output: ``shape``.
    """
    grid = _Grid(shape, ksize, stride, rows, cols)
    expected = (grid.n_rows * grid.n_cols, shape[1] * ksize * ksize)
    if chainer.as_array(patches).shape != expected:
        raise ValueError('patches of shape %s do not fit the grid, which needs %s'
                         % (chainer.as_array(patches).shape, expected))
    return _OverlapAdd(grid, shape[1]).apply((patches,))[0]


def grid_count(shape, ksize, stride):
    """The number of patches on the grid of :func:`grid_starts` over an (H, W) map; 0 where a
    patch does not fit.

    Examples:
        >>> grid_count((10, 4), 3, 2), grid_count((2, 8), 3, 1)
        (10, 0)
    """
    height, width = shape
    if min(height, width) < ksize:
        return 0
    return len(grid_starts(height, ksize, stride)) * len(grid_starts(width, ksize, stride))


def _check_sizes(n, ksize, stride):
    if ksize < 1 or stride < 1:
        raise ValueError('ksize and stride must be >= 1, got %d and %d' % (ksize, stride))
    if n < ksize:
        raise ValueError('a feature map side of %d is smaller than the patch size %d'
                         % (n, ksize))


def _runs(starts):
    """Splits increasing starts into maximal arithmetic runs ``(position, first, step, count)``."""
    runs = []
    i = 0
    while i < len(starts):
        step, count = 1, 1
        if i + 1 < len(starts):
            step, count = int(starts[i + 1] - starts[i]), 2
            while i + count < len(starts) and starts[i + count] - starts[i + count - 1] == step:
                count += 1
        runs.append((i, int(starts[i]), step, count))
        i += count
    return runs


def _axis_starts(n, ksize, stride, starts, name):
    _check_sizes(n, ksize, stride)
    if starts is None:
        return numpy.arange(0, n - ksize + 1, stride, dtype=numpy.int64)
    starts = numpy.asarray(starts)
    if starts.ndim != 1 or starts.size == 0 or starts.dtype.kind not in 'iu':
        raise ValueError('%s must be a non-empty 1-D sequence of integers' % name)
    if (numpy.diff(starts) <= 0).any() or starts[0] < 0 or starts[-1] > n - ksize:
        # Repeated starts would also break the backward, which adds each slice in place once.
        raise ValueError('%s must increase strictly within [0, %d], got %s'
                         % (name, n - ksize, starts.tolist()))
    return starts.astype(numpy.int64)


_TRANSPOSE_ROWS = 128  # rows per step of the blocked CPU transpose (cache-sized, measured)


def _columns(patches):
    """``patches.T`` as a C-contiguous (D, P) array: a view in the extraction layout, else a copy.

    Chainer's own backward passes (``F.sum``, ``F.square``, ...) often hand back row-major
    gradients; NumPy transposes a large one ~4x faster in row blocks than in one copy.
    """
    if patches.T.flags.c_contiguous:
        return patches.T
    xp = chainer.backend.get_array_module(patches)
    if xp is not numpy:
        return xp.ascontiguousarray(patches.T)
    out = numpy.empty(patches.shape[::-1], dtype=patches.dtype)
    for start in range(0, patches.shape[0], _TRANSPOSE_ROWS):
        out[:, start:start + _TRANSPOSE_ROWS] = patches[start:start + _TRANSPOSE_ROWS].T
    return out


class _Grid:
    """A patch grid over an (H, W) map, as slices: ``pieces`` pairs a window of the map with
    the block of the (C, k, k, rows, cols) patch array it fills."""

    def __init__(self, shape, ksize, stride, rows, cols):
        if len(shape) != 4 or shape[0] != 1:
            raise ValueError('expected a feature map of shape (1, C, H, W), got %s'
                             % (tuple(shape),))
        self.ksize = ksize
        self.map_shape = tuple(shape)
        row_starts = _axis_starts(shape[2], ksize, stride, rows, 'rows')
        col_starts = _axis_starts(shape[3], ksize, stride, cols, 'cols')
        self.n_rows, self.n_cols = len(row_starts), len(col_starts)
        self._row_runs, self._col_runs = _runs(row_starts), _runs(col_starts)

    def pieces(self):
        """Yields ``(map index, patch-array index)`` pairs of equally shaped (C, r, c) views."""
        k = self.ksize
        for ri, r0, rstep, rn in self._row_runs:
            for ci, c0, cstep, cn in self._col_runs:
                for ky in range(k):
                    for kx in range(k):
                        window = (slice(None),
                                  slice(r0 + ky, r0 + ky + rstep * (rn - 1) + 1, rstep),
                                  slice(c0 + kx, c0 + kx + cstep * (cn - 1) + 1, cstep))
                        block = (slice(None), ky, kx, slice(ri, ri + rn), slice(ci, ci + cn))
                        yield window, block


class _ExtractPatches(function_node.FunctionNode):
    """(1, C, H, W) -> (P, C*k*k); backward: :class:`_OverlapAdd`."""

    def __init__(self, grid):
        self.grid = grid

    def forward(self, inputs):
        x, = inputs
        xp = chainer.backend.get_array_module(x)
        grid, k = self.grid, self.grid.ksize
        channels = x.shape[1]
        out = xp.empty((channels, k, k, grid.n_rows, grid.n_cols), dtype=x.dtype)
        for window, block in grid.pieces():
            out[block] = x[0][window]
        return out.reshape(channels * k * k, grid.n_rows * grid.n_cols).T,

    def backward(self, indexes, grad_outputs):
        return _OverlapAdd(self.grid, self.grid.map_shape[1]).apply(grad_outputs)


class _OverlapAdd(function_node.FunctionNode):
    """(P, C*k*k) -> (1, C, H, W), summing overlaps; backward: :class:`_ExtractPatches`."""

    def __init__(self, grid, channels):
        self.grid = grid
        self.channels = channels

    def forward(self, inputs):
        patches, = inputs
        xp = chainer.backend.get_array_module(patches)
        grid, k = self.grid, self.grid.ksize
        blocks = _columns(patches).reshape(self.channels, k, k, grid.n_rows, grid.n_cols)
        out = xp.zeros(grid.map_shape, dtype=patches.dtype)
        for window, block in grid.pieces():
            out[0][window] += blocks[block]
        return out,

    def backward(self, indexes, grad_outputs):
        return _ExtractPatches(self.grid).apply(grad_outputs)
