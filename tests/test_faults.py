"""The fault suite: what goes wrong around a run, and that each ends in a valid result or one
clear error (docs/usage.md, "When something goes wrong"), never a traceback, a NaN, a lost
result or a half-written file.

Divergence, full and read-only disks, a file in the output path, signals at start-up and
mid-run, two runs into one folder, a folder of an earlier run, oversize requests, values out of
range. Damaged image files are fuzzed in test_fuzz_inputs.py.
"""
import contextlib
import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy
import pytest

from chainer_mrf import _cli, image, outputs, presets
from chainer_mrf import colour as colour_lib
from chainer_mrf.synthesis import DivergenceError, synthesize
from helpers import (GENERATE, SMALL, assert_one_error, content_card, cuda_ready,
                     default_signals, generate, short_run, small_args, strict_json_lines,
                     style_stripes)


def _assert_no_partial_files(folder):
    """No temporary file of an atomic write, and a trace of whole JSON lines (or none)."""
    names = os.listdir(folder)
    assert not [n for n in names if '.part' in n], names
    if 'trace.jsonl' in names:
        strict_json_lines(os.path.join(folder, 'trace.jsonl'))


# --- divergence ----------------------------------------------------------------------------------

@pytest.mark.parametrize('extra,cause,level_step', [
    # L-BFGS's fixed step of 1000 overflows float32 after a few steps.
    (['--lr', '1e3'], 'the step size (lr 1000) is probably too large', None),
    # Adam's alpha of 1e30 sends the image to infinity on its first update.
    (['--optimizer', 'adam', '--lr', '1e30'], 'the step size (lr 1e+30)', 'step 2 '),
    # A weight that overflows the very first energy: no step was taken.
    (['--style_weight', '1e38'], 'a weight (content_weight, style_weight, tv_weight)',
     'step 1 '),
])
def test_divergence_stops_keeps_the_last_finite_image_and_a_valid_trace(
        cli_images, tmp_path, vgg16_path, extra, cause, level_step):
    out = tmp_path / 'out'
    done = generate(*small_args(cli_images, out, '--iter', '20', '-m', vgg16_path, *extra))
    assert_one_error(done, cause)
    assert 'is not finite' in done.stderr and 'level 1/1, step ' in done.stderr
    if level_step:
        assert level_step in done.stderr
    assert done.stderr.rstrip().endswith('the last finite image is saved as %s'
                                         % (out / 'out.png'))
    assert 'Warning' not in done.stderr
    assert image.load_image(out / 'out.png').shape == (48, 64, 3)
    _assert_no_partial_files(out)
    steps = [line for line in done.stdout.splitlines() if line.startswith('level 1/1  iter ')]
    if (out / 'trace.jsonl').exists():
        assert len(strict_json_lines(out / 'trace.jsonl')) == len(steps)


def test_the_library_raises_divergence_with_the_image_before_the_failing_step(vgg16_path):
    steps = []
    with pytest.raises(DivergenceError) as caught:
        synthesize(content_card(), style_stripes(), model=vgg16_path, iterations=20, lr=1e3,
                   callback=steps.append, **SMALL)
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.level, error.levels) == (0, 1)
    assert error.iteration == len(steps) + 1 == error.level_iteration
    assert not all(numpy.isfinite(list(error.losses.values())))
    assert all(numpy.isfinite(list(steps[-1].losses.values())))
    # The image handed back is the one the last finite energy was evaluated at: the image
    # after the step before last (the last step's image already gave the infinite energy).
    expected = steps[-2].image() if len(steps) > 1 else None
    assert error.image.dtype == numpy.uint8 and error.image.shape == (48, 64, 3)
    if expected is not None:
        numpy.testing.assert_array_equal(error.image, expected)


