"""``scripts/generate.py``: the command line of dsanno's ``run_mrf.py``, defaults from the presets.

The parser is built from :class:`chainer_mrf.presets.Preset`, so a default shown by ``--help`` is
the library's. This module only assembles library objects, prints and writes files.
"""
import argparse
import json
import os
import sys

from chainer_mrf import _cli, image, presets
from chainer_mrf.inputs import load_inputs
from chainer_mrf.synthesis import synthesize
from chainer_mrf.vgg import weights_for


def _numbers(kind):
    """Parses one number or a comma-separated list (one value per level or layer)."""
    def parse(text):
        values = tuple(kind(v) for v in text.split(','))
        return values[0] if len(values) == 1 else values
    parse.__name__ = kind.__name__ + ' list'
    return parse


def _size(text):
    width, sep, height = text.lower().partition('x')
    if not sep:
        raise ValueError('size must be WIDTHxHEIGHT, e.g. 384x256')
    return int(width), int(height)


def _optional_float(text):
    return None if text.lower() == 'none' else float(text)


def _shown(value):
    if isinstance(value, tuple):
        return ','.join(presets.short_name(v) if isinstance(v, str) else str(v) for v in value)
    return 'none' if value is None else value


#: (flags, preset field, type, help). dsanno's flags first, then the authors' names.
_OPTIONS = [
    (('-t', '--type'), 'arch', str, 'network (auto: VGG19 where converted, else VGG16)'),
    (('-m', '--model'), 'model', str, 'weights file (.npz); default models/<type>.npz'),
    (('--iter', '--num_iter'), 'iterations', _numbers(int),
     'iterations per resolution: one value, or one per level'),
    (('--save_iter',), 'save_iter', int, 'save an image every this many iterations'),
    (('--lr',), 'lr', float, 'L-BFGS step (or Adam alpha)'),
    (('--optimizer',), 'optimizer', str, 'optimiser of the image'),
    (('--content_weight',), 'content_weight', float, 'content term weight'),
    (('--style_weight', '--mrf_weight'), 'style_weight', _numbers(float),
     'MRF term weight: one value, or one per layer'),
    (('--tv_weight',), 'tv_weight', float, 'regulariser weight'),
    (('-w', '--width'), 'width', int, 'image width (width size rule)'),
    (('--max_size',), 'max_size', int, 'longer side (max_size size rule)'),
    (('--size',), 'size', _size, 'texture synthesis: output WIDTHxHEIGHT'),
    (('--content_layers',), 'content_layers', str, 'content layers, e.g. 4_2 or relu4_2'),
    (('--style_layers', '--mrf_layers'), 'style_layers', str,
     'MRF layers, comma-separated, e.g. 3_2,4_2'),
    (('--patch_size',), 'patch_size', int, 'MRF patch side'),
    (('--num_rotation',), 'num_rotation', int, 'style copies rotated by -R..R steps'),
    (('--num_scale',), 'num_scale', int, 'style copies scaled by -S..S steps'),
    (('--sample_stride',), 'sample_stride', int, 'grid step of the style patches'),
    (('--synthesis_stride',), 'synthesis_stride', int, 'grid step of the synthesised patches'),
    (('--confidence_threshold',), 'confidence_threshold', _optional_float,
     'drop patches whose best cosine is below this (none: keep all)'),
    (('--initial_image',), 'initial_image', str,
     "content, random, map (the content map painted in the style's colours) or an image path"),
    (('--resolution_num', '--num_res'), 'resolution_num', int, 'number of resolutions, 1 to 3'),
    (('--memory_budget',), 'memory_budget', int, 'bytes for the matching scores at once'),
    (('--bank_dtype',), 'bank_dtype', str, 'storage of the style patches'),
    (('--seed',), 'seed', int, 'seed of the random initial image'),
    (('--keep_color',), 'keep_color', bool,
     "keep the content's colours: the MRF term sees luminance only"),
    (('--luminance_only',), 'luminance_only', bool,
     "synthesise the luminance; the output takes the content's chroma"),
    (('--match_color_histogram',), 'match_color_histogram', bool,
     "map the style's colour mean and covariance to the content's first"),
    (('--semantic_weight',), 'semantic_weight', float,
     'scale of the semantic maps in the matching'),
    (('--style_image_weights',), 'style_image_weights', _numbers(float),
     "factors on each style image's matching scores, one per -s (none: all 1)"),
]


