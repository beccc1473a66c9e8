#!/usr/bin/env python3
"""How fast BLAS runs the VGG layers' own matrix products, against the product that sets the floor.

Usage::

    python benchmarks/layer_products.py                 # both presets' finest levels
    python benchmarks/layer_products.py --preset dsanno

``benchmarks/iteration.py`` compares each network pass with its FLOP floor: its convolutions'
FLOPs over the float32 rate of one large product (2048 x 2304 by 2304 x 2048). The passes can
come no nearer that floor than BLAS runs the products they are made of. This times exactly those
products, with the shapes and strides that ``chainer_mrf/layers.py`` gives them at a preset's
finest level (its strips, the three row products of each strip, the transposed products of the
backward pass, conv1_1's stacked and scattered ones), one thread of BLAS per core as the layers
run them, and nothing else: no copies, bias, ReLU or pooling. The last line is the bound this
puts on a pass's efficiency, the layers' FLOPs over the time their products alone take, against
the floor: what the passes would reach if everything around the products were free.
"""
import argparse
import time

import _common
import numpy

import chainer_mrf
from chainer_mrf import layers, vgg

SIZES = {'cnnmrf': (384, 298), 'dsanno': (330, 256)}
"""The finest level's (H, W) that ``benchmarks/iteration.py`` times: potrait1.jpg at each
preset's size rule."""


def products(c_in, c_out, height, width, backward):
    """The (A, B) operand shapes and strides of one layer's products, strip by strip, as
    :mod:`chainer_mrf.layers` runs them: A (rows, depth) contiguous, B a column window of a
    strip's block."""
    if backward:  # the transposed convolution: out and in swap
        c_in, c_out = c_out, c_in
    scatter = backward and 3 * c_out < c_in  # conv1_1's backward: col2im (layers._scatter)
    dummy = numpy.empty((1, c_out if scatter else c_in, height, width), numpy.float32)
    channels, copies = ((c_out * 9 + c_in, 1) if scatter else (c_in, 3))
    strips, _ = layers._strips(dummy, channels, copies, layers.THREADS)
    shapes = []
    for _, r0, r1 in strips:
        pixels = (r1 - r0) * width
        if scatter:
            shapes.append(((c_out * 9, c_in), (c_in, pixels), pixels))
        elif 3 * c_in < layers._MIN_DEPTH:  # one stacked product (im2col's) per strip
            shapes.append(((c_out, 9 * c_in), (9 * c_in, pixels), pixels))
        else:  # three row products, each reading the block ky rows further on
            shapes += [((c_out, 3 * c_in), (3 * c_in, pixels), (r1 - r0 + 2) * width)] * 3
    return shapes


def time_products(shapes, repeat=3):
    """Seconds of the products ``shapes`` on one core, best of ``repeat``."""
    rng = numpy.random.RandomState(0)
    operands = []
    for (m, k), (_, n), stride in shapes:
        a = rng.standard_normal((m, k)).astype(numpy.float32)
        block = rng.standard_normal((k, stride)).astype(numpy.float32)
        operands.append((a, block[:, :n], numpy.empty((m, n), numpy.float32)))
    best = float('inf')
    with layers._single_threaded_blas(layers._blas_threads()):
        for _ in range(repeat):
            start = time.perf_counter()
            for a, b, out in operands:
                numpy.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    return best


def single_core_rate():
    """The floor product's rate on one core of BLAS, FLOP/s."""
    with layers._single_threaded_blas(layers._blas_threads()):
        return _common.matmul_rate()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--preset', choices=sorted(SIZES), action='append')
    args = parser.parse_args()
    if layers._blas_threads() is None:
        raise SystemExit('NumPy has no bundled OpenBLAS here: its thread count cannot be set')
    print(_common.machine())
    floor = single_core_rate()
    print('floor product (2048 x 2304 x 2048), one core: %.1f GFLOP/s; all cores: %.1f'
          % (floor / 1e9, _common.matmul_rate() / 1e9))
    for preset in args.preset or sorted(SIZES):
        config = chainer_mrf.get_preset(preset)
        used = config.content_layers + config.style_layers
        arch = 'vgg16'
        total_flops = total_seconds = 0.0
        print('\n%s, %dx%d, network to %s:' % (preset, SIZES[preset][1], SIZES[preset][0],
                                               max(used, key=vgg.layer_names(arch).index)))
        print('  %-8s %-9s %9s %10s %9s %10s %9s' % ('layer', 'pass', 'A', 'GFLOP', 'ms',
                                                      'GFLOP/s', 'of floor'))
        for name, c_in, c_out, height, width in vgg.walk(arch, SIZES[preset], used):
            if not name.startswith('conv'):
                continue
            for backward in (False, True):
                shapes = products(c_in, c_out, height, width, backward)
                flops = sum(2.0 * m * k * n for (m, k), (_, n), _ in shapes)
                seconds = time_products(shapes)
                total_flops += flops
                total_seconds += seconds
                print('  %-8s %-9s %9s %10.3f %9.1f %10.1f %8.0f %%' % (
                    name, 'backward' if backward else 'forward', '%dx%d' % shapes[0][0],
                    flops / 1e9, 1e3 * seconds, flops / seconds / 1e9,
                    100 * flops / seconds / floor))
        print('  the products alone: %.1f GFLOP/s per core, %.0f %% of the floor product: the '
              'most a pass can reach' % (total_flops / total_seconds / 1e9,
                                         100 * total_flops / total_seconds / floor))


if __name__ == '__main__':
    main()
