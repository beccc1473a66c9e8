"""Several ranks under MPI (chainer_mrf.distributed): the sharded bank, synthesis and command
line give one process's results exactly; faults on one rank end the whole job.

Each MPI test starts ``mpiexec -n 2`` (the ``mpiexec`` next to this Python, never one from
PATH) on this machine's CPU: the worker tests/mpi_cases.py compares every rank's results with a
one-process reference computed in the same job, and the command-line tests compare
``generate.py`` under ``mpiexec`` with a plain run. Without mpiexec or mpi4py they skip, unless
CHAINER_MRF_REQUIRE_MPI=1 (``make test``) demands them. The shard arithmetic and the reduction
keys are plain unit tests.
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy
import pytest

from chainer_mrf import distributed, image
from helpers import (GENERATE, ROOT, content_card, default_signals, strict_json_lines,
                     style_stripes)

MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
"""The launcher of this Python's environment (mpi4py's MPICH wheel installs it there)."""

CASES = os.path.join(ROOT, 'tests', 'mpi_cases.py')
"""The ranks' side of these tests."""

DATA = os.path.join(ROOT, 'chainer_mrf', 'data')
"""The bundled example images."""

TIMEOUT = 120
"""Seconds after which a job counts as hung (the slowest takes about 10)."""


# --- no MPI needed: the shards and the reduction keys --------------------------------------------

@pytest.mark.parametrize('size,chunk,ranks,expected', [
    (10, 3, 2, [(0, 6), (6, 10)]),                    # 4 chunks, the last short
    (10, 3, 3, [(0, 6), (6, 9), (9, 10)]),            # 4 chunks over 3: 2, 1, 1
    (1, 1, 2, [(0, 1), (1, 1)]),                      # more ranks than chunks: an empty shard
    (5, 8, 3, [(0, 5), (5, 5), (5, 5)]),              # one short chunk
    (12, 4, 3, [(0, 4), (4, 8), (8, 12)]),            # even
    (4332, 512, 2, [(0, 2560), (2560, 4332)]),        # 9 chunks: 5 and 4
])
def test_shard_known_answers(size, chunk, ranks, expected):
    assert [distributed.shard(size, chunk, r, ranks) for r in range(ranks)] == expected


