"""The paper's figures, regenerated, and one figure per option of our own: which runs, with which
settings, and the comparison sheets.

Each figure is data (:data:`FIGURES`): the runs it needs (inputs from the CNNMRF data folder,
preset and options) and the authors' reference images to set beside ours. :func:`reproduce`
runs them, writing for each run its image, its settings and its trace, then draws one labelled
sheet per figure with the inputs, our results and the references, one row per pair of inputs;
with ``reuse`` it loads a finished run (:func:`load_run`) instead of running it again.
``scripts/reproduce_figures.py`` is its command line; for the ``neural_style`` and ``balance``
figures it also writes the measurements of ``paper/comparison.py`` and ``paper/balance.py``.

The doodle's two semantic maps and its start image are not in the data folder: :func:`draw_maps`
makes them into ``<out>/maps/``: the style's map and the doodle by drawing shapes placed by hand
(:data:`PICASSO_TRACE`, traced from the painting, and :data:`DOODLE`), the start by painting the
doodle with the painting's colours (:func:`chainer_mrf.semantic.paint_map`, what a doodle starts
from by default, here at the doodle's full size so that the sheet can show it); a run names
them by their paths there (:data:`DRAWN_MAPS`).

This module is not part of the library (``chainer_mrf`` holds the method; this folder, beside
``scripts/``, the paper's figure set) and is not installed with it: the script and
``tests/test_figures.py`` import it as ``paper.figures`` from a source checkout. Besides the
library's public names it uses two of its private helpers, ``chainer_mrf._cli`` (the
command-line error handling every script shares) and ``chainer_mrf._io`` (atomic writing).
"""
import collections
import contextlib
import dataclasses
import json
import os
import time
import typing

import numpy
from PIL import Image, ImageDraw

from chainer_mrf import _cli, _io, image, presets, semantic, synthesize


@dataclasses.dataclass(frozen=True)
class Run:
    """One synthesis of a figure.

    Attributes:
        name (str): folder of its outputs, e.g. ``'portrait_balanced'``.
        label (str): caption on the sheet.
        content (str or None): content image, relative to the data folder (``None``: texture
            or doodle).
        style (str or tuple of str): style image, relative to the data folder, or several.
        preset (str): ``'cnnmrf'``, ``'dsanno'`` or ``'gram'``. Default: ``'cnnmrf'``.
        options (dict): preset fields that differ from the preset. Default: none.
        content_map (str or None): the content's semantic map, or the doodle: relative to the
            data folder, or one of :data:`DRAWN_MAPS`. Default: ``None``.
        style_map (str or tuple of str or None): the style's map, or one per style, likewise.
            Default: ``None``.
        start (str or None): the start image (the ``initial_image`` option), likewise.
            Default: ``None``.
    """

    name: str
    label: str
    content: typing.Optional[str]
    style: typing.Union[str, typing.Tuple[str, ...]]
    preset: str = 'cnnmrf'
    options: typing.Dict[str, typing.Any] = dataclasses.field(default_factory=dict)
    content_map: typing.Optional[str] = None
    style_map: typing.Union[None, str, typing.Tuple[str, ...]] = None
    start: typing.Optional[str] = None

    def inputs(self):
        """Every input file with its caption, in the order of a sheet."""
        named = [(self.content, 'content'), (self.content_map, 'content map')]
        named += [(path, 'style') for path in _paths(self.style)]
        named += [(path, 'style map') for path in _paths(self.style_map)]
        named.append((self.start, 'start'))
        return [(path, label) for path, label in named if path is not None]


@dataclasses.dataclass(frozen=True)
class Figure:
    """A sheet: its runs, and the authors' results (relative to the data folder) to compare.

    The sheet has one row per pair of inputs among the runs, in the order of the runs: the
    inputs, our results, then the references that :data:`AUTHORS` lists for that pair (any
    other reference goes in the first row).
    """

    name: str
    title: str
    runs: typing.Tuple[Run, ...]
    references: typing.Tuple[typing.Tuple[str, str], ...] = ()
    levels_of: typing.Optional[str] = None  # show this run's image at the end of every level


