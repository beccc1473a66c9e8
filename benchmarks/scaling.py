#!/usr/bin/env python3
"""One synthesis over several MPI ranks against one process: the matching's split (issue #14).

Usage::

    python benchmarks/scaling.py                       # 1 and 2 ranks, cnnmrf at 640 px
    python benchmarks/scaling.py --size 512 --steps 3  # smaller and shorter
    python benchmarks/scaling.py --rounds 2            # 1, 2, 1, 2 ranks: the best of each
    python benchmarks/scaling.py --ranks 1 --threads 2 # one process, two threads, to compare
    python benchmarks/scaling.py --json scaling.json   # the figures as JSON too
    python benchmarks/scaling.py --record              # keep them in docs/performance.md
    python benchmarks/scaling.py --model               # the model on paper (2K, 4K outputs)

Each case is ``mpiexec -n N`` (the ``mpiexec`` next to ``sys.executable``, MPICH's from the
``mpi`` extra in the virtual environment) of this script's worker mode, every rank with one
thread (``OMP_NUM_THREADS=1``, ``OPENBLAS_NUM_THREADS=1``) and bound to a core: N ranks use N
cores, so that one rank against two compares the same cores' work. Each runs the authors'
preset (``cnnmrf``: relu3_1 and relu4_1, nine style copies, strides 2) on the paper's
portrait pair (potrait1.jpg / picasso.jpg, from ../shared where present, else the bundled
example) at ``--size`` pixels on the longer side, the finest level only (``resolution_num``
1), ``--warmup`` untimed steps then ``--steps`` timed ones, with ``profile=True``. At that size
the matching (2 P S D per layer and step, quadratic in the pixels) outweighs the network
passes (linear), which every rank runs whole.

Reported for each rank count (medians over the timed steps): seconds per step and per phase;
the matching's GFLOP per rank (its shard's products) and its rate per rank, beside the
single-thread float32 matrix-product rate measured by the same ranks before and after the run
(the better of the two; :func:`_common.matmul_rate`); the seconds the ranks spent waiting in
the collectives (inside the matching's time); the style banks' bytes each rank holds (the sum
over layers of the entries held times D times the item size: :attr:`ShardedBank.held`, the
whole :class:`PatchBank` on one rank) and each rank's peak RSS. The split's efficiency is the
matching's seconds at one rank over those at two (the goal: at least 1.8); the step's speed-up
is smaller, as the network passes are replicated. The worker counts winners, bytes and waiting
by wrapping (not changing) the library's calls: each bank's ``nearest``,
``distributed._allreduce_max``, ``distributed._allgatherv`` and ``distributed.wait``.

The machine may be shared: the load average is printed before each case, and ``--rounds``
repeats the cases in turn, keeping for each rank count its round of least matching time. A
full run at the default size takes about 5 minutes per round on a 2-core machine.

Per layer: P (synthesised patches), S, D, and what a step moves between the ranks: the MAX
allreduce of P uint64 keys (P x 8 bytes) and the allgatherv of the distinct winners' indices
(8 bytes each) and patches (D float32 each), counted from the run (the distinct winners of
every step) and, on two ranks, from the arrays that went through MPI; the upper bound of the
patches is P x D x 4 (every patch a distinct winner). The final images of the rank counts are
compared: the split must not change a bit.

``--model`` prints the model on paper of ``docs/scaling.md``: the cnnmrf preset at 2048 and
4096 pixels with 9 and 49 style copies, P, S and D per layer counted from the sizes (as the
library counts them: :func:`chainer_mrf.vgg.walk`, :func:`chainer_mrf.style_copies.copy_sizes`,
:func:`chainer_mrf.patches.grid_starts`), the matching's FLOPs, bank bytes and traffic per
step, the ranks that reach 1 s and 10 s per step at the rates this benchmark recorded (CPU
ranks of one core) and at an assumed GPU rate, the network time per step at 10 GbE and
100 Gb/s, and each rank's replicated floor (network passes, the style copies' features) and
peak memory (:func:`chainer_mrf.memory.estimate` with ``shards``).
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

import _common

import numpy

PRESET = 'cnnmrf'
MARKER = 'SCALING-RESULT '
THREAD_VARIABLES = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')
PHASES = ('vgg_forward', 'vgg_backward', 'matching', 'other')

# The model on paper.
MODEL_SIDES = (2048, 4096)
MODEL_COPIES = {9: 1, 49: 3}
"""Style copies and the R = S (rotations and scales each way) that give them: (2R + 1)^2."""
GPU_FLOPS = 50e12
"""An assumption, not a measurement (no GPU was lent): an H200 sustaining 50 TFLOP/s in float32
products and convolutions (its float32 peak is about 67 TFLOP/s, without tensor cores)."""
LINKS = (('10 GbE', 10e9 / 8), ('100 Gb/s InfiniBand', 100e9 / 8))
TARGETS = (1.0, 10.0)
RECORD_KEY = 'scaling/%s/cpu' % PRESET


# --- the worker: one rank of one case --------------------------------------------------------

class _Probe:
    """Counts what the matching does on this rank, step by step, by wrapping (never changing)
    the library's calls: each layer's queries and distinct winners, the bytes that went
    through the collectives and the seconds spent waiting in them."""

    def __init__(self):
        self.terms = []  # (layer, MRFTerm) of the last level built
        self.layer = None
        self.reset()

    def reset(self):
        self.queries = {}
        self.winners = {}
        self.reduced = {}
        self.gathered = {}
        self.wait_s = 0.0

    def snapshot(self):
        figures = dict(queries=self.queries, winners=self.winners, reduced=self.reduced,
                       gathered=self.gathered, wait_s=self.wait_s)
        self.reset()
        return figures

    def install(self):
        import chainer
        from chainer_mrf import distributed, mrf
        probe = self
        cpu = chainer.backend.CpuDevice()

        def add(table, amount):
            table[probe.layer] = table.get(probe.layer, 0) + amount

        def watch(layer, bank):
            nearest = bank.nearest

            def counted(queries, **options):
                probe.layer = layer
                index, scores, targets = nearest(queries, **options)
                add(probe.queries, len(queries))
                add(probe.winners, int(numpy.unique(cpu.send(index)).size))
                return index, scores, targets
            bank.nearest = counted  # NearestPatches calls the instance's attribute

        mrf_terms = mrf.mrf_terms

        def terms(vgg, styles, feature_shapes, config, **options):
            made = mrf_terms(vgg, styles, feature_shapes, config, **options)
            probe.terms = list(zip(config.style_layers, made))
            for layer, term in probe.terms:
                watch(layer, term.bank)
            return made
        mrf.mrf_terms = terms

        allreduce, allgatherv, wait = (distributed._allreduce_max, distributed._allgatherv,
                                       distributed.wait)

        def allreduce_counted(comm, keys):
            add(probe.reduced, keys.nbytes)
            return allreduce(comm, keys)

        def allgatherv_counted(comm, array, counts):
            joined = allgatherv(comm, array, counts)
            add(probe.gathered, joined.nbytes)
            return joined

        def wait_timed(request):
            start = time.perf_counter()
            try:
                return wait(request)
            finally:
                probe.wait_s += time.perf_counter() - start
        distributed._allreduce_max = allreduce_counted
        distributed._allgatherv = allgatherv_counted
        distributed.wait = wait_timed


def worker(spec):
    """One rank of one case: runs the synthesis and, on rank 0, prints every rank's figures as
    one JSON line after :data:`MARKER`."""
    import chainer_mrf
    from chainer_mrf import distributed
    spec = json.loads(spec)
    comm = distributed.create_communicator() if distributed.launched() else None
    mpi = None if comm is None else comm.mpi_comm
    rank = distributed.rank(comm)
    probe = _Probe()
    probe.install()

    def rate():
        if mpi is not None:
            mpi.Barrier()  # every rank's product at once: the cores as the run shares them
        return _common.matmul_rate()
    before = rate()
    steps = []

    def keep(step):
        figures = probe.snapshot()
        if step.level_iteration <= spec['warmup']:
            return
        figures.update(seconds=step.seconds, timings=step.timings, flops=step.flops)
        steps.append(figures)
        if rank == 0:
            print('  %d rank%s, step %d: %.2f s (matching %.2f s)' % (
                distributed.size(comm), 's' * (distributed.size(comm) > 1),
                step.level_iteration - spec['warmup'], sum(step.timings.values()),
                step.timings['matching']), flush=True)

    start = time.perf_counter()
    result = chainer_mrf.synthesize(
        spec['content'], spec['style'], preset=PRESET, max_size=spec['size'],
        resolution_num=1, iterations=spec['warmup'] + spec['steps'], seed=0, profile=True,
        callback=keep, comm=comm)
    seconds = time.perf_counter() - start
    after = rate()
    banks = {layer: dict(size=len(term.bank), held=term.bank.held, dim=term.bank.dim,
                         itemsize=numpy.dtype(term.bank.bank_dtype).itemsize,
                         patch_count=term.patch_count)
             for layer, term in probe.terms}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = dict(rank=rank, matmul=max(before, after), seconds=seconds, steps=steps,
                   peak_mib=peak,
                   banks=banks, shape=list(result.shape[:2]),
                   image=hashlib.sha256(result.tobytes()).hexdigest()[:16])
    everyone = [figures] if mpi is None else mpi.gather(figures)
    if rank == 0:
        print(MARKER + json.dumps(everyone), flush=True)


# --- the parent: launching the cases, the summary -------------------------------------------

def mpiexec():
    """The ``mpiexec`` beside this Python (the virtual environment's), else one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
    found = here if os.access(here, os.X_OK) else shutil.which('mpiexec')
    if found is None:
        raise SystemExit('no mpiexec beside %s or on PATH: pip install "chainer-mrf[mpi]" '
                         '(make test installs it into .venv)' % sys.executable)
    return found


def launch(ranks, spec, bind, threads=1):
    """Runs one case under ``mpiexec -n ranks``, ``threads`` threads per rank, echoing rank
    0's progress; returns every rank's figures."""
    env = dict(os.environ, **{name: str(threads) for name in THREAD_VARIABLES})
    binding = ['-bind-to', 'core:%d' % threads] if bind else []
    command = [mpiexec(), '-n', str(ranks)] + binding + [
        sys.executable, os.path.abspath(__file__), '--worker', json.dumps(spec)]
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    result = None
    for line in child.stdout:
        if line.startswith(MARKER):
            result = json.loads(line[len(MARKER):])
        else:
            print(line, end='', flush=True)
    if child.wait() or result is None:
        raise SystemExit('%d rank(s): mpiexec ended with code %d' % (ranks, child.returncode))
    return result


def _median(values):
    return statistics.median(values)


def summarise(ranks, everyone):
    """The figures of one case: rank 0's step, the per-rank matching and banks, the traffic."""
    first = everyone[0]
    steps = first['steps']
    summary = dict(ranks=ranks, steps=len(steps), shape=first['shape'], image=first['image'],
                   seconds=round(first['seconds'], 1))
    summary['step_s'] = _median([sum(s['timings'].values()) for s in steps])
    for phase in PHASES:
        summary[phase + '_s'] = _median([s['timings'][phase] for s in steps])
    summary['vgg_s'] = summary['vgg_forward_s'] + summary['vgg_backward_s']
    summary['vgg_gflop'] = (steps[0]['flops']['vgg_forward']
                            + steps[0]['flops']['vgg_backward']) / 1e9
    per_rank = []
    for figures in everyone:
        matching = _median([s['timings']['matching'] for s in figures['steps']])
        wait = _median([s['wait_s'] for s in figures['steps']])
        gflop = figures['steps'][0]['flops']['matching'] / 1e9
        per_rank.append(dict(
            rank=figures['rank'], peak_mib=figures['peak_mib'], matching_s=matching,
            wait_s=wait, matching_gflop=gflop,
            gflops=gflop / matching, compute_gflops=gflop / max(matching - wait, 1e-9),
            matmul_gflops=figures['matmul'] / 1e9,
            bank_bytes=sum(b['held'] * b['dim'] * b['itemsize']
                           for b in figures['banks'].values())))
    summary['per_rank'] = per_rank
    summary['matching_gflops_per_rank'] = _median([r['gflops'] for r in per_rank])
    summary['matmul_gflops'] = min(r['matmul_gflops'] for r in per_rank)
    summary['wait_s'] = max(r['wait_s'] for r in per_rank)
    summary['bank_mib_per_rank'] = max(r['bank_bytes'] for r in per_rank) / 2 ** 20
    summary['peak_mib_per_rank'] = max(r['peak_mib'] for r in per_rank)
    layers = {}
    for layer, bank in first['banks'].items():
        winners = _median([s['winners'][layer] for s in steps])
        queries = steps[0]['queries'][layer]
        layer_figures = dict(P=queries, S=bank['size'], D=bank['dim'],
                             held=[f['banks'][layer]['held'] for f in everyone],
                             winners=winners, keys_bytes=8 * queries,
                             patches_bytes=4 * bank['dim'] * winners,
                             indices_bytes=8 * winners,
                             patches_bound_bytes=4 * bank['dim'] * queries)
        if ranks > 1:  # what went through MPI, counted from the arrays
            layer_figures['reduced_bytes'] = _median([s['reduced'][layer] for s in steps])
            layer_figures['gathered_bytes'] = _median([s['gathered'][layer] for s in steps])
        layers[layer] = layer_figures
    summary['layers'] = layers
    return summary


def report(cases, size, name, threads=1):
    one = cases.get(1)
    rate = one['matmul_gflops'] if one else min(c['matmul_gflops'] for c in cases.values())
    shape = next(iter(cases.values()))['shape']
    print('\n%s on %s at %d px (%dx%d, W x H), finest level only, %d timed steps; %d thread%s '
          'per rank; matmul on %d thread%s %.1f GFLOP/s (one rank alone)' % (
              PRESET, name, size, shape[1], shape[0], next(iter(cases.values()))['steps'],
              threads, 's' * (threads > 1), threads, 's' * (threads > 1), rate))
    print('%5s %8s %9s %8s %7s %8s %10s %11s %8s %10s %9s %9s' % (
        'ranks', 'step s', 'matching', 'VGG s', 'other', 'waiting', 'GFLOP/rank', 'GFLOP/s/rank',
        'matmul', 'efficiency', 'bank MiB', 'peak MiB'))
    for ranks, case in sorted(cases.items()):
        gflop = max(r['matching_gflop'] for r in case['per_rank'])
        print('%5d %8.2f %9.2f %8.2f %7.2f %8.3f %10.1f %11.1f %8.1f %9.0f %% %9.1f %9.0f' % (
            ranks, case['step_s'], case['matching_s'], case['vgg_s'], case['other_s'],
            case['wait_s'], gflop, case['matching_gflops_per_rank'], case['matmul_gflops'],
            100 * case['matching_gflops_per_rank'] / rate, case['bank_mib_per_rank'],
            case['peak_mib_per_rank']))
    figures = {'size': '%dx%d' % (shape[1], shape[0]), 'matmul_1thread_gflops': round(rate, 1)}
    for ranks, case in sorted(cases.items()):
        for field in ('step_s', 'matching_s', 'vgg_s', 'other_s', 'wait_s',
                      'matching_gflops_per_rank', 'bank_mib_per_rank', 'peak_mib_per_rank'):
            figures['ranks%d_%s' % (ranks, field)] = round(case[field], 4)
        figures['ranks%d_vgg_gflop' % ranks] = round(case['vgg_gflop'], 2)
        figures['ranks%d_matmul_gflops' % ranks] = round(case['matmul_gflops'], 1)
    if 1 in cases:
        base = cases[1]
        for ranks, case in sorted(cases.items()):
            if ranks == 1:
                continue
            matching = base['matching_s'] / case['matching_s']
            step = base['step_s'] / case['step_s']
            print('%d ranks: the matching %.2fx faster (goal >= %.1fx: %s), the step %.2fx '
                  '(the network passes, %.2f s of %.2f, are replicated); images %s' % (
                      ranks, matching, 0.9 * ranks, 'met' if matching >= 0.9 * ranks else
                      'missed', step, case['vgg_s'], case['step_s'],
                      'identical' if case['image'] == base['image'] else
                      'DIFFERENT (%s vs %s)' % (case['image'], base['image'])))
            figures['ranks%d_matching_speedup' % ranks] = round(matching, 3)
            figures['ranks%d_step_speedup' % ranks] = round(step, 3)
            figures['ranks%d_identical' % ranks] = case['image'] == base['image']
    print('\nper layer and step (winners: distinct best matches, median over the steps):')
    print('%-8s %7s %8s %6s %8s %10s %12s %12s %14s' % (
        'layer', 'P', 'S', 'D', 'winners', 'keys B', 'indices B', 'patches B',
        'bound P*D*4 B'))
    case = cases[max(cases)]
    for layer, row in case['layers'].items():
        print('%-8s %7d %8d %6d %8d %10d %12d %12d %14d' % (
            layer, row['P'], row['S'], row['D'], row['winners'], row['keys_bytes'],
            row['indices_bytes'], row['patches_bytes'], row['patches_bound_bytes']))
        if 'gathered_bytes' in row:
            print('%-8s through MPI on %d ranks: %d B reduced, %d B gathered (indices and '
                  'patches); shards %s' % ('', case['ranks'], row['reduced_bytes'],
                                           row['gathered_bytes'], row['held']))
        figures['%s_P' % layer] = row['P']
        figures['%s_S' % layer] = row['S']
        figures['%s_D' % layer] = row['D']
        figures['%s_winners' % layer] = row['winners']
    return figures


def measure(args):
    content, style, name = _common.example_pair()
    spec = dict(content=content, style=style, size=args.size, steps=args.steps,
                warmup=args.warmup)
    print('machine:', _common.machine())
    print('load average before: %.2f %.2f %.2f' % os.getloadavg())
    cases = {}
    for round_ in range(args.rounds):
        for ranks in args.ranks:
            print('%d rank%s (round %d of %d; load average %.2f): %s -n %d, %d + %d steps at '
                  '%d px' % (ranks, 's' * (ranks > 1), round_ + 1, args.rounds,
                             os.getloadavg()[0], mpiexec(), ranks, args.warmup, args.steps,
                             args.size), flush=True)
            case = summarise(ranks, launch(ranks, spec, not args.no_bind, args.threads))
            print('  median step %.2f s, matching %.2f s' % (case['step_s'],
                                                             case['matching_s']), flush=True)
            # Rounds alternate the rank counts; each keeps its round of least matching time,
            # the one least disturbed by other work on the machine.
            if ranks not in cases or case['matching_s'] < cases[ranks]['matching_s']:
                cases[ranks] = case
    print('load average after: %.2f %.2f %.2f' % os.getloadavg())
    figures = report(cases, args.size, name, args.threads)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(dict(machine=_common.machine(), pair=name, size=args.size,
                           date=datetime.date.today().isoformat(),
                           cases={str(k): v for k, v in cases.items()},
                           figures=dict(figures, machine=_common.machine(),
                                        date=datetime.date.today().isoformat())),
                      f, indent=1, sort_keys=True)
        print('wrote', args.json)
    return figures


# --- the model on paper ----------------------------------------------------------------------

def _grid(n, k, stride):
    from chainer_mrf import patches
    return len(patches.grid_starts(n, k, stride)) if n >= k else 0


def layer_counts(config, shape, style_shapes):
    """``{layer: (P, S, D)}`` at the finest level of a synthesis of ``shape`` (H, W) with
    styles of ``style_shapes``, counted from the sizes as the library builds its banks."""
    from chainer_mrf import style_copies, vgg
    arch, _ = vgg.weights_for(config.arch, config.model)
    k = config.patch_size

    def maps(hw):
        return {name: (c, h, w) for name, _, c, h, w in vgg.walk(arch, hw, config.style_layers)
                if name in config.style_layers}
    counts = {layer: [0, 0, 0] for layer in config.style_layers}
    for layer, (c, h, w) in maps(shape).items():
        counts[layer][0] = _grid(h, k, config.synthesis_stride) * _grid(
            w, k, config.synthesis_stride)
        counts[layer][2] = c * k * k
    for height, width in style_shapes:
        for *_, (cw, ch) in style_copies.copy_sizes(width, height, config.num_rotation,
                                                   config.num_scale, config.rotation_step,
                                                   config.scale_step):
            for layer, (_, h, w) in maps((ch, cw)).items():
                counts[layer][1] += _grid(h, k, config.sample_stride) * _grid(
                    w, k, config.sample_stride)
    return {layer: tuple(v) for layer, v in counts.items()}


def conv_flops(arch, shape, layers):
    """The convolutions' FLOPs of one forward pass to ``layers`` (as ``VGG.flops``)."""
    from chainer_mrf import vgg
    return sum(2 * 9 * cin * cout * h * w
               for name, cin, cout, h, w in vgg.walk(arch, shape, layers)
               if name.startswith('conv'))


def _ranks_for(target, floor, work, rate):
    """Ranks for ``target`` s per step: floor + work / (N rate) <= target; None if never."""
    if floor >= target:
        return None
    return max(1, math.ceil(work / (rate * (target - floor))))


def _bytes(n):
    for unit, scale in (('TiB', 2 ** 40), ('GiB', 2 ** 30), ('MiB', 2 ** 20), ('KiB', 2 ** 10)):
        if n >= scale:
            return '%.1f %s' % (n / scale, unit)
    return '%d B' % n


def _seconds(s):
    if s >= 3600:
        return '%.1f h' % (s / 3600)
    if s >= 60:
        return '%.0f min' % (s / 60)
    return '%.2g s' % s if s < 10 else '%.0f s' % s


def model(recorded):
    """Prints the model of docs/scaling.md from the recorded per-rank rates; returns its rows."""
    from chainer_mrf import inputs, matching, memory, presets, style_copies, vgg
    content, style, name = _common.example_pair()
    match_rate = recorded['ranks2_matching_gflops_per_rank'] * 1e9
    vgg_rate = recorded['ranks2_vgg_gflop'] / recorded['ranks2_vgg_s'] * 1e9
    width, height = (int(v) for v in recorded['size'].split('x'))
    other_per_pixel = recorded['ranks2_other_s'] / (width * height)
    layers = presets.get_preset(PRESET).style_layers
    share = {layer: recorded['%s_winners' % layer] / recorded['%s_P' % layer]
             for layer in layers if '%s_winners' % layer in recorded}
    print('The model of %s on %s. Measured (%s; %s; %s px; 2 ranks of one thread): the '
          'matching %.1f GFLOP/s per rank, the network passes %.1f GFLOP/s, the rest of a step '
          '%.3g s per megapixel; winners / P: %s. GPU: %.0f TFLOP/s for products and '
          'convolutions alike, assumed (an H200 in float32; not measured), the rest of a step '
          'left out.\n' % (
              PRESET, name, recorded['date'], recorded['machine'].split(',')[0],
              recorded['size'], match_rate / 1e9, vgg_rate / 1e9, other_per_pixel * 1e6,
              ', '.join('%s %.2f' % item for item in share.items()), GPU_FLOPS / 1e12))
    loaded = inputs.load_inputs(content, style, preset=presets.get_preset(PRESET))
    rows = []
    for side in MODEL_SIDES:
        for copies, r in MODEL_COPIES.items():
            config = presets.get_preset(PRESET).replace(max_size=side, num_rotation=r,
                                                        num_scale=r)
            arch, _ = vgg.weights_for(config.arch, config.model)
            shape, style_shapes = inputs.synthesis_shapes(loaded, config)
            counts = layer_counts(config, shape, style_shapes)
            row = dict(side=side, copies=copies, shape=shape, counts=counts,
                       label='%d×%d' % (shape[1], shape[0]))
            row['flops'] = sum(2 * p * s * d for p, s, d in counts.values())
            row['bank'] = sum(4 * s * d for p, s, d in counts.values())
            # What a rank receives per step: the keys' reduction (about twice the keys in a
            # ring or tree), and every winner's index and patch (at most P of them).
            row['keys'] = sum(8 * p for p, s, d in counts.values())
            row['bound'] = sum((4 * d + 8) * p for p, s, d in counts.values())
            row['expected'] = sum(share.get(layer, 1.0) * (4 * d + 8) * p
                                  for layer, (p, s, d) in counts.items())
            row['network'] = 2 * conv_flops(arch, shape,
                                            config.content_layers + config.style_layers)
            row['copies_flops'] = sum(
                conv_flops(arch, (ch, cw), config.style_layers)
                for h, w in style_shapes
                for *_, (cw, ch) in style_copies.copy_sizes(w, h, r, r, config.rotation_step,
                                                           config.scale_step))
            row['cpu_floor'] = (row['network'] / vgg_rate
                                + other_per_pixel * shape[0] * shape[1])
            row['gpu_floor'] = row['network'] / GPU_FLOPS
            for target in TARGETS:
                row['cpu_%g' % target] = _ranks_for(target, row['cpu_floor'], row['flops'],
                                                    match_rate)
                row['gpu_%g' % target] = _ranks_for(target, row['gpu_floor'], row['flops'],
                                                    GPU_FLOPS)
                for link, bandwidth in LINKS:
                    moved = (2 * row['keys'] + row['bound']) / bandwidth
                    row['gpu_%g_%s' % (target, link)] = _ranks_for(
                        target, row['gpu_floor'] + moved, row['flops'], GPU_FLOPS)
            # Beyond the chunks of the largest bank, another rank holds nothing.
            chunks = max(-(-s // matching.chunk_size_for(p, d, config.memory_budget,
                                                         config.bank_dtype, s))
                         for p, s, d in counts.values())
            row['memory'] = {}
            for n in sorted({1, row['gpu_10'] or 1, row['gpu_1'] or 1, chunks}):
                estimate = memory.estimate(config, shape, style_shapes, shards=n, gpu=True)
                row['memory'][n] = estimate
            row['chunks'] = chunks
            rows.append(row)

    def count(n):
        return 'never' if n is None else '{:,}'.format(n)

    print('Counts at the finest level (P synthesised patches, S style patches, D values each):')
    print('\n| output | copies | layer | P | S | D |\n|---|---|---|---|---|---|')
    for row in rows:
        for layer, (p, s, d) in row['counts'].items():
            print('| %s | %d | %s | %s | %s | %d |' % (
                row['label'], row['copies'], layer, '{:,}'.format(p), '{:,}'.format(s), d))
    print('\nWork and traffic per step: the matching (2 P S D over the layers, split over the '
          'ranks); the banks (S D x 4 bytes, split); what each rank receives (the keys\' '
          'reduction, P x 8 bytes per layer, about twice; the winners\' indices and patches, '
          'at most P (4 D + 8) bytes, and at the measured winners / P); the network passes '
          'of every rank (forward and backward) and, once per level, its passes over the style '
          'copies:')
    print('\n| output | copies | matching | banks | keys | winners: bound (expected) | '
          'network passes | style copies\' passes |\n|---|---|---|---|---|---|---|---|')
    for row in rows:
        print('| %s | %d | %.0f TFLOP | %s | %s | %s (%s) | %.2f TFLOP | %.0f TFLOP |' % (
            row['label'], row['copies'], row['flops'] / 1e12, _bytes(row['bank']),
            _bytes(row['keys']), _bytes(row['bound']), _bytes(row['expected']),
            row['network'] / 1e12, row['copies_flops'] / 1e12))
    print('\nCPU ranks of one core at the measured rates: the floor of every rank (its network '
          'passes and the rest of the step), the nodes of two such ranks (this machine) that '
          'reach 10 s and 1 s per step ("never": the floor alone is longer), the matching\'s '
          'core-seconds per step, the rate a rank\'s network passes need for a floor of half '
          'the target, and the style copies\' passes of every rank at each level:')
    print('\n| output | copies | floor per rank | nodes for 10 s / 1 s | matching, core-seconds '
          '| network passes\' rate for a 5 s / 0.5 s floor | style copies\' passes |'
          '\n|---|---|---|---|---|---|---|')
    for row in rows:
        nodes = [None if n is None else -(-n // 2) for n in (row['cpu_10'], row['cpu_1'])]
        print('| %s | %d | %s | %s / %s | %s | %.2g / %.2g TFLOP/s | %s |' % (
            row['label'], row['copies'], _seconds(row['cpu_floor']), count(nodes[0]),
            count(nodes[1]), '{:,.0f}'.format(row['flops'] / match_rate),
            row['network'] / 5 / 1e12, row['network'] / 0.5 / 1e12,
            _seconds(row['copies_flops'] / vgg_rate)))
    print('\nGPUs at the assumed rate: the floor of every GPU, the GPUs that reach 10 s and 1 s '
          'per step with the traffic left out, then for 1 s with the bound of the traffic over '
          'each link; the traffic\'s seconds per step, bound (expected); the style copies\' '
          'passes of every GPU at each level:')
    print('\n| output | copies | floor | GPUs, 10 s | GPUs, 1 s | 1 s over 100 Gb/s | 1 s over '
          '10 GbE | traffic, 100 Gb/s | traffic, 10 GbE | style copies\' passes |'
          '\n|---|---|---|---|---|---|---|---|---|---|')
    for row in rows:
        links = {link: '%s (%s)' % (_seconds((2 * row['keys'] + row['bound']) / bandwidth),
                                    _seconds((2 * row['keys'] + row['expected']) / bandwidth))
                 for link, bandwidth in LINKS}
        print('| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |' % (
            row['label'], row['copies'], _seconds(row['gpu_floor']), count(row['gpu_10']),
            count(row['gpu_1']), count(row['gpu_1_100 Gb/s InfiniBand']),
            count(row['gpu_1_10 GbE']), links['100 Gb/s InfiniBand'], links['10 GbE'],
            _seconds(row['copies_flops'] / GPU_FLOPS)))
    names = {'style_features': "the style copies' features", 'activations': 'activations',
             'style_banks': 'its banks', 'optimizer': 'optimiser', 'patches': 'patches',
             'working': 'working arrays'}
    print('\nPeak memory of a GPU rank (chainer_mrf.memory.estimate(..., shards=N, gpu=True), '
          'the preset\'s three levels) at one rank, at the GPU counts for 10 s and 1 s above, '
          'and at one rank per chunk of the largest bank (beyond, a rank holds no more than '
          'its replicated parts: the floor); the largest part beside each:')
    print('\n| output | copies | 1 rank | GPUs for 10 s | GPUs for 1 s | the floor |'
          '\n|---|---|---|---|---|---|')
    for row in rows:
        def cell(n):
            if n is None:
                return '–'
            estimate = row['memory'][n]
            part = max((name for name in estimate.parts if name != 'allocator'),
                       key=estimate.parts.get)
            return '%s: %s (%s %s)' % ('{:,}'.format(n), _bytes(estimate.total),
                                       names.get(part, part), _bytes(estimate.parts[part]))
        print('| %s | %d | %s | %s | %s | %s |' % (
            row['label'], row['copies'], cell(1), cell(row['gpu_10']), cell(row['gpu_1']),
            cell(row['chunks'])))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=640,
                        help='longer side in pixels (default 640)')
    parser.add_argument('--steps', type=int, default=4, help='timed steps (default 4)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed first steps (default 1)')
    parser.add_argument('--ranks', type=int, action='append',
                        help='a rank count to run (repeatable; default: 1 and 2)')
    parser.add_argument('--rounds', type=int, default=1,
                        help='run the rank counts this many times in turn and keep, for each, '
                        'the round of least matching time (default 1)')
    parser.add_argument('--threads', type=int, default=1,
                        help='threads per rank (default 1; the matrix-product rate is then '
                        'measured on as many)')
    parser.add_argument('--no-bind', action='store_true',
                        help='do not bind each rank to a core (mpiexec -bind-to core)')
    parser.add_argument('--json', help='also write the figures to this JSON file')
    parser.add_argument('--record', action='store_true',
                        help='write the figures into docs/performance.md')
    parser.add_argument('--model', action='store_true',
                        help='print the model on paper from the recorded figures, run nothing')
    parser.add_argument('--rates', metavar='JSON',
                        help='with --model: the rates of a run written by --json instead of '
                        'the recorded ones')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if args.model:
        if args.rates:
            with open(args.rates, encoding='utf-8') as f:
                recorded = json.load(f)['figures']
        else:
            recorded = _common._read_block()[2].get(RECORD_KEY)
        if recorded is None:
            raise SystemExit('nothing recorded under %r: run with --record first' % RECORD_KEY)
        model(recorded)
        return 0
    args.ranks = sorted(set(args.ranks or (1, 2)))
    if args.steps < 1 or args.warmup < 0 or min(args.ranks) < 1 or args.rounds < 1:
        parser.error('--steps, --ranks and --rounds must be >= 1 and --warmup >= 0')
    figures = measure(args)
    recorded = _common._read_block()[2].get(RECORD_KEY, {})
    comparable = args.threads == 1 and recorded.get('size', figures['size']) == figures['size']
    if comparable:
        _common.compare(RECORD_KEY, figures)
    if args.record:
        if set(args.ranks) != {1, 2} or args.threads != 1:
            raise SystemExit('--record keeps the figures of 1 and 2 ranks of one thread: run '
                             'those')
        _common.record(RECORD_KEY, figures)
    return 0


if __name__ == '__main__':
    sys.exit(main())
