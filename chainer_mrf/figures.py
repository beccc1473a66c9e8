"""The paper's figures, regenerated: which runs, with which settings, and the comparison sheets.

Each figure is data (:data:`FIGURES`): the runs it needs (inputs from the CNNMRF data folder,
preset and options) and the authors' reference images to set beside ours. :func:`reproduce`
runs them, writing for each run its image, its settings and its trace, then draws one labelled
sheet per figure with the inputs, our results and the references. ``scripts/reproduce_figures.py``
is its command line.
"""
import dataclasses
import json
import os
import time
import typing

import numpy
from PIL import Image, ImageDraw

from chainer_mrf import _cli, image, presets
from chainer_mrf.synthesis import synthesize


@dataclasses.dataclass(frozen=True)
class Run:
    """One synthesis of a figure.

    Attributes:
        name (str): folder of its outputs, e.g. ``'portrait_balanced'``.
        label (str): caption on the sheet.
        content (str or None): content image, relative to the data folder (``None``: texture).
        style (str): style image, relative to the data folder.
        preset (str): ``'cnnmrf'`` or ``'dsanno'``.
        options (dict): preset fields that differ from the preset.
    """

    name: str
    label: str
    content: typing.Optional[str]
    style: str
    preset: str = 'cnnmrf'
    options: typing.Dict[str, typing.Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Figure:
    """A sheet: its runs, and the authors' results (relative to the data folder) to compare."""

    name: str
    title: str
    runs: typing.Tuple[Run, ...]
    references: typing.Tuple[typing.Tuple[str, str], ...] = ()
    levels_of: typing.Optional[str] = None  # show this run's image at the end of every level


_PORTRAIT = ('content/potrait1.jpg', 'style/picasso.jpg')
_BALANCED = Run('portrait_balanced', 'ours, content weight 2e1', *_PORTRAIT,
                options={'content_weight': 2e1})

FIGURES = (
    Figure('tradeoff', "Fig. 6 (top): content/style trade-off, cnnmrf preset",
           (Run('portrait_morecontent', 'ours, content weight 4e1', *_PORTRAIT,
                options={'content_weight': 4e1}),
            _BALANCED,
            Run('portrait_morestyle', 'ours, content weight 1e1', *_PORTRAIT,
                options={'content_weight': 1e1})),
           (('examples/Interpolation/2_morecontent.png', 'authors, more content'),
            ('examples/Interpolation/3_balanced.png', 'authors, balanced'),
            ('examples/Interpolation/4_morestyle.png', 'authors, more style'))),
    Figure('coarse_to_fine', 'Coarse to fine: the result at the end of each level',
           (_BALANCED,),
           tuple(('examples/MultiRes/syn_res_%d.png' % i, 'authors, level %d of 4' % i)
                 for i in range(1, 5)),
           levels_of='portrait_balanced'),
    Figure('photo_cartoon', 'Photo to cartoon and cartoon to photo (R = S = 3)',
           (Run('photo_to_cartoon', 'ours, photo to cartoon', 'content/0.jpg', 'style/0.jpg',
                options={'content_weight': 2e1, 'num_rotation': 3, 'num_scale': 3}),
            Run('cartoon_to_photo', 'ours, cartoon to photo', 'content/1.jpg', 'style/1.jpg',
                options={'content_weight': 5.0, 'num_rotation': 3, 'num_scale': 3})),
           (('examples/0_to_0.png', 'authors, photo to cartoon'),
            ('examples/1_to_1.png', 'authors, cartoon to photo'))),
    Figure('texture', 'Texture synthesis from 2.jpg',
           (Run('texture', 'ours, synthesised', None, 'style/2.jpg'),)),
    Figure('dsanno', 'The portrait with the dsanno preset, for comparison',
           (Run('portrait_dsanno', 'ours, dsanno preset', *_PORTRAIT, preset='dsanno'),
            _BALANCED)),
)


def required_files(figures=FIGURES):
    """Every input and reference file the figures read, relative to the data folder."""
    files = []
    for figure in figures:
        for run in figure.runs:
            files += [f for f in (run.content, run.style) if f is not None]
        files += [path for path, _ in figure.references]
    return sorted(set(files))


def check_data(data_dir, figures=FIGURES):
    """Raises ``FileNotFoundError`` naming every expected file missing from ``data_dir``."""
    missing = [f for f in required_files(figures) if not os.path.isfile(os.path.join(data_dir, f))]
    if missing:
        raise FileNotFoundError('%s lacks %s (expected the CNNMRF data folder: content/, style/ '
                                'and examples/)' % (data_dir, ', '.join(missing)))


def reproduce(data_dir, out_dir, *, figures=FIGURES, device=-1, progress=None, **overrides):
    """Runs every figure's synthesis once and draws the sheets.

    Args:
        data_dir (str): the CNNMRF data folder (``content/``, ``style/``, ``examples/``).
        out_dir (str): where ``<run>/out.png``, ``<run>/settings.json``,
            ``<run>/trace.jsonl``, ``<run>/level_<k>.png`` and ``sheets/<figure>.png`` go.
        figures (sequence of Figure): which figures. Default: all of :data:`FIGURES`.
        device (int or str): as :func:`chainer_mrf.synthesize`. Default: -1 (CPU).
        progress (callable or None): called with a line of text per run. Default: ``None``.
        **overrides: preset fields applied to every run (a smaller ``max_size``, fewer
            ``iterations``), e.g. for a quick look.

    Returns:
        list: the paths of the sheets.

    Raises:
        FileNotFoundError: if an input or reference image is missing (all are named).
    """
    check_data(data_dir, figures)
    done = {}
    for figure in figures:
        for run in figure.runs:
            if run.name not in done:
                start = time.time()
                done[run.name] = _synthesize(run, data_dir, out_dir, device, overrides)
                if progress is not None:
                    progress('%s: %.0f s' % (run.name, time.time() - start))
    os.makedirs(os.path.join(out_dir, 'sheets'), exist_ok=True)
    sheets = []
    for figure in figures:
        path = os.path.join(out_dir, 'sheets', figure.name + '.png')
        image.save_image(path, _sheet(figure, data_dir, done))
        sheets.append(path)
    return sheets


def _synthesize(run, data_dir, out_dir, device, overrides):
    """One run; returns its result and its image at the end of each level."""
    folder = os.path.join(out_dir, run.name)
    os.makedirs(folder, exist_ok=True)
    config = presets.get_preset(run.preset).replace(**{**run.options, **overrides})
    levels = {}
    with open(os.path.join(folder, 'trace.jsonl'), 'w') as trace:
        def record(step):
            trace.write(json.dumps({'level': step.level, 'iteration': step.iteration,
                                    'seconds': step.seconds, **step.losses}) + '\n')
            levels[step.level] = step
        result = synthesize(None if run.content is None else os.path.join(data_dir, run.content),
                            os.path.join(data_dir, run.style), preset=config, device=device,
                            callback=record)
    level_images = [levels[k].image() for k in sorted(levels)]
    for k, rgb in enumerate(level_images, 1):
        image.save_image(os.path.join(folder, 'level_%d.png' % k), rgb)
    image.save_image(os.path.join(folder, 'out.png'), result)
    settings = {'content': run.content, 'style': run.style, **dataclasses.asdict(config)}
    with open(os.path.join(folder, 'settings.json'), 'w') as f:
        json.dump(settings, f, indent=1)
    return result, level_images


def _sheet(figure, data_dir, done):
    """Inputs, our results and the authors' references side by side, each with a caption."""
    panels = []
    first = figure.runs[0]
    for path, label in ((first.content, 'content'), (first.style, 'style')):
        if path is not None:
            panels.append((image.load_image(os.path.join(data_dir, path)), label))
    if figure.levels_of is not None:
        for k, rgb in enumerate(done[figure.levels_of][1], 1):
            panels.append((rgb, 'ours, end of level %d' % k))
    else:
        panels += [(done[run.name][0], run.label) for run in figure.runs]
    panels += [(image.load_image(os.path.join(data_dir, path)), label)
               for path, label in figure.references]
    return _montage(panels, figure.title)


def _montage(panels, title, height=256, caption=18):
    """One row of panels scaled to ``height``, a caption under each, the title on top."""
    scaled = [Image.fromarray(rgb).resize(
        (max(1, round(rgb.shape[1] * height / rgb.shape[0])), height), Image.Resampling.LANCZOS)
        for rgb, _ in panels]
    width = sum(p.width for p in scaled) + 8 * (len(scaled) + 1)
    sheet = Image.new('RGB', (width, height + 2 * caption + 16), 'white')
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 4), title, fill='black')
    x = 8
    for panel, (_, label) in zip(scaled, panels):
        sheet.paste(panel, (x, caption + 8))
        draw.text((x, caption + 12 + height), label, fill='black')
        x += panel.width + 8
    return numpy.asarray(sheet)