_PORTRAIT = ('content/potrait1.jpg', 'style/picasso.jpg')
_BALANCED = Run('portrait_balanced', 'ours, content weight 2e1', *_PORTRAIT,
                options={'content_weight': 2e1})

#: The (content, style) pairs that several figures share, by the names that the comparison's
#: and the sweep's files and tables use.
PAIRS = {'portrait': _PORTRAIT,
         'photo_to_cartoon': ('content/0.jpg', 'style/0.jpg'),
         'cartoon_to_photo': ('content/1.jpg', 'style/1.jpg')}

#: The authors' results of each pair (the CNNMRF repository's ``examples/``), as
#: ``(path, caption)``; the portrait's are Fig. 6's, content weights 4e1, 2e1 and 1e1 in order.
AUTHORS = {
    'portrait': (('examples/Interpolation/2_morecontent.png', 'authors, more content'),
                 ('examples/Interpolation/3_balanced.png', 'authors, balanced'),
                 ('examples/Interpolation/4_morestyle.png', 'authors, more style')),
    'photo_to_cartoon': (('examples/0_to_0.png', 'authors, photo to cartoon'),),
    'cartoon_to_photo': (('examples/1_to_1.png', 'authors, cartoon to photo'),),
}

#: The paper's 49 style copies of the photo/cartoon pairs (R = S = 3).
_R3S3 = {'num_rotation': 3, 'num_scale': 3}

#: The content weights of the ``balance`` figure's sweeps (cnnmrf preset), by pair: the
#: portrait in octaves from the paper's 1e1 upward (with VGG16 the paper's balance lies at a
#: higher weight, docs/figures.md), each photo/cartoon pair from its paper weight (2e1, 5) up.
BALANCE_WEIGHTS = {'portrait': (10, 20, 40, 80, 160, 320, 640),
                   'photo_to_cartoon': (20, 80, 160),
                   'cartoon_to_photo': (5, 20, 40)}
#: The options of each sweep's runs besides the content weight: the paper's, as in the
#: ``tradeoff`` and ``photo_cartoon`` figures.
_BALANCE_OPTIONS = {'portrait': {}, 'photo_to_cartoon': _R3S3, 'cartoon_to_photo': _R3S3}

#: The content weights that give the authors' three looks (more content, balanced, more style)
#: with VGG16, as the ``balance`` sweep calibrates them (312, 112, 58), rounded; 320 is the
#: sweep's own run: (weight, as written, the authors' weight for VGG19).
CALIBRATED = ((320, '3.2e2', '4e1'), (110, '1.1e2', '2e1'), (60, '6e1', '1e1'))

#: The two methods of the ``neural_style`` figure, at their presets' defaults (256 px wide):
#: run-name suffix, caption, preset, options.
_METHODS = (('gram', 'neural style (Gram)', 'gram', {'seed': 0}),
            ('mrf', 'MRF', 'dsanno', {}))

#: The options of the figures of our own options: dsanno's preset at width 192 (two levels,
#: 96 and 192 px wide, of 100 steps each), small enough for a CPU.
_OURS = {'width': 192}
_COLOUR = ('colour', "dsanno's colour options: potrait1.jpg in the style of picasso.jpg, "
                     "dsanno preset, width 192")
_TWO_STYLES = ('content/potrait1.jpg', ('style/picasso.jpg', 'style/2.jpg'))

#: What :func:`draw_maps` makes, by its paths under the output folder: the style map, the
#: doodle and the doodle's start image.
DRAWN_MAPS = ('maps/picasso_sem.png', 'maps/doodle_map.png', 'maps/doodle_start.png')

