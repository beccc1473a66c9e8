"""``scripts/generate.py``: the command line of dsanno's ``run_mrf.py``, defaults from the presets.

The parser is built from :class:`chainer_mrf.presets.Preset`, so a default shown by ``--help`` is
the library's. This module only assembles library objects, prints and writes files.
"""
import argparse
import collections
import contextlib
import io
import os
import re
import sys

from chainer_mrf import _cli, distributed, optimizers, outputs, presets, semantic
from chainer_mrf.inputs import load_inputs
from chainer_mrf.synthesis import DivergenceError, synthesize
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


#: Binary multiples of a byte count's suffix.
_UNITS = {'': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40}


def _bytes(text):
    """A byte count: ``268435456``, ``256M``, ``8G`` or ``1.5GiB`` (binary multiples)."""
    found = re.fullmatch(r'(\d+(?:\.\d*)?)([kmgt]?)(?:i?b)?', text.strip().lower())
    if not found:
        raise ValueError('a byte count must be a number with an optional K, M, G or T, '
                         'e.g. 8G')
    return int(float(found[1]) * _UNITS[found[2]])


_bytes.__name__ = 'byte count'  # argparse names the type in its messages


def _optional(kind):
    """Parses ``none`` as ``None`` and anything else as ``kind``."""
    def parse(text):
        return None if text.strip().lower() == 'none' else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _shown(value):
    if isinstance(value, tuple):
        return ','.join(presets.short_name(v) if isinstance(v, str) else str(v) for v in value)
    return 'none' if value is None else value


#: (flags, preset field, type, help). dsanno's flags first, then the authors' names.
_OPTIONS = [
    (('--method',), 'method', str, 'style term: mrf (CNNMRF) or gram (neural style)'),
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
    (('--confidence_threshold',), 'confidence_threshold', _optional(float),
     'drop patches whose best cosine is below this (none: keep all)'),
    (('--initial_image',), 'initial_image', str,
     "content, random, map (the content map painted in the style's colours) or an image path"),
    (('--resolution_num', '--num_res'), 'resolution_num', int, 'number of resolutions, 1 to 4'),
    (('--memory_budget',), 'memory_budget', _bytes,
     'bytes for the matching scores at once (e.g. 256M)'),
    (('--memory_limit',), 'memory_limit', _optional(_bytes),
     "refuse a run whose estimated peak is larger (e.g. 8G; none: the memory available)"),
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
    (('--match_normalisation',), 'match_normalisation', str,
     "the matching normalises whole patches (patch) or each pixel's features and map "
     "(pixel, neural-doodle's)"),
    (('--style_image_weights',), 'style_image_weights', _numbers(float),
     "factors on each style image's matching scores, one per -s (none: all 1)"),
]


def _parser(preset, prog):
    parser = _cli.ArgumentParser(
        prog=prog,
        description='CNNMRF style transfer and texture synthesis (Li & Wand 2016) with '
                    'chainer-mrf. Without --content it synthesises a texture.')
    parser.add_argument('-c', '--content', action='append',
                        help='content image (omit for texture synthesis); repeat it, or give a '
                             'folder, for a batch written to OUT_DIR/<image name>/')
    parser.add_argument('-s', '--style', required=True, action='append',
                        help='style image; repeat it for several (their patches pool)')
    parser.add_argument('--content_map', help='semantic map of the content image (its size); '
                                              'without -c, the doodle to paint')
    parser.add_argument('--style_map', action='append',
                        help='semantic map of the style image (its size); one per -s, in order')
    parser.add_argument('--no_auto_maps', action='store_true',
                        help='take no map but those given: without this, STYLE_sem.png beside '
                             'each style image and CONTENT_sem.png beside the content image are '
                             'used where that gives maps on both sides')
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


