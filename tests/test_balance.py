"""paper/balance.py: the log-linear interpolation on crafted values (known answers, outside the
sweep, a sweep that is not monotone), and the calibration on runs of the balance figure made
by a stand-in synthesis whose results are crafted blends of the content and the style, the
blend's share of the content rising with the content weight, with the authors' images crafted
likewise, so that their calibrated weights are known: the tables' rows, unfinished runs, a
pair with too few runs, and the command line's report."""
import math
import os
import sys
import types

import numpy
import pytest

from chainer_mrf import image
from helpers import ROOT

# The figure set is no part of the library: it lies in paper/, imported from the project's
# root as scripts/reproduce_figures.py does.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from paper import balance, figures  # noqa: E402

PORTRAIT = ('examples/Interpolation/2_morecontent.png', 'examples/Interpolation/3_balanced.png',
            'examples/Interpolation/4_morestyle.png')

#: The authors' images, crafted: the blend (:func:`_blend`) at the share of the content a
#: weight gives (:func:`_share`), or the content (share 1) or the style (share 0) itself.
CRAFTED = {PORTRAIT[0]: 40 * 2 ** 0.5,  # between our runs at 40 and 80
           PORTRAIT[1]: 80.0,  # our run at 80 exactly
           PORTRAIT[2]: 'style',  # less content than any run: below 10
           'examples/0_to_0.png': 'content',  # more than any: above 160
           'examples/1_to_1.png': 20.0}  # our run at 20 exactly


def _picture(seed):
    """A smooth random 48 x 64 picture, a different one for each seed."""
    coarse = numpy.random.RandomState(seed).randint(0, 256, (4, 3, 3)).astype(numpy.uint8)
    return image.resize_pil(coarse, (48, 64))


def _share(weight):
    """The content's share of the stand-in's result at a content weight: rising, 0.23 at 5 to
    0.93 at 640."""
    return math.log2(weight) / 10


def _blend(content, style, share):
    """``share`` of the content and the rest of the style (resized to the content's size)."""
    style = image.resize_pil(style, content.shape[1::-1])
    return numpy.round(share * content.astype(float) + (1 - share) * style).astype(numpy.uint8)


def _crafted_synthesis(calls):
    """A stand-in for ``chainer_mrf.synthesize`` returning, after one step, the blend of the
    content and the style at the weight's share (:func:`_share`)."""
    def synthesize(content, style, *, preset, callback, **_):
        calls.append(preset.content_weight)
        rgb = _blend(image.load_image(content), image.load_image(style),
                     _share(preset.content_weight))
        callback(types.SimpleNamespace(level=0, iteration=1, seconds=0.1, losses={'tv': 1.0},
                                       stop=None, image=lambda: rgb))
        return rgb
    return synthesize


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """(data folder, output folder, synthesis calls) after the command line made the balance
    figure with the stand-in, from a data folder of distinct generated pictures and the
    authors' images crafted as :data:`CRAFTED` says."""
    data = tmp_path / 'data'
    for seed, path in enumerate(figures.required_files([figures.get_figure('balance')])):
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        image.save_image(str(data / path), _picture(seed))
    for pair, references in figures.AUTHORS.items():
        content, style = (image.load_image(str(data / path)) for path in figures.PAIRS[pair])
        for path, _ in references:
            made = CRAFTED[path]
            rgb = (content if made == 'content' else _blend(content, style, 0.0)
                   if made == 'style' else _blend(content, style, _share(made)))
            image.save_image(str(data / path), rgb)
    calls = []
    monkeypatch.setattr(figures, 'synthesize', _crafted_synthesis(calls))
    out = tmp_path / 'out'
    assert figures.main(['--data', str(data), '--out', str(out), '--only', 'balance']) == 0
    return str(data), str(out), calls


