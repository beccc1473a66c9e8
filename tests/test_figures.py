"""scripts/reproduce_figures.py at a tiny size on generated images, so that it cannot rot."""
import json
import os
import subprocess
import sys
import types

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
    assert len(lines) == len(runs) == 34  # shared runs: the balanced portrait, the 3.2e2 sweep run
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
    settings = json.loads((out / 'compare_portrait_gram' / 'settings.json').read_text())
    assert settings['name'] == 'gram' and settings['method'] == 'gram' and settings['seed'] == 0
    settings = json.loads((out / 'compare_photo_to_cartoon_mrf' / 'settings.json').read_text())
    assert settings['name'] == 'dsanno' and settings['content'] == 'content/0.jpg'
    settings = json.loads((out / 'balance_portrait_110' / 'settings.json').read_text())
    assert settings['content_weight'] == 110.0 and settings['name'] == 'cnnmrf'
    settings = json.loads((out / 'balance_cartoon_to_photo_5' / 'settings.json').read_text())
    assert settings['content_weight'] == 5.0 and settings['style'] == 'style/1.jpg'
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
    # The drawn maps: a colour per label at most, the style's of the style's size.
    for name, size in (('picasso_sem.png', (80, 80)), ('doodle_map.png', (384, 300)),
                       ('doodle_start.png', (384, 300))):
        drawn = image.load_image(str(out / 'maps' / name))
        assert drawn.shape[:2] == size
        assert len(numpy.unique(drawn.reshape(-1, 3), axis=0)) <= len(figures.LABELS)
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
    # One row per pair of inputs: the title, then a row of panels and captions for each.
    for name, rows in (('photo_cartoon', 2), ('neural_style', 2), ('balance', 3)):
        sheet = image.load_image(str(out / 'sheets' / (name + '.png')))
        assert sheet.shape[0] == 18 + 8 + rows * (256 + 18 + 8), name


#: Points of picasso.jpg (x, y in its 300 x 384 pixels) and the region each lies in.
PICASSO_POINTS = (((20, 20), 'background'), ((275, 200), 'background'), ((200, 80), 'skin'),
                  ((80, 160), 'skin'), ((185, 200), 'skin'), ((110, 50), 'hair'),
                  ((147, 142), 'eyes'), ((220, 140), 'eyes'), ((187, 252), 'mouth'),
                  ((150, 350), 'shirt'), ((20, 340), 'shirt'))
#: The share of picasso.jpg each region covers, at least and at most.
PICASSO_SHARES = {'background': (0.25, 0.4), 'skin': (0.18, 0.3), 'hair': (0.09, 0.17),
                  'eyes': (0.02, 0.04), 'mouth': (0.005, 0.015), 'shirt': (0.22, 0.35)}


