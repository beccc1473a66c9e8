"""Colour options, semantic maps and several style images, end to end with the real VGG16."""
import chainer
import numpy
import pytest

from chainer_mrf import colour, image, matching, patches, presets, semantic, synthesis
from chainer_mrf.synthesis import synthesize
from chainer_mrf.vgg import VGG
from helpers import SMALL, content_card, style_stripes


def _yiq(rgb):
    """Y, I, Q of an RGB uint8 image as float (3, H, W), with dsanno's matrix."""
    return colour.bgr_to_yiq(rgb[None, :, :, ::-1].transpose(0, 3, 1, 2).astype(numpy.float32))[0]


def _resized_content(width=64):
    rgb = content_card()
    return image.resize_pil(rgb, image.dsanno_size(rgb.shape[1], rgb.shape[0], width))


def _run(vgg16_path, content=None, style=None, iterations=8, **options):
    steps = []
    result = synthesize(content_card() if content is None else content,
                        style_stripes() if style is None else style, iterations=iterations,
                        model=vgg16_path, callback=steps.append, **{**SMALL, **options})
    return result, steps


# --- colour options -------------------------------------------------------------------------

def _chroma_error(rgb):
    return numpy.abs(_yiq(rgb)[1:] - _yiq(_resized_content())[1:]).mean()


def test_keep_color_keeps_the_contents_chroma(vgg16_path):
    # A strong MRF term, so that the plain run takes on the stripes' colours.
    plain, _ = _run(vgg16_path, style_weight=5.0)
    kept, steps = _run(vgg16_path, style_weight=5.0, keep_color=True)
    assert _chroma_error(plain) > 15
    # Not exactly: the luminance's gradient runs along (0.114, 0.587, 0.299) in B, G, R, which
    # moves Q by -0.21 for every 0.45 of Y (and pixels clip at 0 and 255), as in dsanno.
    assert _chroma_error(kept) < 0.5 * _chroma_error(plain)
    # The MRF term changed the image nonetheless (its luminance).
    assert numpy.abs(_yiq(kept)[0] - _yiq(_resized_content())[0]).mean() > 2
    # Two network passes (image and luminance), counted as such.
    one_pass = VGG(vgg16_path).flops((48, 64), ['relu4_2'])
    assert steps[0].flops['vgg_forward'] == 2 * one_pass + 18 * 48 * 64


def test_keep_color_uses_the_luminance_of_the_style(vgg16_path):
    # The style bank is built from the style's luminance: a style of the content's luminance
    # (standardised to it, a no-op) makes every patch find itself, whatever the colours.
    grey = numpy.repeat(_yiq(_resized_content())[0].round().clip(0, 255).astype(numpy.uint8)
                        [:, :, None], 3, axis=2)
    _, steps = _run(vgg16_path, content=_resized_content(), style=grey, iterations=1,
                    keep_color=True)
    assert steps[0].losses['style_3_2'] < 1e-3 * _run(
        vgg16_path, content=_resized_content(), style=grey, iterations=1)[1][0].losses['style_3_2']


def _unclipped_error(rgb, iq):
    """The largest difference from the chroma ``iq`` over the pixels that did not clip."""
    unclipped = ((rgb > 0) & (rgb < 255)).all(axis=2)
    assert unclipped.mean() > 0.5
    return numpy.abs(_yiq(rgb)[1:] - iq)[:, unclipped].max()


def test_luminance_only_output_has_the_contents_chroma_at_every_level(vgg16_path):
    result, steps = _run(vgg16_path, iterations=3, width=128, resolution_num=2,
                         luminance_only=True, style_weight=5.0)
    content = _resized_content(128)
    expected = _yiq(content)[1:]
    # The YIQ round trip is exact to 0.3 % of a channel, and the output is rounded to 8 bits
    # (pixels that clip at 0 or 255 lose some of their chroma).
    assert _unclipped_error(result, expected) < 2.5
    # The coarse level's images take the chroma at their own size (dsanno's fails there).
    coarse = steps[0].image()
    assert coarse.shape == (48, 64, 3)
    assert _unclipped_error(coarse, expected[:, ::2, ::2]) < 2.5
    assert steps[0].chroma.shape == (1, 2, 48, 64) and steps[-1].chroma.shape == (1, 2, 96, 128)
    assert numpy.abs(_yiq(result)[0] - _yiq(content)[0]).mean() > 2