def _parser(preset, prog):
    parser = _cli.ArgumentParser(
        prog=prog,
        description='CNNMRF style transfer and texture synthesis (Li & Wand 2016) with '
                    'chainer-mrf. Without --content it synthesises a texture.')
    parser.add_argument('-c', '--content', help='content image (omit for texture synthesis)')
    parser.add_argument('-s', '--style', required=True, action='append',
                        help='style image; repeat it for several (their patches pool)')
    parser.add_argument('--content_map', help='semantic map of the content image (its size); '
                                              'without -c, the doodle to paint')
    parser.add_argument('--style_map', action='append',
                        help='semantic map of the style image (its size); one per -s, in order')
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
        # A switch comes with its --no- form, so that a preset's True can be turned off.
        how = (dict(action=argparse.BooleanOptionalAction) if kind is bool
               else dict(type=kind))
        if field in presets.CHOICES:
            how['choices'] = presets.CHOICES[field]
        parser.add_argument(*flags, dest=field, default=default,
                            help='%s (default: %s)' % (text, _shown(default)), **how)
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
    """Turns each :class:`~chainer_mrf.synthesis.Step` into a progress line, saves and a trace.

    The trace is opened at the first step, so a run that fails before it (a bad layer, an image
    too small) leaves an earlier run's files as they were.
    """

    def __init__(self, out_dir, save_iter):
        self.out_dir = out_dir
        self.save_iter = save_iter
        self.trace = None
        self.last = None

    def close(self):
        if self.trace is not None:
            self.trace.close()

    def __call__(self, step):
        self.last = step
        if self.trace is None:
            self.trace = open(os.path.join(self.out_dir, 'trace.jsonl'), 'w')
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


def main(argv=None, prog='generate.py'):
    """Runs ``generate.py`` (or ``chainer-mrf``, named ``prog`` in messages); returns the exit
    code."""
    argv = sys.argv[1:] if argv is None else argv
    first = _cli.ArgumentParser(add_help=False)
    first.add_argument('--preset', default='dsanno')
    known, _ = first.parse_known_args(argv)
    args = _parser(presets.get_preset(known.preset), prog).parse_args(argv)
    options = {field: getattr(args, field) for _, field, _, _ in _OPTIONS}
    config = presets.get_preset(args.preset).replace(**options)  # checks every value first
    # Loaded and checked here, so that a missing, unreadable or ill-fitting image or map fails
    # before anything is written.
    inputs = load_inputs(args.content, args.style, content_map=args.content_map,
                         style_map=args.style_map, preset=config)
    arch, path = weights_for(config.arch, config.model)
    _outputs(args.out_dir, args.force)
    if inputs.content is not None:
        kind = 'style transfer'
    else:
        kind = 'texture synthesis' if inputs.content_map is None else 'neural doodle'
    print('%s with the %s preset; network %s (%s)' % (kind, config.name, arch.upper(), path),
          flush=True)
    reporter = _Reporter(args.out_dir, config.save_iter)
    try:
        result = synthesize(inputs=inputs, preset=config, device=args.gpu, callback=reporter)
    except KeyboardInterrupt:
        if reporter.last is not None:
            reporter.save('out.png')
            print('interrupted at iteration %d; saved %s' % (
                reporter.last.iteration, os.path.join(args.out_dir, 'out.png')),
                  file=sys.stderr)
        raise
    finally:
        reporter.close()
    image.save_image(os.path.join(args.out_dir, 'out.png'), result)
    print('saved %s' % os.path.join(args.out_dir, 'out.png'))
    return 0


def console():
    """The ``chainer-mrf`` command (and ``python -m chainer_mrf``): :func:`main` with user
    mistakes as one ``error:`` line and exit code 2."""
    sys.exit(_cli.run(lambda argv: main(argv, prog='chainer-mrf')))


def reference():
    """The options of ``generate.py`` as a Markdown table, with each preset's default.

    ``docs/usage.md`` holds this table (a test checks that it is current); regenerate it with
    ``python -m chainer_mrf.cli``.
    """
    names = sorted(presets.PRESETS)
    rows = ['| option | field | %s | meaning |' % ' | '.join(names),
            '|---|---|%s---|' % ('---|' * len(names))]
    for flags, field, _, text in _OPTIONS:
        defaults = ' | '.join('`%s`' % (_shown(getattr(presets.PRESETS[name], field)),)
                              for name in names)
        if field in presets.CHOICES:
            text += ': ' + ', '.join('`%s`' % choice for choice in presets.CHOICES[field])
        rows.append('| %s | `%s` | %s | %s |' % (', '.join('`%s`' % f for f in flags), field,
                                                defaults, text))
    return '\n'.join(rows) + '\n'


if __name__ == '__main__':
    print(reference(), end='')
