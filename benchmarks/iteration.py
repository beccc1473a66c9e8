#!/usr/bin/env python3
"""Times optimiser steps at the finest level and compares them with the machine's FLOP floor.

Usage::

    python benchmarks/iteration.py                      # both presets on the CPU
    python benchmarks/iteration.py --preset cnnmrf --steps 8
    python benchmarks/iteration.py --device 0           # a GPU
    python benchmarks/iteration.py --record             # keep the figures in docs/performance.md

Each preset runs on the paper's portrait pair (potrait1.jpg / picasso.jpg, from ../shared where
present, else the bundled example) with its own defaults: ``cnnmrf`` at 384 pixels with its nine
style copies (R = S = 1), ``dsanno`` at width 256. The coarser levels take one step each; at the
finest, ``--warmup`` steps are left out and ``--steps`` are timed. Each step is split as
:mod:`chainer_mrf.profiling` measures it: VGG forward, matching, VGG backward, and the rest.

The floor of a phase is its FLOPs (counted by the profiler from the work run: the convolutions,
the patch products 2 P S D) over the float32 matrix-product rate measured in the same run; the
efficiency is floor / measured time. The figures are compared with those recorded in
docs/performance.md.
"""
import argparse
import statistics
import sys

import _common

import chainer_mrf

PHASES = ('vgg_forward', 'vgg_backward', 'matching', 'other')
SETTINGS = {'cnnmrf': {}, 'dsanno': {'width': 256}}
"""The size each preset is timed at, beyond its own defaults (dsanno's default width is 256)."""


def run(preset, device, steps, warmup):
    """The finest-level Steps of a short synthesis with ``preset``'s defaults."""
    content, style, name = _common.example_pair()
    config = chainer_mrf.get_preset(preset).replace(**SETTINGS[preset])
    iterations = (1,) * (config.resolution_num - 1) + (warmup + steps,)
    finest = []

    def keep(step):
        if step.level == step.levels - 1 and step.level_iteration > warmup:
            finest.append(step)
            print('  step %d: %.3f s' % (step.level_iteration - warmup, step.seconds),
                  flush=True)

    chainer_mrf.synthesize(content, style, preset=config, device=device, callback=keep,
                           iterations=iterations, profile=True)
    return finest, name


def summarise(steps, rate):
    """Median and best seconds, FLOPs, floor and efficiency per phase, and for the whole step."""
    flops = steps[0].flops
    rows = {}
    for phase in PHASES + ('step',):
        times = [sum(s.timings.values()) if phase == 'step' else s.timings.get(phase, 0.0)
                 for s in steps]
        work = sum(flops.values()) if phase == 'step' else flops.get(phase)
        rows[phase] = dict(median=statistics.median(times), best=min(times), flops=work,
                           floor=None if work is None else work / rate)
    vgg = ('vgg_forward', 'vgg_backward')
    rows['vgg'] = dict(median=sum(rows[p]['median'] for p in vgg),
                       best=sum(rows[p]['best'] for p in vgg),
                       flops=sum(flops[p] for p in vgg),
                       floor=sum(rows[p]['floor'] for p in vgg))
    return rows


def report(preset, name, steps, rate, xp):
    shape = steps[0].x.shape[2:]
    rows = summarise(steps, rate)
    print('\n%s on %s, finest level %dx%d (W x H), %d steps; float32 matmul %.1f GFLOP/s'
          % (preset, name, shape[1], shape[0], len(steps), rate / 1e9))
    print('%-13s %9s %9s %9s %9s %12s' % ('phase', 'median s', 'best s', 'GFLOP', 'floor s',
                                          'efficiency'))
    for phase in PHASES + ('vgg', 'step'):
        row = rows[phase]
        if row['floor'] is None:
            print('%-13s %9.3f %9.3f' % (phase, row['median'], row['best']))
        else:
            print('%-13s %9.3f %9.3f %9.1f %9.3f %5.0f %% (best %.0f %%)' % (
                phase, row['median'], row['best'], row['flops'] / 1e9, row['floor'],
                100 * row['floor'] / row['median'], 100 * row['floor'] / row['best']))
    figures = {'size': '%dx%d' % (shape[1], shape[0]), 'matmul_gflops': round(rate / 1e9, 1)}
    for phase in PHASES + ('vgg', 'step'):
        figures[phase + '_s'] = round(rows[phase]['median'], 4)
    for phase in ('matching', 'vgg', 'step'):
        figures[phase + '_efficiency'] = round(rows[phase]['floor'] / rows[phase]['median'], 3)
    figures['step_gflop'] = round(rows['step']['flops'] / 1e9, 2)
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--preset', choices=sorted(SETTINGS), action='append',
                        help='a preset to time (repeatable; default: both)')
    parser.add_argument('--device', type=int, default=-1, help='GPU id, or -1 for the CPU')
    parser.add_argument('--steps', type=int, default=5, help='timed steps (default 5)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed first steps (default 1)')
    parser.add_argument('--record', action='store_true',
                        help='write the figures into docs/performance.md')
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error('--steps must be >= 1 and --warmup >= 0')
    dev, xp = _common.device_and_xp(args.device)
    print('machine:', _common.machine(xp))
    for preset in args.preset or sorted(SETTINGS):
        before = _common.matmul_rate(xp)
        print('%s: timing %d steps after %d of warm-up' % (preset, args.steps, args.warmup))
        steps, name = run(preset, args.device, args.steps, args.warmup)
        rate = max(before, _common.matmul_rate(xp))  # the better of two, either side
        figures = report(preset, name, steps, rate, xp)
        key = 'iteration/%s/%s' % (preset, 'cpu' if args.device < 0 else 'gpu')
        _common.compare(key, figures)
        if args.record:
            _common.record(key, figures, xp)
    return 0


if __name__ == '__main__':
    sys.exit(main())
