"""scripts/reproduce_figures.py at a tiny size on generated images, so that it cannot rot."""
import json
import os
import subprocess
import sys

import numpy
import pytest
from PIL import Image

import chainer_mrf
from chainer_mrf import image
from helpers import ROOT, content_card, style_stripes

# The figure set is no part of the library: it lies in paper/, beside scripts/, and is imported
# from the project's root as scripts/reproduce_figures.py does.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from paper import figures  # noqa: E402


@pytest.fixture
def data(tmp_path):
    """A data folder laid out as CNNMRF's, filled with generated images."""
    for path in figures.required_files():
        target = tmp_path / 'data' / path
        target.parent.mkdir(parents=True, exist_ok=True)
        picture = style_stripes() if path.startswith('style') else content_card()
        image.save_image(str(target), picture)
    return str(tmp_path / 'data')


def test_every_figure_at_a_tiny_size(data, tmp_path, vgg16_path):
    out = tmp_path / 'out'
    lines = []
    sheets = figures.reproduce(data, str(out), progress=lines.append, model=vgg16_path,
                               max_size=128, width=128, resolution_num=2, iterations=1,
                               num_rotation=0, num_scale=0)
    runs = {run.name for figure in figures.FIGURES for run in figure.runs}
    assert len(lines) == len(runs) == 15  # the balanced portrait is shared by three figures
    assert [os.path.basename(s) for s in sheets] == [f.name + '.png' for f in figures.FIGURES]
    for name in runs:
        folder = out / name
        assert image.load_image(str(folder / 'out.png')).shape[2] == 3
        settings = json.loads((folder / 'settings.json').read_text())
        assert settings['max_size'] == 128 and 'style/' in str(settings['style'])
        assert len((folder / 'trace.jsonl').read_text().splitlines()) == 2
        assert (folder / 'level_1.png').exists() and (folder / 'level_2.png').exists()
    settings = json.loads((out / 'photo_to_cartoon' / 'settings.json').read_text())
    assert settings['content_weight'] == 2e1 and settings['name'] == 'cnnmrf'
    assert json.loads((out / 'portrait_dsanno' / 'settings.json').read_text())['name'] == 'dsanno'
    settings = json.loads((out / 'doodle' / 'settings.json').read_text())
    assert settings['content'] is None and settings['content_map'] == 'maps/doodle_map.png'
    assert settings['start'] == 'maps/doodle_start.png'
    assert settings['initial_image'].endswith(os.path.join('maps', 'doodle_start.png'))
    assert image.load_image(str(out / 'doodle' / 'out.png')).shape == (164, 128, 3)
    assert json.loads((out / 'doodle_noise' / 'settings.json').read_text())[
        'initial_image'] == 'random'
    assert json.loads((out / 'colour_keep_color' / 'settings.json').read_text())['keep_color']
    settings = json.loads((out / 'two_styles_weighted' / 'settings.json').read_text())
    assert settings['style'] == ['style/picasso.jpg', 'style/2.jpg']
    assert settings['style_image_weights'] == [0.75, 1.0]
    # The drawn maps: three label colours each, the style's of the style's size.
    for name, size in (('picasso_sem.png', (80, 80)), ('doodle_map.png', (384, 300)),
                       ('doodle_start.png', (384, 300))):
        drawn = image.load_image(str(out / 'maps' / name))
        assert drawn.shape[:2] == size
        assert len(numpy.unique(drawn.reshape(-1, 3), axis=0)) <= 3
    # The doc's copies: palette PNGs of the results and of the drawn maps.
    written = figures.export(str(out), str(tmp_path / 'docs'),
                             [f for f in figures.FIGURES if f.name == 'doodle'])
    assert sorted(os.path.basename(p) for p in written) == [
        'doodle.png', 'doodle_map.png', 'doodle_noise.png', 'doodle_start.png',
        'picasso_sem.png']
    with Image.open(written[0]) as small:
        assert small.mode == 'P' and small.size == (128, 164)
    # The trade-off sheet: content, style, three of ours, three of the authors'.
    sheet = image.load_image(str(out / 'sheets' / 'tradeoff.png'))
    assert sheet.shape[0] == 256 + 2 * 18 + 16 and sheet.shape[1] > 8 * 256


def test_missing_data_is_one_line_naming_the_files(tmp_path):
    (tmp_path / 'content').mkdir()
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'reproduce_figures.py'),
                           '--data', str(tmp_path), '--out', str(tmp_path / 'out')],
                          capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and 'content/potrait1.jpg' in lines[0] and 'style/2.jpg' in lines[0]
    assert not (tmp_path / 'out').exists()


def test_the_script_runs_from_any_folder(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'reproduce_figures.py'),
                           '--help'], capture_output=True, text=True, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('usage: reproduce_figures.py') and '--only' in done.stdout


def test_the_library_holds_no_figure_code():
    package = os.path.dirname(chainer_mrf.__file__)
    assert not os.path.exists(os.path.join(package, 'figures.py'))
    for folder, _, names in os.walk(package):
        for name in (n for n in names if n.endswith('.py')):
            with open(os.path.join(folder, name), encoding='utf-8') as f:
                source = f.read()
            assert 'import paper' not in source and 'from paper' not in source, name