def test_the_log_linear_interpolation():
    weights, values = (10, 20, 40, 80, 160), (0.2, 0.3, 0.4, 0.6, 0.7)
    found = balance.interpolate(weights, values, 0.5)
    assert found.weight == pytest.approx(40 * 2 ** 0.5) and len(found.crossings) == 1
    assert (found.side, found.bound, found.monotone) == (None, None, True)
    assert (found.text(), found.text(per=20)) == ('56.6', '2.83')
    # A falling measure (a colour distance to the content): halfway from 12 to 8.
    assert balance.interpolate((10, 20, 40, 80), (16, 15, 12, 8), 10).weight == pytest.approx(
        40 * 2 ** 0.5)
    # A sweep value is its weight exactly, once, the ends included.
    for target, weight in ((0.4, 40.0), (0.2, 10.0), (0.7, 160.0)):
        assert balance.interpolate(weights, values, target).crossings == (weight,)
    assert balance.interpolate((10, 20), (0.5, 0.7), 0.6).text() == '14.1'
    assert balance.interpolate((100, 200), (0.5, 0.7), 0.6).text() == '141'


def test_outside_the_sweep():
    rising = balance.interpolate((10, 20, 40), (0.3, 0.4, 0.6), 0.1)
    assert (rising.crossings, rising.weight, rising.side, rising.bound) == ((), None, 'below',
                                                                            10.0)
    assert (rising.text(), rising.text(per=20)) == ('below 10', 'below 0.5')
    assert balance.interpolate((10, 20, 40), (0.3, 0.4, 0.6), 0.9).text() == 'above 40'
    # A falling measure: beyond its largest value is below the sweep, beyond its smallest above.
    assert balance.interpolate((10, 20, 40), (16, 12, 8), 17).text() == 'below 10'
    assert balance.interpolate((10, 20, 40), (16, 12, 8), 5).text(per=4) == 'above 10'


def test_a_sweep_that_is_not_monotone_is_reported():
    found = balance.interpolate((10, 20, 40, 80), (0.2, 0.5, 0.3, 0.6), 0.4)
    assert found.crossings == pytest.approx(
        (10 * 2 ** (2 / 3), 20 * 2 ** 0.5, 40 * 2 ** (1 / 3)))
    assert (found.weight, found.monotone) == (None, False)
    assert found.text() == '15.9 or 28.3 or 50.4 (sweep not monotone)'
    # One crossing still, but flagged.
    once = balance.interpolate((10, 20, 40), (0.2, 0.5, 0.45), 0.3)
    assert once.weight == pytest.approx(10 * 2 ** (1 / 3)) and not once.monotone
    assert once.text().endswith(' (sweep not monotone)')
    assert balance.interpolate((10, 20, 40), (0.2, 0.5, 0.45), 0.1).text() == (
        'below 10 (sweep not monotone)')
    assert [balance.trend(v) for v in ((1, 2, 3), (3, 2, 1), (1, 3, 2), (1, 1), (1,))] == [
        'rises', 'falls', 'not monotone', 'not monotone', 'rises']


@pytest.mark.parametrize('weights, values, target', [
    ((10,), (0.2,), 0.1), ((10, 20), (0.2,), 0.1), ((20, 10), (0.2, 0.3), 0.25),
    ((0, 10), (0.2, 0.3), 0.25), ((10, 20), (0.2, math.nan), 0.25),
    ((10, 20), (0.2, 0.3), math.inf)])
def test_interpolation_refuses_what_it_cannot_use(weights, values, target):
    with pytest.raises(ValueError):
        balance.interpolate(weights, values, target)


def test_the_paper_weights():
    assert balance.paper_weights() == {PORTRAIT[0]: 40.0, PORTRAIT[1]: 20.0, PORTRAIT[2]: 10.0,
                                       'examples/0_to_0.png': 20.0,
                                       'examples/1_to_1.png': 5.0}


