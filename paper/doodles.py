"""neural-doodle's three showcases, made by chainer-mrf beside its published results (issue #18;
``docs/figures.md``, "neural-doodle's showcases").

neural-doodle's samples, maps and published images are in its data folder (``samples/`` and
``docs/`` of alexjc/neural-doodle; here ``../shared/data/neural-doodle``, never committed). Each
showcase runs with the ``doodle`` preset, with the phases and iterations of the command its
README gives, and with the dsanno preset at the same size and the same number of steps per level
(the existing preset that makes the best doodles); a showcase may add runs of its own
(:attr:`Showcase.extra`). Each run is a Python process of its own, so that its wall time and
peak memory are its own: ``<out>/showcases/<showcase>_<run>/`` holds ``out.png``
and ``record.json`` (the settings, the seconds, the peak resident memory, each step's energy
terms); ``<out>/sheets/showcase_<showcase>.png`` puts the inputs, our two results and the
published one side by side, and ``<out>/sheets/showcases.md`` tabulates the times and memory.
"""
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
import typing

import numpy
from PIL import Image

from chainer_mrf import _io, image, memory, presets, synthesize

#: The project's root folder (the child processes import ``paper`` from it).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: neural-doodle's commit whose samples and published results the data folder holds.
COMMIT = 'b2fac92b27dea18cf1ab8438c981b3537fa9ad06'

#: Where its published files are on the web (the docs link them: they are not ours to commit).
PUBLISHED_URL = 'https://raw.githubusercontent.com/alexjc/neural-doodle/%s/' % COMMIT


@dataclasses.dataclass(frozen=True)
class Showcase:
    """One of neural-doodle's examples.

    Attributes:
        name (str): short name, e.g. ``'coastline'``.
        title (str): caption.
        content (str or None): content image (``None``: a doodle), relative to the data folder.
        content_map (str): the content's map, or the doodle.
        style (str): the painting.
        style_map (str): its map.
        published (str): neural-doodle's published figure, relative to the data folder.
        crop (tuple of int): the box of the published result in that figure (left, top,
            right, bottom).
        remote (str): the published figure's path in neural-doodle's repository.
        phases (int): its command's ``--phases``.
        iterations (int): its command's ``--iterations``.
        extra (tuple): runs besides :data:`RUNS`, as :data:`RUNS` gives them. Default: none.
    """

    name: str
    title: str
    content: typing.Optional[str]
    content_map: str
    style: str
    style_map: str
    published: str
    crop: typing.Tuple[int, int, int, int]
    remote: str
    phases: int
    iterations: int
    extra: typing.Tuple[typing.Tuple[str, str, str, typing.Tuple], ...] = ()

    def runs(self):
        """Every run of the showcase: :data:`RUNS`, then its own."""
        return RUNS + self.extra


SHOWCASES = (
    Showcase('coastline', 'Coastline from Monet', None, 'Coastline_sem.png', 'Monet.jpg',
             'Monet_sem.png', 'examples/Coastline_example.png', (345, 0, 960, 385),
             'docs/Coastline_example.png', 3, 40,
             # The arch at width 256, where the dsanno preset's matching closed it: with its
             # own map weighting, neural-doodle's, and rotated style copies.
             extra=tuple(('dsanno_256' + suffix, 'ours, dsanno preset, width 256' + caption,
                          'dsanno', (('width', 256),) + fields) for suffix, caption, fields in (
                 ('', '', ()),
                 ('_pixel', ", neural-doodle's map weighting",
                  (('match_normalisation', 'pixel'), ('semantic_weight', 10.0))),
                 ('_rotated', ', rotated copies', (('num_rotation', 1),))))),
    Showcase('landscape', 'Landscape from Renoir', None, 'Landscape_sem.png', 'Renoir.jpg',
             'Renoir_sem.png', 'examples/Landscape_example.png', (345, 0, 960, 385),
             'docs/Landscape_example.png', 3, 80),
    Showcase('seth', 'Seth as Gogh', 'Seth.jpg', 'Seth_sem.png', 'Gogh.jpg', 'Gogh_sem.png',
             'examples/Portraits_example.jpg', (622, 463, 960, 876),
             'docs/Portraits_example.jpg', 4, 40,
             # With VGG16 the literal content weight 10 gives Gogh's own portrait back (so do
             # 40 and 160); 1000 keeps Seth as neural-doodle's result does (docs/figures.md).
             extra=(('doodle_content', 'ours, doodle preset, content weight 1000', 'doodle',
                     (('content_weight', 1000.0),)),)),
)