FIGURES = (
    Figure('tradeoff', "Fig. 6 (top): content/style trade-off, cnnmrf preset",
           (Run('portrait_morecontent', 'ours, content weight 4e1', *_PORTRAIT,
                options={'content_weight': 4e1}),
            _BALANCED,
            Run('portrait_morestyle', 'ours, content weight 1e1', *_PORTRAIT,
                options={'content_weight': 1e1})),
           AUTHORS['portrait']),
    # The same looks with VGG16's calibrated weights (docs/figures.md, "The balance with VGG16,
    # measured"): named as the sweep's runs, so a finished run serves both figures.
    Figure('tradeoff_vgg16', "Fig. 6 (top) with VGG16's calibrated content weights, cnnmrf "
                             "preset",
           tuple(Run('balance_portrait_%g' % weight, 'ours, content weight %s (theirs %s)'
                     % (text, theirs), *_PORTRAIT, options={'content_weight': float(weight)})
                 for weight, text, theirs in CALIBRATED),
           AUTHORS['portrait']),
    Figure('coarse_to_fine', 'Coarse to fine: the result at the end of each level',
           (_BALANCED,),
           tuple(('examples/MultiRes/syn_res_%d.png' % i, 'authors, level %d of 4' % i)
                 for i in range(1, 5)),
           levels_of='portrait_balanced'),
    Figure('photo_cartoon', 'Photo to cartoon and cartoon to photo (R = S = 3)',
           (Run('photo_to_cartoon', 'ours, photo to cartoon', *PAIRS['photo_to_cartoon'],
                options={'content_weight': 2e1, **_R3S3}),
            Run('cartoon_to_photo', 'ours, cartoon to photo', *PAIRS['cartoon_to_photo'],
                options={'content_weight': 5.0, **_R3S3})),
           AUTHORS['photo_to_cartoon'] + AUTHORS['cartoon_to_photo']),
    Figure('texture', 'Texture synthesis from 2.jpg',
           (Run('texture', 'ours, synthesised', None, 'style/2.jpg'),)),
    Figure('dsanno', 'The portrait with the dsanno preset, for comparison',
           (Run('portrait_dsanno', 'ours, dsanno preset', *_PORTRAIT, preset='dsanno'),
            _BALANCED)),
    Figure(*_COLOUR, (Run('colour_plain', 'no colour option', *_PORTRAIT, preset='dsanno',
                          options=_OURS),) + tuple(
        Run('colour_' + name, name, *_PORTRAIT, preset='dsanno', options={**_OURS, name: True})
        for name in ('keep_color', 'luminance_only', 'match_color_histogram'))),
    Figure('doodle', 'A neural doodle: a drawn map painted with picasso.jpg and its '
                     'hand-traced map, dsanno preset, width 192',
           (Run('doodle', 'ours, from the painted map', None, 'style/picasso.jpg',
                preset='dsanno', options=_OURS, content_map=DRAWN_MAPS[1],
                style_map=DRAWN_MAPS[0], start=DRAWN_MAPS[2]),
            Run('doodle_noise', 'ours, from noise', None, 'style/picasso.jpg', preset='dsanno',
                options={**_OURS, 'seed': 0, 'initial_image': 'random'},
                content_map=DRAWN_MAPS[1],
                style_map=DRAWN_MAPS[0]))),
    Figure('two_styles', 'Two style images, picasso.jpg and 2.jpg, dsanno preset, width 192',
           (Run('two_styles', 'weights 1, 1', *_TWO_STYLES, preset='dsanno', options=_OURS),
            Run('two_styles_weighted', 'weights 0.75, 1', *_TWO_STYLES, preset='dsanno',
                options={**_OURS, 'style_image_weights': (0.75, 1.0)}))),
    Figure('neural_style', "Neural style (Gram matrices, dsanno's run.py --method gram, "
                           "seed 0) beside MRF (dsanno preset), both 256 px wide",
           tuple(Run('compare_%s_%s' % (pair, method), label, *PAIRS[pair], preset=preset,
                     options=options)
                 for pair in ('portrait', 'photo_to_cartoon')
                 for method, label, preset, options in _METHODS)),
    Figure('balance', 'Content weight sweeps, cnnmrf preset (the photo/cartoon pairs with '
                      'R = S = 3)',
           tuple(Run('balance_%s_%g' % (pair, weight), 'content weight %g' % weight,
                     *PAIRS[pair], options={'content_weight': float(weight),
                                            **_BALANCE_OPTIONS[pair]})
                 for pair, weights in BALANCE_WEIGHTS.items() for weight in weights),
           sum(AUTHORS.values(), ())),
)

#: The fields of a trace's records that are not energy terms: every other field is one, by
#: its name (``content_4_2``, ``style_3_1``, ``tv``...).
TRACE_FIELDS = ('level', 'iteration', 'seconds', 'stop')

