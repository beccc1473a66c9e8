"""The content-weight sweeps, calibrated: from the finished runs of the ``balance`` figure
(``paper/figures.py``), which of our content weights (VGG16, cnnmrf preset) gives the balance
of each of the authors' results of its pair (:data:`paper.figures.AUTHORS`), against the
weight the paper made it with; Markdown tables.

Why not the closest result: the MS-SSIM between one of our results and one of the authors'
rises with the content weight whichever of the authors' images it is measured against, since
all of them keep the content's structure and a result with more content is closer to every
one of them (on the portrait it peaks at the sweep's largest weights for both "more content"
and "balanced"). So the direct similarity calibrates nothing; it is kept in the sweep's table
as a secondary column, and the calibration places every image on the content-style axis by
what it kept of the content instead:

(a) **structure kept**: ``ms_ssim(image, content)`` (:func:`paper.measures.ms_ssim`, on
    luminance, 1 for the content itself), the primary measure: it is what "looks like" refers
    to in the paper's interpolation figure (Fig. 6);
(b) **colours kept**: ``colour_distance(image, content)``
    (:func:`paper.measures.colour_distance`, sliced Wasserstein-1 in CIELAB, 0 for the
    content's colours), a cross-check.

The content is taken as the synthesis saw it: the pair's content image resized to the measured
image's size with Pillow's bilinear filter (the cnnmrf preset resizes with Torch's bilinear
rule, :func:`chainer_mrf.image.resize_bilinear`, an area average when shrinking: on the
photo/cartoon contents the two differ by 0.4 to 1.1 levels on average, an MS-SSIM of 0.9994
between them). The authors' images have
our results' sizes (the cnnmrf size rule, longer side 384: the portrait's 298 x 384, photo to
cartoon 259 x 384, cartoon to photo 269 x 384), so both are measured against the same content
pixels; for the portrait the content image already is 298 x 384 and is used as it is. The
colour distance to the style (resized likewise, under the cnnmrf size rule to the image's
longer side; ``picasso.jpg``, 300 x 384, at its own size) is shown beside them.

Each of our measures is then a function of the content weight over the finished runs of the
sweep, and for each of the authors' images the calibrated weight is the one at which our
measure equals theirs, interpolated linearly in log(weight) between the two sweep weights
that bracket it (:func:`interpolate`); outside the sweep it is reported as "below" its
smallest or "above" its largest finished weight. The calibration assumes the measure monotone
in the weight; :func:`interpolate` checks it, and a sweep that is not gives every crossing,
flagged. On the portrait's sweep (weights 10 to 640 in octaves) both are monotone:
structure kept 0.340, 0.376, 0.459, 0.563, 0.720, 0.835, 0.878, rising; colour distance to
the content 15.9, 15.7, 15.1, 12.4, 7.8, 4.5, 3.3, falling. The authors' three portraits
(Fig. 6: 4e1 more content, 2e1 balanced, 1e1 more style) keep 0.831, 0.639, 0.515 of the
structure and lie 5.7, 13.3, 15.7 from the content's colours: by structure, our weights 312,
112 and 58 (7.8, 5.6 and 5.8 times the paper's); by colour, 250, 63 and 21 (6.2, 3.2 and
2.1 times): at the same structure kept, our results keep more of the content's colours than
the authors'.

:func:`calibrate` returns the calibrated weights as data, :func:`report` the Markdown that
``scripts/reproduce_figures.py --only balance`` prints and writes to ``<out>/sheets/balance.md``.

Like the rest of ``paper/`` this module is no part of the library and is not installed with it.
"""
import collections
import dataclasses
import math
import os
import typing

from chainer_mrf import image
from paper import figures, measures

#: One of our results against one of the authors' (the direct similarity, secondary): ``run``
#: (its folder name), ``pair`` (a name of :data:`paper.figures.PAIRS`), ``weight`` (its content
#: weight), ``reference`` (the authors' image, relative to the data folder), ``ms_ssim`` (the
#: authors' image resized to ours with Pillow's bicubic filter if the sizes differ) and
#: ``colour`` (the colour distance).
Score = collections.namedtuple('Score', 'run pair weight reference ms_ssim colour')

