"""What every benchmark shares: the machine, its matrix-multiply rate, and the recorded figures.

The figures each benchmark last recorded live in ``docs/performance.md``, in one JSON block
between ``<!-- recorded -->`` and ``<!-- /recorded -->``, keyed by benchmark and case. A run
prints its figures next to the recorded ones and how far each moved; ``--record`` writes its own
figures into the block (the prose tables around it are written by hand).
"""
import datetime
import json
import os
import platform
import re
import time

import numpy

import chainer_mrf  # noqa: F401  (the package's NumPy shims, as everywhere)
import chainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERFORMANCE = os.path.join(ROOT, 'docs', 'performance.md')
DATA = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'cnnmrf')
"""The paper's example images, where this checkout sits beside them (as in development)."""
BUNDLED = os.path.join(ROOT, 'chainer_mrf', 'data')

_BLOCK = re.compile(r'(<!-- recorded -->\n```json\n)(.*?)(\n```\n<!-- /recorded -->)', re.S)
_GEMM = (2048, 2304, 2048)  # M, K, N: the size of the patch products at 384 pixels


def example_pair():
    """The paper's portrait pair (potrait1.jpg, picasso.jpg) where ``../shared`` has it, else
    the bundled example; and a name for it."""
    content = os.path.join(DATA, 'content', 'potrait1.jpg')
    style = os.path.join(DATA, 'style', 'picasso.jpg')
    if os.path.isfile(content) and os.path.isfile(style):
        return content, style, 'potrait1/picasso'
    return (os.path.join(BUNDLED, 'content_chelsea.png'),
            os.path.join(BUNDLED, 'style_hubble_deep_field.png'), 'bundled chelsea/hubble')


def device_and_xp(device):
    """The Chainer device for ``device`` (-1: CPU, else a GPU id) and its array module."""
    dev = chainer.get_device('@numpy' if device < 0 else '@cupy:%d' % device)
    return dev, dev.xp


def synchronize(xp):
    if xp is not numpy:
        xp.cuda.Device().synchronize()


def matmul_rate(xp=numpy, repeat=5):
    """The best float32 matrix-product rate of ``repeat`` runs, in FLOP/s.

    Measured on a (2048 x 2304) @ (2304 x 2048) product: the shape of the MRF term's patch
    products at 384 pixels, and large enough for BLAS's peak.
    """
    m, k, n = _GEMM
    rng = numpy.random.RandomState(0)
    a = xp.asarray(rng.standard_normal((m, k)).astype(numpy.float32))
    b = xp.asarray(rng.standard_normal((k, n)).astype(numpy.float32))
    out = xp.empty((m, n), dtype=numpy.float32)
    xp.dot(a, b, out=out)  # warm-up: threads, kernels
    best = float('inf')
    for _ in range(repeat):
        synchronize(xp)
        start = time.perf_counter()
        xp.dot(a, b, out=out)
        synchronize(xp)
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best


def machine(xp=numpy):
    """One line naming the processor (or GPU), the cores and the library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    text = '%s, %d cores, Python %s, NumPy %s, Chainer %s' % (
        cpu, os.cpu_count(), platform.python_version(), numpy.__version__, chainer.__version__)
    if xp is not numpy:
        name = xp.cuda.runtime.getDeviceProperties(0)['name']
        text += ', CuPy %s on %s' % (xp.__version__, name.decode() if isinstance(name, bytes)
                                     else name)
    return text


def _read_block():
    with open(PERFORMANCE, encoding='utf-8') as f:
        text = f.read()
    found = _BLOCK.search(text)
    if found is None:
        raise SystemExit('%s has no <!-- recorded --> JSON block' % PERFORMANCE)
    return text, found, json.loads(found.group(2))


def compare(key, figures):
    """Prints ``figures`` beside those recorded under ``key``, with the relative change."""
    recorded = _read_block()[2].get(key)
    if recorded is None:
        print('(nothing recorded under %r yet: run with --record to keep these figures)' % key)
        return
    print('against the figures recorded %s (%s):' % (recorded.get('date', '?'),
                                                     recorded.get('machine', '?')))
    for name, value in figures.items():
        before = recorded.get(name)
        if isinstance(value, (int, float)) and isinstance(before, (int, float)) and before:
            print('  %-28s %12.4g -> %-12.4g %+6.1f %%'
                  % (name, before, value, 100.0 * (value - before) / before))


def record(key, figures, xp=numpy):
    """Writes ``figures`` (with the date and machine) under ``key`` in the recorded block."""
    text, found, block = _read_block()
    block[key] = dict(figures, date=datetime.date.today().isoformat(), machine=machine(xp))
    body = json.dumps(block, indent=1, sort_keys=True)
    text = text[:found.start(2)] + body + text[found.end(2):]
    temporary = PERFORMANCE + '.tmp'
    with open(temporary, 'w', encoding='utf-8') as f:
        f.write(text)
    os.replace(temporary, PERFORMANCE)
    print('recorded under %r in %s' % (key, os.path.relpath(PERFORMANCE, ROOT)))