#: What :func:`load_run` returns: ``image``, the result (uint8 RGB); ``levels``, the image at
#: the end of each level, coarsest first; ``settings``, the run's ``settings.json`` as read;
#: ``trace``, its ``trace.jsonl``, one dict per step.
Finished = collections.namedtuple('Finished', 'image levels settings trace')


def get_figure(name):
    """The figure of :data:`FIGURES` named ``name``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    for figure in FIGURES:
        if figure.name == name:
            return figure
    raise ValueError('unknown figure %r (known: %s)'
                     % (name, ', '.join(f.name for f in FIGURES)))


def pair_of(run):
    """The name of a run's (content, style) in :data:`PAIRS`, or ``None``."""
    return next((name for name, pair in PAIRS.items() if pair == (run.content, run.style)),
                None)


def markdown_table(header, rows):
    """A Markdown table: ``header`` a sequence of column titles, ``rows`` of cell texts."""
    lines = ['| %s |' % ' | '.join(header), '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| %s |' % ' | '.join(row) for row in rows]) + '\n'


def _paths(value):
    """A run's path field as a list (``None``: none; a tuple: several)."""
    if value is None:
        return []
    return list(value) if isinstance(value, tuple) else [value]


#: The labels of the drawn maps and their colours: saturated and apart, since the matching
#: compares a map's colours by their direction (see docs/usage.md).
LABELS = {'background': (255, 0, 0), 'skin': (255, 255, 0), 'hair': (0, 0, 255),
          'eyes': (0, 255, 0), 'mouth': (255, 0, 255), 'shirt': (0, 255, 255)}

#: picasso.jpg's regions, traced by hand from the painting over a 10-pixel grid, in its 300 x
#: 384 pixels: label, ``'polygon'`` (its points) or ``'ellipse'`` (its bounding box's corners),
#: drawn in this order over the background.
PICASSO_TRACE = (
    ('shirt', 'polygon', ((0, 290), (30, 270), (60, 248), (85, 232), (100, 245), (130, 282),
                          (185, 300), (225, 285), (240, 262), (270, 283), (300, 300),
                          (300, 384), (0, 384))),
    ('skin', 'polygon', ((198, 42), (222, 68), (248, 100), (256, 118), (252, 160), (247, 200),
                         (238, 240), (230, 265), (215, 288), (185, 300), (150, 292),
                         (125, 275), (105, 250), (95, 225), (92, 200), (75, 198), (62, 178),
                         (58, 140), (62, 122), (80, 112), (150, 105))),
    ('hair', 'polygon', ((48, 50), (60, 28), (85, 12), (120, 4), (160, 4), (190, 14),
                         (205, 35), (195, 50), (175, 80), (158, 108), (140, 114), (120, 124),
                         (105, 130), (95, 118), (70, 115), (58, 128), (45, 100))),
    ('eyes', 'ellipse', ((116, 124), (174, 158))),
    ('eyes', 'ellipse', ((193, 118), (248, 158))),
    ('mouth', 'ellipse', ((152, 242), (222, 262))),
)

#: The doodle, drawn likewise on 300 x 384 pixels: another sitter than the painting's, facing
#: us, with long hair down the left shoulder, a fringe, a neck and a smile. Its eyes are about
#: the painting's size, so that the style's eye patches fit them.
DOODLE = (
    ('shirt', 'polygon', ((0, 384), (0, 320), (50, 290), (110, 278), (190, 278), (250, 290),
                          (300, 320), (300, 384))),
    ('hair', 'polygon', ((60, 110), (80, 55), (130, 25), (190, 25), (240, 60), (262, 120),
                         (258, 190), (240, 240), (200, 250), (95, 300), (50, 330), (40, 250),
                         (45, 170))),
    ('skin', 'polygon', ((140, 240), (200, 240), (205, 300), (170, 320), (135, 300))),
    ('skin', 'ellipse', ((85, 70), (245, 275))),
    ('hair', 'polygon', ((85, 140), (100, 80), (150, 50), (210, 55), (245, 100), (250, 150),
                         (215, 105), (170, 95), (130, 110))),
    ('eyes', 'ellipse', ((105, 145), (158, 178))),
    ('eyes', 'ellipse', ((175, 145), (228, 178))),
    ('mouth', 'polygon', ((130, 232), (160, 244), (190, 242), (212, 228), (198, 254),
                          (165, 260), (142, 252))),
)