def test_the_style_map_is_traced_by_hand(tmp_path):
    # A flat grey painting of half the size: the map must not come from its colours, and is
    # scaled to its size.
    (tmp_path / 'style').mkdir()
    image.save_image(str(tmp_path / 'style' / 'picasso.jpg'),
                     numpy.full((192, 150, 3), 128, numpy.uint8))
    paths = figures.draw_maps(str(tmp_path), str(tmp_path / 'out'))
    drawn, doodle = (image.load_image(path) for path in paths[:2])
    assert drawn.shape == (192, 150, 3) and doodle.shape == (384, 300, 3)
    colours = {name: numpy.array(colour) for name, colour in figures.LABELS.items()}
    for (x, y), name in PICASSO_POINTS:
        assert (drawn[y // 2, x // 2] == colours[name]).all(), (x, y, name)
    for name, (least, most) in PICASSO_SHARES.items():
        assert least <= (drawn == colours[name]).all(axis=2).mean() <= most, name
        assert (doodle == colours[name]).all(axis=2).mean() >= 0.005, name


def test_the_traced_regions_hold_what_they_name(data_dir):
    painting = image.load_image(os.path.join(data_dir, 'style', 'picasso.jpg')).astype(float)
    drawn = figures.draw_labels(figures.PICASSO_TRACE, painting.shape[1::-1])
    mean = {name: painting[(drawn == colour).all(axis=2)].mean(axis=0)
            for name, colour in figures.LABELS.items()}
    assert mean['hair'].mean() < 0.5 * mean['skin'].mean()  # dark brown hair, light face
    assert mean['eyes'].mean() < 0.9 * mean['skin'].mean()  # dark pupils and outlines
    red, _, blue = mean['background']
    assert blue < 0.3 * red  # an orange ground
    assert mean['shirt'][2] > 3 * blue  # a pale shirt


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


def _counting_synthesis(calls):
    """A stand-in for ``chainer_mrf.synthesize`` that records its preset and reports two
    levels of one step each, checking that no ``settings.json`` lies in the run's folder
    while it runs (a run stopped midway must not pass for finished)."""
    def synthesize(content, style, *, preset, callback, **_):
        calls.append(preset)
        rgb = image.load_image(content)
        for level in range(2):
            callback(types.SimpleNamespace(level=level, iteration=level + 1, seconds=0.5,
                                           losses={'style_3_2': 2.0, 'tv': 1.0}, stop=None,
                                           image=lambda: rgb))
        return rgb
    return synthesize


def test_reuse_loads_a_finished_run_with_the_same_settings(tmp_path, monkeypatch):
    for path, picture in (('content/card.png', content_card()),
                          ('style/stripes.png', style_stripes())):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        image.save_image(str(tmp_path / path), picture)
    calls, lines = [], []
    monkeypatch.setattr(figures, 'synthesize', _counting_synthesis(calls))
    figure = figures.Figure('tiny', 'tiny', (figures.Run('card', 'card', 'content/card.png',
                                                         'style/stripes.png', preset='dsanno'),))
    out = tmp_path / 'out'

    def reproduce(**options):
        figures.reproduce(str(tmp_path), str(out), figures=[figure], progress=lines.append,
                          **options)
        return len(calls), lines[-1]

    assert reproduce(reuse=True)[0] == 1  # nothing to reuse yet
    assert reproduce(reuse=True) == (1, 'card: reused')
    sheet = image.load_image(str(out / 'sheets' / 'tiny.png'))
    assert sheet.shape[0] == 256 + 2 * 18 + 16  # drawn from the loaded images
    assert reproduce()[0] == 2  # without reuse, every run runs
    assert reproduce(reuse=True, iterations=5)[0] == 3  # other settings: run again
    assert calls[-1].iterations == 5
    assert reproduce(reuse=True, iterations=5) == (3, 'card: reused')
    (out / 'card' / 'level_2.png').unlink()  # a level missing: not finished
    assert reproduce(reuse=True, iterations=5)[0] == 4
    (out / 'card' / 'settings.json').unlink()  # as a run stopped midway leaves it
    assert figures.load_run(str(out / 'card')) is None
    assert reproduce(reuse=True, iterations=5)[0] == 5
    finished = figures.load_run(str(out / 'card'))
    assert finished.settings['iterations'] == 5 and finished.settings['style'] == \
        'style/stripes.png'
    assert [record['level'] for record in finished.trace] == [0, 1] and len(finished.levels) == 2
    assert (finished.image == image.load_image(str(tmp_path / 'content' / 'card.png'))).all()


def test_the_new_figures_runs_and_references(data_dir):
    neural_style, balance = (figures.get_figure(name) for name in ('neural_style', 'balance'))
    figures.check_data(data_dir, [neural_style, balance])  # every input and reference exists
    assert [(run.name, run.preset, run.options, run.content, run.style)
            for run in neural_style.runs] == [
        ('compare_portrait_gram', 'gram', {'seed': 0}, 'content/potrait1.jpg',
         'style/picasso.jpg'),
        ('compare_portrait_mrf', 'dsanno', {}, 'content/potrait1.jpg', 'style/picasso.jpg'),
        ('compare_photo_to_cartoon_gram', 'gram', {'seed': 0}, 'content/0.jpg', 'style/0.jpg'),
        ('compare_photo_to_cartoon_mrf', 'dsanno', {}, 'content/0.jpg', 'style/0.jpg')]
    names = [run.name for run in balance.runs]
    assert names[:7] == ['balance_portrait_%d' % w for w in (10, 20, 40, 80, 160, 320, 640)]
    assert names[7:] == ['balance_photo_to_cartoon_20', 'balance_photo_to_cartoon_80',
                         'balance_photo_to_cartoon_160', 'balance_cartoon_to_photo_5',
                         'balance_cartoon_to_photo_20', 'balance_cartoon_to_photo_40']
    assert all(run.preset == 'cnnmrf' for run in balance.runs)
    assert balance.runs[0].options == {'content_weight': 10.0}
    assert balance.runs[-1].options == {'content_weight': 40.0, 'num_rotation': 3,
                                        'num_scale': 3}
    assert [figures.pair_of(run) for run in balance.runs[6:8]] == ['portrait',
                                                                   'photo_to_cartoon']
    assert [path for path, _ in balance.references] == [
        'examples/Interpolation/2_morecontent.png', 'examples/Interpolation/3_balanced.png',
        'examples/Interpolation/4_morestyle.png', 'examples/0_to_0.png', 'examples/1_to_1.png']
    with pytest.raises(ValueError, match='unknown figure .* balance'):
        figures.get_figure('balanse')


def test_markdown_table():
    assert figures.markdown_table(('a', 'b'), [('1', '2'), ('3', '4')]) == (
        '| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n')


@pytest.fixture
def doodle_data(tmp_path):
    """A data folder laid out as neural-doodle's, filled with small generated images."""
    from paper import doodles
    folder = tmp_path / 'doodle_data'
    for path in doodles.required_files():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.startswith('examples/'):  # a published figure, as large as neural-doodle's
            picture = numpy.full((899 if 'Portraits' in path else 385, 960, 3), 200, numpy.uint8)
        elif path.endswith('_sem.png'):
            picture = numpy.zeros((48, 64, 3), numpy.uint8)
            picture[:, :32, 0] = picture[:, 32:, 2] = 255  # two regions
        else:
            picture = style_stripes()[:48, :64] if path in ('Seth.jpg',) else style_stripes()
        image.save_image(str(target), picture)
    # A style map takes its painting's size.
    for style in ('Monet', 'Renoir', 'Gogh'):
        sem = numpy.zeros(style_stripes().shape, numpy.uint8)
        sem[:, :40, 0] = sem[:, 40:, 2] = 255
        image.save_image(str(folder / (style + '_sem.png')), sem)
    return str(folder)


def test_the_showcases_at_a_tiny_size(doodle_data, tmp_path, vgg16_path):
    from paper import doodles
    out = str(tmp_path / 'out')
    lines = []
    written = doodles.reproduce(doodle_data, out, progress=lines.append, model=vgg16_path,
                                arch='vgg16', iterations=1, resolution_num=1)
    assert [os.path.basename(p) for p in written] == [
        'showcase_coastline.png', 'showcase_landscape.png', 'showcase_seth.png',
        'showcases.md']
    assert len(lines) == 10 and all('MiB' in line for line in lines)
    for showcase in doodles.SHOWCASES:
        for name, _, preset, _ in showcase.runs():
            record = doodles.load_record(os.path.join(out, 'showcases', '%s_%s'
                                                      % (showcase.name, name)))
            # The dsanno run at the map's width (or its own); one step.
            size = '256x192' if '256' in name else '64x48'
            assert (record['size'], record['steps'], record['levels']) == (size, 1, 1)
            assert record['settings']['preset'] == preset and record['peak_mib'] > 100
            assert record['preset_fields']['name'] == preset
    fields = doodles.load_record(os.path.join(out, 'showcases', 'seth_doodle_content'))
    assert fields['preset_fields']['content_weight'] == 1000.0
    seth = doodles.load_record(os.path.join(out, 'showcases', 'seth_doodle'))
    assert 'content_4_2' in seth['last_energy']
    # The published result is cut out of its figure: Seth's is 338 x 413 of 960 x 899.
    assert doodles.published(doodles.SHOWCASES[2], doodle_data).shape == (413, 338, 3)
    table = open(written[-1]).read().splitlines()
    assert len(table) == 12 and table[2].startswith(
        '| Coastline from Monet | doodle preset | 64x48 | 1 x 1 |')
    assert table[-1].startswith('| Seth as Gogh | doodle preset, content weight 1000 |')
    # A finished run with the same settings is reused, not run again.
    again = []
    doodles.reproduce(doodle_data, out, progress=again.append, reuse=True, model=vgg16_path,
                      arch='vgg16', iterations=1, resolution_num=1)
    assert [line.split(':')[0] for line in again] == [line.split(':')[0] for line in lines]
    assert doodles.load_record(os.path.join(out, 'showcases', 'seth_doodle')) == seth
    exported = doodles.export(out, str(tmp_path / 'docs'))
    assert len(exported) == 10 and all(os.path.isfile(p) for p in exported)


def test_the_showcases_name_missing_files(tmp_path):
    from paper import doodles
    with pytest.raises(FileNotFoundError, match='lacks Coastline_sem.png, Gogh.jpg'):
        doodles.check_data(str(tmp_path))
