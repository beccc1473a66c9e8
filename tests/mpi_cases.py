"""The ranks' side of tests/test_mpi.py: run as ``mpiexec -n N python tests/mpi_cases.py CASE
[ARGS]``.

Every rank runs the case, compares what it can with a one-process reference computed in the
same job, prints what it found (``rank R: ...``) and exits non-zero on a mismatch. An exception
on one rank aborts the job (``MPI_Abort``), so a failing case ends instead of leaving the other
ranks waiting.

Cases:
    match: sharded matching (:class:`chainer_mrf.distributed.ShardedBank`) against one
        process's :meth:`chainer_mrf.matching.PatchBank.nearest`, NumPy banks of every kind.
    synth JSON [CHUNKS]: ``synthesize(**JSON, comm=comm)`` against rank 0's own one-process
        run: the matched indices of every matching, the loss terms of every step and the final
        image; with CHUNKS, each rank must hold at least that many chunks of some bank.
    rank-error: a device only rank 1 cannot use; every rank must stop with the error.
    fail-in-run RANK KIND ARGS...: ``generate.py ARGS`` (its ``main``, as ``scripts/generate.py``
        runs it) whose callback raises ``KIND`` (``runtime`` or ``oserror``) on rank ``RANK``
        after step 2; the job must end (``MPI_Abort``).
"""
import json
import os
import sys
import time
import traceback

import chainer_mrf  # noqa: F401  (installs the NumPy shims before chainer is imported)
import numpy

from chainer_mrf import distributed, matching, mrf

from helpers import content_card, style_stripes  # tests/, this script's folder


def say(comm, *args):
    print('rank %d:' % comm.rank, *args, flush=True)


def gathered(comm, value):
    """Every rank's ``value``, in rank order, on every rank."""
    return comm.mpi_comm.allgather(value)


# --- match ---------------------------------------------------------------------------------------

def _match_cases(rng):
    """(name, features, maps, options, P, budget, checks) for each sharded matching case."""
    cases = []

    # Uneven shards: 270 entries, chunks of 11: 25 chunks (24 whole, one of 6), split 13/12
    # over 2 ranks, 9/8/8 over 3. A zero patch in the bank.
    f = rng.standard_normal((1, 8, 20, 17)).astype(numpy.float32)
    f[..., 14:17, 10:13] = 0
    cases.append(('uneven shards', [f], None, {}, 50, 4 * 50 * 11,
                  dict(chunk=11, size=270, uneven=True)))

    # A one-entry bank: one chunk, so every rank past rank 0 holds an empty shard.
    f = rng.standard_normal((1, 4, 3, 3)).astype(numpy.float32)
    cases.append(('one entry', [f], None, {}, 30, matching.DEFAULT_MEMORY_BUDGET,
                  dict(chunk=1, size=1, empty=True)))

    # float16, weights per part, semantic map columns, and ties across parts and shards: the
    # first 6 x 6 pixels of part 1 (features and map) are those of part 0, so the patches on
    # its first 4 x 4 grid positions are exact copies of part 0's, with the same weight.
    f0 = rng.standard_normal((1, 8, 20, 17)).astype(numpy.float32)
    f1 = rng.standard_normal((1, 8, 12, 13)).astype(numpy.float32)
    f2 = rng.standard_normal((1, 8, 9, 11)).astype(numpy.float32)
    m0, m1, m2 = (rng.random((1, 2) + f.shape[2:]).astype(numpy.float32) for f in (f0, f1, f2))
    f1[..., :6, :6] = f0[..., :6, :6]
    m1[..., :6, :6] = m0[..., :6, :6]
    f0[..., 10:13, 3:6] = 0  # a zero feature patch (its map columns are not zero)
    dim = (8 + 2) * 9
    ties = [(r * 15 + c, 270 + r * 11 + c) for r in range(4) for c in range(4)]
    cases.append(('float16, maps, weights, ties', [f0, f1, f2], [m0, m1, m2],
                  dict(weights=[1.25, 1.25, 0.5], bank_dtype='float16', semantic_weight=3.0),
                  50, (4 * 50 + 4 * dim) * 13,
                  dict(chunk=13, size=270 + 110 + 63, uneven=True, ties=ties)))

    # The default budget: the chunk is cut for sharing (512 entries of 4332, 9 chunks).
    fs = [rng.standard_normal((1, 8, 40, 40)).astype(numpy.float32) for _ in range(3)]
    fs[1][..., 5:8, 5:8] = 0
    cases.append(('default budget, 3 parts', fs, None, dict(weights=[1.0, 2.0, 0.5]), 64,
                  matching.DEFAULT_MEMORY_BUDGET, dict(chunk=512, size=3 * 38 * 38)))
    return cases


