"""The content-weight sweeps, measured: from the finished runs of the ``balance`` figure
(``paper/figures.py``), how close each result comes to each of the authors' results of its
pair (:data:`paper.figures.AUTHORS`), which weight comes closest, and, for the portrait, how
the paper's own weights fare against that calibrated weight; Markdown tables.

Closeness is MS-SSIM on luminance (:func:`paper.measures.ms_ssim`, higher is closer; the
authors' image is resized to our result's size with Pillow's bicubic filter), with the colour
distance (:func:`paper.measures.colour_distance`, CIELAB units, lower is closer; each image
at its own size, since only the colours' distribution counts) as a second measure.

Like the rest of ``paper/`` this module is no part of the library and is not installed with it.
"""
import collections
import os

from chainer_mrf import image
from paper import figures, measures

#: One of our results against one of the authors': ``run`` (its folder name), ``pair`` (a name
#: of :data:`paper.figures.PAIRS`), ``weight`` (its content weight), ``reference`` (the
#: authors' image, relative to the data folder), ``ms_ssim`` and ``colour`` (the distance).
Score = collections.namedtuple('Score', 'run pair weight reference ms_ssim colour')


def scores(data_dir, out_dir, figure=None):
    """Scores every finished run of the figure against each of the authors' results of its pair.

    Args:
        data_dir (str): the CNNMRF data folder, for the authors' results.
        out_dir (str): the folder :func:`paper.figures.reproduce` wrote; each run's result is
            read from ``<out_dir>/<run>/out.png`` as it is, whatever settings made it (see its
            ``settings.json``). A run that has not finished (:func:`paper.figures.load_run`)
            is left out.
        figure (paper.figures.Figure or None): the runs, each with a ``content_weight``
            option. Default: ``None``, the ``balance`` figure.

    Returns:
        list of Score: run by run in the figure's order, each run's references in
        :data:`paper.figures.AUTHORS`'s order.
    """
    figure = figure or figures.get_figure('balance')
    loaded = {}  # each reference, read once
    found = []
    for run in figure.runs:
        finished = figures.load_run(os.path.join(out_dir, run.name))
        if finished is None:
            continue
        pair = figures.pair_of(run)
        for path, _ in figures.AUTHORS[pair]:
            if path not in loaded:
                loaded[path] = image.load_image(os.path.join(data_dir, path))
            found.append(Score(run.name, pair, run.options['content_weight'], path,
                               measures.ms_ssim(finished.image, loaded[path]),
                               measures.colour_distance(finished.image, loaded[path])))
    return found


def best(found):
    """For each of the authors' results, the score of the weight closest to it (the highest
    MS-SSIM), keyed by the reference's path, in the order first scored."""
    closest = {}
    for score in found:
        if score.reference not in closest or score.ms_ssim > closest[score.reference].ms_ssim:
            closest[score.reference] = score
    return closest


def literal(found, tradeoff=None):
    """The paper's own weights against the calibrated ones: for each of the authors' results
    of Fig. 6, the score of our run at the weight the paper made it with, and the best score
    (:func:`best`).

    The paper's weights are those of the ``tradeoff`` figure, whose runs and references come
    in the same order (4e1 more content, 2e1 balanced, 1e1 more style); the scores are the
    sweep's runs of the same pair at those weights.

    Args:
        found (sequence of Score): the sweep's scores (:func:`scores`).
        tradeoff (paper.figures.Figure or None): the paper's weights. Default: ``None``, the
            ``tradeoff`` figure.

    Returns:
        list of tuple: ``(reference, weight, literal score or None, best score or None)``,
        ``None`` where no run of the sweep has that weight or that reference.
    """
    tradeoff = tradeoff or figures.get_figure('tradeoff')
    closest = best(found)
    pairs = []
    for run, (reference, _) in zip(tradeoff.runs, tradeoff.references):
        weight = run.options['content_weight']
        at_weight = next((s for s in found if s.reference == reference and s.weight == weight
                          and s.pair == figures.pair_of(run)), None)
        pairs.append((reference, weight, at_weight, closest.get(reference)))
    return pairs