def test_the_calibrated_weights(runs):
    data, out, _ = runs
    found = balance.calibrate(data, out)
    assert list(found) == ['portrait', 'photo_to_cartoon', 'cartoon_to_photo']
    assert [(label, paper) for label, paper, *_ in found['portrait']] == [
        ('authors, more content', 40.0), ('authors, balanced', 20.0),
        ('authors, more style', 10.0)]
    (_, _, *more_content), (_, _, *balanced), (_, _, *more_style) = found['portrait']
    for calibration in more_content + balanced + more_style:
        assert calibration.monotone
    assert all(40 < c.weight < 80 for c in more_content)
    assert [c.crossings for c in balanced] == [(80.0,), (80.0,)]  # the run at 80, exactly
    assert [c.text() for c in more_style] == ['below 10', 'below 10']
    (_, paper, *photo), = found['photo_to_cartoon']
    assert paper == 20.0 and [c.text(paper) for c in photo] == ['above 8', 'above 8']
    (_, paper, *cartoon), = found['cartoon_to_photo']
    assert paper == 5.0 and [c.weight for c in cartoon] == [20.0, 20.0]
    # The placements behind them: the run at 80 and the balanced image are one image.
    measured = balance.measure(data, out)
    run = next(p for p in measured.sweep if p.name == 'balance_portrait_80')
    theirs = next(p for p in measured.authors if p.name == PORTRAIT[1])
    assert run[3:] == theirs[3:] and (run.weight, theirs.weight) == (80.0, 20.0)
    assert next(p for p in measured.authors if p.name == 'examples/0_to_0.png')[3:5] == (1.0,
                                                                                         0.0)


def _rows(text, start, end=None):
    """The rows of the first table after the line ``start`` (before ``end``), header and
    rule included."""
    lines = text.splitlines()
    first = lines.index(start, lines.index(end) if end else 0)
    rows = []
    for line in lines[first + 1:]:
        if line.startswith('|'):
            rows.append(line)
        elif rows:
            break
    return rows


def test_the_tables_rows(runs):
    data, out, _ = runs
    text = balance.report(data, out)
    sweep = _rows(text, 'The sweep:')
    assert sweep[0] == ('| content weight | structure kept | colour distance to content | '
                        'colour distance to style | MS-SSIM to authors, more content | '
                        'MS-SSIM to authors, balanced | MS-SSIM to authors, more style |')
    assert [row.split(' | ')[0] for row in sweep[2:]] == [
        '| %d' % w for w in figures.BALANCE_WEIGHTS['portrait']]
    measured = balance.measure(data, out)
    at_80 = next(p for p in measured.sweep if p.name == 'balance_portrait_80')
    cells = sweep[5].strip('| ').split(' | ')
    assert cells[:4] == ['80', '%.3f' % at_80.structure, '%.1f' % at_80.to_content,
                         '%.1f' % at_80.to_style]
    assert cells[5] == '1.000'  # the balanced image itself
    structures = [float(row.split(' | ')[1]) for row in sweep[2:]]
    assert structures == sorted(structures) and structures[-1] < 1
    authors = _rows(text, "The authors' images:")
    assert authors[0] == ("| authors' image | paper's weight | structure kept | "
                          'colour distance to content | colour distance to style |')
    assert authors[3] == '| authors, balanced | 20 | %s |' % ' | '.join(cells[1:4])
    calibrated = _rows(text, "The calibrated weights (where our measure equals the authors' "
                             "image's, linear in log(weight) between the bracketing runs):")
    assert calibrated[0] == ("| authors' image | paper's weight | by structure | by colour | "
                             'ratio by structure | ratio by colour |')
    assert calibrated[3:] == ['| authors, balanced | 20 | 80 | 80 | 4 | 4 |',
                              '| authors, more style | 10 | below 10 | below 10 | below 1 | '
                              'below 1 |']
    assert ('Over the finished weights (10, 20, 40, 80, 160, 320, 640), structure kept rises '
            'monotonically and the colour distance to the content falls monotonically with the '
            'content weight.') in text
    assert ('| authors, photo to cartoon | 20 | above 160 | above 160 | above 8 | above 8 |'
            in text.splitlines())
    assert '| authors, cartoon to photo | 5 | 20 | 20 | 4 | 4 |' in text.splitlines()
    assert [line for line in text.splitlines() if line.startswith('### ')] == [
        '### portrait', '### photo_to_cartoon', '### cartoon_to_photo']


