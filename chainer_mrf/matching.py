"""Nearest-neighbour patch matching by normalised cross-correlation, in chunks.

For queries q_i (synthesised patches) and a bank of style patches s_j,

    score(i, j) = <q_i, s_j> / max(|s_j|, eps),    NN(i) = argmax_j score(i, j)

(no mean subtraction; ``docs/algorithm.md``, "MRF term"). The query norm is the same for every j,
so it does not change the argmax; ``match(..., cosine=True)`` divides it in, ``max(|q_i|, eps)``,
for a confidence threshold. Ties go to the lowest bank index, as ``numpy.argmax``.

The epsilon, :data:`NORM_EPS`, is new here: dsanno and CNNMRF divide by the bare norms, so an
all-zero patch (common after a ReLU) gives 0/0 = NaN and a meaningless argmax. Here a zero bank
patch scores 0 against everything and a zero query scores 0 against every entry (so it matches
entry 0); real VGG patch norms are many orders above the epsilon, so it changes no other match.

The (queries x bank) score matrix is never stored whole: the bank is taken in chunks (sized by a
memory budget), each chunk's products ``<q_i, s_j>`` come from one matrix product (BLAS on the
CPU, cuBLAS on the GPU), are multiplied by the entries' inverse norms, and a running maximum and
argmax absorbs them. On the CPU that is an in-place product, ``argmax`` per row, then a
comparison; on the GPU one fused kernel (``kernels/match.cu``) scales and reduces each row of the
chunk and merges it with the running best. (dsanno divides the style patches by their norms
before the product; scaling the products instead differs by rounding only, and saves keeping a
normalised copy of the bank.) Chunking does not change the result: within a chunk the lowest
index wins a tie, and a later chunk replaces the running best only with a strictly larger score.
(The products themselves are BLAS's: a library may round a dot product differently for another
block shape, by about one unit in the last place, which can only matter for two candidates whose
scores agree to that precision.)

The path follows the arrays: NumPy in, CPU path; CuPy in, GPU path. Everything is float32; a bank
may be stored in float16 (``bank_dtype``) to halve its memory, and each chunk is then widened to
float32 before its product, so scores are computed and accumulated in float32.
"""
import functools
import os

import chainer
import numpy

NORM_EPS = 1e-8
"""Norms below this are raised to it before dividing (so zero patches give 0, never NaN)."""

BANK_DTYPES = ('float32', 'float16')
"""The storage types of a :class:`PatchBank` (scores are float32 with either)."""

DEFAULT_MEMORY_BUDGET = 256 * 2 ** 20
"""Bytes for the per-chunk working memory of :func:`match` (256 MiB)."""

CHUNKS_PER_BANK = 64
"""A bank is cut into at least this many chunks (of at least :data:`MIN_CHUNK` entries), so
that ranks sharing it (:mod:`chainer_mrf.distributed`) get equal shares of whole chunks."""

MIN_CHUNK = 512
"""The fewest entries of a chunk cut for :data:`CHUNKS_PER_BANK` (narrower products run well
below the matrix-multiply rate: 20 % at 128 columns, 10 % at 512 with two threads)."""

KERNEL_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'kernels', 'match.cu')
"""The CUDA source of the GPU path."""

_CUDA_THREADS = 256  # threads per block; a power of two, at most MRF_MAX_THREADS in the source