def draw_labels(shapes, size):
    """Draws ``shapes`` (as :data:`PICASSO_TRACE`, laid out on 300 x 384 pixels) scaled to
    ``size`` (width, height), in the colours of :data:`LABELS`; returns uint8 (H, W, 3)."""
    names = list(LABELS)
    labels = Image.new('L', size, names.index('background'))
    draw = ImageDraw.Draw(labels)
    for label, shape, points in shapes:
        getattr(draw, shape)([(x * size[0] / 300, y * size[1] / 384) for x, y in points],
                             fill=names.index(label))
    return numpy.array(list(LABELS.values()), numpy.uint8)[numpy.asarray(labels)]


def draw_maps(data_dir, out_dir):
    """Draws the doodle's maps and start image into ``<out_dir>/maps/`` (:data:`DRAWN_MAPS`).

    - ``picasso_sem.png``: ``style/picasso.jpg``'s map, traced by hand (:data:`PICASSO_TRACE`,
      at the image's size).
    - ``doodle_map.png``: the doodle (:data:`DOODLE`), 300 x 384, in the same labels.
    - ``doodle_start.png``: the doodle painted with picasso.jpg's colours through the style
      map (:func:`chainer_mrf.semantic.paint_map`).

    Returns:
        list: the three paths.
    """
    rgb = image.load_image(os.path.join(data_dir, 'style', 'picasso.jpg'))
    style_map = draw_labels(PICASSO_TRACE, (rgb.shape[1], rgb.shape[0]))
    doodle_map = draw_labels(DOODLE, (300, 384))
    os.makedirs(os.path.join(out_dir, 'maps'), exist_ok=True)
    paths = [os.path.join(out_dir, name) for name in DRAWN_MAPS]
    image.save_image(paths[0], style_map)
    image.save_image(paths[1], doodle_map)
    painted = semantic.paint_map(semantic.load_map(doodle_map), [rgb.transpose(2, 0, 1)[None]],
                                 [semantic.load_map(style_map)])
    image.save_image(paths[2], painted[0].transpose(1, 2, 0).round().astype(numpy.uint8))
    return paths


def _source(path, data_dir, out_dir):
    """Where an input lies: a drawn map in the output folder, anything else in the data."""
    return os.path.join(out_dir if path in DRAWN_MAPS else data_dir, path)


def required_files(figures=FIGURES):
    """Every input and reference file the figures read, relative to the data folder."""
    files = []
    for figure in figures:
        for run in figure.runs:
            files += [path for path, _ in run.inputs() if path not in DRAWN_MAPS]
        files += [path for path, _ in figure.references]
    if any(path in DRAWN_MAPS for figure in figures for run in figure.runs
           for path, _ in run.inputs()):
        files.append('style/picasso.jpg')  # draw_maps paints the start from it
    return sorted(set(files))


def check_data(data_dir, figures=FIGURES):
    """Raises ``FileNotFoundError`` naming every expected file missing from ``data_dir``."""
    missing = [f for f in required_files(figures) if not os.path.isfile(os.path.join(data_dir, f))]
    if missing:
        raise FileNotFoundError('%s lacks %s (expected the CNNMRF data folder: content/, style/ '
                                'and examples/)' % (data_dir, ', '.join(missing)))


