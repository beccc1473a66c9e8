#!/usr/bin/env python3
"""Times scripts/convert_caffemodel.py on a full-size caffemodel.

Usage::

    python benchmarks/convert_caffemodel.py                      # a synthetic VGG16, 528 MiB
    python benchmarks/convert_caffemodel.py VGG_ILSVRC_16_layers.caffemodel
    python benchmarks/convert_caffemodel.py VGG_ILSVRC_19_layers.caffemodel --arch vgg19

Without a file, a synthetic caffemodel laid out as the official ``VGG_ILSVRC_16_layers.caffemodel``
(V1 ``layers``, legacy num/channels/height/width blob shapes, the convolutions, fc6, fc7 and fc8
with random float32 values, and the ReLU, pooling, dropout and softmax layers) is streamed to a
temporary folder, a few MiB at a time.

Each conversion runs the script in a fresh Python process, so a time includes start-up and
imports and the peak memory is the children's ``ru_maxrss``. Linux charges a child with its
parent's peak RSS when it starts (vfork then exec), so this process stays small and prints its
own peak: the children's figure is only meaningful above it.

The ``--repeat`` warm runs read the file as the page cache holds it (all of it after writing the
synthetic file). The cold-ish run follows, after the file's pages were dropped from the page
cache with ``posix_fadvise(DONTNEED)``; ``fincore`` (util-linux), where installed, reports what
stayed resident. A virtual machine's host may still cache the disk.

A conversion does no arithmetic, so its floor is not a FLOP count but what any conversion must
do: start a Python process that imports NumPy, hash the whole caffemodel once (SHA1, which
identifies a published file: protobuf has no checksum of its own), and write the converted
arrays (the architecture's convolution weights, float32) as an npz into the same folder. All
three are measured in the same run (best of ``--repeat``); efficiency = floor / the best warm
conversion. The
figures are compared with those recorded in docs/performance.md (``--record`` keeps them).
"""
import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy

import chainer_mrf  # noqa: F401  (the package's NumPy shims, as everywhere)
from chainer_mrf import _io, caffe
from chainer_mrf import weights as weights_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'scripts', 'convert_caffemodel.py')
MiB = 1 << 20

#: Random values generated and written at a time (16 MiB), to keep this process small.
CHUNK = 1 << 22


def write_synthetic(path, arch='vgg16', seed=0):
    """Writes a caffemodel laid out as the official VGG ones (see the module docstring), with
    standard normal float32 values, through the library's streaming writer.

    Args:
        path (str): the file to write.
        arch (str): ``'vgg16'`` or ``'vgg19'``. Default: ``'vgg16'``.
        seed (int): the random seed. Default: 0.
    """
    with open(path, 'wb') as f:
        caffe.write_vgg_caffemodel(f, weights_lib.expected_shapes(arch),
                                   rng=numpy.random.default_rng(seed), chunk=CHUNK)


def resident_fraction(path):
    """The share of the file in the page cache, per ``fincore``; ``None`` without it."""
    if not shutil.which('fincore'):
        return None
    done = subprocess.run(['fincore', '--bytes', '--noheadings', '--output', 'RES', path],
                          capture_output=True, text=True)
    if done.returncode:
        return None
    return int(done.stdout.split()[0]) / max(1, os.path.getsize(path))


def drop_from_page_cache(path):
    """Asks the kernel to forget the file's cached pages (no root needed, unlike drop_caches)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def convert_once(path, out, arch):
    """Runs the conversion script in a fresh process; returns its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, SCRIPT, path, out, '--arch', arch, '--force'],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def cpu_model():
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor() or 'unknown CPU'