class PatchBank:
    """Style patches prepared once for matching: one stored copy and the inverse norms.

    Only the raw patches are kept (in ``bank_dtype``): :func:`match` multiplies each chunk's
    products by the inverse norms, rather than keeping a normalised second copy of the bank,
    which at 800 pixels with the authors' nine style copies would cost another gigabyte.

    Args:
        patches (array or sequence of arrays): style patch vectors, NumPy or CuPy, e.g. from
            :func:`chainer_mrf.patches.extract_patches_array`; a sequence (one array per style
            copy) is concatenated in order. Converted to float32.
        weights (sequence of float or None): one factor per part of ``patches`` (per array of
            a sequence) multiplying the scores of that part's entries: :func:`match` ranks
            ``weight * <q, s_j> / |s_j|``, so a part weighted below 1 is chosen less often.
            The stored patches (the matched targets) are not scaled. ``None`` weighs every
            part 1. Default: ``None``.
        bank_dtype (dtype): ``numpy.float32``, or ``numpy.float16`` to store the bank at half
            the memory (the norms are taken before rounding; the matched targets of
            :meth:`take` are then the float16-rounded patches). Default: ``numpy.float32``.
        eps (float): the norm floor, > 0. Default: :data:`NORM_EPS`.
        normalise (bool): score by the entries' norms; ``False`` scores plain dot products
            (times the weights), for entries normalised beforehand in another way
            (:func:`chainer_mrf.mrf.matching_features`). Default: ``True``.

    Raises:
        ValueError: if the patches are empty, not 2-D or of different lengths, ``weights``
            has not one positive finite value per part, or ``bank_dtype`` or ``eps`` is
            invalid.

    Shape:
        patches: (S, D), or a sequence of (S_i, D) with S = sum of S_i.
        ``inverse_norms``: (S,) float32, ``weight / max(|s_j|, eps)``.
    """

    def __init__(self, patches, *, weights=None, bank_dtype=numpy.float32, eps=NORM_EPS,
                 normalise=True):
        if numpy.dtype(bank_dtype).name not in BANK_DTYPES:
            raise ValueError('bank_dtype must be one of %s, got %s'
                             % (', '.join(BANK_DTYPES), numpy.dtype(bank_dtype)))
        if not eps > 0:
            raise ValueError('eps must be > 0, got %r' % (eps,))
        parts = list(patches) if isinstance(patches, (list, tuple)) else [patches]
        if not parts or any(p.ndim != 2 or p.shape[1] != parts[0].shape[1] for p in parts):
            raise ValueError('patches must be a 2-D (S, D) array or a non-empty sequence of '
                             'them, all of the same length D')
        weights = [1.0] * len(parts) if weights is None else list(weights)
        if len(weights) != len(parts) or not all(0 < w < numpy.inf for w in weights):
            raise ValueError('weights must hold one positive finite number per part (%d), got '
                             '%r' % (len(parts), weights))
        size = sum(p.shape[0] for p in parts)
        if size == 0:
            raise ValueError('the patch bank is empty')
        xp = chainer.backend.get_array_module(parts[0])
        ops = _ops_for(xp)
        self.xp = xp
        self.eps = float(eps)
        self.bank_dtype = numpy.dtype(bank_dtype)
        # Kept as (D, S): take() then returns targets in the layout of extract_patches, and a
        # chunk of columns is a strided matrix BLAS reads as it is. Filled part by part, so
        # building costs no temporary copy of the whole bank.
        self._stored_t = xp.empty((parts[0].shape[1], size), dtype=self.bank_dtype)
        self.inverse_norms = xp.empty(size, dtype=numpy.float32)
        start = 0
        for part, weight in zip(parts, weights):
            part = part.astype(numpy.float32, copy=False)
            inverse_norms = (ops.inverse_norms(part, self.eps) if normalise
                             else xp.ones(len(part), numpy.float32))
            if weight != 1:
                inverse_norms *= numpy.float32(weight)
            self.inverse_norms[start:start + len(part)] = inverse_norms
            self._stored_t[:, start:start + len(part)] = part.T
            start += len(part)

    @property
    def size(self):
        """int: the number of patches S."""
        return self._stored_t.shape[1]

    @property
    def dim(self):
        """int: the patch length D."""
        return self._stored_t.shape[0]

    @property
    def patches(self):
        """array: the stored patches as float32, (S, D) (a transposed view, or a widened
        copy of a float16 bank)."""
        return self._stored_t.astype(numpy.float32, copy=False).T

    def __len__(self):
        return self.size

    def columns(self, start, stop):
        """Bank entries ``start`` to ``stop - 1`` as a float32 (D, stop - start) matrix: a view
        of a float32 bank, a widened copy of a float16 one."""
        return self._stored_t[:, start:stop].astype(numpy.float32, copy=False)

    @property
    def held(self):
        """int: the entries this process holds and scores: all of them (a rank's share of a
        :class:`chainer_mrf.distributed.ShardedBank` holds fewer)."""
        return self.size

    def nearest(self, queries, *, memory_budget=DEFAULT_MEMORY_BUDGET, cosine=False):
        """Each query's best entry and its patch: :func:`match`, then :meth:`take`.

        Returns:
            tuple: ``(indices, scores, targets)``, the last (P, D) float32.
        """
        indices, scores = match(queries, self, memory_budget=memory_budget, cosine=cosine)
        return indices, scores, self.take(indices)

    def take(self, indices):
        """The stored patches at ``indices``, e.g. the targets chosen by :func:`match`.

        Args:
            indices (array): int bank indices, of the bank's array module.

        Returns:
            array: float32, in the layout of :func:`chainer_mrf.patches.extract_patches` (a
            transposed view), so elementwise work with the query patches stays fast.

        Shape:
            indices: (P,). Output: (P, D).
        """
        return self.stored(indices).astype(numpy.float32, copy=False).T

    def stored(self, indices):
        """The patches at ``indices`` as stored, in ``bank_dtype``: a (D, P) array of
        columns (:meth:`take` widens and transposes it).

        Shape:
            indices: (P,). Output: (D, P).
        """
        return self._stored_t.take(indices, axis=1)