class _Reporter:
    """Turns each :class:`~chainer_mrf.synthesis.Step` into a progress line, a trace line and
    the snapshots, in the run's :class:`~chainer_mrf.outputs.RunFolder`.

    The run's files are started at the first step, so a run that fails before it (a bad layer,
    an image too small) leaves an earlier run's files as they were. A rank that does not write
    (``folder`` ``None``) only keeps the last step.

    Args:
        folder (outputs.RunFolder or None): where to write; ``None`` writes and prints nothing.
        save_iter (int): save an image every this many steps.
        settings (dict): the run's ``settings.json``.
        label (str): put before each progress line (a batch's image). Default: ``''``.
    """

    def __init__(self, folder, save_iter, settings, label=''):
        self.folder = folder
        self.save_iter = save_iter
        self.settings = settings
        self.label = label
        self.last = None

    def __call__(self, step):
        _cli.raise_pending()  # a signal whose exception was dropped ends the run here
        first, self.last = self.last is None, step
        if self.folder is None:
            return
        if first:
            self.folder.begin(self.settings)
        terms = '  '.join('%s %.4g' % item for item in step.losses.items())
        _cli.say('%slevel %d/%d  iter %d (%d)  %s  %.2f s/iter' % (
            self.label, step.level + 1, step.levels, step.iteration, step.level_iteration,
            terms, step.seconds))
        record = {'level': step.level, 'iteration': step.iteration,
                  'level_iteration': step.level_iteration, 'seconds': step.seconds}
        record.update(step.losses)
        if step.stop:
            record['stop'] = step.stop
            _cli.say('%slevel %d/%d ended after %d of its steps: %s' % (
                self.label, step.level + 1, step.levels, step.level_iteration,
                optimizers.STOPS[step.stop]))
        self.folder.record(record)
        if step.iteration % self.save_iter == 0:
            self.folder.save('out_%04d.png' % step.iteration, step.image())
            # dsanno's report at each save
            _cli.say('%sepoch %d done' % (self.label, step.iteration))
            _cli.say('%slosses:' % self.label)
            width = max(len(name) for name in step.losses)
            for name, value in step.losses.items():
                _cli.say('{0}  {1:{width}s}: {2:f}'.format(self.label, name, value,
                                                          width=width))


#: The files of a content folder that a batch takes, by extension (Pillow reads them all).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm',
                    '.pgm')


def main(argv=None, prog='generate.py'):
    """Runs ``generate.py`` (or ``chainer-mrf``, named ``prog`` in messages); returns the exit
    code. Errors are raised for :func:`chainer_mrf._cli.run` to report as one line.

    Under an MPI launcher with several ranks (``mpiexec -n N``) the ranks share the work
    (:mod:`chainer_mrf.distributed`): one image's style bank is sharded over them, a batch's
    images are spread over them. Rank 0 reports; an error met by every rank is its one line,
    an error on one rank alone aborts the job.
    """
    argv = sys.argv[1:] if argv is None else argv
    comm = distributed.create_communicator() if distributed.launched() else None
    if distributed.size(comm) == 1:
        return _main(argv, prog, None)
    try:
        return _main(argv, prog, comm)
    except BaseException as e:
        # Every rank meets an interrupt, --help's exit and an agreed error alike.
        if not (isinstance(e, (KeyboardInterrupt, SystemExit)) or distributed.is_agreed(e)):
            distributed.abort(comm, e)
        if comm.rank == 0 or isinstance(e, SystemExit):
            raise
        return _cli.exit_code(e) if isinstance(e, KeyboardInterrupt) else 2


def _main(argv, prog, comm):
    with distributed.agreement(comm):
        first = _cli.ArgumentParser(add_help=False)
        first.add_argument('--preset', default='dsanno')
        known, _ = first.parse_known_args(argv)
        with (contextlib.redirect_stdout(io.StringIO()) if distributed.rank(comm)
              else contextlib.nullcontext()):  # --help once
            args = _parser(presets.get_preset(known.preset), prog).parse_args(argv)
        options = {field: getattr(args, field) for _, field, _, _ in _OPTIONS}
        config = presets.get_preset(args.preset).replace(**options)  # checks every value first
        batch = _batch_contents(args, _looks_for_maps(args, config))
        arch, path = weights_for(config.arch, config.model)
    content = args.content[0] if args.content and not batch else None
    if distributed.rank(comm) == 0:
        if batch:
            kind = 'a batch of %d images' % len(batch)
        else:
            kind = 'style transfer' if content else (
                'texture synthesis' if args.content_map is None else 'neural doodle')
        _cli.say('%s with the %s preset; network %s (%s)' % (kind, config.name, arch.upper(),
                                                            path))
    # A GPU per rank of a node: -g names the first.
    gpu = args.gpu + (comm.intra_rank if comm is not None and args.gpu >= 0 else 0)
    if batch:
        return _batch(batch, config, args, gpu, comm, [prog] + list(argv))
    inputs, maps = _load(content, config, args, comm)
    return _synthesis(inputs, maps, config, args, args.out_dir, gpu, comm, [prog] + list(argv),
                      content)