def table(found, tradeoff=None):
    """The scores as Markdown: a table per pair, one row per run (MS-SSIM and colour distance
    against each of the authors' results of the pair, the best MS-SSIM of each column in
    bold), the closest weight to each of the authors' results, and the paper's weights against
    them (:func:`literal`).

    Args:
        found (sequence of Score): the scores (:func:`scores`).
        tradeoff (paper.figures.Figure or None): as :func:`literal`. Default: ``None``.

    Returns:
        str: Markdown text.
    """
    closest = best(found)
    captions = {path: label for references in figures.AUTHORS.values()
                for path, label in references}
    text = []
    for pair in dict.fromkeys(score.pair for score in found):
        references = [path for path, _ in figures.AUTHORS[pair]]
        rows = {}  # each run's cells, in the order scored
        for score in (s for s in found if s.pair == pair):
            cells = rows.setdefault(score.run, {'weight': '%g' % score.weight})
            mark = '**' if closest[score.reference] is score else ''
            cells['ssim', score.reference] = '%s%.3f%s' % (mark, score.ms_ssim, mark)
            cells['colour', score.reference] = '%.1f' % score.colour
        header = (['content weight'] + ['MS-SSIM, %s' % captions[r] for r in references]
                  + ['colour distance, %s' % captions[r] for r in references])
        text += ['### %s' % pair, '', figures.markdown_table(header, [
            [cells['weight']] + [cells['ssim', r] for r in references]
            + [cells['colour', r] for r in references] for cells in rows.values()])]
    by_colour = {reference: min((s for s in found if s.reference == reference),
                                key=lambda s: s.colour) for reference in closest}
    text += ["### The closest weight to each of the authors' results", '',
             figures.markdown_table(
                 ("authors' result", 'closest weight (MS-SSIM)', 'MS-SSIM', 'colour distance',
                  'closest weight (colour distance)'),
                 [(captions[reference], '%g' % score.weight, '%.3f' % score.ms_ssim,
                   '%.1f' % score.colour, '%g' % by_colour[reference].weight)
                  for reference, score in closest.items()])]
    paper = literal(found, tradeoff)
    if any(calibrated is not None for *_, calibrated in paper):
        text += ["### The paper's weights against the calibrated ones (Fig. 6)", '',
                 figures.markdown_table(
                     ("authors' result", "paper's weight", 'MS-SSIM at it', 'calibrated weight',
                      'MS-SSIM at it'),
                     [(captions[reference], '%g' % weight,
                       'not run' if at_weight is None else '%.3f' % at_weight.ms_ssim,
                       '-' if calibrated is None else '%g' % calibrated.weight,
                       '-' if calibrated is None else '%.3f' % calibrated.ms_ssim)
                      for reference, weight, at_weight, calibrated in paper])]
    return '\n'.join(text)


def report(data_dir, out_dir, figure=None):
    """The sweep's tables (:func:`table` of :func:`scores`) as Markdown, with the unfinished
    runs named.

    Args:
        data_dir (str): the CNNMRF data folder.
        out_dir (str): the folder :func:`paper.figures.reproduce` wrote.
        figure (paper.figures.Figure or None): the runs. Default: ``None``, the ``balance``
            figure.

    Returns:
        str: Markdown text.
    """
    figure = figure or figures.get_figure('balance')
    found = scores(data_dir, out_dir, figure)
    scored = {score.run for score in found}
    missing = [run.name for run in figure.runs if run.name not in scored]
    text = ['## %s' % figure.title, '',
            "Our results against the authors': MS-SSIM on luminance (higher is closer; the "
            "authors' image resized to ours, bicubic) and the colour distance (sliced "
            'Wasserstein-1 in CIELAB between the two images\' pixel colours, lower is closer). '
            'The best MS-SSIM against each of the authors\' results is in bold.', '',
            table(found)]
    if missing:
        text += ['Not finished, left out: %s.' % ', '.join(missing), '']
    return '\n'.join(text)