def chunk_size_for(n_queries, dim, memory_budget=DEFAULT_MEMORY_BUDGET,
                   bank_dtype=numpy.float32, bank_size=None):
    """The number of bank entries per chunk that :func:`match` uses: the chunk grid.

    Each entry of a chunk costs one float32 score per query, plus, for a float16 bank, its
    float32 widened copy; the chunk is the budget divided by that, at least 1 (so a budget below
    one entry's cost still works, over it). Given the bank's size, the chunk is also cut to
    ``bank_size / CHUNKS_PER_BANK`` entries, but not below :data:`MIN_CHUNK`, so that ranks
    sharing the bank split it into equal shares of the same chunks, which keeps every product,
    and so every match, identical to one process's. One process pays for it a little: narrower
    products run some per cent below the matrix-multiply rate (``docs/performance.md``: the
    demo's matching 15 % slower, about 2 % at 1024 px).

    Args:
        n_queries (int): P.
        dim (int): D.
        memory_budget (int): bytes. Default: :data:`DEFAULT_MEMORY_BUDGET`.
        bank_dtype (dtype): the bank's storage dtype. Default: ``numpy.float32``.
        bank_size (int or None): S, the whole bank's entries; ``None``: no cut for sharing.
            Default: ``None``.

    Returns:
        int: entries per chunk, >= 1 and at most ``bank_size`` where given.
    """
    per_entry = 4 * max(n_queries, 1)
    if numpy.dtype(bank_dtype) != numpy.float32:
        per_entry += 4 * dim
    chunk = max(1, int(memory_budget) // per_entry)
    if bank_size is not None:
        chunk = min(chunk, max(MIN_CHUNK, -(-bank_size // CHUNKS_PER_BANK)), bank_size)
    return chunk


def match(queries, bank, *, chunk_size=None, memory_budget=DEFAULT_MEMORY_BUDGET, cosine=False):
    """Finds each query's best bank patch by normalised cross-correlation.

    Args:
        queries (array or chainer.Variable): query patch vectors, of the bank's array module
            (its data is used; no gradient flows). Converted to float32; must be finite.
        bank (PatchBank): the prepared style patches.
        chunk_size (int or None): bank entries per chunk; ``None`` derives it from
            ``memory_budget`` and the bank's size with :func:`chunk_size_for`. Default:
            ``None``.
        memory_budget (int): bytes of working memory for the chunk's scores. Default:
            :data:`DEFAULT_MEMORY_BUDGET`.
        cosine (bool): return ``<q_i, s_j> / (max(|q_i|, eps) * max(|s_j|, eps))`` (the cosine,
            in [-1, 1]) instead of ``<q_i, s_j> / max(|s_j|, eps)``. Default: ``False``.

    Returns:
        tuple: ``(indices, scores)``: int64 bank indices (lowest on ties) and their float32
        scores, of the queries' array module.

    Raises:
        ValueError: on a shape mismatch, a bad ``chunk_size``, or queries and bank on different
            array modules.

    Shape:
        queries: (P, D) with D = ``bank.dim``, any memory layout. Outputs: (P,) each.
    """
    queries = chainer.as_array(queries)
    xp = chainer.backend.get_array_module(queries)
    if xp is not bank.xp:
        raise ValueError('queries are %s arrays but the bank holds %s arrays'
                         % (xp.__name__, bank.xp.__name__))
    if queries.ndim != 2 or queries.shape[1] != bank.dim:
        raise ValueError('queries must have shape (P, %d), got %s' % (bank.dim, queries.shape))
    if chunk_size is None:
        chunk_size = chunk_size_for(queries.shape[0], bank.dim, memory_budget, bank.bank_dtype,
                                    bank.size)
    elif chunk_size < 1:
        raise ValueError('chunk_size must be >= 1, got %r' % (chunk_size,))
    queries = queries.astype(numpy.float32, copy=False)
    n = queries.shape[0]
    best = xp.full(n, -numpy.inf, dtype=numpy.float32)
    best_index = xp.zeros(n, dtype=numpy.int64)
    if n == 0:
        return best_index, best
    ops = _ops_for(xp)
    chunk_size = min(int(chunk_size), bank.size)
    buffer = xp.empty(n * chunk_size, dtype=numpy.float32)
    for start in range(0, bank.size, chunk_size):
        block = bank.columns(start, start + chunk_size)
        width = block.shape[1]
        scores = xp.dot(queries, block, out=buffer[:n * width].reshape(n, width))
        ops.update(scores, start, bank.inverse_norms[start:start + width], best, best_index)
    if cosine:
        cosines(best, queries, bank.eps)
    return best_index, best


def cosines(scores, queries, eps=NORM_EPS):
    """Turns :func:`match`'s scores into cosines in place: each divided by ``max(|q_i|, eps)``.

    Shape:
        scores: (P,) float32. queries: (P, D), of the scores' array module.
    """
    queries = queries.astype(numpy.float32, copy=False)
    scores *= _ops_for(chainer.backend.get_array_module(queries)).inverse_norms(queries, eps)


class _NumpyOps:
    """The CPU path's two steps besides the products."""

    @staticmethod
    def inverse_norms(x, eps):
        """``1 / max(|x_i|, eps)`` per row, float32; einsum avoids an (S, D) temporary."""
        norms = numpy.sqrt(numpy.einsum('ij,ij->i', x, x))
        return numpy.float32(1) / numpy.maximum(norms, numpy.float32(eps))

    @staticmethod
    def update(scores, offset, inverse_norms, best, best_index):
        """Scales one chunk's products by the entries' inverse norms (in place) and merges it
        into the running best: one argmax pass, then P comparisons."""
        numpy.multiply(scores, inverse_norms, out=scores)
        index = scores.argmax(axis=1)
        value = numpy.take_along_axis(scores, index[:, None], axis=1)[:, 0]
        better = value > best  # strict: an earlier chunk keeps a tie (it has the lower index)
        best[better] = value[better]
        best_index[better] = index[better] + offset


class _CudaOps:
    """The GPU path's two steps, as the kernels of ``kernels/match.cu``.

    Args:
        launch (callable): ``launch(name, grid, block, args)`` runs kernel ``name`` on a 1-D grid;
            :func:`_cupy_launch`, or in the tests the C++ shim build on NumPy arrays.
        threads (int): threads per block, a power of two <= 256. Default: 256.
    """

    def __init__(self, launch, threads=_CUDA_THREADS):
        self._launch = launch
        self._threads = threads

    def inverse_norms(self, x, eps):
        xp = chainer.backend.get_array_module(x)
        out = xp.empty(x.shape[0], dtype=numpy.float32)
        row_stride, col_stride = (s // x.itemsize for s in x.strides)
        self._launch('inverse_norms', x.shape[0], self._threads,
                     (x, numpy.int32(x.shape[1]), numpy.int64(row_stride),
                      numpy.int64(col_stride), numpy.float32(eps), out))
        return out

    def update(self, scores, offset, inverse_norms, best, best_index):
        self._launch('argmax_update', scores.shape[0], self._threads,
                     (scores, inverse_norms, numpy.int32(scores.shape[1]),
                      numpy.int64(offset), best, best_index))


@functools.lru_cache(maxsize=None)
def _cuda_module():
    import cupy
    with open(KERNEL_PATH, encoding='utf-8') as f:
        return cupy.RawModule(code=f.read())


def _cupy_launch(name, grid, block, args):
    _cuda_module().get_function(name)((grid,), (block,), args)


_CPU_OPS = _NumpyOps()
_GPU_OPS = _CudaOps(_cupy_launch)


def _ops_for(xp):
    return _CPU_OPS if xp is numpy else _GPU_OPS