# --- disks ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _tmpfs(path, size):
    """A small tmpfs at ``path``; skips where this machine does not let the test mount one."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip('mounting a tmpfs needs root, which this test runs without')
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%d' % size, 'tmpfs',
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip('cannot mount a tmpfs here: %s' % mounted.stderr.strip())
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', str(path)], check=True)


def test_a_full_disk_is_one_error_and_leaves_whole_files(cli_images, tmp_path, vgg16_path):
    with _tmpfs(tmp_path / 'disk', 64 << 10) as disk:
        # Leave room for the settings, the trace and a snapshot or two, not for every snapshot.
        with open(disk / 'filler', 'wb') as f:
            f.write(b'\0' * (36 << 10))
        out = disk / 'out'
        done = generate(*small_args(cli_images, out, '--iter', '12', '--save_iter', '1',
                                    '-m', vgg16_path))
        assert_one_error(done, 'No space left on device')
        assert str(out) in done.stderr
        _assert_no_partial_files(out)
        for name in os.listdir(out):
            if name.endswith('.png'):
                assert image.load_image(out / name).shape == (48, 64, 3)
        assert strict_json_lines(out / 'trace.jsonl')


def test_a_failed_trace_write_is_cut_back_to_its_last_whole_line(tmp_path):
    out = tmp_path / 'out'
    with outputs.RunFolder(out) as folder:
        folder.begin({'preset': 'dsanno'})
        folder.record({'iteration': 1, 'tv': 0.5})
        trace = folder._trace

        class FillsUp:
            """The trace's file on a disk that takes five more bytes."""
            def write(self, data):
                if trace.tell() == len(b'{"iteration": 1, "tv": 0.5}\n'):
                    return trace.write(data[:5])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            def __getattr__(self, name):
                return getattr(trace, name)
        folder._trace = FillsUp()
        with pytest.raises(OSError, match='No space left on device') as caught:
            folder.record({'iteration': 2, 'tv': 0.25})
        assert caught.value.filename == str(out / 'trace.jsonl')
    assert strict_json_lines(out / 'trace.jsonl') == [{'iteration': 1, 'tv': 0.5}]
    assert sorted(os.listdir(out)) == ['settings.json', 'trace.jsonl']


def _read_only(folder):
    """Makes ``folder`` read-only for this process: a read-only tmpfs for root (who writes
    through permissions), else the permission bits."""
    if os.geteuid() == 0:
        return _remounted_read_only(folder)
    folder.mkdir()
    folder.chmod(0o555)
    return contextlib.nullcontext(folder)


@contextlib.contextmanager
def _remounted_read_only(folder):
    with _tmpfs(folder, 1 << 20):
        subprocess.run(['mount', '-o', 'remount,ro', str(folder)], check=True)
        yield folder


def test_a_read_only_folder_is_refused_before_the_model_loads(cli_images, tmp_path,
                                                              vgg16_path):
    with _read_only(tmp_path / 'ro') as folder:
        for out in (folder, folder / 'sub'):
            done = generate(*small_args(cli_images, out, '--iter', '1', '-m', vgg16_path))
            assert_one_error(done, str(folder))
            assert 'Read-only file system' in done.stderr or 'Permission denied' in done.stderr
            assert 'level 1/1' not in done.stdout
        assert os.listdir(folder) == []


def test_a_file_in_the_output_path_is_one_error(cli_images, tmp_path, vgg16_path):
    (tmp_path / 'notes.txt').write_text('mine')
    done = generate(*small_args(cli_images, tmp_path / 'notes.txt' / 'out', '-m', vgg16_path))
    assert_one_error(done, 'Not a directory')
    done = generate(*small_args(cli_images, tmp_path / 'notes.txt', '-m', vgg16_path))
    assert_one_error(done, 'output path %s exists and is not a folder' % (tmp_path / 'notes.txt'))
    assert_one_error(generate(*small_args(cli_images, '', '-m', vgg16_path)),
                     'the output folder is empty')
    assert (tmp_path / 'notes.txt').read_text() == 'mine'


def test_a_run_failing_before_its_first_step_removes_the_folders_it_made(cli_images, tmp_path,
                                                                         vgg16_path):
    out = tmp_path / 'new' / 'deeper'
    assert_one_error(generate(*small_args(cli_images, out, '-g', '0', '-m', vgg16_path)),
                     'cannot use device')
    assert os.listdir(tmp_path) == []
    # A folder that was there stays, with the user's files in it.
    out.mkdir(parents=True)
    (out / 'mine.txt').write_text('x')
    assert_one_error(generate(*small_args(cli_images, out, '-w', '40', '-m', vgg16_path)),
                     'too small')
    assert os.listdir(out) == ['mine.txt']


# --- signals -------------------------------------------------------------------------------------

