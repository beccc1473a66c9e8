"""dsanno's colour options (keep_color, luminance_only, match_color_histogram), end to end with
the real VGG16: what each does to a result. Step by step they are dsanno's:
``test_dsanno_parity.py`` (keep_color, luminance_only) and ``test_colour_parity.py`` (the
functions, and the inputs as the synthesis prepares them)."""
import numpy
import pytest

from chainer_mrf import colour, image
from chainer_mrf.inputs import COLOUR_OPTIONS
from chainer_mrf.synthesis import synthesize
from chainer_mrf.vgg import VGG
from helpers import content_card, short_run, style_stripes


def _yiq(rgb):
    """Y, I, Q of an RGB uint8 image as float (3, H, W), with dsanno's matrix."""
    return colour.bgr_to_yiq(rgb[None, :, :, ::-1].transpose(0, 3, 1, 2).astype(numpy.float32))[0]


def _resized_content(width=64):
    rgb = content_card()
    return image.resize_pil(rgb, image.dsanno_size(rgb.shape[1], rgb.shape[0], width))


def _chroma_error(rgb):
    return numpy.abs(_yiq(rgb)[1:] - _yiq(_resized_content())[1:]).mean()


def test_keep_color_keeps_the_contents_chroma(vgg16_path):
    # A strong MRF term, so that the plain run takes on the stripes' colours.
    plain, _ = short_run(vgg16_path, style_weight=5.0)
    kept, steps = short_run(vgg16_path, style_weight=5.0, keep_color=True, profile=True)
    assert _chroma_error(plain) > 15
    # Not exactly: the luminance's gradient runs along (0.114, 0.587, 0.299) in B, G, R, which
    # moves Q by -0.21 for every 0.45 of Y (and pixels clip at 0 and 255), as in dsanno.
    assert _chroma_error(kept) < 0.5 * _chroma_error(plain)
    # The MRF term changed the image nonetheless (its luminance).
    assert numpy.abs(_yiq(kept)[0] - _yiq(_resized_content())[0]).mean() > 2
    # Two network passes (image and luminance), counted as such.
    one_pass = VGG(vgg16_path).flops((48, 64), ['relu4_2'])
    assert steps[0].flops['vgg_forward'] == steps[0].flops['vgg_backward'] == 2 * one_pass


def _unclipped_error(rgb, iq):
    """The largest difference from the chroma ``iq`` over the pixels that did not clip."""
    unclipped = ((rgb > 0) & (rgb < 255)).all(axis=2)
    assert unclipped.mean() > 0.5
    return numpy.abs(_yiq(rgb)[1:] - iq)[:, unclipped].max()


def test_luminance_only_output_has_the_contents_chroma_at_every_level(vgg16_path):
    result, steps = short_run(vgg16_path, iterations=3, width=128, resolution_num=2,
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


def test_match_color_histogram_end_to_end(vgg16_path):
    # A washed-out copy of the content: an affine map of its colours, which the histogram
    # matching undoes, so every patch then finds itself.
    content = _resized_content()
    washed = (content * 0.5 + 60).round().astype(numpy.uint8)
    plain = short_run(vgg16_path, content=content, style=washed, iterations=1)[1][0].losses
    matched = short_run(vgg16_path, content=content, style=washed, iterations=1,
                   match_color_histogram=True)[1][0].losses
    assert matched['style_3_2'] < 0.05 * plain['style_3_2']
    assert matched['style_4_2'] < 0.05 * plain['style_4_2']


@pytest.mark.parametrize('option', COLOUR_OPTIONS)
@pytest.mark.parametrize('style', ['grey', 'flat'])
def test_a_grayscale_or_flat_style_gives_no_nan(vgg16_path, option, style):
    grey = style_stripes().mean(axis=2, keepdims=True).repeat(3, axis=2).astype(numpy.uint8)
    source = grey if style == 'grey' else numpy.full_like(grey, 128)
    result, steps = short_run(vgg16_path, style=source, iterations=2, **{option: True})
    assert all(numpy.isfinite(list(s.losses.values())).all() for s in steps)
    assert result.shape == (48, 64, 3)


@pytest.mark.parametrize('option', COLOUR_OPTIONS)
def test_colour_options_need_a_content_image(option):
    with pytest.raises(ValueError, match='%s needs a content image' % option):
        synthesize(None, style_stripes(), **{option: True})
