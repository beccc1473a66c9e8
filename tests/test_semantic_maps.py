"""Semantic maps and neural doodles, end to end with the real VGG16: the matching keeps to
regions, the maps change the result, a doodle starts from its painted map, map mistakes."""
import numpy
import pytest

from chainer_mrf import image, presets, semantic
from chainer_mrf.inputs import load_inputs
from chainer_mrf.synthesis import synthesize
from helpers import (SMALL, content_card, level_energy, matches, profiled_gradient, short_run,
                     style_stripes, two_textures)


def _halves(height, width, axis):
    """A two-channel label map split into halves along ``axis`` (0: top/bottom)."""
    index = numpy.mgrid[0:height, 0:width][axis]
    first = index < (height if axis == 0 else width) // 2
    return numpy.stack([first, ~first], axis=-1).astype(numpy.float32)


def _map_content():
    return numpy.tile(two_textures()[0][:, :40], (1, 3, 1))[:72, :96]


def _map_matches(vgg, monkeypatch, **options):
    style, style_labels = two_textures()
    # The content looks like the style's left half everywhere; its map asks for the right
    # half's region in its bottom half.
    energy, prepared = level_energy(vgg, _map_content(), style, _halves(72, 96, 0), style_labels,
                               **options)
    return energy, matches(energy, prepared.content, monkeypatch)


def _region_agreement(energy, found):
    """Per layer: the share of interior query patches whose match has the query's label."""
    shares = []
    for layer, (queries, indices) in zip(energy.style_terms, found):
        d = queries.shape[1] - 2 * 9
        query_labels = queries[:, d:].reshape(-1, 2, 9)
        bank_labels = layer.bank.patches[indices, d:].reshape(-1, 2, 9)
        # Interior patches: all nine pixels mostly of one region.
        dominant = query_labels.argmax(axis=1)
        interior = (dominant == dominant[:, 4:5]).all(axis=1)
        assert interior.mean() > 0.3
        matched = bank_labels[:, :, 4].argmax(axis=1)
        shares.append(float((dominant[:, 4] == matched)[interior].mean()))
    return shares


@pytest.mark.parametrize('preset', ['dsanno', 'cnnmrf'])
def test_patches_of_a_region_match_only_that_region(vgg, monkeypatch, preset):
    # A weight that beats even a perfect feature match in the wrong region; the authors'
    # preset rotates and scales the style map with its nine style copies.
    energy, found = _map_matches(vgg, monkeypatch, semantic_weight=5e4, preset=preset)
    assert [q.shape[1] for q, _ in found] == [256 * 9 + 18, 512 * 9 + 18]
    assert _region_agreement(energy, found) == [1.0, 1.0]
    # A weight too small to matter: the features alone send many patches to the wrong region
    # (the content looks like the left half everywhere).
    weak, found = _map_matches(vgg, monkeypatch, semantic_weight=1e-3)
    assert max(_region_agreement(weak, found)) < 0.8


def test_matching_flops_count_the_map_channels(vgg):
    style, style_labels = two_textures()
    energy, prepared = level_energy(vgg, _map_content(), style, _halves(72, 96, 0),
                                    style_labels)
    expected = 0
    for term, channels in zip(energy.style_terms, (256, 512)):
        assert term.bank.dim == (channels + 2) * 9
        expected += 2 * term.patch_count * term.bank.size * term.bank.dim
    assert profiled_gradient(energy, prepared.content).flops['matching'] == expected


def _greenness(rgb):
    """Mean of G - R: high for the green dots' region, low for the red stripes'."""
    return float(rgb[..., 1].mean()) - float(rgb[..., 0].mean())


def test_maps_change_the_result(vgg16_path):
    style, style_labels = two_textures()
    content = _map_content()
    plain, _ = short_run(vgg16_path, content=content, style=style, iterations=10, style_weight=2.0)
    mapped, _ = short_run(vgg16_path, content=content, style=style, iterations=10,
                     style_weight=2.0, content_map=_halves(72, 96, 0), style_map=style_labels,
                     semantic_weight=5e4)
    bottom = slice(30, None)  # the map's bottom half asks for the green dots
    assert _greenness(mapped[bottom]) > _greenness(plain[bottom]) + 20