def reproduce(data_dir, out_dir, *, figures=FIGURES, device=-1, progress=None, reuse=False,
              **overrides):
    """Runs every figure's synthesis once and draws the sheets.

    Args:
        data_dir (str): the CNNMRF data folder (``content/``, ``style/``, ``examples/``).
        out_dir (str): where ``<run>/out.png``, ``<run>/settings.json``,
            ``<run>/trace.jsonl``, ``<run>/level_<k>.png`` and ``sheets/<figure>.png`` go.
        figures (sequence of Figure): which figures. Default: all of :data:`FIGURES`.
        device (int or str): as :func:`chainer_mrf.synthesize`. Default: -1 (CPU).
        progress (callable or None): called with a line of text per run. Default: ``None``.
        reuse (bool): a run whose folder holds its finished outputs (:func:`load_run`) and the
            ``settings.json`` it would write is loaded, not run again, so that sheets and
            measurements can be redrawn from finished runs; any other runs. Default: False.
        **overrides: preset fields applied to every run (a smaller ``max_size``, fewer
            ``iterations``), e.g. for a quick look.

    Returns:
        list: the paths of the sheets.

    Raises:
        FileNotFoundError: if an input or reference image is missing (all are named).
    """
    check_data(data_dir, figures)
    if any(path in DRAWN_MAPS for figure in figures for run in figure.runs
           for path, _ in run.inputs()):
        draw_maps(data_dir, out_dir)
    done = {}
    for figure in figures:
        for run in figure.runs:
            if run.name in done:
                continue
            start = time.time()
            folder = os.path.join(out_dir, run.name)
            config, settings = _settings(run, data_dir, out_dir, overrides)
            finished = load_run(folder) if reuse else None
            if finished is not None and finished.settings == settings:
                done[run.name] = finished.image, finished.levels
                line = '%s: reused' % run.name
            else:
                done[run.name] = _synthesize(run, folder, config, settings, data_dir, out_dir,
                                             device)
                line = '%s: %.0f s' % (run.name, time.time() - start)
            if progress is not None:
                progress(line)
    os.makedirs(os.path.join(out_dir, 'sheets'), exist_ok=True)
    sheets = []
    for figure in figures:
        path = os.path.join(out_dir, 'sheets', figure.name + '.png')
        image.save_image(path, _sheet(figure, data_dir, out_dir, done))
        sheets.append(path)
    return sheets


def load_run(folder):
    """A finished run's outputs, as :func:`reproduce` wrote them into ``folder``.

    A run is finished when its folder holds ``settings.json`` (written last, and removed when
    a run starts, so that a run stopped midway never passes for finished), ``trace.jsonl``
    with at least one step, ``out.png``, and ``level_<k>.png`` for each level of the trace.

    Returns:
        Finished or None: the outputs, or ``None`` if the run has not finished.
    """
    paths = [os.path.join(folder, name) for name in ('settings.json', 'trace.jsonl', 'out.png')]
    if not all(os.path.isfile(path) for path in paths):
        return None
    with open(paths[1]) as f:
        trace = [json.loads(line) for line in f]
    levels = [os.path.join(folder, 'level_%d.png' % k)
              for k in range(1, len({record['level'] for record in trace}) + 1)]
    if not trace or not all(os.path.isfile(path) for path in levels):
        return None
    with open(paths[0]) as f:
        settings = json.load(f)
    return Finished(image.load_image(paths[2]), [image.load_image(path) for path in levels],
                    settings, trace)


def _settings(run, data_dir, out_dir, overrides):
    """A run's configuration, and its ``settings.json`` as ``json`` reads it back (tuples as
    lists), which :func:`load_run`'s settings must equal for a reuse."""
    start = {} if run.start is None else {'initial_image': _source(run.start, data_dir, out_dir)}
    config = presets.get_preset(run.preset).replace(**{**run.options, **start, **overrides})
    settings = {'content': run.content, 'style': run.style, 'content_map': run.content_map,
                'style_map': run.style_map, 'start': run.start, **dataclasses.asdict(config)}
    return config, json.loads(json.dumps(settings))


