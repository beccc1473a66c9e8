"""Neural style beside MRF, measured: from the finished runs of the ``neural_style`` figure
(``paper/figures.py``), each run's energy curve, when it settled, its time, and how far it
moved the colours; two energy plots per pair of inputs and a Markdown table.

The two methods minimise different functions (Gram-matrix terms against MRF terms, at other
layers and with other weights), so their energy values say nothing of one another: the plots
divide each run's curve by its own final energy, and so compare the curves' shapes and times,
not their values. A curve has settled where it comes down to 1.01 for good (the tolerance of
:func:`paper.measures.settled`, 1 %).

Like the rest of ``paper/`` this module is no part of the library and is not installed with it.
"""
import dataclasses
import os

import numpy

from chainer_mrf import image, inputs, presets
from paper import figures, measures, plot


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One finished run, measured (:func:`measure`).

    Attributes:
        name (str): the run's folder name.
        label (str): its caption.
        iterations (numpy.ndarray): the trace's step numbers, counted across levels from 1.
        energy (numpy.ndarray): the total energy of each step, the sum of its terms, at the
            image the step starts from (the trace's convention).
        seconds (numpy.ndarray): the seconds of the steps up to and including each one, all
            levels (the trace's step times summed: loading the network and building the
            style features between levels are not counted).
        level_starts (tuple of int): the index, into the arrays, of the first step of each
            level after the first (empty for a one-level run).
        settled (int): the steps of the finest level after which its energy stays within
            1 % of its last value (:func:`paper.measures.settled` on that level's energies).
        settled_total (int): the same moment in steps over all levels: the coarser levels'
            steps plus ``settled``.
        settled_seconds (float): the seconds of the steps up to that moment, all levels.
        seconds_per_step (float): the median seconds of a step of the finest level.
        to_content (float): the colour distance (:func:`paper.measures.colour_distance`,
            CIELAB units) of the result to the content image as the synthesis saw it.
        to_style (float): likewise to the style image.
        content_to_style (float): from the content to the style image: the scale of the two
            distances above.
    """

    name: str
    label: str
    iterations: numpy.ndarray
    energy: numpy.ndarray
    seconds: numpy.ndarray
    level_starts: tuple
    settled: int
    settled_total: int
    settled_seconds: float
    seconds_per_step: float
    to_content: float
    to_style: float
    content_to_style: float

    @property
    def levels(self):
        """The number of pyramid levels the run took."""
        return len(self.level_starts) + 1


def measure(run, data_dir, out_dir, tolerance=0.01):
    """Measures a finished run of a content and one style image.

    Args:
        run (paper.figures.Run): the run; its outputs are read from ``<out_dir>/<run.name>``
            (:func:`paper.figures.load_run`) as they are, whatever settings made them.
        data_dir (str): the CNNMRF data folder, for the content and style images.
        out_dir (str): the folder :func:`paper.figures.reproduce` wrote.
        tolerance (float): the relative excess over the final energy that counts as settled.
            Default: 0.01.

    Returns:
        Measurement or None: the measurements, or ``None`` if the run has not finished.
    """
    finished = figures.load_run(os.path.join(out_dir, run.name))
    if finished is None:
        return None
    trace = finished.trace
    energy = numpy.array([sum(value for key, value in record.items()
                              if key not in figures.TRACE_FIELDS) for record in trace])
    seconds = numpy.cumsum([record['seconds'] for record in trace])
    level_of = numpy.array([record['level'] for record in trace])
    level_starts = tuple(int(i) for i in numpy.flatnonzero(numpy.diff(level_of)) + 1)
    finest = level_starts[-1] if level_starts else 0
    settled = measures.settled(energy[finest:], tolerance)
    content, style = _as_seen(run, finished.settings, data_dir)
    return Measurement(
        run.name, run.label, numpy.array([record['iteration'] for record in trace]), energy,
        seconds, level_starts, settled, finest + settled, float(seconds[finest + settled - 1]),
        float(numpy.median([record['seconds'] for record in trace[finest:]])),
        measures.colour_distance(finished.image, content),
        measures.colour_distance(finished.image, style),
        measures.colour_distance(content, style))


def _as_seen(run, settings, data_dir):
    """The run's content and style images at the sizes its synthesis resized them to
    (:func:`chainer_mrf.inputs.synthesis_shapes` under the run's settings; a field that an
    older ``settings.json`` lacks takes its preset's value), resized with Pillow's bilinear
    filter: dsanno's resize, which the authors' preset replaces by Torch's bilinear rule on
    floats, a difference of a level or so that the colours' distribution does not show."""
    config = presets.get_preset(settings['name']).replace(**{
        field.name: settings[field.name] for field in dataclasses.fields(presets.Preset)
        if field.name in settings})
    loaded = inputs.load_inputs(os.path.join(data_dir, run.content),
                                os.path.join(data_dir, run.style))
    shape, (style_shape,) = inputs.synthesis_shapes(loaded, config)
    return (image.resize_pil(loaded.content, shape[::-1]),
            image.resize_pil(loaded.styles[0], style_shape[::-1]))


def energy_plots(measurements, out_dir, pair):
    """Draws the runs' energies, each divided by its own final energy, on a log axis against
    the iterations and against the seconds: ``<out_dir>/sheets/<pair>_energy_iterations.png``
    and ``<pair>_energy_seconds.png``.

    A dashed line marks the first step of each level after the first (``'<label> level k'``)
    and the step each run settled at (``'<label> settled'``).

    Args:
        measurements (sequence of Measurement): the runs, one curve each.
        out_dir (str): the folder :func:`paper.figures.reproduce` wrote.
        pair (str): the pair's name (:data:`paper.figures.PAIRS`), for the files and titles.

    Returns:
        list: the two paths.
    """
    os.makedirs(os.path.join(out_dir, 'sheets'), exist_ok=True)
    paths = []
    for axis, x_label, along in (
            ('iterations', 'iteration (steps over all levels)', lambda m: m.iterations),
            ('seconds', "seconds (the steps' times summed)", lambda m: m.seconds)):
        series = [(m.label, along(m), m.energy / m.energy[-1]) for m in measurements]
        markers = []
        for m in measurements:
            markers += [(float(along(m)[start]), '%s level %d' % (m.label, k))
                        for k, start in enumerate(m.level_starts, 2)]
            markers.append((float(along(m)[m.settled_total - 1]), '%s settled' % m.label))
        picture = plot.line_plot(
            series, title='%s: energy / its final value (different energies: compare shapes '
                          'and times)' % pair,
            x_label=x_label, y_label='energy / final energy', log_y=True, size=(800, 480),
            markers=markers)
        paths.append(os.path.join(out_dir, 'sheets', '%s_energy_%s.png' % (pair, axis)))
        image.save_image(paths[-1], numpy.asarray(picture))
    return paths


def table(measurements):
    """The measurements as a Markdown table, one row per run.

    Args:
        measurements (sequence of Measurement): the runs.

    Returns:
        str: the table, one line per row.
    """
    header = ('run', 'levels', 'steps', 'settled (steps of the finest level)',
              'settled (steps, all levels)', 'seconds to settle',
              'seconds per step (median, finest level)', 'seconds, all steps',
              'colour distance to content', 'to style', 'content to style')
    rows = [(m.name, '%d' % m.levels, '%d' % len(m.energy), '%d' % m.settled,
             '%d' % m.settled_total, '%.0f' % m.settled_seconds, '%.2f' % m.seconds_per_step,
             '%.0f' % m.seconds[-1], '%.1f' % m.to_content, '%.1f' % m.to_style,
             '%.1f' % m.content_to_style) for m in measurements]
    return figures.markdown_table(header, rows)


def report(data_dir, out_dir, figure=None):
    """Measures the figure's finished runs, draws each pair's energy plots
    (:func:`energy_plots`) and returns the table (:func:`table`) as Markdown, with the plots
    linked as from ``<out_dir>/sheets/`` and the unfinished runs named.

    Args:
        data_dir (str): the CNNMRF data folder.
        out_dir (str): the folder :func:`paper.figures.reproduce` wrote.
        figure (paper.figures.Figure or None): the runs. Default: ``None``, the
            ``neural_style`` figure.

    Returns:
        str: Markdown text.
    """
    figure = figure or figures.get_figure('neural_style')
    pairs = {}  # the measurements of each pair's finished runs, in the figure's order
    missing = []
    for run in figure.runs:
        measured = measure(run, data_dir, out_dir)
        if measured is None:
            missing.append(run.name)
        else:
            pairs.setdefault(figures.pair_of(run), []).append(measured)
    text = ['## %s' % figure.title, '',
            'The two energies are different functions: the table and the plots compare when '
            'and how fast each run settles, not energy values. "Settled" is the step from '
            'which the total energy stays within 1 % of its last value, counted in steps of '
            'the finest level and, for a multi-level run, in steps over all levels; seconds '
            "are the steps' own times summed. Colour distances are the sliced Wasserstein-1 "
            'distance in CIELAB between pixel colours, to the content and style images at '
            'the sizes the synthesis used (resized with Pillow\'s bilinear filter).', '',
            table([m for measured in pairs.values() for m in measured])]
    for pair, measured in pairs.items():
        for path in energy_plots(measured, out_dir, pair):
            text.append('![%s](%s)' % (os.path.splitext(os.path.basename(path))[0],
                                       os.path.basename(path)))
    if missing:
        text += ['', 'Not finished, left out: %s.' % ', '.join(missing)]
    return '\n'.join(text) + '\n'