def test_a_doodle_end_to_end(vgg16_path):
    style, style_labels = two_textures()
    doodle = _halves(60, 80, 1)  # left: the stripes' region, right: the dots'
    steps = []
    # From noise, so that only the maps can put the regions in place.
    result = synthesize(None, style, content_map=doodle, style_map=style_labels,
                        semantic_weight=5e4, iterations=12, seed=0, initial_image='random',
                        model=vgg16_path, callback=steps.append, **SMALL)
    assert result.shape == (48, 64, 3)  # the doodle's shape at width 64
    assert not any(name.startswith('content') for name in steps[0].losses)
    assert _greenness(result[:, 36:]) > _greenness(result[:, :28]) + 40


def _painted_calls(monkeypatch):
    """Records the arguments of every semantic.paint_map call."""
    calls = []
    paint = semantic.paint_map

    def record(content_map, styles, style_maps):
        calls.append((content_map, styles, style_maps))
        return paint(content_map, styles, style_maps)
    monkeypatch.setattr(semantic, 'paint_map', record)
    return calls


def test_a_doodle_starts_from_its_painted_map(vgg16_path, monkeypatch):
    style, style_labels = two_textures()
    calls = _painted_calls(monkeypatch)
    options = dict(content_map=_halves(60, 80, 1), style_map=style_labels, iterations=1,
                   model=vgg16_path, **SMALL)
    synthesize(None, style, **options)
    (content_map, styles, style_maps), = calls
    assert content_map.shape == (1, 2, 48, 64) and len(styles) == len(style_maps) == 1
    # From noise when asked; a texture (no maps) from noise as before.
    synthesize(None, style, initial_image='random', **options)
    synthesize(None, style, iterations=1, model=vgg16_path, **SMALL)
    assert len(calls) == 1


def test_a_painted_start_needs_a_content_map():
    with pytest.raises(ValueError, match="initial_image 'map' paints the content map"):
        load_inputs(content_card(), style_stripes(), preset=presets.get_preset('dsanno').replace(
            initial_image='map'))


def test_a_doodle_takes_size_when_given(vgg16_path):
    style, style_labels = two_textures()
    result = synthesize(None, style, content_map=_halves(60, 80, 1), style_map=style_labels,
                        size=(72, 64), iterations=1, model=vgg16_path, resolution_num=1)
    assert result.shape == (64, 72, 3)


def test_map_mistakes_name_the_file(tmp_path):
    content_map, style_map = str(tmp_path / 'content_sem.png'), str(tmp_path / 'style_sem.png')
    image.save_image(content_map, numpy.zeros((72, 96, 3), numpy.uint8))
    image.save_image(style_map, numpy.zeros((80, 80, 3), numpy.uint8))
    with pytest.raises(ValueError, match='content_sem.png.*needs one for the style'):
        load_inputs(content_card(), style_stripes(), content_map=content_map)
    with pytest.raises(ValueError, match='style_sem.png.*needs one for the content'):
        load_inputs(content_card(), style_stripes(), style_map=style_map)
    with pytest.raises(ValueError, match='semantic map .*style_sem.png is 80x80 but the content '
                                         'image is 96x72'):
        load_inputs(content_card(), style_stripes(), content_map=style_map, style_map=style_map)
    with pytest.raises(ValueError, match='3 channels.*2 channels'):
        load_inputs(content_card(), style_stripes(), content_map=content_map,
                              style_map=two_textures()[1])
    with pytest.raises(ValueError, match='1 style maps for 2 style images'):
        load_inputs(content_card(), [style_stripes(), style_stripes()], content_map=content_map,
                              style_map=[style_map])
    with pytest.raises(ValueError, match='style map 2 is 40x80'):
        load_inputs(content_card(), [style_stripes(), style_stripes()], content_map=content_map,
                              style_map=[style_map, numpy.zeros((80, 40, 3), numpy.uint8)])
    # A doodle: no content image to compare the content map's size with.
    inputs = load_inputs(None, style_stripes(), content_map=content_map, style_map=style_map)
    assert inputs.content_map.shape == (1, 3, 72, 96)