#: The runs of every showcase: (name, caption, preset, preset fields as (field, value) pairs).
RUNS = (('doodle', 'ours, doodle preset', 'doodle', ()),
        ('dsanno', 'ours, dsanno preset', 'dsanno', ()))


def options(showcase, run, data_dir):
    """The preset fields of a showcase's run: neural-doodle's phases and iterations, and for
    the dsanno preset the map's width (its levels are at most 3) and the same steps per level;
    seed 0; then the run's own fields."""
    _, _, preset, fields = run
    if preset == 'doodle':
        chosen = {'resolution_num': showcase.phases}
    else:
        width = image.load_image(os.path.join(data_dir, showcase.content_map)).shape[1]
        chosen = {'width': width, 'resolution_num': min(showcase.phases, 3)}
    return {**chosen, 'iterations': showcase.iterations, 'seed': 0, **dict(fields)}


def required_files(showcases=SHOWCASES):
    """Every file the showcases read, relative to the data folder."""
    return sorted({path for s in showcases for path in (s.content, s.content_map, s.style,
                                                         s.style_map, s.published) if path})


def check_data(data_dir, showcases=SHOWCASES):
    """Raises ``FileNotFoundError`` naming every file missing from ``data_dir``."""
    missing = [f for f in required_files(showcases)
               if not os.path.isfile(os.path.join(data_dir, f))]
    if missing:
        raise FileNotFoundError('%s lacks %s (expected the neural-doodle data folder: its '
                                'samples and examples/)' % (data_dir, ', '.join(missing)))


def reproduce(data_dir, out_dir, *, showcases=SHOWCASES, device=-1, progress=None,
              reuse=False, **overrides):
    """Runs each showcase's runs (:meth:`Showcase.runs`), each in a process of its own, and
    draws the sheets and the table.

    Args:
        data_dir (str): neural-doodle's data folder.
        out_dir (str): where ``showcases/`` and ``sheets/`` go.
        showcases (sequence of Showcase): which. Default: all of :data:`SHOWCASES`.
        device (int or str): as :func:`chainer_mrf.synthesize`. Default: -1 (CPU).
        progress (callable or None): called with a line of text per run. Default: ``None``.
        reuse (bool): a run whose ``record.json`` holds the settings it would run with is
            not run again. Default: ``False``.
        **overrides: preset fields applied to every run (fewer ``iterations``, for a quick
            look).

    Returns:
        list: the paths of the sheets, then of the table.
    """
    check_data(data_dir, showcases)
    records = {}
    for showcase in showcases:
        for run in showcase.runs():
            folder = _folder(out_dir, showcase, run)
            settings = {'preset': run[2], 'device': device,
                        **options(showcase, run, data_dir), **overrides}
            record = load_record(folder)
            if not (reuse and record is not None and record['settings'] == settings):
                record = _run(showcase, settings, data_dir, folder)
            records[showcase.name, run[0]] = record
            if progress is not None:
                progress('%s (%s): %.0f s, peak %d MiB' % (showcase.name, run[0],
                                                           record['seconds'],
                                                           record['peak_mib']))
    os.makedirs(os.path.join(out_dir, 'sheets'), exist_ok=True)
    written = []
    for showcase in showcases:
        path = os.path.join(out_dir, 'sheets', 'showcase_%s.png' % showcase.name)
        image.save_image(path, _sheet(showcase, data_dir, out_dir))
        written.append(path)
    table = os.path.join(out_dir, 'sheets', 'showcases.md')
    with _io.atomic_path(table) as temporary:
        with open(temporary, 'w') as f:
            f.write(markdown(showcases, records))
    return written + [table]


def load_record(folder):
    """A finished run's ``record.json`` (written after ``out.png``), or ``None``."""
    path = os.path.join(folder, 'record.json')
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(folder, 'out.png'))):
        return None
    with open(path) as f:
        return json.load(f)


def published(showcase, data_dir):
    """neural-doodle's published result of a showcase, cut out of its figure."""
    return numpy.asarray(Image.open(os.path.join(data_dir, showcase.published))
                         .convert('RGB').crop(showcase.crop))


def markdown(showcases, records):
    """The table of runs: size, levels and steps, wall time, peak memory."""
    lines = ['| showcase | run | size | levels x steps | wall time | peak memory |',
             '|---|---|---|---|---|---|']
    for showcase in showcases:
        for name, caption, _, _ in showcase.runs():
            record = records[showcase.name, name]
            lines.append('| %s | %s | %s | %d x %s | %.0f s | %d MiB |' % (
                showcase.title, caption[len('ours, '):], record['size'], record['levels'],
                record['settings']['iterations'], record['seconds'], record['peak_mib']))
    return '\n'.join(lines) + '\n'