def test_match_color_histogram_gives_the_style_the_contents_statistics():
    config = presets.get_preset('dsanno').replace(match_color_histogram=True, **SMALL)
    inputs = synthesis.load_inputs(content_card(), [style_stripes(), style_stripes()[::-1]], preset=config)
    prepared = synthesis._prepare_inputs(inputs, config, image.DSANNO)
    content = prepared.content.reshape(3, -1).astype(numpy.float64)
    for style in prepared.styles:
        pixels = style.reshape(3, -1).astype(numpy.float64)
        numpy.testing.assert_allclose(pixels.mean(axis=1), content.mean(axis=1), atol=1e-2)
        numpy.testing.assert_allclose(numpy.cov(pixels), numpy.cov(content), rtol=1e-3,
                                      atol=1e-1)
    plain = synthesis._prepare_inputs(inputs, config.replace(match_color_histogram=False),
                                      image.DSANNO)
    assert numpy.abs(plain.styles[0].mean(axis=(2, 3)) - prepared.content.mean(axis=(2, 3))
                     ).max() > 10


def test_match_color_histogram_end_to_end(vgg16_path):
    # A washed-out copy of the content: an affine map of its colours, which the histogram
    # matching undoes, so every patch then finds itself.
    content = _resized_content()
    washed = (content * 0.5 + 60).round().astype(numpy.uint8)
    plain = _run(vgg16_path, content=content, style=washed, iterations=1)[1][0].losses
    matched = _run(vgg16_path, content=content, style=washed, iterations=1,
                   match_color_histogram=True)[1][0].losses
    assert matched['style_3_2'] < 0.05 * plain['style_3_2']
    assert matched['style_4_2'] < 0.05 * plain['style_4_2']


@pytest.mark.parametrize('option', synthesis.COLOUR_OPTIONS)
@pytest.mark.parametrize('style', ['grey', 'flat'])
def test_a_grayscale_or_flat_style_gives_no_nan(vgg16_path, option, style):
    grey = style_stripes().mean(axis=2, keepdims=True).repeat(3, axis=2).astype(numpy.uint8)
    source = grey if style == 'grey' else numpy.full_like(grey, 128)
    result, steps = _run(vgg16_path, style=source, iterations=2, **{option: True})
    assert all(numpy.isfinite(list(s.losses.values())).all() for s in steps)
    assert result.shape == (48, 64, 3)


@pytest.mark.parametrize('option', synthesis.COLOUR_OPTIONS)
def test_colour_options_need_a_content_image(option):
    with pytest.raises(ValueError, match='%s needs a content image' % option):
        synthesize(None, style_stripes(), **{option: True})


# --- semantic maps --------------------------------------------------------------------------

A, B = (220, 40, 40), (40, 200, 60)


