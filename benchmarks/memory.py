#!/usr/bin/env python3
"""Peak memory and wall time of whole syntheses, each in a fresh process.

Usage::

    python benchmarks/memory.py                          # every case below
    python benchmarks/memory.py --case cnnmrf-800x638 --case scaling
    python benchmarks/memory.py --record                 # keep the figures in docs/performance.md

Cases:

- ``demo``: the README's demo, the bundled example with dsanno's defaults (256 px, 3 x 100
  steps); its wall time is the one that matters.
- ``cnnmrf-800x638`` and ``cnnmrf-1024``: the authors' preset on an 800x638 and a 1024x1024
  content image (the paper's ``content/1.jpg`` and ``content/0.jpg`` cropped to that shape where
  ../shared has them, else the bundled photo resized) and picasso.jpg (else the bundled style),
  at ``max_size`` 800 and 1024. One step at each coarse level, then ``--steps`` at the finest
  (default 3). The L-BFGS history's rows are allocated at a level's first step, but as zeros
  that take memory only once written: a run of n steps holds n - 1 of its pairs, so a
  100-step run holds 23 more than these (``--steps 26`` counts them all).
- ``scaling``: texture synthesis with the authors' preset from one style image (so the patch
  bank stays the same) at outputs of 256, 512, 768 and 1024 pixels square, three steps per
  level: the peak should grow linearly with the pixels.

Beside each peak: :func:`chainer_mrf.memory.estimate_inputs`'s estimate of it (computed here,
from the sizes alone, for the same steps) and the estimate's ratio to it. Each child keeps
every ``Step`` it is given, with a copy of its image, which the estimate leaves out (the
demo's 300 steps hold 65 MiB).

A case's peak is the child process's own ``ru_maxrss``. Linux starts a child with its parent's
peak RSS, so the figure means something only above this process's own peak, printed at the end.

Each child also counts the FLOPs of its optimiser steps (``Step.flops``: the convolutions and
the patch products) and, after the synthesis, measures the float32 matrix-product rate: floor =
FLOPs / rate, efficiency = floor / the whole run's wall time. The set-up (loading, resizing,
the style banks' VGG passes) is in the time but not in the FLOPs, so on short runs the
efficiency is well below that of a step (``benchmarks/iteration.py``).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import _common

MiB = 1 << 20
CASES = ('demo', 'cnnmrf-800x638', 'cnnmrf-1024', 'scaling')
SCALING_SIZES = (256, 512, 768, 1024)


def _picture(shape, paper_name, folder):
    """A content image of ``shape`` (W, H): the paper's image cropped to that aspect and
    resized where ../shared has it, else the bundled photo resized."""
    from PIL import Image
    source = os.path.join(_common.DATA, 'content', paper_name)
    if not os.path.isfile(source):
        source = os.path.join(_common.BUNDLED, 'content_chelsea.png')
    image = Image.open(source).convert('RGB')
    width, height = image.size
    crop_height = min(height, round(width * shape[1] / shape[0]))
    crop_width = min(width, round(crop_height * shape[0] / shape[1]))
    left, top = (width - crop_width) // 2, (height - crop_height) // 2
    path = os.path.join(folder, '%dx%d.png' % shape)
    image.crop((left, top, left + crop_width, top + crop_height)).resize(
        shape, Image.BICUBIC).save(path)
    return path


def _style():
    style = os.path.join(_common.DATA, 'style', 'picasso.jpg')
    return style if os.path.isfile(style) else os.path.join(_common.BUNDLED,
                                                            'style_hubble_deep_field.png')


def child(spec):
    """Runs one synthesis described by ``spec`` (JSON) and prints its figures as JSON."""
    import chainer_mrf
    spec = json.loads(spec)
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in spec['options'].items()}
    steps = []
    start = time.perf_counter()
    chainer_mrf.synthesize(spec['content'], spec['style'], preset=spec['preset'],
                           callback=steps.append, profile=True, **options)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finest = [s.seconds for s in steps if s.level == s.levels - 1]
    flops = sum(sum(s.flops.values()) for s in steps)
    # After the peak was read, and with the synthesis's memory freed: it raises no peak.
    rate = _common.matmul_rate()
    print(json.dumps({'peak_mib': round(peak, 1), 'seconds': round(seconds, 1),
                      'steps': len(steps),
                      'finest_step_s': round(sorted(finest)[len(finest) // 2], 3),
                      'gflop': round(flops / 1e9, 1), 'matmul_gflops': round(rate / 1e9, 1),
                      'efficiency': round(flops / rate / seconds, 3)}))


def estimate(content, style, preset, **options):
    """chainer_mrf.memory's estimate of a case's peak, in MiB, from the sizes alone."""
    from chainer_mrf import inputs, memory, presets
    config = presets.get_preset(preset).replace(**options)
    loaded = inputs.load_inputs(content, style, preset=config)
    return memory.estimate_inputs(inputs.configure(config, loaded), loaded).total / MiB


def measure(content, style, preset, **options):
    """The child's figures, with the estimate beside the measured peak and their ratio."""
    spec = json.dumps({'content': content, 'style': style, 'preset': preset,
                       'options': options})
    done = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', spec],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit('the child process failed:\n' + done.stderr[-3000:])
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures['estimate_mib'] = round(estimate(content, style, preset, **options), 1)
    figures['estimate_ratio'] = round(figures['estimate_mib'] / figures['peak_mib'], 3)
    return figures