@pytest.mark.parametrize('size', [1, 2, 7, 64, 100, 443, 1000, 4332])
@pytest.mark.parametrize('chunk', [1, 3, 13, 512, 5000])
@pytest.mark.parametrize('ranks', [1, 2, 3, 5, 8])
def test_shards_are_whole_chunks_that_tile_the_bank(size, chunk, ranks):
    shards = [distributed.shard(size, chunk, r, ranks) for r in range(ranks)]
    # In rank order, disjoint, and their union is the bank.
    assert shards[0][0] == 0 and shards[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))
    assert all(start <= stop for start, stop in shards)
    # Whole chunks of the grid: every boundary on it but the bank's end (where empty shards
    # past the last chunk start and stop).
    assert all(start % chunk == 0 or start == size for start, _ in shards)
    assert all(stop % chunk == 0 or stop == size for _, stop in shards)
    # As even as whole chunks go: counts differ by at most one chunk, the first ranks more.
    counts = [-(-(stop - start) // chunk) for start, stop in shards]
    assert max(counts) - min(counts) <= 1
    assert counts == sorted(counts, reverse=True)
    assert sum(counts) == -(-size // chunk)


def _best_by_keys(scores, indices):
    """The (score, index) that the maximum of the keys picks."""
    keys = distributed.match_keys(numpy.array(scores, numpy.float32),
                                  numpy.array(indices, numpy.int64))
    best_scores, best_indices = distributed.from_keys(keys[[keys.argmax()]])
    return float(best_scores[0]), int(best_indices[0])


def test_keys_round_trip_bit_for_bit():
    scores = numpy.array([0.0, -0.0, 1.0, -1.0, 3.4e38, -3.4e38, 1e-45, -1e-45, numpy.inf,
                          -numpy.inf, 0.1, -0.1, 123.456], numpy.float32)
    indices = numpy.array([0, 1, 2, 3, 2 ** 32 - 1, 5, 6, 7, 8, 9, 10, 11, 2 ** 31],
                          numpy.int64)
    keys = distributed.match_keys(scores, indices)
    assert keys.dtype == numpy.uint64
    back_scores, back_indices = distributed.from_keys(keys)
    assert back_scores.dtype == numpy.float32 and back_indices.dtype == numpy.int64
    assert back_scores.view(numpy.uint32).tolist() == scores.view(numpy.uint32).tolist()
    assert back_indices.tolist() == indices.tolist()


def test_key_order_is_score_order_then_lowest_index():
    rng = numpy.random.default_rng(0)
    scores = numpy.concatenate([rng.standard_normal(500).astype(numpy.float32) * 10 ** k
                                for k in (-30, -3, 0, 3, 30)] +
                               [numpy.array([0, numpy.inf, -numpy.inf], numpy.float32)])
    indices = rng.permutation(len(scores)).astype(numpy.int64)
    keys = distributed.match_keys(scores, indices)
    # Sorting by key sorts by score, equal scores by descending index.
    order = numpy.argsort(keys, kind='stable')
    expected = sorted(range(len(scores)), key=lambda i: (scores[i], -indices[i]))
    assert order.tolist() == expected


@pytest.mark.parametrize('scores,indices,best', [
    ([1.0, 2.0, 2.0, 0.5], [7, 9, 3, 1], (2.0, 3)),        # a tie: the lower index
    ([-3.0, -1.0, -2.0], [0, 5, 1], (-1.0, 5)),            # negative scores
    ([-numpy.inf, -numpy.inf, -5.0], [0, 1, 2], (-5.0, 2)),  # an empty shard's -inf loses
    ([-numpy.inf, -numpy.inf], [4, 2], (-numpy.inf, 2)),
    ([0.0, 0.0, 0.0], [6, 2, 9], (0.0, 2)),                 # zero queries score 0 everywhere
    ([-1e-38, 0.0, -0.5], [0, 8, 1], (0.0, 8)),
    ([3.0, 3.0], [2 ** 32 - 1, 2 ** 32 - 2], (3.0, 2 ** 32 - 2)),
])
def test_the_largest_key_is_the_best_match(scores, indices, best):
    assert _best_by_keys(scores, indices) == best


def test_abort_does_not_return_where_mpi_abort_does(monkeypatch, capsys):
    # MPICH 5.0.2's MPI_Abort returns to its caller (the launcher kills the ranks a few
    # milliseconds later). If abort returned too, the command would go on meanwhile: rank 0
    # re-raises the error, which is then reported twice (test_an_error_on_one_rank_mid_run_...
    # shows it under mpiexec, by chance). Whatever ends the process here, it must not return.
    class Ended(BaseException):
        pass

    def end(code):
        raise Ended(code)
    monkeypatch.setattr(os, '_exit', end)
    called = []

    class Comm:
        rank = 0

        class mpi_comm:  # noqa: N801 (the attribute ChainerMN names so)
            @staticmethod
            def Abort(code):  # noqa: N802 (mpi4py's name)
                called.append(code)  # and returns, as MPICH's does
    for error in (OSError(5, 'Input/output error', 'disk'), RuntimeError('a bug')):
        called.clear()
        returned = False
        try:
            distributed.abort(Comm(), error)
            returned = True
        except (Ended, SystemExit) as e:
            assert e.args == (2,) or getattr(e, 'code', None) == 2, e
        assert called == [2]
        assert not returned, 'distributed.abort returned after MPI_Abort did (%r)' % error
    err = capsys.readouterr().err
    assert err.count('error: rank 0: disk: Input/output error') == 1
    assert err.count('RuntimeError: a bug') == 1


# --- running under mpiexec -----------------------------------------------------------------------

@pytest.fixture(scope='module')
def mpi():
    """Checks that MPI can run here: skips (or fails under CHAINER_MRF_REQUIRE_MPI=1)."""
    missing = []
    if not os.access(MPIEXEC, os.X_OK):
        missing.append('%s is absent' % MPIEXEC)
    for module in ('mpi4py', 'chainermn'):
        if importlib.util.find_spec(module) is None:
            missing.append('%s is not installed' % module)
    if missing:
        message = '%s: pip install mpi4py mpich (or "chainer-mrf[mpi]")' % ', '.join(missing)
        if os.environ.get('CHAINER_MRF_REQUIRE_MPI') == '1':
            pytest.fail(message + ' (CHAINER_MRF_REQUIRE_MPI=1 demands it)')
        pytest.skip(message)
    return MPIEXEC


def _environment():
    """The children's environment: one BLAS thread per rank, so two ranks fit two cores."""
    env = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1', MKL_NUM_THREADS='1')
    for name in distributed._SIZE_VARIABLES + ('PMI_RANK',):
        env.pop(name, None)  # pytest run under a launcher: its children are not its ranks
    return env


def _start(command, **kwargs):
    """Starts ``command`` (in a session of its own: no terminal's signal reaches it)."""
    return subprocess.Popen([str(a) for a in command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_environment(),
                            start_new_session=True, preexec_fn=default_signals, **kwargs)


def _descendants(pid):
    """The ids of ``pid``'s processes' descendants (from /proc; none where it is absent)."""
    children = {}
    for entry in os.listdir('/proc') if os.path.isdir('/proc') else []:
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                parent = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _end(process):
    """Kills what is left of a job: ``process`` (mpiexec) and its descendants (MPICH's proxy
    and the ranks, each in a session of its own)."""
    if process.poll() is not None:
        return
    for pid in [process.pid] + _descendants(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _run(command, timeout=TIMEOUT):
    """Runs ``command``; returns the finished process with its text output and ``seconds``.
    A job that outlives ``timeout`` is killed, the test failed."""
    process = _start(command)
    started = time.perf_counter()
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end(process)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out, err = '', '(no output: the pipes stayed open)'
        pytest.fail('%s hung: killed after %d s\nstdout:\n%s\nstderr:\n%s' % (
            ' '.join(map(str, command)), timeout, out, err))
    finally:
        _end(process)
    done = subprocess.CompletedProcess(command, process.returncode, out, err)
    done.seconds = time.perf_counter() - started
    return done


def _mpi(ranks, *args, timeout=TIMEOUT):
    """``mpiexec -n ranks python ARGS``."""
    return _run([MPIEXEC, '-n', ranks, sys.executable, *args], timeout=timeout)


def _case(ranks, *args, timeout=TIMEOUT):
    """Runs a case of the worker on ``ranks`` ranks; fails unless every rank found it right."""
    done = _mpi(ranks, CASES, *args, timeout=timeout)
    assert done.returncode == 0, '%s\n%s' % (done.stdout, done.stderr)
    assert 'MISMATCH' not in done.stdout
    return done


def _one_process(*args, timeout=TIMEOUT):
    """``python generate.py ARGS`` with the ranks' environment."""
    return _run([sys.executable, GENERATE, *args], timeout=timeout)


def _errors(stderr):
    """stderr's lines but MPICH's launcher's own (``[mpiexec@host] ...``)."""
    return [line for line in stderr.splitlines() if not line.startswith('[mpiexec')]


def _losses(trace):
    """The loss terms of a trace's records (every field but the time)."""
    return [{k: v for k, v in record.items() if k != 'seconds'}
            for record in strict_json_lines(trace)]


def _progress(stdout):
    return [line for line in stdout.splitlines() if ' iter ' in line]


# --- 1. matching ---------------------------------------------------------------------------------

@pytest.mark.parametrize('ranks', [2, 3])
def test_sharded_matching_equals_one_process(mpi, ranks):
    # Uneven shards, an empty shard, float16, weights per part, map columns, ties across parts
    # and shards, zero patches and queries, cosine or not: see mpi_cases._match_cases.
    done = _case(ranks, 'match')
    assert done.stdout.count(': ok') == 4 * ranks, done.stdout


# --- 2, 3. synthesis -----------------------------------------------------------------------------

def _synth(vgg16_path, chunks, **options):
    """Rank 0 compares its one-process run with every rank's sharded one (mpi_cases.synth)."""
    options = dict(model=vgg16_path, **options)
    done = _case(2, 'synth', json.dumps(options), chunks)
    assert done.stdout.count('identical') == 2, done.stdout
    return done


BUNDLED = dict(content=os.path.join(DATA, 'content_chelsea.png'),
               style=os.path.join(DATA, 'style_hubble_deep_field.png'))


@pytest.mark.parametrize('preset,options,budget', [
    # Each rank holds several chunks of some bank (the least-chunks check of the worker).
    ('dsanno', dict(width=64, iterations=3), 1 << 12),
    # The default budget: at this size dsanno's banks are one chunk each, so rank 1's shards
    # are empty; cnnmrf's largest is cut into chunks of 512.
    ('dsanno', dict(width=64, iterations=3), None),
    # Nine style copies and a confidence threshold (cosine scores): the preset's 0 drops no
    # patch of ReLU features, 0.5 drops some.
    ('cnnmrf', dict(max_size=128, iterations=2, confidence_threshold=0.5), 1 << 16),
    ('cnnmrf', dict(max_size=128, iterations=2), None),
])
def test_sharded_synthesis_equals_one_process(mpi, vgg16_path, preset, options, budget):
    chunks = 0 if budget is None and preset == 'dsanno' else 2
    if budget is not None:
        options = dict(options, memory_budget=budget)
    _synth(vgg16_path, str(chunks), preset=preset, **BUNDLED, **options)


def _halves(height, width, axis):
    """A black and white map split in halves along ``axis`` (0: top and bottom)."""
    index = numpy.mgrid[0:height, 0:width][axis]
    first = index < (height if axis == 0 else width) // 2
    return numpy.where(first[..., None], 255, 0).astype(numpy.uint8).repeat(3, axis=-1)


def test_sharded_synthesis_with_maps_and_several_styles(mpi, vgg16_path, tmp_path):
    style = image.load_image(BUNDLED['style'])
    second = style[::-1, 30:190]  # flipped and cropped
    files = {name: str(tmp_path / (name + '.png')) for name in (
        'content', 'second', 'content_map', 'style_map', 'second_map')}
    image.save_image(files['content'], content_card())
    image.save_image(files['second'], second)
    image.save_image(files['content_map'], _halves(72, 96, 1))
    image.save_image(files['style_map'], _halves(*style.shape[:2], 0))
    image.save_image(files['second_map'], _halves(*second.shape[:2], 1))
    _synth(vgg16_path, '2', preset='dsanno', content=files['content'],
           style=[BUNDLED['style'], files['second']], content_map=files['content_map'],
           style_map=[files['style_map'], files['second_map']], style_image_weights=[1.0, 0.7],
           width=64, iterations=3, memory_budget=1 << 12)


# --- 4. the command line -------------------------------------------------------------------------

def _args(content, style, out, vgg16_path, *extra):
    return ['-c', content, '-s', style, '-o', out, '-w', '64', '--resolution_num', '1',
            '-m', vgg16_path, *extra]


@pytest.fixture(scope='module')
def style_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('style') / 'style.jpg')
    image.save_image(path, style_stripes())
    return path


def _contents(folder, names):
    """Distinct content images ``NAME.png`` in ``folder``; returns their paths."""
    card = content_card()
    paths = []
    for n, name in enumerate(names):
        path = os.path.join(folder, name + '.png')
        image.save_image(path, numpy.roll(card, 17 * n, axis=1)[:, ::(-1) ** n])
        paths.append(path)
    return paths


def test_the_command_line_under_mpiexec_equals_one_process(mpi, vgg16_path, tmp_path,
                                                           style_file):
    content, = _contents(str(tmp_path), ['content'])
    extra = ['--iter', '4', '--memory_budget', '4K']
    one = _one_process(*_args(content, style_file, tmp_path / 'one', vgg16_path, *extra))
    assert one.returncode == 0, one.stderr
    done = _mpi(2, GENERATE, *_args(content, style_file, tmp_path / 'two', vgg16_path, *extra))
    assert done.returncode == 0, done.stderr
    assert numpy.array_equal(image.load_image(tmp_path / 'two' / 'out.png'),
                             image.load_image(tmp_path / 'one' / 'out.png'))
    losses = _losses(tmp_path / 'one' / 'trace.jsonl')
    assert len(losses) == 4 and _losses(tmp_path / 'two' / 'trace.jsonl') == losses
    # Rank 0 alone prints: each line once, as one process prints them (but the times).
    lines = [line.rsplit('  ', 1)[0] for line in _progress(done.stdout)]
    assert lines == [line.rsplit('  ', 1)[0] for line in _progress(one.stdout)]
    assert len(lines) == 4
    assert done.stdout.count('saved ') == 1 and done.stdout.count('style transfer') == 1
    assert _errors(done.stderr) == []


# --- 5, 6. batches -------------------------------------------------------------------------------

def _summary(stdout):
    """The batch summary's head line and its per-image lines, by content path."""
    lines = stdout.splitlines()
    head = [line for line in lines if line.startswith('batch: ')]
    items = dict(line.strip().split(': ', 1) for line in lines if line.startswith('  '))
    return head, items


def test_a_batch_spreads_its_images_over_the_ranks(mpi, vgg16_path, tmp_path, style_file):
    folder = tmp_path / 'contents'
    folder.mkdir()
    contents = _contents(str(folder), ['a', 'b', 'c'])
    extra = ['--iter', '3']
    reference = _one_process(*_args(contents[0], style_file, tmp_path / 'one', vgg16_path,
                                    '-c', contents[1], '-c', contents[2], *extra))
    assert reference.returncode == 0, reference.stderr
    for how, given in [('list', contents[:1] + ['-c', contents[1], '-c', contents[2]]),
                       ('folder', [str(folder)])]:
        out = tmp_path / how
        done = _mpi(2, GENERATE, *_args(given[0], style_file, out, vgg16_path, *given[1:],
                                        *extra))
        assert done.returncode == 0, (how, done.stdout, done.stderr)
        assert _errors(done.stderr) == [], how
        head, items = _summary(done.stdout)
        assert head == ['batch: 3 images, 3 saved, 0 failed'], (how, done.stdout)
        assert items == {c: 'saved %s' % (out / n / 'out.png') for c, n in zip(contents, 'abc')}
        assert sorted(os.listdir(out)) == ['a', 'b', 'c']
        for content, name in zip(contents, 'abc'):
            # Made once, by one rank, from its own content: one trace line per step and
            # progress line; the image is one process's.
            settings = json.load(open(out / name / 'settings.json'))
            assert settings['inputs']['content'] == content
            assert len(strict_json_lines(out / name / 'trace.jsonl')) == 3
            assert _losses(out / name / 'trace.jsonl') == _losses(
                tmp_path / 'one' / name / 'trace.jsonl')
            assert numpy.array_equal(image.load_image(out / name / 'out.png'),
                                     image.load_image(tmp_path / 'one' / name / 'out.png'))
            # Counted in the whole output: two ranks print, and under PYTHONUNBUFFERED a line's
            # text and its newline are two writes, which mpiexec may interleave.
            assert [done.stdout.count('[%s] level 1/1  iter %d (' % (name, step))
                    for step in (1, 2, 3)] == [1, 1, 1], done.stdout
            assert done.stdout.count('[%s] saved ' % name) == 1
        assert done.stdout.count(' iter ') == 9


def test_a_batch_of_one_on_two_ranks_shards_its_bank(mpi, vgg16_path, tmp_path, style_file):
    # One image in a folder: a batch whose one group is both ranks.
    folder = tmp_path / 'contents'
    folder.mkdir()
    content, = _contents(str(folder), ['only'])
    extra = ['--iter', '3', '--memory_budget', '4K']
    one = _one_process(*_args(content, style_file, tmp_path / 'one', vgg16_path, *extra))
    assert one.returncode == 0, one.stderr
    done = _mpi(2, GENERATE, *_args(str(folder), style_file, tmp_path / 'two', vgg16_path,
                                    *extra))
    assert done.returncode == 0, done.stderr
    assert _summary(done.stdout) == (['batch: 1 images, 1 saved, 0 failed'],
                                     {content: 'saved %s' % (tmp_path / 'two' / 'only' /
                                                             'out.png')})
    assert len(_progress(done.stdout)) == 3, done.stdout
    assert numpy.array_equal(image.load_image(tmp_path / 'two' / 'only' / 'out.png'),
                             image.load_image(tmp_path / 'one' / 'out.png'))
    assert _losses(tmp_path / 'two' / 'only' / 'trace.jsonl') == _losses(
        tmp_path / 'one' / 'trace.jsonl')


@pytest.mark.parametrize('corrupt', ['a', 'b'])  # taken by rank 0, by rank 1
def test_a_corrupt_image_fails_alone_in_a_batch(mpi, vgg16_path, tmp_path, style_file, corrupt):
    contents = _contents(str(tmp_path), ['a', 'b', 'c'])
    bad = contents['abc'.index(corrupt)]
    with open(bad, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n this is not an image' * 7)
    out = tmp_path / 'out'
    done = _mpi(2, GENERATE, *_args(contents[0], style_file, out, vgg16_path,
                                    '-c', contents[1], '-c', contents[2], '--iter', '2'))
    assert done.returncode == 2, (done.stdout, done.stderr)
    head, items = _summary(done.stdout)
    assert head == ['batch: 3 images, 2 saved, 1 failed'], done.stdout
    assert items[bad].startswith('failed: ') and bad in items[bad], items
    for content, name in zip(contents, 'abc'):
        if content != bad:
            assert items[content] == 'saved %s' % (out / name / 'out.png')
            assert image.load_image(out / name / 'out.png').shape == (48, 64, 3)
    assert not (out / corrupt / 'out.png').exists()
    assert 'Traceback' not in done.stderr and 'Traceback' not in done.stdout
    assert _errors(done.stderr) == [], done.stderr


# --- 7, 8. one rank fails ------------------------------------------------------------------------

def test_a_device_one_rank_cannot_use_stops_every_rank(mpi, vgg16_path):
    done = _case(2, 'rank-error', vgg16_path)
    assert done.stdout.count(': ok') == 2, done.stdout
    assert done.seconds < 30, done.seconds


def test_a_device_one_rank_cannot_use_is_one_error_line(mpi, vgg16_path, tmp_path,
                                                        style_file):
    # The ranks get different -g (mpiexec's "A : B" form): rank 1 asks for GPU 99 + 1.
    content, = _contents(str(tmp_path), ['content'])
    args = _args(content, style_file, tmp_path / 'out', vgg16_path, '--iter', '2')
    done = _run([MPIEXEC, '-n', 1, sys.executable, GENERATE, *args, '-g', '-1', ':',
                 '-n', 1, sys.executable, GENERATE, *args, '-g', '99'])
    assert done.returncode == 2, (done.stdout, done.stderr)
    errors = _errors(done.stderr)
    assert len(errors) == 1 and errors[0].startswith(
        'error: rank 1: cannot use device @cupy:100'), done.stderr
    assert done.seconds < 30, done.seconds
    assert not (tmp_path / 'out' / 'out.png').exists()
    assert ' iter ' not in done.stdout


@pytest.mark.parametrize('failing,kind', [(1, 'runtime'), (0, 'runtime'), (1, 'oserror'),
                                          (0, 'oserror')])
def test_an_error_on_one_rank_mid_run_ends_the_job(mpi, vgg16_path, tmp_path, style_file,
                                                   failing, kind):
    content, = _contents(str(tmp_path), ['content'])
    done = _mpi(2, CASES, 'fail-in-run', failing, kind,
                *_args(content, style_file, tmp_path / 'out', vgg16_path, '--iter', '50'))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.seconds < 30, done.seconds
    # Rank 0 printed step 1 at least (step 2 needs its part), not all of them; its step 2
    # line races the end of the job.
    assert 1 <= len(_progress(done.stdout)) < 50, done.stdout
    # The failure is reported once, by the failing rank (MPICH adds its own "Abort(2) on node"
    # line).
    errors = [line for line in _errors(done.stderr) if not line.startswith('Abort(')]
    if kind == 'runtime':  # a bug: its traceback
        assert done.stderr.count('Traceback') == 1, done.stderr
        assert errors[-1] == 'RuntimeError: injected failure on rank %d' % failing, \
            done.stderr
    else:  # the system's error: one line, naming the rank
        assert errors == ['error: rank %d: disk: injected I/O error on rank %d'
                          % (failing, failing)], done.stderr


# --- 9. Ctrl-C -----------------------------------------------------------------------------------

def test_ctrl_c_to_mpiexec_saves_the_current_image(mpi, vgg16_path, tmp_path, style_file):
    content, = _contents(str(tmp_path), ['content'])
    out = tmp_path / 'out'
    process = _start([MPIEXEC, '-n', 2, sys.executable, GENERATE,
                      *_args(content, style_file, out, vgg16_path, '--iter', '100000')])
    try:
        deadline = time.monotonic() + TIMEOUT
        trace = out / 'trace.jsonl'
        while not (trace.exists() and trace.read_text().count('\n') >= 2):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, 'no step within %d s' % TIMEOUT
            time.sleep(0.05)
        started = time.perf_counter()
        process.send_signal(signal.SIGINT)  # to mpiexec, as a terminal's Ctrl-C is
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail('the job did not end within 60 s of Ctrl-C')
        seconds = time.perf_counter() - started
    finally:
        _end(process)
    assert process.returncode == 130, (stdout, stderr)
    assert seconds < 30, seconds
    # One line, rank 0's. Besides it only MPICH's own warning at the ranks' exit when the
    # interrupt left a collective pending ("MPICH: Builtin communicator ... has pending N
    # references."), which chainer_mrf does not print.
    errors = [line for line in _errors(stderr) if not (
        line.startswith('MPICH: ') and 'pending' in line)]
    interrupted = [line for line in errors if 'interrupted' in line]
    assert len(interrupted) == 1 and interrupted[0].startswith(
        'interrupted (SIGINT) at iteration ') and interrupted[0].endswith(
        'saved %s' % (out / 'out.png')), stderr
    assert errors == interrupted, stderr
    assert 'Traceback' not in stderr
    assert image.load_image(out / 'out.png').shape == (48, 64, 3)
    assert not [name for name in os.listdir(out) if '.part' in name]
    # Each progress line once.
    steps = [int(line.split()[3]) for line in _progress(stdout)]
    assert steps == list(range(1, len(steps) + 1)), stdout
