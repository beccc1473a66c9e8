"""paper/comparison.py on runs of the neural_style figure made by a stand-in synthesis with
crafted traces: the settle step and its seconds, the cumulated seconds, the level markers,
colour distances of identical images, the table's rows, and the command line's report."""
import os
import sys
import types

import numpy
import pytest

from chainer_mrf import image
from helpers import ROOT, content_card, style_stripes

# The figure set is no part of the library: it lies in paper/, imported from the project's
# root as scripts/reproduce_figures.py does.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from paper import comparison, figures, plot  # noqa: E402

#: The crafted trace of each preset: per level, the total energy and the seconds of each step.
#: Gram: one level that settles at its 5th step (10.5 is over 1.01 x 10, 10.05 is not). MRF:
#: three levels, the finest settling at its 2nd step (12 <= 1.01 x 11.9 < 20).
TRACES = {'gram': [([100.0, 50.0, 20.0, 10.5, 10.05, 10.0], [0.5] * 6)],
          'dsanno': [([5.0, 4.0, 3.0], [0.1] * 3), ([9.0, 8.0, 7.0], [0.2] * 3),
                     ([20.0, 12.0, 11.9], [0.4, 0.5, 0.6])]}


def _crafted_synthesis(calls):
    """A stand-in for ``chainer_mrf.synthesize``: reports the preset's crafted trace (each
    energy split into two terms) and returns the content image unchanged."""
    def synthesize(content, style, *, preset, callback, **_):
        calls.append(preset.name)
        rgb = image.load_image(content)
        iteration = 0
        for level, (energies, seconds) in enumerate(TRACES[preset.name]):
            for energy, step_seconds in zip(energies, seconds):
                iteration += 1
                callback(types.SimpleNamespace(
                    level=level, iteration=iteration, seconds=step_seconds,
                    losses={'content_4_2': energy / 4, 'style_3_2': 3 * energy / 4},
                    stop=None, image=lambda: rgb))
        return rgb
    return synthesize


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """(data folder, output folder, synthesis calls) after the command line made the
    neural_style figure with the stand-in: images 256 px wide, the presets' width, so that
    the content as the synthesis saw it is the file's own pixels, and 24 px high, so that the
    colour distances take little time."""
    data = tmp_path / 'data'
    for path in figures.required_files([figures.get_figure('neural_style')]):
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        picture = content_card() if path.startswith('content') else style_stripes()
        image.save_image(str(data / path), image.resize_pil(picture, (256, 24)))
    calls = []
    monkeypatch.setattr(figures, 'synthesize', _crafted_synthesis(calls))
    out = tmp_path / 'out'
    assert figures.main(['--data', str(data), '--out', str(out), '--only', 'neural_style']) == 0
    return str(data), str(out), calls