def _looks_for_maps(args, config):
    """Whether maps are looked for beside the images: not under ``--no_auto_maps``, nor with
    the gram method (no matching for a map to steer)."""
    return not args.no_auto_maps and config.method != 'gram'


def _maps(content, config, args):
    """One synthesis's maps, ``(content_map, style_map)``, and the progress line about the maps
    found beside its images (``None`` where none was looked for or found).

    Where ``--content_map`` or ``--style_map`` is not given, the map neural-doodle's name gives
    (:func:`chainer_mrf.semantic.find_map`) is looked for beside the content image or each style
    image. The maps found are used only if then the content side (a doodle's included) and
    every style image have one: a painting that happens to have a map beside it leaves a plain
    style transfer or texture as it was, and the line says why they were not used.
    """
    given = args.content_map, args.style_map
    if not _looks_for_maps(args, config):
        return given, None
    content_map, style_map = given
    found = []
    if content_map is None and content is not None:
        content_map = semantic.find_map(content)
        found += ['%s (content)' % content_map] if content_map else []
    if style_map is None:
        style_map = [semantic.find_map(s) for s in args.style]
        found += ['%s (style)' % m for m in style_map if m]
    if not found:
        return given, None
    line = 'semantic map%s found beside the images: %s' % ('s' * (len(found) > 1),
                                                          ', '.join(found))
    reasons = ['there is no content map'] if content is None and content_map is None else []
    lacking = [image for image, m in zip([content] + args.style, [content_map] + style_map)
               if image is not None and m is None]
    if lacking:
        reasons.append('%s %s none' % (', '.join(lacking), 'has' if len(lacking) == 1
                                       else 'have'))
    if not reasons:
        return (content_map, style_map), line + ' (--no_auto_maps to ignore them)'
    return given, ('%s; not used, as %s (maps go on both sides; --no_auto_maps to skip the '
                   'search)' % (line, ' and '.join(reasons)))


def _load(content, config, args, comm, label=''):
    """Loads and checks one synthesis's images and maps (:func:`_maps`; rank 0 of ``comm``
    says which were found), so that a missing, unreadable or ill-fitting one fails before
    anything is written. Returns ``(inputs, (content_map, style_map))``."""
    maps, line = _maps(content, config, args)
    if line is not None and distributed.rank(comm) == 0:
        _cli.say(label + line)
    with distributed.agreement(comm):
        inputs = load_inputs(content, args.style, content_map=maps[0], style_map=maps[1],
                             preset=config)
    return inputs, maps


