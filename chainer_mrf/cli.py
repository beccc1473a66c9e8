"""``scripts/generate.py``: the command line of dsanno's ``run_mrf.py``, defaults from the presets.

The parser is built from :class:`chainer_mrf.presets.Preset`, so a default shown by ``--help`` is
the library's. This module only assembles library objects, prints and writes files.
"""
import argparse
import json
import os
import sys

from chainer_mrf import image, presets
from chainer_mrf.synthesis import synthesize

#: (flags, preset field, type, help). Flags and short options are dsanno's.
_OPTIONS = [
    (('-t', '--type'), 'arch', str, 'network: vgg16 or vgg19'),
    (('-m', '--model'), 'model', str, 'weights file (.npz); default models/<type>.npz'),
    (('--iter',), 'iterations', int, 'iterations per resolution'),
    (('--save_iter',), 'save_iter', int, 'save an image every this many iterations'),
    (('--lr',), 'lr', float, 'L-BFGS step (or Adam alpha)'),
    (('--optimizer',), 'optimizer', str, 'lbfgs or adam'),
    (('--content_weight',), 'content_weight', float, 'content term weight'),
    (('--style_weight',), 'style_weight', float, 'MRF term weight (per layer)'),
    (('--tv_weight',), 'tv_weight', float, 'regulariser weight'),
    (('-w', '--width'), 'width', int, 'width of the content and style images'),
    (('--content_layers',), 'content_layers', str, 'content layers, e.g. 4_2 or relu4_2'),
    (('--style_layers',), 'style_layers', str, 'MRF layers, comma-separated, e.g. 3_2,4_2'),
    (('--initial_image',), 'initial_image', str, 'content or random'),
    (('--resolution_num',), 'resolution_num', int, 'number of resolutions, 1 to 3'),
    (('--seed',), 'seed', int, 'seed of the random initial image'),
]


def _parser(preset):
    parser = argparse.ArgumentParser(
        prog='generate.py',
        description='CNNMRF style transfer (Li & Wand 2016) with chainer-mrf.')
    parser.add_argument('-c', '--content', required=True, help='content image')
    parser.add_argument('-s', '--style', required=True, help='style image')
    parser.add_argument('-o', '--out_dir', default='output', help='output folder (default: '
                                                                  'output)')
    parser.add_argument('-g', '--gpu', type=int, default=-1,
                        help='GPU id; negative for the CPU (default: -1)')
    parser.add_argument('--preset', default=preset.name, choices=sorted(presets.PRESETS),
                        help='whose defaults to use (default: %(default)s)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite the images and trace of an earlier run in out_dir')
    for flags, field, kind, text in _OPTIONS:
        default = getattr(preset, field)
        if isinstance(default, tuple):
            default = ','.join(presets.short_name(name) for name in default)
        parser.add_argument(*flags, dest=field, type=kind, default=default,
                            help='%s (default: %s)' % (text, default))
    return parser


def _outputs(out_dir, force):
    """Creates ``out_dir``; refuses to overwrite an earlier run's files without ``force``."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError('output path %s exists and is not a folder' % out_dir)
    os.makedirs(out_dir, exist_ok=True)
    earlier = sorted(f for f in os.listdir(out_dir)
                     if f == 'trace.jsonl' or (f.startswith('out') and f.endswith('.png')))
    if earlier and not force:
        raise ValueError('%s already holds %s (use --force to overwrite)'
                         % (out_dir, ', '.join(earlier[:3]) + (' ...' if len(earlier) > 3 else '')))


class _Reporter:
    """Turns each :class:`~chainer_mrf.synthesis.Step` into a progress line, saves and a trace."""

    def __init__(self, out_dir, save_iter, trace):
        self.out_dir = out_dir
        self.save_iter = save_iter
        self.trace = trace
        self.last = None

    def __call__(self, step):
        self.last = step
        terms = '  '.join('%s %.4g' % item for item in step.losses.items())
        print('level %d/%d  iter %d (%d)  %s  %.2f s/iter' % (
            step.level + 1, step.levels, step.iteration, step.level_iteration, terms,
            step.seconds), flush=True)
        record = {'level': step.level, 'iteration': step.iteration,
                  'level_iteration': step.level_iteration, 'seconds': step.seconds}
        record.update(step.losses)
        self.trace.write(json.dumps(record) + '\n')
        self.trace.flush()
        if step.iteration % self.save_iter == 0:
            self.save('out_%04d.png' % step.iteration)
            # dsanno's report at each save
            print('epoch %d done' % step.iteration)
            print('losses:')
            width = max(len(name) for name in step.losses)
            for name, value in step.losses.items():
                print('  {0:{width}s}: {1:f}'.format(name, value, width=width))

    def save(self, name):
        image.save_image(os.path.join(self.out_dir, name), self.last.image())


def main(argv=None):
    """Runs ``generate.py``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument('--preset', default='dsanno')
    known, _ = first.parse_known_args(argv)
    args = _parser(presets.get_preset(known.preset)).parse_args(argv)
    options = {field: getattr(args, field) for _, field, _, _ in _OPTIONS}
    config = presets.get_preset(args.preset).replace(**options)  # checks every value first
    # Loaded here so that a missing or unreadable image fails before anything is written.
    content, style = image.load_image(args.content), image.load_image(args.style)
    _outputs(args.out_dir, args.force)
    with open(os.path.join(args.out_dir, 'trace.jsonl'), 'w') as trace:
        reporter = _Reporter(args.out_dir, config.save_iter, trace)
        try:
            result = synthesize(content, style, preset=config, device=args.gpu,
                                callback=reporter)
        except KeyboardInterrupt:
            if reporter.last is not None:
                reporter.save('out.png')
                print('interrupted at iteration %d; saved %s' % (
                    reporter.last.iteration, os.path.join(args.out_dir, 'out.png')),
                      file=sys.stderr)
            raise
    image.save_image(os.path.join(args.out_dir, 'out.png'), result)
    print('saved %s' % os.path.join(args.out_dir, 'out.png'))
    return 0