def test_a_sweep_that_is_not_monotone_in_the_report(runs):
    data, out, _ = runs
    # The run at 160 made the style itself: structure kept falls there.
    style = image.load_image(os.path.join(data, 'style', 'picasso.jpg'))
    content = image.load_image(os.path.join(data, 'content', 'potrait1.jpg'))
    image.save_image(os.path.join(out, 'balance_portrait_160', 'out.png'),
                     _blend(content, style, 0.0))
    text = balance.report(data, out)
    assert ('structure kept is NOT monotone (every crossing is reported, flagged) and the '
            'colour distance to the content is NOT monotone') in text
    calibrated = _rows(text, 'The calibrated weights (where our measure equals the authors\' '
                             'image\'s, linear in log(weight) between the bracketing runs):')
    assert all('(sweep not monotone)' in row for row in calibrated[2:])
    (_, _, *balanced) = balance.calibrate(data, out)['portrait'][1]
    assert all(80.0 in c.crossings and len(c.crossings) > 1 and c.weight is None
               for c in balanced)
    # The other pairs are untouched.
    assert '| authors, cartoon to photo | 5 | 20 | 20 | 4 | 4 |' in text.splitlines()


def test_unfinished_runs_are_left_out_and_named(runs):
    data, out, _ = runs
    os.remove(os.path.join(out, 'balance_portrait_40', 'settings.json'))
    for weight in (20, 40):
        os.remove(os.path.join(out, 'balance_cartoon_to_photo_%d' % weight, 'out.png'))
    measured = balance.measure(data, out)
    assert measured.missing == ['balance_portrait_40', 'balance_cartoon_to_photo_20',
                                'balance_cartoon_to_photo_40']
    assert len(measured.sweep) == 10 and len(measured.scores) == 6 * 3 + 3 + 1
    assert 'balance_portrait_40' not in {s.run for s in balance.scores(data, out)}
    found = balance.calibrate(data, out)
    # Without the run at 40, "more content" lies between 20 and 80.
    assert all(20 < c.weight < 80 for c in found['portrait'][0][2:])
    assert found['cartoon_to_photo'] == [('authors, cartoon to photo', 5.0, None, None)]
    text = balance.report(data, out)
    assert ('No calibration: 1 finished run of this pair, two are needed.'
            in text.split('### cartoon_to_photo')[1])
    assert [row.split(' | ')[0] for row in _rows(text, 'The sweep:', '### cartoon_to_photo')[2:]
            ] == ['| 5']
    assert [row.split(' | ')[0] for row in _rows(text, 'The sweep:')[2:]] == [
        '| %d' % w for w in (10, 20, 80, 160, 320, 640)]
    assert text.endswith('Not finished, left out: balance_portrait_40, '
                         'balance_cartoon_to_photo_20, balance_cartoon_to_photo_40.\n')
    # No finished run at all: no sweep table, no calibration.
    os.remove(os.path.join(out, 'balance_cartoon_to_photo_5', 'out.png'))
    part = balance.report(data, out).split('### cartoon_to_photo')[1]
    assert 'The sweep:' not in part and 'No calibration: 0 finished runs' in part


def test_the_command_lines_report(runs, capsys):
    data, out, calls = runs
    assert len(calls) == 13
    capsys.readouterr()
    assert figures.main(['--data', data, '--out', out, '--only', 'balance', '--reuse']) == 0
    assert len(calls) == 13  # every run reused
    printed = capsys.readouterr().out
    with open(os.path.join(out, 'sheets', 'balance.md')) as f:
        report = f.read()
    assert report == balance.report(data, out) and report in printed
    assert report.startswith('## Content weight sweeps') and 'Not finished' not in report
    sheet = image.load_image(os.path.join(out, 'sheets', 'balance.png'))
    assert sheet.shape[0] == 18 + 8 + 3 * (256 + 18 + 8)  # a row per pair