def export(out_dir, target_dir, showcases=SHOWCASES):
    """Writes our results into ``target_dir`` as small PNGs, ``showcase_<name>_<run>.png``
    (:func:`paper.figures.save_small`); neural-doodle's images are linked, not copied.

    Returns:
        list: the paths written.
    """
    from paper.figures import save_small
    os.makedirs(target_dir, exist_ok=True)
    written = []
    for showcase in showcases:
        for run in showcase.runs():
            folder = _folder(out_dir, showcase, run)
            written.append(os.path.join(target_dir, 'showcase_%s.png'
                                        % os.path.basename(folder)))
            save_small(os.path.join(folder, 'out.png'), written[-1])
    return written


def _folder(out_dir, showcase, run):
    """A run's folder: ``<out>/showcases/<showcase>_<run>``."""
    return os.path.join(out_dir, 'showcases', '%s_%s' % (showcase.name, run[0]))


def _run(showcase, settings, data_dir, folder):
    """One run in a fresh Python process (its peak memory is its own); returns its record."""
    os.makedirs(folder, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(folder, 'record.json'))  # not finished until written again
    request = json.dumps({'showcase': dataclasses.asdict(showcase), 'settings': settings,
                          'data_dir': data_dir, 'folder': folder})
    code = 'import sys; sys.path.insert(0, %r); from paper import doodles; doodles._child()' % (
        ROOT,)
    done = subprocess.run([sys.executable, '-c', code], input=request, stdout=subprocess.PIPE,
                          text=True)
    if done.returncode:
        raise RuntimeError('the %s run of %s failed (its error is above)'
                           % (settings['preset'], showcase.name))
    record = json.loads(done.stdout.splitlines()[-1])
    record['machine'] = '%s, %d cores' % (_cpu(), os.cpu_count())
    with _io.atomic_path(os.path.join(folder, 'record.json')) as temporary:
        with open(temporary, 'w') as f:
            json.dump(record, f, indent=1)
    return record


def _child():
    """A run's process: the request (JSON) on standard input, the record on standard output."""
    request = json.load(sys.stdin)
    showcase = Showcase(**{**request['showcase'], 'crop': tuple(request['showcase']['crop'])})
    print(json.dumps(_synthesize(showcase, request['settings'], request['data_dir'],
                                 request['folder'])))


def _synthesize(showcase, settings, data_dir, folder):
    """The run itself: its result into ``folder``; returns its measurements."""
    options = dict(settings)
    preset, device = options.pop('preset'), options.pop('device')
    steps = []

    def source(path):
        return None if path is None else os.path.join(data_dir, path)
    start = time.perf_counter()
    result = synthesize(source(showcase.content), source(showcase.style),
                        content_map=source(showcase.content_map),
                        style_map=source(showcase.style_map), preset=preset, device=device,
                        callback=lambda step: steps.append((step.level, step.losses)),
                        **options)
    seconds = time.perf_counter() - start
    image.save_image(os.path.join(folder, 'out.png'), result)
    return {'settings': settings, 'seconds': seconds,
            'peak_mib': memory.peak_resident() >> 20,
            'size': '%dx%d' % (result.shape[1], result.shape[0]),
            'levels': len({level for level, _ in steps}), 'steps': len(steps),
            'last_energy': steps[-1][1], 'date': time.strftime('%Y-%m-%d'),
            'preset_fields': dataclasses.asdict(presets.get_preset(preset).replace(**options))}


def _cpu():
    """The processor's model name (Linux), else what Python knows of the machine."""
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    return platform.machine()


def _sheet(showcase, data_dir, out_dir):
    """The inputs, our results and neural-doodle's, side by side."""
    from paper.figures import _montage  # the figures' own sheet layout
    panels = []
    if showcase.content:
        panels.append((image.load_image(os.path.join(data_dir, showcase.content)), 'content'))
    panels += [(image.load_image(os.path.join(data_dir, showcase.content_map)),
                'content map' if showcase.content else 'doodle'),
               (image.load_image(os.path.join(data_dir, showcase.style)), 'style')]
    for run in showcase.runs():
        panels.append((image.load_image(os.path.join(_folder(out_dir, showcase, run),
                                                     'out.png')), run[1]))
    panels.append((published(showcase, data_dir), 'neural-doodle (published)'))
    return _montage([panels], showcase.title)
