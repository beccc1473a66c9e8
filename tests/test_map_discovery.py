"""generate.py finds the semantic maps that neural-doodle's names give (``X_sem.png`` beside
``X.jpg``): which maps reach ``load_inputs``, its one progress line, the off switch, batches;
and :func:`chainer_mrf.semantic.find_map` itself.

The command runs in-process with ``synthesize`` replaced (the images and maps are loaded and
checked for real), so no synthesis runs.
"""
import os

import numpy
import pytest
from PIL import Image

from chainer_mrf import cli, image, outputs, semantic
from helpers import assert_one_error, generate

#: The tail of the progress line where the maps found are used, and where they are not.
USED = ' (--no_auto_maps to ignore them)'
UNUSED = ' (maps go on both sides; --no_auto_maps to skip the search)'

#: The files of the ``run`` fixture's folder, by (width, height): a photo and a painting with
#: their maps, an image of each size without one, maps given by name, and a batch folder.
FILES = {(8, 6): ('photo.png', 'photo_sem.png', 'bare.png', 'drawn.png',
                  'photos/a.png', 'photos/a_sem.png', 'photos/b.png'),
         (10, 10): ('painting.jpg', 'painting_sem.png', 'plain.jpg', 'painted.png')}


def _save(path, size, value=0):
    image.save_image(path, numpy.full(size[::-1] + (3,), value, numpy.uint8))


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """``run(*argv)`` runs generate.py in a folder of :data:`FILES`; returns its exit code, the
    (content, content_map, style_map) of each ``load_inputs`` call, the maps each run's
    ``settings.json`` records, and its stdout lines after the first (which says the kind of
    run)."""
    for size, names in FILES.items():
        for name in names:
            (tmp_path / name).parent.mkdir(exist_ok=True)
            _save(tmp_path / name, size, 255 * name.endswith('_sem.png'))
    loads, recorded = [], []
    real_load, real_settings = cli.load_inputs, outputs.settings

    def load_inputs(content, style, **kwargs):
        loads.append((content, kwargs['content_map'], kwargs['style_map']))
        return real_load(content, style, **kwargs)

    def settings(config, **inputs):
        recorded.append((inputs['content_map'], inputs['style_map']))
        return real_settings(config, **inputs)
    monkeypatch.setattr(cli, 'load_inputs', load_inputs)
    monkeypatch.setattr(outputs, 'settings', settings)
    monkeypatch.setattr(cli, 'synthesize',
                        lambda **kwargs: numpy.zeros((2, 2, 3), numpy.uint8))
    monkeypatch.chdir(tmp_path)

    def run(*argv):
        loads.clear()
        recorded.clear()
        capsys.readouterr()
        code = cli.main(list(argv))
        lines = capsys.readouterr().out.splitlines()
        assert [(c, s) for _, c, s in loads] == recorded  # settings.json names what was loaded
        return code, list(loads), lines[1:]
    return run


def test_maps_beside_both_images_are_used(run):
    code, loads, lines = run('-c', 'photo.png', '-s', 'painting.jpg')
    assert code == 0
    assert loads == [('photo.png', 'photo_sem.png', ['painting_sem.png'])]
    assert lines[:2] == ['semantic maps found beside the images: photo_sem.png (content), '
                         'painting_sem.png (style)' + USED, 'saved output/out.png']


@pytest.mark.parametrize('argv,line', [
    (('-c', 'bare.png', '-s', 'painting.jpg'),
     'semantic map found beside the images: painting_sem.png (style); not used, as bare.png has '
     'none'),
    (('-c', 'photo.png', '-s', 'plain.jpg'),
     'semantic map found beside the images: photo_sem.png (content); not used, as plain.jpg has '
     'none'),
    (('-c', 'photo.png', '-s', 'painting.jpg', '-s', 'plain.jpg'),
     'semantic maps found beside the images: photo_sem.png (content), painting_sem.png (style); '
     'not used, as plain.jpg has none'),
    (('-c', 'bare.png', '-s', 'plain.jpg', '-s', 'painting.jpg'),
     'semantic map found beside the images: painting_sem.png (style); not used, as bare.png, '
     'plain.jpg have none'),
    (('-s', 'painting.jpg'),
     'semantic map found beside the images: painting_sem.png (style); not used, as there is no '
     'content map'),
])
def test_maps_found_on_one_side_only_are_not_used_and_the_line_says_so(run, argv, line):
    # A painting that happens to have a map beside it: the style transfer runs as before.
    code, loads, lines = run(*argv)
    assert code == 0
    assert loads == [(loads[0][0], None, None)]
    assert [text for text in lines if 'semantic' in text] == [line + UNUSED]


@pytest.mark.parametrize('switch', [('--no_auto_maps',), ('--preset', 'gram'),
                                    ('--method', 'gram')])