def _start(args, **kwargs):
    kwargs.setdefault('preexec_fn', default_signals)
    return subprocess.Popen([sys.executable, GENERATE, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for_step(process, step):
    """Reads the process's progress until step ``step`` is done."""
    for line in process.stdout:
        if line.startswith('level 1/1  iter %d ' % step):
            return
    raise AssertionError('the run ended before step %d: %s' % (step, process.stderr.read()))


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_run_saves_the_current_image(cli_images, tmp_path, vgg16_path, signum):
    out = tmp_path / 'out'
    process = _start(small_args(cli_images, out, '--iter', '100000', '-m', vgg16_path))
    try:
        _wait_for_step(process, 2)
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum
    name = signal.Signals(signum).name
    assert err.strip().splitlines()[-1].startswith(
        'interrupted (%s) at iteration ' % name), err
    assert 'Traceback' not in err
    assert image.load_image(out / 'out.png').shape == (48, 64, 3)
    _assert_no_partial_files(out)
    assert not (out / outputs.LOCK).exists()


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize('loading,code', [
    ('numpy.', None),      # while NumPy loads, before chainer_mrf's handlers: all are Ctrl-C
    ('chainer.', 'own'),   # while Chainer loads, under the handlers: 128 + the signal
])
def test_a_signal_at_start_up_is_one_line(cli_images, tmp_path, vgg16_path, signum, loading,
                                          code):
    out = tmp_path / 'out'
    # -X importtime reports each module as its import ends: the signal is sent at a known point.
    process = subprocess.Popen([sys.executable, '-X', 'importtime', GENERATE,
                                *small_args(cli_images, out, '--iter', '100000',
                                            '-m', vgg16_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=default_signals)
    try:
        for line in process.stderr:
            if line.split('|')[-1].strip().startswith(loading):
                process.send_signal(signum)
                break
        stdout, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == (130 if code is None else 128 + signum), err
    assert [line for line in err.splitlines() if not line.startswith('import time:')] == \
        ['interrupted'], err
    assert stdout == '' and not out.exists()


# A handler runs wherever the main thread is: in a weakref callback (the garbage collector runs
# them at any moment, imports included) its exception would be dropped, the run going on.
LOST_SIGNAL = r"""
import signal, sys, weakref
from chainer_mrf import _cli
_cli.handle_signals()
class Thing:
    pass
thing = Thing()
keep = weakref.ref(thing, lambda _: signal.raise_signal(signal.SIGTERM))
del thing  # the callback runs, the handler raises inside it: Python drops the exception
print('went on')
try:
    _cli.raise_pending()
except _cli.Interrupted as e:
    print('raised', e.signum)
_cli.raise_pending()  # once only
print('once')
"""


def test_a_signal_whose_exception_python_drops_is_raised_at_the_next_step():
    done = subprocess.run([sys.executable, '-c', LOST_SIGNAL], capture_output=True, text=True,
                          timeout=60, preexec_fn=default_signals)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['went', 'on', 'raised', '15', 'once']
    assert done.stderr == ''  # no "Exception ignored" traceback


def test_a_hang_up_ignored_by_the_parent_leaves_the_run_going(cli_images, tmp_path,
                                                              vgg16_path):
    """Under ``nohup`` (SIGHUP ignored) a closed terminal must not end the run."""
    out = tmp_path / 'out'
    process = _start(small_args(cli_images, out, '--iter', '4', '-m', vgg16_path),
                     preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        _wait_for_step(process, 1)
        process.send_signal(signal.SIGHUP)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert len(strict_json_lines(out / 'trace.jsonl')) == 4


def test_a_closed_output_pipe_does_not_end_the_run(cli_images, tmp_path, vgg16_path):
    out = tmp_path / 'out'
    process = _start(small_args(cli_images, out, '--iter', '4', '-m', vgg16_path))
    try:
        _wait_for_step(process, 1)
        process.stdout.close()  # as `generate.py ... | head -3` does once head has its lines
        err = process.stderr.read()
        process.wait(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert 'Traceback' not in err
    assert image.load_image(out / 'out.png').shape == (48, 64, 3)


# --- one folder, one run -------------------------------------------------------------------------

def test_a_second_run_into_a_busy_folder_is_refused(cli_images, tmp_path, vgg16_path):
    out = tmp_path / 'out'
    first = _start(small_args(cli_images, out, '--iter', '100000', '-m', vgg16_path))
    try:
        _wait_for_step(first, 1)
        second = generate(*small_args(cli_images, out, '--iter', '1', '--force',
                                      '-m', vgg16_path))
        assert_one_error(second, '%s is in use by another run (process %d)' % (out, first.pid))
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 128 + signal.SIGTERM
    # Its lock went with it: a third run may take the folder (with --force: it holds files).
    third = generate(*small_args(cli_images, out, '--iter', '1', '--force', '-m', vgg16_path))
    assert third.returncode == 0, third.stderr


def test_a_lock_left_by_a_killed_run_is_stale(cli_images, tmp_path, vgg16_path):
    out = tmp_path / 'out'
    process = _start(small_args(cli_images, out, '--iter', '100000', '-m', vgg16_path))
    try:
        _wait_for_step(process, 1)
        process.kill()  # SIGKILL: no handler runs, the lock file stays behind
        process.wait(timeout=60)
    finally:
        process.kill()
    assert (out / outputs.LOCK).exists()
    done = generate(*small_args(cli_images, out, '--iter', '1', '--force', '-m', vgg16_path))
    assert done.returncode == 0, done.stderr
    assert not (out / outputs.LOCK).exists()


def test_force_replaces_only_the_earlier_runs_own_files(cli_images, tmp_path, vgg16_path):
    out = tmp_path / 'out'
    out.mkdir()
    mine = {'output.png': b'a user file', 'out.jpg': b'another', 'notes.txt': b'x',
            'out_12.png': b'not a snapshot name'}
    earlier = ['out.png', 'out_0010.png', 'out_0020.png', 'trace.jsonl', 'settings.json']
    for name, data in mine.items():
        (out / name).write_bytes(data)
    # The user's own files are no earlier run: nothing to refuse.
    assert generate(*small_args(cli_images, out, '--iter', '1', '-m', vgg16_path)
                    ).returncode == 0
    for name in earlier[1:3]:
        (out / name).write_bytes(b'an earlier snapshot')
    assert_one_error(generate(*small_args(cli_images, out, '--iter', '1', '-m', vgg16_path)),
                     '%s already holds out.png, out_0010.png, out_0020.png ... '
                     '(use --force to replace them)' % out)
    done = generate(*small_args(cli_images, out, '--iter', '2', '--save_iter', '2', '--force',
                                '-m', vgg16_path))
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == sorted(list(mine) + ['out.png', 'out_0002.png',
                                                           'trace.jsonl', 'settings.json'])
    for name, data in mine.items():
        assert (out / name).read_bytes() == data
    assert len(strict_json_lines(out / 'trace.jsonl')) == 2


def test_settings_record_what_was_asked(cli_images, tmp_path, vgg16_path):
    out = tmp_path / 'out'
    assert generate(*small_args(cli_images, out, '--iter', '1', '--tv_weight', '3e-5',
                                '-m', vgg16_path)).returncode == 0
    settings = json.loads((out / 'settings.json').read_text())
    assert settings['inputs']['content'] == cli_images[0]
    assert settings['inputs']['style'] == [cli_images[1]]
    assert settings['options']['tv_weight'] == 3e-5
    assert presets.get_preset('dsanno').replace(
        **{k: v for k, v in settings['options'].items() if k != 'name'}).tv_weight == 3e-5


# --- oversize requests ---------------------------------------------------------------------------

@pytest.mark.parametrize('extra,fits', [
    (['-w', '20000'], 'width '),
    (['--preset', 'cnnmrf', '--max_size', '20000'], 'max_size '),
])
def test_an_oversize_request_is_refused_before_allocating(cli_images, tmp_path, vgg16_path,
                                                          extra, fits):
    start = time.perf_counter()
    done = generate('-c', cli_images[0], '-s', cli_images[1], '-o', tmp_path / 'out',
                    '-m', vgg16_path, *extra)
    assert_one_error(done, 'GiB')
    assert 'available' in done.stderr and fits in done.stderr and 'would fit' in done.stderr
    assert time.perf_counter() - start < 30
    assert not (tmp_path / 'out').exists()


def test_an_oversize_texture_is_refused(cli_images, tmp_path, vgg16_path):
    done = generate('-s', cli_images[1], '-o', tmp_path / 'out', '--preset', 'cnnmrf',
                    '--size', '100000x100000', '-m', vgg16_path)
    assert_one_error(done, 'would fit')
    assert 'size ' in done.stderr


def test_the_memory_limit_option_lets_a_run_through_or_stops_it(cli_images, tmp_path,
                                                                vgg16_path):
    assert_one_error(generate(*small_args(cli_images, tmp_path / 'a', '--iter', '1',
                                          '--memory_limit', '1M', '-m', vgg16_path)),
                     'memory_limit')
    done = generate(*small_args(cli_images, tmp_path / 'b', '--iter', '1', '--memory_limit',
                                '1T', '-m', vgg16_path))
    assert done.returncode == 0, done.stderr


# --- values --------------------------------------------------------------------------------------

@pytest.mark.parametrize('extra,message', [
    (['--confidence_threshold', '2'], 'confidence_threshold must be a finite number from -1.0 '
                                      'to 1.0, got 2.0'),
    (['--confidence_threshold', 'nan'], 'confidence_threshold must be a finite number'),
    (['--seed', str(2**32)], 'seed must be an integer from 0 to 4294967295'),
    (['--size', '64x48'], 'size sets the shape of a texture or a doodle'),
    (['--content_layers', ''], 'content_layers is empty'),
    (['--memory_limit', 'lots'], 'invalid byte count value'),
    (['-g', '-7', '--lr', 'inf'], 'lr must be a finite number > 0.0, got inf'),
])
def test_values_out_of_range_are_refused(cli_images, tmp_path, vgg16_path, extra, message):
    assert_one_error(generate(*small_args(cli_images, tmp_path / 'out', '-m', vgg16_path),
                              *extra), message)
    assert not (tmp_path / 'out').exists()


def test_keep_color_with_luminance_only_runs_as_dsanno_defines_it(vgg16_path):
    """dsanno runs both (docs/usage.md): the luminance is synthesised, and the MRF term takes
    the luminance of that grey image again, so the result keeps the content's chroma."""
    both, _ = short_run(vgg16_path, iterations=2, keep_color=True, luminance_only=True)
    alone, _ = short_run(vgg16_path, iterations=2, luminance_only=True)
    assert both.shape == alone.shape == (48, 64, 3)
    chroma = [colour_lib.split_yiq(image.preprocess(rgb, image.DSANNO))[1]
              for rgb in (both, alone)]
    numpy.testing.assert_allclose(chroma[0], chroma[1], atol=2.0)


def test_numpy_scalars_paths_and_device_names_are_accepted(tmp_path, vgg16_path):
    content, style = tmp_path / 'content.png', tmp_path / 'style.png'
    image.save_image(content, content_card())
    image.save_image(style, style_stripes())
    image.save_image(tmp_path / 'start.png', style_stripes())
    common = dict(iterations=numpy.int32(2), resolution_num=numpy.int64(1),
                  model=pathlib.Path(vgg16_path), seed=numpy.uint32(3))
    reference = synthesize(str(content), str(style), width=64, lr=1.0, device=-1,
                           initial_image=str(tmp_path / 'start.png'), **common)
    for device in ('cpu', '@numpy', numpy.int64(-1), 'CPU'):
        result = synthesize(content, style, width=numpy.int64(64), lr=numpy.float32(1),
                            device=device, initial_image=tmp_path / 'start.png', **common)
        numpy.testing.assert_array_equal(result, reference)


@pytest.mark.parametrize('callback', [42, 'print'])
def test_a_callback_that_is_not_callable_is_refused_before_any_work(callback):
    with pytest.raises(TypeError, match='callback must be callable'):
        synthesize('/nonexistent.png', 'nor.png', callback=callback)


@pytest.mark.parametrize('device,message', [
    ('tpu', "unknown device 'tpu'"), (True, 'unknown device True'),
    (0.5, 'unknown device 0.5'), ('cuda:0', 'cannot use device @cupy:0'),
])
def test_unknown_or_unusable_devices_are_refused(vgg16_path, device, message):
    if 'cupy' in message and cuda_ready():
        pytest.skip('a GPU is usable here')
    with pytest.raises(ValueError, match=message):
        synthesize(content_card(), style_stripes(), model=vgg16_path, device=device,
                   iterations=1, **SMALL)


def test_describe_names_the_path_and_the_reason():
    assert _cli.describe(OSError(28, 'No space left on device', 'out/out.png')) == \
        'out/out.png: No space left on device'
    assert _cli.describe(ValueError('two\n  lines')) == 'two lines'