def case_match(comm, args):
    rng = numpy.random.default_rng(0)
    bad = 0
    for name, features, maps, options, n_queries, budget, checks in _match_cases(rng):
        whole = mrf.style_bank(features, maps=maps, **options)
        sharded = mrf.style_bank(features, maps=maps, comm=comm, queries=n_queries,
                                 memory_budget=budget, **options)
        problems = []
        if not isinstance(sharded, distributed.ShardedBank):
            problems.append('style_bank made a %s, not a ShardedBank' % type(sharded).__name__)
        if (sharded.chunk_size, sharded.size, sharded.dim) != (
                checks['chunk'], checks['size'], whole.dim) or whole.size != checks['size']:
            problems.append('chunk %d, size %d (whole %d), dim %d; expected chunk %d, size %d, '
                            'dim %d' % (sharded.chunk_size, sharded.size, whole.size,
                                        sharded.dim, checks['chunk'], checks['size'],
                                        whole.dim))
        # The shards: whole chunks, disjoint, in rank order, covering the bank, counts within a
        # chunk of each other; each rank's entries are the whole bank's, to the bit.
        ranges = gathered(comm, (sharded.start, sharded.start + sharded.held))
        chunk = sharded.chunk_size
        if ranges[0][0] != 0 or ranges[-1][1] != sharded.size or any(
                a[1] != b[0] for a, b in zip(ranges, ranges[1:])):
            problems.append('the shards %s do not tile [0, %d)' % (ranges, sharded.size))
        if any((start % chunk and start != sharded.size) or
               (stop % chunk and stop != sharded.size) for start, stop in ranges):
            problems.append('the shards %s are not whole chunks of %d' % (ranges, chunk))
        counts = [-(-(stop - start) // chunk) for start, stop in ranges]
        if max(counts) - min(counts) > 1:
            problems.append('chunk counts %s differ by more than one' % counts)
        if checks.get('uneven') and len(set(stop - start for start, stop in ranges)) == 1:
            problems.append('the case meant uneven shards, got %s' % ranges)
        if checks.get('empty') and not any(start == stop for start, stop in ranges[1:]):
            problems.append('the case meant an empty shard, got %s' % ranges)
        if sharded.local is not None:
            local = sharded.local
            if not (numpy.array_equal(local.patches, whole.patches[sharded.start:
                                                                   sharded.start + local.size])
                    and numpy.array_equal(local.inverse_norms, whole.inverse_norms[
                        sharded.start:sharded.start + local.size])):
                problems.append('the shard is not the whole bank\'s entries %s' %
                                (ranges[comm.rank],))
        owner = [next(r for r, (start, stop) in enumerate(ranges) if start <= i < stop)
                 for i in range(sharded.size)]
        ties = checks.get('ties', [])
        if ties and all(owner[i] == owner[j] for i, j in ties):
            problems.append('no tie straddles two shards %s' % (ranges,))

        queries = rng.standard_normal((n_queries, whole.dim)).astype(numpy.float32)
        for k, (first, second) in enumerate(ties):
            queries[k] = whole.patches[first]
        queries[len(ties)] = 0  # a zero query: every score 0, the first entry wins
        queries[len(ties) + 1] = -whole.patches[0]  # a query whose scores are mostly negative
        for cosine in (False, True):
            expected = whole.nearest(queries, memory_budget=budget, cosine=cosine)
            got = sharded.nearest(queries, cosine=cosine)
            for label, a, b in zip(('indices', 'scores', 'targets'), expected, got):
                if a.dtype != b.dtype or a.shape != b.shape or not numpy.array_equal(a, b):
                    wrong = numpy.nonzero(a != b)[0][:5] if a.shape == b.shape else '-'
                    problems.append('cosine %s: %s differ (%s %s vs %s %s; first rows %s)' % (
                        cosine, label, a.dtype, a.shape, b.dtype, b.shape, wrong))
            # Known answers beside the reference: each tie goes to its lowest global index.
            if ties and list(got[0][:len(ties)]) != [first for first, _ in ties]:
                problems.append('cosine %s: ties went to %s, not %s' % (
                    cosine, list(got[0][:len(ties)]), [first for first, _ in ties]))
            if got[0][len(ties)] != 0 or got[1][len(ties)] != 0:
                problems.append('cosine %s: the zero query matched %d with %r' % (
                    cosine, got[0][len(ties)], got[1][len(ties)]))
        say(comm, '%s: holds [%d, %d) of %d, chunk %d: %s' % (
            name, sharded.start, sharded.start + sharded.held, sharded.size, chunk,
            'ok' if not problems else 'MISMATCH\n  ' + '\n  '.join(problems)))
        bad += bool(problems)
    return bad


# --- synth ---------------------------------------------------------------------------------------

def _recorder():
    """Wraps ``nearest`` of both bank classes to record every matching's bank type, shard and
    indices; returns the record (a list)."""
    record = []

    def wrap(cls):
        nearest = cls.nearest

        def recorded(self, *args, **kwargs):
            out = nearest(self, *args, **kwargs)
            record.append(dict(kind=cls.__name__, held=self.held, size=len(self),
                               chunk=getattr(self, 'chunk_size', None),
                               indices=numpy.array(out[0], copy=True)))
            return out
        cls.nearest = recorded
    wrap(matching.PatchBank)
    wrap(distributed.ShardedBank)
    return record


def _run(options, comm, record):
    """One synthesis; returns (the matchings, the losses of every step, the image)."""
    from chainer_mrf.synthesis import synthesize
    record.clear()
    losses = []
    result = synthesize(comm=comm, callback=lambda step: losses.append(dict(step.losses)),
                        **options)
    return list(record), losses, result


def case_synth(comm, args):
    options = json.loads(args[0])
    record = _recorder()
    started = time.perf_counter()
    sharded = _run(options, comm, record)
    seconds = time.perf_counter() - started
    problems = []
    kinds = sorted(set(r['kind'] for r in sharded[0]))
    if kinds != ['ShardedBank']:
        problems.append('the sharded run matched with %s' % kinds)
    shards = sorted(set((r['size'], r['held'], r['chunk']) for r in sharded[0]))
    say(comm, 'sharded run %.1f s, %d matchings, %d steps; banks (size, held, chunk) %s' % (
        seconds, len(sharded[0]), len(sharded[1]), shards))
    chunks = int(args[1]) if len(args) > 1 else 0
    if chunks:
        # Every rank holds at least this many chunks of some bank, and not all of it.
        if not any(held < size and -(-held // chunk) >= chunks for size, held, chunk in shards):
            problems.append('no bank holds %d chunks on this rank and less than all: %s' % (
                chunks, shards))
    # The reference: rank 0 alone, after the sharded run (so with the same threads); the others
    # wait without spinning (a polled barrier), then receive it.
    if comm.rank == 0:
        started = time.perf_counter()
        reference = _run(options, None, record)
        say(comm, 'one-process run %.1f s' % (time.perf_counter() - started))
        kinds = sorted(set(r['kind'] for r in reference[0]))
        if kinds != ['PatchBank']:
            problems.append('the one-process run matched with %s' % kinds)
    distributed.wait(comm.mpi_comm.Ibarrier())
    reference = comm.mpi_comm.bcast(reference if comm.rank == 0 else None, root=0)

    mine, expected = sharded[0], reference[0]
    if len(mine) != len(expected):
        problems.append('%d matchings, one process %d' % (len(mine), len(expected)))
    for n, (a, b) in enumerate(zip(expected, mine)):
        if a['indices'].shape != b['indices'].shape or not numpy.array_equal(a['indices'],
                                                                              b['indices']):
            differ = (numpy.count_nonzero(a['indices'] != b['indices'])
                      if a['indices'].shape == b['indices'].shape else 'all')
            problems.append('matching %d (bank of %d): %s of %d indices differ' % (
                n, a['size'], differ, len(a['indices'])))
            break
    if len(sharded[1]) != len(reference[1]):
        problems.append('%d steps, one process %d' % (len(sharded[1]), len(reference[1])))
    for n, (a, b) in enumerate(zip(reference[1], sharded[1])):
        if a != b:  # exact float equality of every term
            problems.append('step %d: losses %s, one process %s' % (n + 1, b, a))
            break
    if not numpy.array_equal(reference[2], sharded[2]) or reference[2].dtype != sharded[2].dtype:
        problems.append('the final images differ (%d pixels)' % numpy.count_nonzero(
            reference[2] != sharded[2]) if reference[2].shape == sharded[2].shape else
            'the final images differ in shape')
    if not reference[1] or not reference[0]:
        problems.append('nothing was compared: %d steps, %d matchings' % (
            len(reference[1]), len(reference[0])))
    say(comm, '%d matchings, %d steps, image %s: %s' % (
        len(mine), len(sharded[1]), sharded[2].shape,
        'identical' if not problems else 'MISMATCH\n  ' + '\n  '.join(problems)))
    return len(problems)


# --- errors --------------------------------------------------------------------------------------

def case_rank_error(comm, args):
    """Rank 1 asks for a device it cannot use, the others the CPU: every rank must stop with
    the error before the first step (rank 0 with a RankError naming rank 1)."""
    from chainer_mrf.synthesis import synthesize
    model = args[0]
    device = '@cupy:99' if comm.rank == 1 else -1
    steps = []
    started = time.perf_counter()
    try:
        synthesize(content_card(), style_stripes(), model=model, device=device, iterations=2,
                   width=64, resolution_num=1, comm=comm, callback=steps.append)
    except distributed.RankError as e:
        error = e
    except ValueError as e:
        error = e
    else:
        say(comm, 'MISMATCH: the synthesis ran (%d steps)' % len(steps))
        return 1
    seconds = time.perf_counter() - started
    problems = []
    if steps:
        problems.append('%d steps ran' % len(steps))
    if not distributed.is_agreed(error):
        problems.append('the error is not marked as met by every rank')
    if comm.rank == 1:
        if isinstance(error, distributed.RankError) or \
                'cannot use device @cupy:99' not in str(error):
            problems.append('rank 1 raised %r' % error)
    else:
        if not isinstance(error, distributed.RankError) or error.rank != 1 or \
                not str(error).startswith('rank 1: cannot use device @cupy:99'):
            problems.append('rank %d raised %s: %s' % (comm.rank, type(error).__name__, error))
    say(comm, 'stopped after %.1f s with %s: %s: %s' % (
        seconds, type(error).__name__, error, 'ok' if not problems else
        'MISMATCH\n  ' + '\n  '.join(problems)))
    return len(problems)


def case_fail_in_run(args):
    """``generate.py ARGS`` as scripts/generate.py runs it, with a callback that fails on one
    rank after step 2."""
    from chainer_mrf import cli
    from chainer_mrf.__main__ import command
    failing, kind, argv = int(args[0]), args[1], args[2:]
    synthesize = cli.synthesize

    def failing_synthesize(*a, callback=None, comm=None, **k):
        def step(s):
            callback(s)
            if distributed.rank(comm) == failing and s.iteration == 2:
                if kind == 'runtime':
                    raise RuntimeError('injected failure on rank %d' % failing)
                raise OSError(5, 'injected I/O error on rank %d' % failing, 'disk')
        return synthesize(*a, callback=step, comm=comm, **k)
    cli.synthesize = failing_synthesize
    sys.argv = [sys.argv[0]] + argv
    code = command('generate.py')
    # MPICH's MPI_Abort (5.0.2) returns to its caller, and the launcher kills every rank a few
    # milliseconds later: a rank may get here. The test judges the job (it must end, promptly,
    # with a failure), not this line.
    print('note: generate.py returned %r on rank %s' % (code, os.environ.get('PMI_RANK')),
          flush=True)
    return code


CASES = {'match': case_match, 'synth': case_synth, 'rank-error': case_rank_error}


def main():
    name, args = sys.argv[1], sys.argv[2:]
    if name == 'fail-in-run':  # the command's own handling must end the job: no guard here
        sys.exit(case_fail_in_run(args))
    comm = distributed.create_communicator()
    if comm.size < 2:
        print('run under mpiexec -n 2 or more (size %d)' % comm.size, flush=True)
        sys.exit(3)
    try:
        bad = CASES[name](comm, args)
    except BaseException:  # noqa: B902 (the other ranks would wait for this one)
        print('rank %d: exception' % comm.rank, file=sys.stderr, flush=True)
        traceback.print_exc()
        sys.stderr.flush()
        comm.mpi_comm.Abort(1)
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
