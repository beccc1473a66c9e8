"""One synthesis over several processes (MPI ranks) with ChainerMN: the style bank, sharded.

The matching costs (synthesised patches) x (style patches) per step, so at print sizes or with
many style copies it outgrows one machine. Under ``mpiexec -n N`` every rank runs the same
synthesis (the network passes, the optimiser and the image are replicated) except that each MRF
layer's style bank is cut into N shards of whole matching chunks, one per rank
(:class:`ShardedBank`, :func:`shard`). At each step every rank scores its shard against all the
synthesised patches, one reduction picks each patch's best entry across the ranks (ties to the
lowest index, as one process), and the winners' owners send their patches to every rank. The
products are those of one process (the chunk grid does not depend on the ranks,
:func:`chainer_mrf.matching.chunk_size_for`), so the matches, terms and image are identical.

A communicator is a ChainerMN one (:func:`create_communicator`); the collectives go through its
``mpi_comm`` (mpi4py) as non-blocking calls polled from Python, so that Ctrl-C reaches a rank
that waits on the others. On GPUs the keys and the winners' patches pass through host memory
(any MPI will do; a step moves P keys of 8 bytes and at most P patches per layer).
``docs/scaling.md`` gives the commands and the costs.

MPI is optional (``pip install "chainer-mrf[mpi]"``): nothing here imports it until a
communicator is made.
"""
import contextlib
import importlib.util
import os
import sys
import time
import traceback

import chainer
import numpy

from chainer_mrf import _cli, matching

#: Variables that MPI launchers (MPICH's and Open MPI's ``mpiexec``, Slurm's ``srun``, PMIx)
#: set to the number of ranks. (Not ``SLURM_NTASKS``: a batch script's own Python sees the
#: allocation's.)
_SIZE_VARIABLES = ('PMI_SIZE', 'OMPI_COMM_WORLD_SIZE', 'PMIX_SIZE', 'SLURM_STEP_NUM_TASKS')

_POLL_SECONDS = 1e-4  # between tests of a pending collective: short beside a step, and idle
_FORWARD_SECONDS = 0.2  # for the launcher to forward a failing rank's last words


def launched():
    """Whether this process is one of several ranks started by an MPI launcher.

    Read from the launcher's environment variables, so that a plain run never loads MPI.
    """
    for name in _SIZE_VARIABLES:
        try:
            if int(os.environ.get(name, '1')) > 1:
                return True
        except ValueError:
            continue
    return False


def create_communicator():
    """The ChainerMN communicator of every rank (``'naive'``: MPI through host memory).

    Raises:
        ValueError: mpi4py is not installed.
    """
    # ChainerMN's own message would not say how to install it.
    if importlib.util.find_spec('mpi4py') is None:
        raise ValueError('running under an MPI launcher needs mpi4py: pip install '
                         '"chainer-mrf[mpi]"')
    import chainermn
    return chainermn.create_communicator('naive')


def size(comm):
    """The number of ranks of ``comm``, 1 for ``None``."""
    return 1 if comm is None else comm.size


def rank(comm):
    """This process's rank in ``comm``, 0 for ``None``."""
    return 0 if comm is None else comm.rank


def split(comm, groups):
    """Splits ``comm`` into ``groups`` groups of ranks, rank r into group ``r % groups``.

    Returns:
        tuple: ``(group, sub)``: this rank's group number and the group's communicator, or
        ``None`` for a group of one rank (it runs alone).
    """
    group = rank(comm) % groups
    if comm is None:
        return group, None
    sub = comm.split(group, rank(comm))  # a collective: every rank takes part
    return group, (sub if sub.size > 1 else None)


def abort(comm, error):
    """Ends every rank of the job after an error on this one alone, which would otherwise leave
    the others waiting in a collective: one line for a user's or the system's error, the
    traceback for anything else, then ``MPI_Abort`` with exit code 2. Does not return."""
    if isinstance(error, _cli.USER_ERRORS):
        _cli.say('error: rank %d: %s' % (comm.rank, _cli.describe(error)), file=sys.stderr)
    else:  # in one write, as the next one
        _cli.say(''.join(traceback.format_exception(error)).rstrip('\n'), file=sys.stderr)
    # The launcher forwards the ranks' output: let it pass the message on before the job ends.
    time.sleep(_FORWARD_SECONDS)
    comm.mpi_comm.Abort(2)
    # MPICH's MPI_Abort may return, leaving the launcher to end the job: this rank must not
    # go on to report the error again, nor finalise MPI beside a pending collective.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(2)


def local_size(comm):
    """The number of ranks of ``comm`` on this node (sharing its memory), 1 for ``None``."""
    return 1 if comm is None else comm.intra_size