def _two_textures():
    """A style whose left half is red stripes and right half green dots, and its label map."""
    y, x = numpy.mgrid[0:80, 0:80]
    style = numpy.full((80, 80, 3), 235, numpy.uint8)
    left = x < 40
    style[left & ((x + y) // 4 % 2 == 0)] = A
    style[~left & ((x // 5 % 2 == 0) & (y // 5 % 2 == 0))] = B
    labels = numpy.zeros((80, 80, 2), numpy.float32)
    labels[..., 0], labels[..., 1] = left, ~left
    return style, labels


def _halves(height, width, axis):
    """A two-channel label map split into halves along ``axis`` (0: top/bottom)."""
    index = numpy.mgrid[0:height, 0:width][axis]
    first = index < (height if axis == 0 else width) // 2
    return numpy.stack([first, ~first], axis=-1).astype(numpy.float32)


@pytest.fixture(scope='module')
def vgg(vgg16_path):
    return VGG(vgg16_path)


def _energy(vgg, content, styles, content_map=None, style_maps=None, preset='dsanno',
            **options):
    """A level's energy as synthesize builds it (one level, on the CPU), and its inputs."""
    config = presets.get_preset(preset).replace(**{**SMALL, 'max_size': 64, **options})
    inputs = synthesis.load_inputs(content, styles, content_map=content_map,
                                   style_map=style_maps, preset=config)
    prepared = synthesis._prepare_inputs(inputs, config, synthesis._PREPROCESSING[preset])
    energy = synthesis._Energy(vgg, config, chainer.get_device('@numpy'), prepared.content,
                               list(prepared.styles), prepared.content, prepared.content_map,
                               prepared.style_maps)
    return energy, prepared


def _matches(energy, x, monkeypatch):
    """Runs one gradient from ``x``; returns, per MRF layer, the queries and the bank indices."""
    found = []
    match = matching.match

    def record(queries, bank, **kwargs):
        indices, scores = match(queries, bank, **kwargs)
        found.append((queries.copy(), indices))
        return indices, scores
    monkeypatch.setattr(matching, 'match', record)
    target = chainer.Link()
    with target.init_scope():
        target.x = chainer.Parameter(x.copy())
    energy._gradient(target, synthesis._Clock(energy.dev))
    return found


def _style_patches(vgg, style, name):
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        return patches.extract_patches_array(vgg(style, layers=[name])[name].array, 3)


def _map_matches(vgg, monkeypatch, **options):
    style, style_labels = _two_textures()
    # The content looks like the style's left half everywhere; its map asks for the right
    # half's region in its bottom half.
    content = numpy.tile(style[:, :40], (1, 3, 1))[:72, :96]
    energy, prepared = _energy(vgg, content, style, _halves(72, 96, 0), style_labels,
                               **options)
    return energy, _matches(energy, prepared.content, monkeypatch)


def _region_agreement(energy, found):
    """Per layer: the share of interior query patches whose match has the query's label."""
    shares = []
    for layer, (queries, indices) in zip(energy.layers, found):
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


def test_matching_flops_count_the_map_channels(vgg, monkeypatch):
    energy, _ = _map_matches(vgg, monkeypatch)
    flops = 0
    for layer, channels in zip(energy.layers, (256, 512)):
        assert layer.bank.dim == (channels + 2) * 9
        flops += (2 * len(layer.grid['rows']) * len(layer.grid['cols']) * layer.bank.size
                  * layer.bank.dim)
    assert energy.flops['matching'] == flops


def _greenness(rgb):
    """Mean of G - R: high for the green dots' region, low for the red stripes'."""
    return float(rgb[..., 1].mean()) - float(rgb[..., 0].mean())


def test_maps_change_the_result(vgg16_path):
    style, style_labels = _two_textures()
    content = numpy.tile(style[:, :40], (1, 3, 1))[:72, :96]
    plain, _ = _run(vgg16_path, content=content, style=style, iterations=10, style_weight=2.0)
    mapped, _ = _run(vgg16_path, content=content, style=style, iterations=10,
                     style_weight=2.0, content_map=_halves(72, 96, 0), style_map=style_labels,
                     semantic_weight=5e4)
    bottom = slice(30, None)  # the map's bottom half asks for the green dots
    assert _greenness(mapped[bottom]) > _greenness(plain[bottom]) + 20


def test_a_doodle_end_to_end(vgg16_path):
    style, style_labels = _two_textures()
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
    style, style_labels = _two_textures()
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
        synthesis.load_inputs(content_card(), style_stripes(), preset=presets.get_preset('dsanno').replace(
            initial_image='map'))


def test_a_doodle_takes_size_when_given(vgg16_path):
    style, style_labels = _two_textures()
    result = synthesize(None, style, content_map=_halves(60, 80, 1), style_map=style_labels,
                        size=(72, 64), iterations=1, model=vgg16_path, resolution_num=1)
    assert result.shape == (64, 72, 3)


def test_map_mistakes_name_the_file(tmp_path):
    content_map, style_map = str(tmp_path / 'content_sem.png'), str(tmp_path / 'style_sem.png')
    image.save_image(content_map, numpy.zeros((72, 96, 3), numpy.uint8))
    image.save_image(style_map, numpy.zeros((80, 80, 3), numpy.uint8))
    with pytest.raises(ValueError, match='content_sem.png.*needs one for the style'):
        synthesis.load_inputs(content_card(), style_stripes(), content_map=content_map)
    with pytest.raises(ValueError, match='style_sem.png.*needs one for the content'):
        synthesis.load_inputs(content_card(), style_stripes(), style_map=style_map)
    with pytest.raises(ValueError, match='semantic map .*style_sem.png is 80x80 but the content '
                                         'image is 96x72'):
        synthesis.load_inputs(content_card(), style_stripes(), content_map=style_map, style_map=style_map)
    with pytest.raises(ValueError, match='3 channels.*2 channels'):
        synthesis.load_inputs(content_card(), style_stripes(), content_map=content_map,
                              style_map=_two_textures()[1])
    with pytest.raises(ValueError, match='1 style maps for 2 style images'):
        synthesis.load_inputs(content_card(), [style_stripes(), style_stripes()], content_map=content_map,
                              style_map=[style_map])
    with pytest.raises(ValueError, match='style map 2 is 40x80'):
        synthesis.load_inputs(content_card(), [style_stripes(), style_stripes()], content_map=content_map,
                              style_map=[style_map, numpy.zeros((80, 40, 3), numpy.uint8)])
    # A doodle: no content image to compare the content map's size with.
    inputs = synthesis.load_inputs(None, style_stripes(), content_map=content_map, style_map=style_map)
    assert inputs.content_map.shape == (1, 3, 72, 96)


# --- several style images -------------------------------------------------------------------

def test_the_bank_holds_every_style_images_patches(vgg):
    energy, prepared = _energy(vgg, content_card(), [style_stripes(), content_card()[:64, :80]])
    for layer in energy.layers:
        parts = [_style_patches(vgg, style, layer.name) for style in prepared.styles]
        assert layer.bank.size == sum(len(part) for part in parts)
        numpy.testing.assert_allclose(layer.bank.patches, numpy.concatenate(parts), rtol=1e-6)


def test_image_weights_decide_which_style_wins(vgg, monkeypatch):
    stripes, dots = _two_textures()[0][:, :40], _two_textures()[0][:, 40:]

    def share_of_first(image_weights):
        """Per MRF layer, the share of patches matched in the first image."""
        energy, prepared = _energy(vgg, content_card(), [stripes, dots],
                                   style_image_weights=image_weights)
        found = _matches(energy, prepared.content, monkeypatch)
        firsts = [len(_style_patches(vgg, prepared.styles[0], layer.name))
                  for layer in energy.layers]
        return [float((indices < first).mean()) for (_, indices), first in zip(found, firsts)]

    for even, first, second in zip(share_of_first(None), share_of_first((1.0, 0.3)),
                                   share_of_first((0.3, 1.0))):
        assert first > 0.95 and second < 0.05
        assert second <= even <= first
    # Weights that are all 1 are the plain pool.
    assert share_of_first((1.0, 1.0)) == share_of_first(None)


def test_several_styles_end_to_end(vgg16_path):
    stripes, dots = _two_textures()[0][:, :40], _two_textures()[0][:, 40:]
    result, steps = _run(vgg16_path, style=[stripes, dots], iterations=3,
                         style_image_weights=[1.0, 0.8])
    assert result.shape == (48, 64, 3)
    with pytest.raises(ValueError, match='style_image_weights has 1 values for 2 style images'):
        synthesize(content_card(), [stripes, dots], style_image_weights=(1.0,))
    with pytest.raises(ValueError, match='at least one style image'):
        synthesize(content_card(), [])