def _synthesize(run, folder, config, settings, data_dir, out_dir, device):
    """One run into ``folder``; returns its result and its image at the end of each level."""
    os.makedirs(folder, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(folder, 'settings.json'))  # not finished until written again
    levels = {}
    def source(value):
        paths = [_source(path, data_dir, out_dir) for path in _paths(value)]
        return paths if isinstance(value, tuple) else (paths[0] if paths else None)

    with open(os.path.join(folder, 'trace.jsonl'), 'w') as trace:
        def record(step):
            stop = {'stop': step.stop} if step.stop else {}
            trace.write(json.dumps({'level': step.level, 'iteration': step.iteration,
                                    'seconds': step.seconds, **step.losses, **stop}) + '\n')
            levels[step.level] = step
        result = synthesize(source(run.content), source(run.style),
                            content_map=source(run.content_map), style_map=source(run.style_map),
                            preset=config, device=device, callback=record)
    level_images = [levels[k].image() for k in sorted(levels)]
    for k, rgb in enumerate(level_images, 1):
        image.save_image(os.path.join(folder, 'level_%d.png' % k), rgb)
    image.save_image(os.path.join(folder, 'out.png'), result)
    with _io.atomic_path(os.path.join(folder, 'settings.json')) as temporary:
        with open(temporary, 'w') as f:
            json.dump(settings, f, indent=1)
    return result, level_images


def _sheet(figure, data_dir, out_dir, done):
    """One row per pair of inputs (:class:`Figure`): the inputs, our results (the
    ``levels_of`` run's image at the end of each level instead of its result) and the
    authors' references side by side, each with a caption."""
    groups = {}  # the runs of each pair of inputs, in the figure's order
    for run in figure.runs:
        groups.setdefault(tuple(run.inputs()), []).append(run)
    rows = []
    for inputs, runs in groups.items():
        panels = [(image.load_image(_source(path, data_dir, out_dir)), label)
                  for path, label in inputs]
        for run in runs:
            if run.name == figure.levels_of:
                panels += [(rgb, 'ours, end of level %d' % k)
                           for k, rgb in enumerate(done[run.name][1], 1)]
            else:
                panels.append((done[run.name][0], run.label))
        rows.append(panels)
    for reference in figure.references:
        row = next((i for i, runs in enumerate(groups.values())
                    if reference in AUTHORS.get(pair_of(runs[0]), ())), 0)
        rows[row].append((image.load_image(os.path.join(data_dir, reference[0])), reference[1]))
    return _montage(rows, figure.title)


def _montage(rows, title, height=256, caption=18):
    """Rows of panels scaled to ``height``, a caption under each, the title on top."""
    scaled = [[Image.fromarray(rgb).resize(
        (max(1, round(rgb.shape[1] * height / rgb.shape[0])), height), Image.Resampling.LANCZOS)
        for rgb, _ in panels] for panels in rows]
    width = max(sum(p.width for p in row) + 8 * (len(row) + 1) for row in scaled)
    band = height + caption + 8  # a row of panels with its captions
    sheet = Image.new('RGB', (width, caption + 8 + len(rows) * band), 'white')
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 4), title, fill='black')
    for number, (row, panels) in enumerate(zip(scaled, rows)):
        top, x = caption + 8 + number * band, 8
        for panel, (_, label) in zip(row, panels):
            sheet.paste(panel, (x, top))
            draw.text((x, top + height + 4), label, fill='black')
            x += panel.width + 8
    return numpy.asarray(sheet)


def export(out_dir, target_dir, figures=FIGURES, colours=256):
    """Writes each run's result, and the drawn maps the figures use, into ``target_dir`` as
    small PNGs: ``<run>.png`` and ``<map>.png``, in ``colours`` colours (Pillow's median cut
    refined by k-means, no dithering), a third of the full-colour files' size, for the docs.

    Args:
        out_dir (str): the folder :func:`reproduce` wrote.
        target_dir (str): where the PNGs go, e.g. ``docs/figures``.
        figures (sequence of Figure): whose runs. Default: all of :data:`FIGURES`.
        colours (int): palette size, 2 to 256. Default: 256.

    Returns:
        list: the paths written.
    """
    sources = {}
    for figure in figures:
        for run in figure.runs:
            sources[run.name + '.png'] = os.path.join(out_dir, run.name, 'out.png')
            for path, _ in run.inputs():
                if path in DRAWN_MAPS:
                    sources[os.path.basename(path)] = os.path.join(out_dir, path)
    os.makedirs(target_dir, exist_ok=True)
    written = []
    for name, source in sources.items():
        written.append(os.path.join(target_dir, name))
        save_small(source, written[-1], colours)
    return written