def shard(bank_size, chunk_size, rank, ranks):
    """The entries ``[start, stop)`` of a bank that rank ``rank`` of ``ranks`` holds.

    Whole chunks of the matching's grid, as evenly as they go (the counts differ by at most one
    chunk); a rank past the last chunk holds none (``start == stop``).

    Examples:
        >>> shard(10, 3, 0, 2), shard(10, 3, 1, 2), shard(1, 1, 1, 2)
        ((0, 6), (6, 10), (1, 1))
    """
    base, extra = divmod(-(-bank_size // chunk_size), ranks)
    first = rank * base + min(rank, extra)  # the first ranks take one chunk more
    last = first + base + (rank < extra)
    return min(first * chunk_size, bank_size), min(last * chunk_size, bank_size)


def pieces(counts, start, stop):
    """The part of each map of a bank that its entries ``[start, stop)`` cover.

    Args:
        counts (sequence of int): the entries of each map (style copy), in bank order.
        start, stop (int): a shard's entries (:func:`shard`).

    Returns:
        list of tuple: ``(low, high)`` for each map, its entries ``[low, high)``; empty where
        ``low >= high``.

    Examples:
        >>> pieces([4, 4, 4], 3, 9)
        [(3, 4), (0, 4), (0, 1)]
    """
    found, offset = [], 0
    for count in counts:
        found.append((max(start - offset, 0), min(stop - offset, count)))
        offset += count
    return found


class ShardedBank:
    """One rank's shard of a layer's style bank, matched as if it were the whole bank.

    Args:
        local (matching.PatchBank or None): the entries ``[start, start + len(local))`` of the
            whole bank, or ``None`` for an empty shard.
        start (int): the global index of the shard's first entry.
        size (int): S, the whole bank's entries.
        dim (int): D.
        chunk_size (int): the matching's chunk grid, which the shards follow.
        comm: the ChainerMN communicator the bank is shared over.
        xp: the array module of the queries (``numpy`` or ``cupy``).
        bank_dtype (dtype): the storage dtype. Default: ``numpy.float32``.
    """

    def __init__(self, local, start, size, dim, chunk_size, comm, xp,
                 bank_dtype=numpy.float32):
        self.local = local
        self.start = start
        self.size = size
        self.dim = dim
        self.chunk_size = chunk_size
        self.comm = comm
        self.xp = xp
        self.bank_dtype = numpy.dtype(bank_dtype)
        self.eps = matching.NORM_EPS if local is None else local.eps

    def __len__(self):
        return self.size

    @property
    def held(self):
        """int: the entries this rank holds and scores."""
        return 0 if self.local is None else self.local.size

    def nearest(self, queries, *, memory_budget=None, cosine=False):
        """Each query's best entry of the whole bank and its patch, on every rank.

        Args:
            queries (array): (P, D), the same on every rank.
            memory_budget: unused: the chunk grid was fixed when the bank was cut.
            cosine (bool): return cosines (:func:`chainer_mrf.matching.cosines`). Default:
                ``False``.

        Returns:
            tuple: ``(indices, scores, targets)`` as :meth:`matching.PatchBank.nearest`.
        """
        queries = chainer.as_array(queries)
        if self.local is None:
            best = self.xp.full(len(queries), -numpy.inf, dtype=numpy.float32)
            index = self.xp.zeros(len(queries), dtype=numpy.int64)
        else:
            index, best = matching.match(queries, self.local, chunk_size=self.chunk_size)
            index += self.start
        index, best = self._best(index, best)
        if cosine:
            matching.cosines(best, queries, self.eps)
        return index, best, self._targets(index)

    def _best(self, index, best):
        """The global best of each query across the ranks: the highest score, then the lowest
        index, as one 64-bit key reduced by MAX."""
        cpu = chainer.backend.CpuDevice()
        keys = match_keys(cpu.send(best), cpu.send(index))
        keys = _allreduce_max(self.comm, keys)
        best, index = from_keys(keys)
        return self.xp.asarray(index), self.xp.asarray(best)

    def _targets(self, index):
        """Every query's winning patch, sent by the rank that holds it to all the others.

        Each rank sends its distinct winners once, as stored (a float16 bank's at half the
        bytes) and as a (D, n) block of columns; the blocks arrive in rank order, which is the
        order of the global indices, so a sorted search finds each query's column. The targets
        are laid out as :meth:`matching.PatchBank.take` lays them out, a transposed (D, P)
        array, which sets how the loss sums them (and so its rounding).
        """
        cpu = chainer.backend.CpuDevice()
        index = cpu.send(index)
        stop = self.start + self.held
        mine = numpy.unique(index[(index >= self.start) & (index < stop)])
        block = (numpy.empty((self.dim, 0), self.bank_dtype) if self.local is None else
                 cpu.send(self.local.stored(self.xp.asarray(mine - self.start))))
        counts = numpy.empty(self.comm.size, numpy.int64)
        wait(self.comm.mpi_comm.Iallgather(numpy.array([len(mine)], numpy.int64), counts))
        winners = _allgatherv(self.comm, mine, counts)
        blocks = _allgatherv(self.comm, block.ravel(), counts * self.dim)
        found = numpy.searchsorted(winners, index)
        targets = numpy.empty((self.dim, len(index)), numpy.float32)
        first = numpy.concatenate([[0], numpy.cumsum(counts)])
        for low, high in zip(first[:-1], first[1:]):
            queries = numpy.nonzero((found >= low) & (found < high))[0]
            columns = blocks[low * self.dim:high * self.dim].reshape(self.dim, high - low)
            targets[:, queries] = columns[:, found[queries] - low]  # widened to float32
        return self.xp.asarray(targets).T


def match_keys(scores, indices):
    """(score, index) pairs as uint64 keys whose maximum is the highest score, ties to the
    lowest index: the float's order-preserving bits above the index's complement.

    Shape:
        scores: (P,) float32, not NaN. indices: (P,) integers below 2**32. Output: (P,).
    """
    bits = numpy.ascontiguousarray(scores, dtype=numpy.float32).view(numpy.uint32)
    negative = bits >> numpy.uint32(31) == 1
    ordered = numpy.where(negative, ~bits, bits | numpy.uint32(1 << 31))
    low = numpy.uint64(0xFFFFFFFF) - indices.astype(numpy.uint64)
    return (ordered.astype(numpy.uint64) << numpy.uint64(32)) | low


def from_keys(keys):
    """The (scores, indices) of :func:`match_keys`' keys: float32 and int64."""
    ordered = (keys >> numpy.uint64(32)).astype(numpy.uint32)
    positive = ordered >> numpy.uint32(31) == 1
    bits = numpy.where(positive, ordered & numpy.uint32(0x7FFFFFFF), ~ordered)
    indices = (numpy.uint64(0xFFFFFFFF) - (keys & numpy.uint64(0xFFFFFFFF))).astype(numpy.int64)
    return bits.view(numpy.float32), indices


def _allreduce_max(comm, keys):
    from mpi4py import MPI
    out = numpy.empty_like(keys)
    wait(comm.mpi_comm.Iallreduce(keys, out, op=MPI.MAX))
    return out


def _allgatherv(comm, array, counts):
    """Every rank's ``array`` (rows of equal length, ``counts[r]`` rows from rank r), joined in
    rank order; moved as bytes, so any dtype goes as it is."""
    from mpi4py import MPI
    array = numpy.ascontiguousarray(array)
    row = array.itemsize * (array.size // len(array) if len(array) else
                            int(numpy.prod(array.shape[1:])))
    joined = numpy.empty((int(counts.sum()),) + array.shape[1:], array.dtype)
    sizes = counts * row
    offsets = numpy.concatenate([[0], numpy.cumsum(sizes)[:-1]])
    wait(comm.mpi_comm.Iallgatherv(array.view(numpy.uint8).reshape(-1),
                                   [joined.view(numpy.uint8).reshape(-1), sizes, offsets,
                                    MPI.BYTE]))
    return joined


def wait(request):
    """Waits for a non-blocking MPI call from Python, so that a signal (Ctrl-C, a scheduler's
    SIGTERM) is raised here rather than after a blocking call that may never return."""
    while not request.Test():
        time.sleep(_POLL_SECONDS)


def agreed(error):
    """Marks ``error`` as raised on every rank (so no rank is left waiting); returns it."""
    error.chainer_mrf_agreed = True
    return error


def is_agreed(error):
    """Whether ``error`` was raised on every rank: by :func:`agreement`, or marked
    :func:`agreed` (an error every rank meets at the same step, as a divergence)."""
    return getattr(error, 'chainer_mrf_agreed', False)


class RankError(ValueError):
    """Another rank failed where every rank must agree (see :func:`agreement`).

    Attributes:
        rank (int): the lowest rank that failed.
    """

    def __init__(self, message, rank):
        super().__init__(message)
        self.rank = rank


@contextlib.contextmanager
def agreement(comm):
    """Runs a block that holds no collective on every rank, and fails it on all if it failed on
    any: a rank whose block raised re-raises its error, the others a :class:`RankError` with
    the message of the lowest failing rank. With ``comm`` ``None`` or of one rank, a plain
    block.

    Used where ranks may see different things (free memory, a device, the output folder), so
    that no rank goes on to wait in a collective for one that stopped.
    """
    if size(comm) == 1:
        yield
        return
    error = None
    try:
        yield
    except Exception as e:  # noqa: B902 (re-raised below, on every rank)
        error = e
    failures = comm.mpi_comm.allgather(None if error is None else _cli.describe(error))
    if error is not None:
        raise agreed(error)
    for failed, failure in enumerate(failures):
        if failure is not None:
            raise agreed(RankError('rank %d: %s' % (failed, failure), failed))