def run_case(case, steps, folder):
    """The figures of one case, as a flat dict."""
    if case == 'demo':
        return measure(os.path.join(_common.BUNDLED, 'content_chelsea.png'),
                       os.path.join(_common.BUNDLED, 'style_hubble_deep_field.png'), 'dsanno')
    if case.startswith('cnnmrf-'):
        side, shape, name = ((800, (800, 638), '1.jpg') if case == 'cnnmrf-800x638'
                             else (1024, (1024, 1024), '0.jpg'))
        return measure(_picture(shape, name, folder), _style(), 'cnnmrf', max_size=side,
                       iterations=[1, 1, steps])
    figures = {}
    for size in SCALING_SIZES:
        result = measure(None, _style(), 'cnnmrf', size=[size, size], iterations=3)
        print('  %4d x %-4d  peak %7.1f MiB  estimate %7.1f MiB (x %.2f)  %6.1f s  %6.1f GFLOP  '
              'efficiency %3.0f %%' % (size, size, result['peak_mib'], result['estimate_mib'],
                                       result['estimate_ratio'], result['seconds'],
                                       result['gflop'], 100 * result['efficiency']), flush=True)
        figures['peak_mib_%d' % size] = result['peak_mib']
        figures['estimate_mib_%d' % size] = result['estimate_mib']
    # Linear growth: equal steps in pixels add equal memory; quadratic growth would make each
    # step's increment larger than the last.
    pixels = [s * s for s in SCALING_SIZES]
    peaks = [figures['peak_mib_%d' % s] for s in SCALING_SIZES]
    slopes = [(peaks[i + 1] - peaks[i]) / (pixels[i + 1] - pixels[i]) * 1e6
              for i in range(len(pixels) - 1)]
    figures['mib_per_megapixel'] = [round(s, 1) for s in slopes]
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--case', choices=CASES, action='append',
                        help='a case to run (repeatable; default: all)')
    parser.add_argument('--steps', type=int, default=3,
                        help='finest-level steps of the cnnmrf cases (default 3)')
    parser.add_argument('--record', action='store_true',
                        help='write the figures into docs/performance.md')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    if args.steps < 1:
        parser.error('--steps must be >= 1')
    print('machine:', _common.machine())
    with tempfile.TemporaryDirectory() as folder:
        for case in args.case or CASES:
            print('%s:' % case, flush=True)
            figures = run_case(case, args.steps, folder)
            print('  ' + ', '.join('%s %s' % item for item in figures.items()), flush=True)
            _common.compare('memory/' + case, figures)
            if args.record:
                _common.record('memory/' + case, figures)
    print('this process: peak %.0f MiB' % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                          / 1024))
    return 0


if __name__ == '__main__':
    sys.exit(main())