#: One image on the content-style axis: ``name`` (our run's folder name, or the authors'
#: image's path relative to the data folder), ``pair``, ``weight`` (our content weight, or the
#: paper's for the authors' image), ``structure`` (MS-SSIM to the content), ``to_content`` and
#: ``to_style`` (colour distances to the content and the style, as the synthesis saw them).
Placement = collections.namedtuple('Placement', 'name pair weight structure to_content to_style')

#: The measures of the calibration, as (field of :class:`Placement`, what it says): the
#: primary one first.
MEASURES = (('structure', 'structure kept'), ('to_content', 'colours kept'))


def paper_weights():
    """The content weight the paper made each of the authors' results with, by its path: those
    of the ``tradeoff`` figure (Fig. 6: 4e1, 2e1, 1e1) and the ``photo_cartoon`` figure (2e1,
    5), whose runs and references come in the same order."""
    weights = {}
    for name in ('tradeoff', 'photo_cartoon'):
        figure = figures.get_figure(name)
        for run, (path, _) in zip(figure.runs, figure.references):
            weights[path] = float(run.options['content_weight'])
    return weights


def _number(value):
    """A weight or a ratio as text: three significant digits, whole numbers from 100 up."""
    return '%.0f' % value if abs(value) >= 100 else '%.3g' % value


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Where a measure of ours equals a target value (:func:`interpolate`).

    Attributes:
        crossings (tuple of float): the weights where it does, lowest first: one for a
            monotone sweep, none when the target lies outside the sweep's values, possibly
            several for a sweep that is not monotone.
        side (str or None): with no crossing, ``'below'`` or ``'above'``: the target lies
            beyond the sweep's value at its smallest or its largest weight (``None`` with a
            crossing).
        bound (float or None): that smallest or largest weight (``None`` with a crossing).
        monotone (bool): whether the measure is strictly monotone over the sweep.
    """

    crossings: typing.Tuple[float, ...]
    side: typing.Optional[str]
    bound: typing.Optional[float]
    monotone: bool

    @property
    def weight(self):
        """The calibrated weight: the only crossing, else ``None`` (outside the sweep, or
        several crossings)."""
        return self.crossings[0] if len(self.crossings) == 1 else None

    def text(self, per=1.0):
        """The weight as text, divided by ``per`` (the paper's weight, for the ratio):
        ``'113'``, ``'below 10'``, ``'above 320'``, or ``'30 or 60 (sweep not monotone)'``."""
        if self.crossings:
            text = ' or '.join(_number(weight / per) for weight in self.crossings)
        elif self.side is not None:
            text = '%s %s' % (self.side, _number(self.bound / per))
        else:
            text = 'outside the sweep'
        return text if self.monotone else text + ' (sweep not monotone)'


def trend(values):
    """``'rises'`` or ``'falls'`` if ``values`` are strictly monotone, else ``'not monotone'``
    (a sequence of fewer than two values is monotone: ``'rises'``)."""
    steps = [b - a for a, b in zip(values, values[1:])]
    if all(step > 0 for step in steps):
        return 'rises'
    if all(step < 0 for step in steps):
        return 'falls'
    return 'not monotone'


def interpolate(weights, values, target):
    """The weight at which a measure equals ``target``, linear in log(weight) between the two
    sweep weights whose values bracket it.

    Between weights ``w0 < w1`` with values ``v0`` and ``v1`` (``target`` between them)::

        log w = log w0 + (target - v0) / (v1 - v0) * (log w1 - log w0)

    A target equal to a sweep value is that weight. A monotone sweep has at most one crossing;
    one that is not may have several, each reported (:class:`Calibration`).

    Args:
        weights (sequence of float): the sweep's weights, positive and increasing.
        values (sequence of float): the measure at each, finite.
        target (float): the value to find.

    Returns:
        Calibration: the crossings, or the side of the sweep the target lies beyond.

    Raises:
        ValueError: with fewer than two weights, lengths that differ, weights not positive and
            strictly increasing, or a value or target that is not finite.

    Examples:
        >>> round(interpolate([40, 80], [0.4, 0.6], 0.5).weight, 3)  # 40 * 2 ** 0.5
        56.569
        >>> interpolate([10, 20], [0.4, 0.6], 0.7).text()
        'above 20'
    """
    weights = [float(w) for w in weights]
    values = [float(v) for v in values]
    target = float(target)
    if len(weights) != len(values) or len(weights) < 2:
        raise ValueError('interpolate needs two or more weights and as many values, got %d '
                         'and %d' % (len(weights), len(values)))
    if not (weights[0] > 0 and all(b > a for a, b in zip(weights, weights[1:]))):
        raise ValueError('the weights must be positive and strictly increasing, got %s'
                         % (weights,))
    if not all(math.isfinite(v) for v in values + [target]):
        raise ValueError('the values and the target must be finite')
    crossings = []
    for k, (w, v) in enumerate(zip(weights, values)):
        if v == target:
            crossings.append(w)
        if k + 1 < len(weights) and min(v, values[k + 1]) < target < max(v, values[k + 1]):
            share = (target - v) / (values[k + 1] - v)
            crossings.append(math.exp(math.log(w) + share * (math.log(weights[k + 1])
                                                             - math.log(w))))
    monotone = trend(values) != 'not monotone'
    if crossings:
        return Calibration(tuple(crossings), None, None, monotone)
    # Beyond the sweep's values: on the side of the end whose value it passes.
    rising = values[-1] > values[0]
    if values[-1] == values[0]:
        return Calibration((), None, None, monotone)
    above = (target > max(values)) == rising
    return Calibration((), 'above' if above else 'below',
                       weights[-1] if above else weights[0], monotone)


class _Inputs:
    """The pairs' content and style images, read once, resized once per size."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.loaded = {}
        self.resized = {}

    def _load(self, path):
        if path not in self.loaded:
            self.loaded[path] = image.load_image(os.path.join(self.data_dir, path))
        return self.loaded[path]

    def content(self, pair, shape):
        """The pair's content at ``shape`` (H, W), as the synthesis saw it."""
        key = ('content', pair, shape)
        if key not in self.resized:
            rgb = self._load(figures.PAIRS[pair][0])
            self.resized[key] = (rgb if rgb.shape[:2] == shape
                                 else image.resize_pil(rgb, shape[::-1]))
        return self.resized[key]

    def style(self, pair, shape):
        """The pair's style under the cnnmrf size rule to the longer side of ``shape``."""
        rgb = self._load(figures.PAIRS[pair][1])
        size = image.cnnmrf_size(rgb.shape[1], rgb.shape[0], max(shape))
        key = ('style', pair, size)
        if key not in self.resized:
            self.resized[key] = (rgb if size == rgb.shape[1::-1]
                                 else image.resize_pil(rgb, size))
        return self.resized[key]

    def reference(self, path):
        """One of the authors' images."""
        return self._load(path)


def place(rgb, content, style):
    """An image's place on the content-style axis.

    Args:
        rgb (numpy.ndarray): the image, uint8 RGB.
        content (numpy.ndarray): the content as the synthesis saw it, at ``rgb``'s size.
        style (numpy.ndarray): the style as the synthesis saw it, any size.

    Returns:
        tuple: ``(structure, to_content, to_style)``: MS-SSIM to the content, colour distances
        to the content and to the style.
    """
    return (measures.ms_ssim(rgb, content), measures.colour_distance(rgb, content),
            measures.colour_distance(rgb, style))


#: Everything :func:`report` shows (:func:`measure`): ``sweep``, our finished runs' placements
#: in the figure's order; ``authors``, the authors' images' placements, pair by pair;
#: ``scores``, the direct similarities (:class:`Score`); ``missing``, the unfinished runs'
#: names; ``pairs``, the figure's pairs in order.
Measured = collections.namedtuple('Measured', 'sweep authors scores missing pairs')


def measure(data_dir, out_dir, figure=None):
    """Places every finished run of the figure and each of the authors' images of its pairs,
    and scores each run against those images directly.

    Args:
        data_dir (str): the CNNMRF data folder: the pairs' content and style images and the
            authors' results.
        out_dir (str): the folder :func:`paper.figures.reproduce` wrote; each run's result is
            read from ``<out_dir>/<run>/out.png`` as it is, whatever settings made it (see its
            ``settings.json``). A run that has not finished (:func:`paper.figures.load_run`)
            is left out and named in ``missing``.
        figure (paper.figures.Figure or None): the runs, each with a ``content_weight`` option
            and a pair of :data:`paper.figures.PAIRS`. Default: ``None``, the ``balance``
            figure.

    Returns:
        Measured: the placements and scores.
    """
    figure = figure or figures.get_figure('balance')
    seen = _Inputs(data_dir)
    paper = paper_weights()
    sweep, found, missing = [], [], []
    pairs = list(dict.fromkeys(figures.pair_of(run) for run in figure.runs))
    for run in figure.runs:
        finished = figures.load_run(os.path.join(out_dir, run.name))
        if finished is None:
            missing.append(run.name)
            continue
        pair, rgb = figures.pair_of(run), finished.image
        weight = float(run.options['content_weight'])
        sweep.append(Placement(run.name, pair, weight, *place(
            rgb, seen.content(pair, rgb.shape[:2]), seen.style(pair, rgb.shape[:2]))))
        for path, _ in figures.AUTHORS[pair]:
            reference = seen.reference(path)
            found.append(Score(run.name, pair, weight, path, measures.ms_ssim(rgb, reference),
                               measures.colour_distance(rgb, reference)))
    authors = []
    for pair in pairs:
        for path, _ in figures.AUTHORS[pair]:
            rgb = seen.reference(path)
            authors.append(Placement(path, pair, paper.get(path), *place(
                rgb, seen.content(pair, rgb.shape[:2]), seen.style(pair, rgb.shape[:2]))))
    return Measured(sweep, authors, found, missing, pairs)


def scores(data_dir, out_dir, figure=None):
    """The direct similarities of every finished run to each of the authors' results of its
    pair (:func:`measure`'s ``scores``): run by run in the figure's order, each run's
    references in :data:`paper.figures.AUTHORS`'s order."""
    return measure(data_dir, out_dir, figure).scores


def calibrations(measured):
    """The calibrated weights of :func:`measure`'s placements.

    Returns:
        dict: for each pair, in the figure's order, a list with one entry per authors' image
        of the pair, ``(label, paper weight, by structure, by colour)``: its caption in
        :data:`paper.figures.AUTHORS`, the paper's weight, and the :class:`Calibration` by
        structure kept and by the colour distance to the content; both ``None`` when the pair
        has fewer than two finished runs.
    """
    result = {}
    for pair in measured.pairs:
        ours = [p for p in measured.sweep if p.pair == pair]
        entries = []
        for path, label in figures.AUTHORS[pair]:
            theirs = next(p for p in measured.authors if p.name == path)
            found = [None, None]
            if len(ours) >= 2:
                found = [interpolate([p.weight for p in ours],
                                     [getattr(p, field) for p in ours], getattr(theirs, field))
                         for field, _ in MEASURES]
            entries.append((label, theirs.weight, *found))
        result[pair] = entries
    return result


def calibrate(data_dir, out_dir, figure=None):
    """The calibrated weight of each of the authors' results (:func:`calibrations` of
    :func:`measure`; the arguments are :func:`measure`'s).

    Returns:
        dict: ``{pair: [(label, paper weight, by structure, by colour)]}``, each calibration a
        :class:`Calibration` (``.weight``, ``.text()``), or ``None`` for a pair with fewer
        than two finished runs.

    Examples:
        >>> found = calibrate('data/cnnmrf', 'out/figures')  # doctest: +SKIP
        >>> label, paper, by_structure, by_colour = found['portrait'][1]  # doctest: +SKIP
        >>> round(by_structure.weight / paper, 2)  # doctest: +SKIP
        5.59
    """
    return calibrations(measure(data_dir, out_dir, figure))


def tables(measured):
    """:func:`measure`'s placements as Markdown, pair by pair: (i) the sweep (weight, structure
    kept, colour distances to the content and the style, and the direct MS-SSIM to each of the
    authors' images), (ii) the authors' images (the paper's weight, the same measures), (iii)
    the calibrated weights by structure and by colour with their ratios to the paper's weight,
    and a line on each measure's monotonicity; or a line saying there is no calibration.

    Returns:
        str: Markdown text.
    """
    captions = {path: label for references in figures.AUTHORS.values()
                for path, label in references}
    calibrated = calibrations(measured)
    direct = {(s.run, s.reference): s.ms_ssim for s in measured.scores}
    text = []
    for pair in measured.pairs:
        ours = [p for p in measured.sweep if p.pair == pair]
        theirs = [p for p in measured.authors if p.pair == pair]
        references = [path for path, _ in figures.AUTHORS[pair]]
        text += ['### %s' % pair, '']
        if ours:
            text += ['The sweep:', '', figures.markdown_table(
                ['content weight', 'structure kept', 'colour distance to content',
                 'colour distance to style'] + ['MS-SSIM to %s' % captions[r]
                                                for r in references],
                [['%g' % p.weight, '%.3f' % p.structure, '%.1f' % p.to_content,
                  '%.1f' % p.to_style] + ['%.3f' % direct[p.name, r] for r in references]
                 for p in ours])]
        text += ["The authors' images:", '', figures.markdown_table(
            ("authors' image", "paper's weight", 'structure kept', 'colour distance to content',
             'colour distance to style'),
            [(captions[p.name], '%g' % p.weight, '%.3f' % p.structure, '%.1f' % p.to_content,
              '%.1f' % p.to_style) for p in theirs])]
        if len(ours) < 2:
            text += ['No calibration: %d finished run%s of this pair, two are needed.'
                     % (len(ours), '' if len(ours) == 1 else 's'), '']
            continue
        weights = ', '.join('%g' % p.weight for p in ours)
        text += ['Over the finished weights (%s), structure kept %s and the colour distance to '
                 'the content %s with the content weight.'
                 % (weights, _trend_text([p.structure for p in ours]),
                    _trend_text([p.to_content for p in ours])), '']
        text += ['The calibrated weights (where our measure equals the authors\' image\'s, '
                 'linear in log(weight) between the bracketing runs):', '',
                 figures.markdown_table(
                     ("authors' image", "paper's weight", 'by structure', 'by colour',
                      'ratio by structure', 'ratio by colour'),
                     [(label, '%g' % paper, by_structure.text(), by_colour.text(),
                       by_structure.text(paper), by_colour.text(paper))
                      for label, paper, by_structure, by_colour in calibrated[pair]])]
    return '\n'.join(text)


def _trend_text(values):
    """How a measure goes with the weight, in words."""
    kind = trend(values)
    return (kind + ' monotonically' if kind != 'not monotone'
            else 'is NOT monotone (every crossing is reported, flagged)')


def report(data_dir, out_dir, figure=None):
    """The sweep's calibration (:func:`tables` of :func:`measure`) as Markdown, with the
    unfinished runs named.

    Args:
        data_dir (str): the CNNMRF data folder.
        out_dir (str): the folder :func:`paper.figures.reproduce` wrote.
        figure (paper.figures.Figure or None): the runs. Default: ``None``, the ``balance``
            figure.

    Returns:
        str: Markdown text.
    """
    figure = figure or figures.get_figure('balance')
    measured = measure(data_dir, out_dir, figure)
    text = ['## %s' % figure.title, '',
            "Each image, ours and the authors', placed on the content-style axis by what it "
            'kept of the content as the synthesis saw it (resized to the image\'s size, '
            "Pillow's bilinear filter): structure kept, the MS-SSIM on luminance to the content "
            '(1: the content\'s structure), and the colour distance to the content (sliced '
            'Wasserstein-1 in CIELAB, 0: the content\'s colours). The calibrated weight of one '
            "of the authors' images is the content weight at which our measure equals theirs, "
            'interpolated linearly in log(weight) between the two bracketing runs of the sweep; '
            'structure is the primary measure, colour a cross-check. The direct MS-SSIM to the '
            "authors' images is shown too, but calibrates nothing: it rises with the content "
            "weight against every one of them.", '',
            tables(measured)]
    if measured.missing:
        text += ['Not finished, left out: %s.' % ', '.join(measured.missing), '']
    return '\n'.join(text)