def main(argv=None):
    """``scripts/reproduce_figures.py``: returns the exit code."""
    default_data = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                os.pardir, 'shared', 'data', 'cnnmrf')
    parser = _cli.ArgumentParser(
        prog='reproduce_figures.py',
        description="Regenerates the CNNMRF paper's figures and comparison sheets.")
    parser.add_argument('--data', default=os.path.normpath(default_data),
                        help='the CNNMRF data folder (default: %(default)s)')
    parser.add_argument('--out', default='out/figures', help='output folder (default: '
                                                             '%(default)s)')
    parser.add_argument('--only', nargs='+', choices=[f.name for f in FIGURES],
                        help='regenerate only these figures')
    parser.add_argument('-g', '--gpu', type=int, default=-1, help='GPU id (default: -1, CPU)')
    parser.add_argument('--max_size', type=int, help='override the longer side (quick looks)')
    parser.add_argument('--iterations', type=int, help='override the steps per level')
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data):
        raise FileNotFoundError('data folder %s not found: pass --data DIR, the CNNMRF data '
                                'folder with content/, style/ and examples/' % args.data)
    chosen = [f for f in FIGURES if args.only is None or f.name in args.only]
    overrides = {k: v for k, v in (('max_size', args.max_size),
                                   ('iterations', args.iterations)) if v is not None}
    for sheet in reproduce(args.data, args.out, figures=chosen, device=args.gpu,
                           progress=lambda line: print(line, flush=True), **overrides):
        print('sheet %s' % sheet)
    return 0