def test_no_map_is_looked_for_under_the_switch_or_the_gram_method(run, switch):
    code, loads, lines = run('-c', 'photo.png', '-s', 'painting.jpg', *switch)
    assert code == 0
    assert loads == [('photo.png', None, None)]
    assert not any('semantic' in text for text in lines)


@pytest.mark.parametrize('argv,content_map,style_map,found', [
    (('--content_map', 'drawn.png'), 'drawn.png', ['painting_sem.png'],
     'semantic map found beside the images: painting_sem.png (style)'),
    (('--style_map', 'painted.png'), 'photo_sem.png', ['painted.png'],
     'semantic map found beside the images: photo_sem.png (content)'),
    (('--content_map', 'drawn.png', '--style_map', 'painted.png'), 'drawn.png', ['painted.png'],
     None),
])
def test_maps_given_win_and_count_as_present(run, argv, content_map, style_map, found):
    code, loads, lines = run('-c', 'photo.png', '-s', 'painting.jpg', *argv)
    assert code == 0
    assert loads == [('photo.png', content_map, style_map)]
    assert [text for text in lines if 'semantic' in text] == ([found + USED] if found else [])


def test_a_doodle_takes_the_map_beside_the_painting(run):
    code, loads, lines = run('--content_map', 'drawn.png', '-s', 'painting.jpg')
    assert code == 0
    assert loads == [(None, 'drawn.png', ['painting_sem.png'])]
    assert lines[0] == 'semantic map found beside the images: painting_sem.png (style)' + USED


def test_a_batch_looks_beside_each_image_and_stylises_no_map(run):
    a, b = os.path.join('photos', 'a.png'), os.path.join('photos', 'b.png')
    a_map = os.path.join('photos', 'a_sem.png')
    code, loads, lines = run('-c', 'photos', '-s', 'painting.jpg')
    assert code == 0
    assert loads == [(a, a_map, ['painting_sem.png']), (b, None, None)]
    assert [text for text in lines if 'semantic' in text] == [
        '[a] semantic maps found beside the images: %s (content), painting_sem.png (style)%s'
        % (a_map, USED),
        '[b] semantic map found beside the images: painting_sem.png (style); not used, as %s '
        'has none%s' % (b, UNUSED)]
    # Without the search a map is an image like any other.
    code, loads, _ = run('-c', 'photos', '-s', 'painting.jpg', '--no_auto_maps', '-o', 'again')
    assert code == 0
    assert [content for content, _, _ in loads] == [a, a_map, b]


def test_a_found_map_of_another_size_is_one_error_line_naming_it(tmp_path):
    photo, painting = str(tmp_path / 'photo.png'), str(tmp_path / 'painting.jpg')
    _save(photo, (8, 6))
    _save(tmp_path / 'photo_sem.png', (5, 5))
    _save(painting, (10, 10))
    _save(tmp_path / 'painting_sem.png', (10, 10))
    done = generate('-c', photo, '-s', painting, '-o', str(tmp_path / 'out'))
    assert_one_error(done, 'semantic map %s is 5x5 but the content image is 8x6: resize the map '
                     'to its image' % (tmp_path / 'photo_sem.png'))
    assert 'semantic maps found beside the images: %s (content)' % (
        tmp_path / 'photo_sem.png') in done.stdout
    assert not (tmp_path / 'out').exists()


# --- semantic.find_map ------------------------------------------------------------------------

def test_find_map_gives_the_file_beside_the_image(tmp_path):
    _save(tmp_path / 'Monet_sem.png', (2, 2))
    for source in (str(tmp_path / 'Monet.jpg'), tmp_path / 'Monet.jpg', tmp_path / 'Monet.png'):
        assert semantic.find_map(source) == str(tmp_path / 'Monet_sem.png')
    assert semantic.MAP_SUFFIX == '_sem.png'


def test_find_map_gives_none_without_a_file(tmp_path):
    assert semantic.find_map(tmp_path / 'Renoir.jpg') is None
    (tmp_path / 'Renoir_sem.png').mkdir()  # a folder is no map
    assert semantic.find_map(tmp_path / 'Renoir.jpg') is None


def test_find_map_gives_none_for_an_image_that_is_no_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _save(tmp_path / '_sem.png', (2, 2))  # what a careless join would find
    assert semantic.find_map(numpy.zeros((2, 2, 3), numpy.uint8)) is None
    assert semantic.find_map(Image.new('RGB', (2, 2))) is None


def test_find_map_takes_another_suffix(tmp_path):
    _save(tmp_path / 'a.b_map.png', (2, 2))
    _save(tmp_path / 'a.b_sem.png', (2, 2))
    assert semantic.find_map(tmp_path / 'a.b.jpg', suffix='_map.png') == str(
        tmp_path / 'a.b_map.png')
    assert semantic.find_map(tmp_path / 'a.b.jpg', suffix='_labels.png') is None
