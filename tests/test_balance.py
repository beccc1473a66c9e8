"""paper/balance.py on runs of the balance figure made by a stand-in synthesis whose results
are crafted: some are exactly one of the authors' images, so that the closest weight to that
image is known; the tables' rows, the paper's weights against the calibrated ones, unfinished
runs, and the command line's report."""
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

#: The runs whose result is exactly one of the authors' images, by (content, content weight).
EXACT = {('content/potrait1.jpg', 80.0): 'examples/Interpolation/3_balanced.png',
         ('content/potrait1.jpg', 20.0): 'examples/Interpolation/2_morecontent.png',
         ('content/0.jpg', 80.0): 'examples/0_to_0.png',
         ('content/1.jpg', 5.0): 'examples/1_to_1.png'}


def _picture(seed):
    """A smooth random 48 x 64 picture, a different one for each seed."""
    coarse = numpy.random.RandomState(seed).randint(0, 256, (4, 3, 3)).astype(numpy.uint8)
    return image.resize_pil(coarse, (48, 64))


def _crafted_synthesis(data, calls):
    """A stand-in for ``chainer_mrf.synthesize`` returning, after one step, the authors' image
    that :data:`EXACT` names for the content and weight, else the content image."""
    def synthesize(content, style, *, preset, callback, **_):
        calls.append(preset.content_weight)
        key = (os.path.relpath(content, data).replace(os.sep, '/'), preset.content_weight)
        rgb = image.load_image(os.path.join(data, EXACT[key]) if key in EXACT else content)
        callback(types.SimpleNamespace(level=0, iteration=1, seconds=0.1, losses={'tv': 1.0},
                                       stop=None, image=lambda: rgb))
        return rgb
    return synthesize


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """(data folder, output folder, synthesis calls) after the command line made the balance
    figure with the stand-in, from a data folder of distinct generated pictures."""
    data = tmp_path / 'data'
    for seed, path in enumerate(figures.required_files([figures.get_figure('balance')])):
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        image.save_image(str(data / path), _picture(seed))
    calls = []
    monkeypatch.setattr(figures, 'synthesize', _crafted_synthesis(str(data), calls))
    out = tmp_path / 'out'
    assert figures.main(['--data', str(data), '--out', str(out), '--only', 'balance']) == 0
    return str(data), str(out), calls


def test_the_closest_weight_to_each_of_the_authors_results(runs):
    data, out, _ = runs
    found = balance.scores(data, out)
    assert len(found) == 7 * 3 + 3 + 3  # three of the authors' portraits, one of each other
    assert {(s.pair, s.weight) for s in found} == {
        (pair, float(w)) for pair, weights in figures.BALANCE_WEIGHTS.items() for w in weights}
    closest = balance.best(found)
    for (_, weight), reference in EXACT.items():
        score = closest[reference]
        assert (score.weight, score.ms_ssim, score.colour) == (weight, 1.0, 0.0)
    assert closest['examples/Interpolation/4_morestyle.png'].ms_ssim < 1
    # The paper's weights (4e1, 2e1, 1e1) against their images, beside the calibrated ones.
    paper = balance.literal(found)
    assert [(reference, weight, at.weight, best.weight)
            for reference, weight, at, best in paper][:2] == [
        ('examples/Interpolation/2_morecontent.png', 40.0, 40.0, 20.0),
        ('examples/Interpolation/3_balanced.png', 20.0, 20.0, 80.0)]
    assert paper[2][:3] == ('examples/Interpolation/4_morestyle.png', 10.0,
                            next(s for s in found if s.run == 'balance_portrait_10'
                                 and s.reference == paper[2][0]))


def test_tables(runs):
    data, out, _ = runs
    text = balance.table(balance.scores(data, out))
    lines = text.splitlines()
    portrait = lines[lines.index('### portrait') + 2:lines.index('### photo_to_cartoon') - 1]
    assert len(portrait) == 2 + 7
    assert portrait[0].startswith('| content weight | MS-SSIM, authors, more content | '
                                  'MS-SSIM, authors, balanced |')
    assert [row.split(' | ')[0] for row in portrait[2:]] == [
        '| %d' % w for w in figures.BALANCE_WEIGHTS['portrait']]
    # Weight 20 is the "more content" image, weight 80 the balanced one: bold, MS-SSIM 1.
    assert portrait[3].startswith('| 20 | **1.000** |')
    assert portrait[5].split(' | ')[2] == '**1.000**'
    assert portrait[5].split(' | ')[5] == '0.0'  # no colour distance to the balanced image
    assert '| authors, photo to cartoon | 80 | 1.000 | 0.0 | 80 |' in lines
    assert '| authors, cartoon to photo | 5 | 1.000 | 0.0 | 5 |' in lines
    assert '| authors, balanced | 20 | ' in text and "### The paper's weights" in text


def test_unfinished_runs_are_left_out_and_named(runs):
    data, out, _ = runs
    os.remove(os.path.join(out, 'balance_portrait_40', 'settings.json'))
    os.remove(os.path.join(out, 'balance_cartoon_to_photo_40', 'out.png'))
    found = balance.scores(data, out)
    assert 'balance_portrait_40' not in {s.run for s in found} and len(found) == 27 - 3 - 1
    paper = balance.literal(found)
    assert paper[0][:3] == ('examples/Interpolation/2_morecontent.png', 40.0, None)
    text = balance.report(data, out)
    assert ('| authors, more content | 40 | not run | 20 | 1.000 |' in text.splitlines())
    assert 'Not finished, left out: balance_portrait_40, balance_cartoon_to_photo_40.' in text


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