def floor_seconds(arch, folder, repeat, model):
    """The best times of a Python start that imports NumPy, of hashing ``model`` (SHA1), and
    of writing ``arch``'s convolution weights (random float32 of the right shapes) as an npz
    in ``folder``."""
    starts = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, '-c', 'import numpy'], check=True)
        starts.append(time.perf_counter() - start)
    rng = numpy.random.default_rng(0)
    arrays = {key: rng.standard_normal(shape, dtype=numpy.float32)
              for key, shape in weights_lib.expected_shapes(arch).items()}
    path = os.path.join(folder, 'floor.npz')
    writes = []
    for _ in range(repeat):
        start = time.perf_counter()
        with open(path, 'wb') as f:
            numpy.savez(f, **arrays)
        writes.append(time.perf_counter() - start)
    os.remove(path)
    hashes = []
    for _ in range(repeat):
        start = time.perf_counter()
        _io.file_digest(model, 'sha1')
        hashes.append(time.perf_counter() - start)
    return min(starts), min(hashes), min(writes)


def describe_cache(fraction):
    return 'unknown (no fincore)' if fraction is None else '%.0f%% resident' % (100 * fraction)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('caffemodel', nargs='?',
                        help='the file to convert (default: a synthetic full-size model)')
    parser.add_argument('--arch', default='vgg16', choices=('vgg16', 'vgg19'),
                        help='architecture of the model (default: vgg16)')
    parser.add_argument('--repeat', type=int, default=3, help='warm runs (default: 3)')
    parser.add_argument('--record', action='store_true',
                        help='write the figures into docs/performance.md')
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error('--repeat must be >= 1')

    print('machine: %s, %d cores, %s %s, Python %s, NumPy %s'
          % (cpu_model(), os.cpu_count(), platform.system(), platform.release(),
             platform.python_version(), numpy.__version__))
    print('date: %s' % time.strftime('%Y-%m-%d %H:%M %Z'))
    with tempfile.TemporaryDirectory(prefix='chainer-mrf-bench-') as tmp:
        path = args.caffemodel
        if path is None:
            path = os.path.join(tmp, 'synthetic_%s.caffemodel' % args.arch)
            start = time.perf_counter()
            write_synthetic(path, args.arch)
            print('wrote the synthetic %s model in %.1f s'
                  % (args.arch.upper(), time.perf_counter() - start))
        size = os.path.getsize(path)
        print('file: %s, %d bytes (%.1f MiB)' % (path, size, size / MiB))
        out = os.path.join(tmp, 'out.npz')

        print('warm runs: page cache %s' % describe_cache(resident_fraction(path)))
        times = [convert_once(path, out, args.arch) for _ in range(args.repeat)]
        best, median = min(times), statistics.median(times)
        print('warm: best %.2f s, median %.2f s (%s), %.0f MiB/s of caffemodel at best'
              % (best, median, ', '.join('%.2f' % t for t in times), size / MiB / best))

        drop_from_page_cache(path)
        cached = resident_fraction(path)
        cold = convert_once(path, out, args.arch)
        print('cold-ish: %.2f s, %.0f MiB/s, page cache before the run: %s'
              % (cold, size / MiB / cold, describe_cache(cached)))

        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        startup, hashing, write = floor_seconds(args.arch, tmp, args.repeat, path)
    print('peak RSS of a conversion: %.0f MiB (max over all runs; this process peaked at '
          '%.0f MiB)' % (children, own))
    floor = startup + hashing + write
    print('floor: %.2f s (Python with NumPy starts in %.2f s, the file is hashed in %.2f s, the '
          'npz is written in %.2f s); efficiency %.0f %%'
          % (floor, startup, hashing, write, 100 * floor / best))
    figures = {'bytes': size, 'warm_best_s': round(best, 3), 'warm_median_s': round(median, 3),
               'cold_s': round(cold, 3), 'peak_mib': round(children, 1),
               'floor_s': round(floor, 3), 'efficiency': round(floor / best, 3)}
    # Only now: _common imports Chainer, which would have raised this process's peak, and with
    # it the children's (see the module docstring).
    import _common
    key = 'convert/%s' % ('synthetic-' + args.arch if args.caffemodel is None
                          else os.path.basename(args.caffemodel))
    _common.compare(key, figures)
    if args.record:
        _common.record(key, figures)
    return 0


if __name__ == '__main__':
    sys.exit(main())