def _batch_contents(args, maps):
    """A batch's content images (each ``-c``, a folder's images in name order), checked to go
    to distinct folders; ``None`` for one image, a texture or a doodle. Where ``maps`` are
    looked for beside the images, a folder's ``X_sem.png`` beside its ``X.jpg`` is a map, not an
    image to stylise."""
    if not args.content or (len(args.content) == 1 and not os.path.isdir(args.content[0])):
        return None
    contents = []
    for source in args.content:
        if os.path.isdir(source):
            found = sorted(os.path.join(source, name) for name in os.listdir(source)
                           if name.lower().endswith(IMAGE_EXTENSIONS) and
                           not name.startswith('.'))
            if maps:
                found = sorted(set(found) - {semantic.find_map(f) for f in found})
            if not found:
                raise ValueError('content folder %s holds no image (%s)' % (
                    source, ', '.join(IMAGE_EXTENSIONS)))
            contents += found
        else:
            contents.append(source)
    if args.content_map is not None:
        raise ValueError('a batch of content images takes no --content_map (one map fits one '
                         'image)')
    stems = collections.Counter(_stem(c) for c in contents)
    twice = sorted(stem for stem, count in stems.items() if count > 1)
    if twice:
        raise ValueError('two content images would be written to %s: give them distinct names'
                         % os.path.join(args.out_dir, twice[0]))
    return contents


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _synthesis(inputs, maps, config, args, out_dir, gpu, comm, command, content, label=''):
    """One synthesis into ``out_dir``, written by the rank 0 of ``comm``; returns the exit
    code: 0, or 128 + n after signal n (the last step's image saved). ``maps``: the paths
    ``(content_map, style_map)`` the inputs were loaded from, for ``settings.json``."""
    writer = comm is None or comm.rank == 0
    with distributed.agreement(comm):
        folder = outputs.RunFolder(out_dir, force=args.force) if writer else None
    with folder or contextlib.nullcontext():
        settings = outputs.settings(config, command=command, content=content, style=args.style,
                                    content_map=maps[0], style_map=maps[1], gpu=gpu)
        reporter = _Reporter(folder, config.save_iter, settings, label)
        final = os.path.join(out_dir, 'out.png')
        try:
            result = synthesize(inputs=inputs, preset=config, device=gpu, callback=reporter,
                                comm=comm)
        except DivergenceError as e:
            if folder is not None:
                if reporter.last is None:
                    folder.begin(settings)  # an earlier run's files go before out.png
                folder.save('out.png', e.image)
            # Every rank holds the same image, so every rank meets the divergence.
            raise distributed.agreed(ValueError(
                '%s; the last finite image is saved as %s' % (e, final))) from None
        except KeyboardInterrupt as e:
            if reporter.last is None:
                raise
            if folder is not None:
                with _cli.signals_ignored():  # a second Ctrl-C must not cut the save short
                    folder.save('out.png', reporter.last.image())
                _cli.say('%sinterrupted (%s) at iteration %d; saved %s' % (
                    label, e.args[0] if isinstance(e, _cli.Interrupted) else 'SIGINT',
                    reporter.last.iteration, final), file=sys.stderr)
            return _cli.exit_code(e)
        if folder is not None:
            folder.save('out.png', result)
            _cli.say('%ssaved %s' % (label, final))
    return 0


def _batch(contents, config, args, gpu, comm, command):
    """Each content image into ``OUT/<its stem>/``: the ranks split into groups that take the
    images in turn (a group of several ranks shards the bank); one image's failure is its own.
    World rank 0 prints a summary; the exit code is 2 if any image failed."""
    groups = min(len(contents), distributed.size(comm))
    group, sub = distributed.split(comm, groups)
    outcomes = []
    for content in contents[group::groups]:
        label = '[%s] ' % _stem(content)
        out_dir = os.path.join(args.out_dir, _stem(content))
        try:
            inputs, maps = _load(content, config, args, sub, label)
            code = _synthesis(inputs, maps, config, args, out_dir, gpu, sub, command, content,
                              label)
        except _cli.USER_ERRORS as e:
            if distributed.size(sub) > 1 and not distributed.is_agreed(e):
                raise  # the other ranks of the group would wait for this one
            outcomes.append((content, 'failed: %s' % _cli.describe(e)))
            continue
        if code:
            return code
        outcomes.append((content, 'saved %s' % os.path.join(out_dir, 'out.png')))
    if distributed.rank(sub) != 0:
        outcomes = []  # the group's rank 0 reports its images
    if comm is not None:
        outcomes = [o for part in comm.gather_obj(outcomes) or [] for o in part]
    failed = sum(text.startswith('failed') for _, text in outcomes)
    if distributed.rank(comm) == 0:
        _cli.say('batch: %d images, %d saved, %d failed' % (len(contents), len(contents) - failed,
                                                           failed))
        for content, text in sorted(outcomes):
            _cli.say('  %s: %s' % (content, text))
    return 2 if failed else 0


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