def save_small(source, path, colours=256):
    """Writes the image file ``source`` to ``path`` as a PNG of ``colours`` colours
    (:func:`export`'s palette)."""
    small = Image.fromarray(image.load_image(source)).quantize(
        colours, method=Image.Quantize.MEDIANCUT, kmeans=5, dither=Image.Dither.NONE)
    # Kept as a palette image: that, not the colour count, is what makes the file small.
    with _io.atomic_path(path) as temporary:
        small.save(temporary, format='PNG', optimize=True)


#: The ``--only`` name of neural-doodle's showcases (:mod:`paper.doodles`).
SHOWCASES = 'showcases'


def main(argv=None):
    """``scripts/reproduce_figures.py``: returns the exit code."""
    shared = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          os.pardir, 'shared', 'data')
    default_data = os.path.join(shared, 'cnnmrf')
    parser = _cli.ArgumentParser(
        prog='reproduce_figures.py',
        description="Regenerates the CNNMRF paper's figures and comparison sheets.")
    parser.add_argument('--data', default=os.path.normpath(default_data),
                        help='the CNNMRF data folder (default: %(default)s)')
    parser.add_argument('--out', default='out/figures', help='output folder (default: '
                                                             '%(default)s)')
    parser.add_argument('--doodle_data', default=os.path.normpath(os.path.join(
        shared, 'neural-doodle')), help="neural-doodle's data folder, for the showcases "
                                         "(default: %(default)s)")
    parser.add_argument('--only', nargs='+', choices=[f.name for f in FIGURES] + [SHOWCASES],
                        help='regenerate only these figures (%s: neural-doodle\'s showcases)'
                             % SHOWCASES)
    parser.add_argument('-g', '--gpu', type=int, default=-1, help='GPU id (default: -1, CPU)')
    parser.add_argument('--max_size', type=int, help='override the longer side (quick looks)')
    parser.add_argument('--iterations', type=int, help='override the steps per level')
    parser.add_argument('--reuse', action='store_true',
                        help='load a run whose folder holds its finished outputs with the same '
                             'settings instead of running it again (redraws the sheets, plots '
                             'and tables from finished runs)')
    parser.add_argument('--export', metavar='DIR',
                        help='also write each result (and drawn map) into DIR as a small '
                             '256-colour PNG, e.g. docs/figures')
    args = parser.parse_args(argv)
    chosen = [f for f in FIGURES if args.only is None or f.name in args.only]
    showcases = args.only is None or SHOWCASES in args.only
    for wanted, folder, option, kind in ((chosen, args.data, '--data', 'the CNNMRF data folder '
                                          'with content/, style/ and examples/'),
                                         (showcases, args.doodle_data, '--doodle_data',
                                          "neural-doodle's samples and examples/")):
        if wanted and not os.path.isdir(folder):
            raise FileNotFoundError('data folder %s not found: pass %s DIR, %s'
                                    % (folder, option, kind))
    overrides = {k: v for k, v in (('max_size', args.max_size),
                                   ('iterations', args.iterations)) if v is not None}
    for sheet in reproduce(args.data, args.out, figures=chosen, device=args.gpu,
                           progress=lambda line: print(line, flush=True), reuse=args.reuse,
                           **overrides):
        print('sheet %s' % sheet)
    if args.export is not None:
        for path in export(args.out, args.export, chosen):
            print('exported %s' % path)
    # Imported here, not above: these modules import this one.
    from paper import balance, comparison, doodles
    if showcases:
        for path in doodles.reproduce(
                args.doodle_data, args.out, device=args.gpu, reuse=args.reuse,
                progress=lambda line: print(line, flush=True),
                **({} if args.iterations is None else {'iterations': args.iterations})):
            print('sheet %s' % path)
        if args.export is not None:
            for path in doodles.export(args.out, args.export):
                print('exported %s' % path)
    reports = {'neural_style': comparison.report, 'balance': balance.report}
    for figure in chosen:
        if figure.name in reports:
            text = reports[figure.name](args.data, args.out, figure)
            path = os.path.join(args.out, 'sheets', figure.name + '.md')
            with _io.atomic_path(path) as temporary:
                with open(temporary, 'w') as f:
                    f.write(text)
            print(text)
            print('table %s' % path)
    return 0