def test_measure_on_crafted_traces(runs):
    data, out, _ = runs
    gram, mrf = (comparison.measure(run, data, out)
                 for run in figures.get_figure('neural_style').runs[:2])
    assert (gram.name, gram.label, gram.levels, mrf.levels) == (
        'compare_portrait_gram', 'neural style (Gram)', 1, 3)
    numpy.testing.assert_allclose(gram.energy, TRACES['gram'][0][0])
    numpy.testing.assert_allclose(gram.seconds, [0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert (gram.settled, gram.settled_total, gram.settled_seconds) == (5, 5, 2.5)
    assert gram.level_starts == () and gram.seconds_per_step == 0.5
    numpy.testing.assert_array_equal(mrf.iterations, numpy.arange(1, 10))
    numpy.testing.assert_allclose(mrf.seconds, numpy.cumsum([0.1] * 3 + [0.2] * 3
                                                            + [0.4, 0.5, 0.6]))
    assert mrf.level_starts == (3, 6)
    # The finest level settles at its 2nd step: the 8th of all, after 0.3 + 0.6 + 0.9 s.
    assert (mrf.settled, mrf.settled_total) == (2, 8)
    assert mrf.settled_seconds == pytest.approx(1.8) and mrf.seconds_per_step == 0.5
    # The result is the content itself: no distance to it, the content's to the style.
    assert mrf.to_content == 0.0 and mrf.content_to_style > 10
    assert mrf.to_style == pytest.approx(mrf.content_to_style)


def test_an_unfinished_run_is_not_measured(runs):
    data, out, _ = runs
    run = figures.get_figure('neural_style').runs[0]
    os.remove(os.path.join(out, run.name, 'out.png'))
    assert comparison.measure(run, data, out) is None
    assert 'Not finished, left out: compare_portrait_gram.' in comparison.report(data, out)


def test_plots_normalise_and_mark_levels_and_settling(runs, monkeypatch, tmp_path):
    data, out, _ = runs
    measured = [comparison.measure(run, data, out)
                for run in figures.get_figure('neural_style').runs[:2]]
    drawn, original = [], plot.line_plot

    def line_plot(series, **options):
        drawn.append((series, options))
        return original(series, **options)
    monkeypatch.setattr(plot, 'line_plot', line_plot)
    paths = comparison.energy_plots(measured, str(tmp_path), 'portrait')
    assert paths == [str(tmp_path / 'sheets' / 'portrait_energy_iterations.png'),
                     str(tmp_path / 'sheets' / 'portrait_energy_seconds.png')]
    assert image.load_image(paths[0]).shape == (480, 800, 3)
    (iterations, by_step), (seconds, by_time) = drawn
    assert by_step['log_y'] and by_time['log_y']
    labels = [label for label, _, _ in iterations]
    assert labels == ['neural style (Gram)', 'MRF']
    for label, xs, ys in iterations:
        assert ys[-1] == 1.0  # each curve divided by its own final energy
    numpy.testing.assert_allclose(iterations[0][2], numpy.array(TRACES['gram'][0][0]) / 10)
    assert by_step['markers'] == [(5.0, 'neural style (Gram) settled'), (4.0, 'MRF level 2'),
                                  (7.0, 'MRF level 3'), (8.0, 'MRF settled')]
    assert [label for _, label in by_time['markers']] == [
        label for _, label in by_step['markers']]
    numpy.testing.assert_allclose([x for x, _ in by_time['markers']], [2.5, 0.5, 1.3, 1.8])
    numpy.testing.assert_allclose(seconds[1][1], measured[1].seconds)


def test_table_and_the_command_lines_report(runs, capsys):
    data, out, calls = runs
    assert calls == ['gram', 'dsanno', 'gram', 'dsanno']
    rows = comparison.table([comparison.measure(run, data, out)
                             for run in figures.get_figure('neural_style').runs]).splitlines()
    assert len(rows) == 2 + 4 and rows[0].startswith('| run | levels | steps | settled')
    assert rows[2].startswith('| compare_portrait_gram | 1 | 6 | 5 | 5 | 2 | 0.50 | 3 | 0.0 |')
    assert rows[3].startswith('| compare_portrait_mrf | 3 | 9 | 2 | 8 | 2 | 0.50 | 2 | 0.0 |')
    # Again with --reuse: nothing runs, the report is written beside the sheets and printed.
    capsys.readouterr()
    assert figures.main(['--data', data, '--out', out, '--only', 'neural_style',
                         '--reuse']) == 0
    assert len(calls) == 4
    printed = capsys.readouterr().out
    with open(os.path.join(out, 'sheets', 'neural_style.md')) as f:
        report = f.read()
    assert report in printed and '\n'.join(rows) in report
    assert 'compare_portrait_gram: reused' in printed
    for pair in ('portrait', 'photo_to_cartoon'):
        for axis in ('iterations', 'seconds'):
            name = '%s_energy_%s' % (pair, axis)
            assert '![%s](%s.png)' % (name, name) in report
            assert os.path.isfile(os.path.join(out, 'sheets', name + '.png'))
    assert 'Not finished' not in report
