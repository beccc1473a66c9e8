"""Several style images in one bank, and their weights, end to end with the real VGG16."""
import chainer
import numpy
import pytest

from chainer_mrf import patches
from chainer_mrf.synthesis import synthesize
from helpers import content_card, level_energy, matches, short_run, style_stripes, two_textures


def _style_patches(vgg, style, name):
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        return patches.extract_patches_array(vgg(style, layers=[name])[name].array, 3)


def test_the_bank_holds_every_style_images_patches(vgg):
    energy, prepared = level_energy(vgg, content_card(), [style_stripes(), content_card()[:64, :80]])
    for term, name in zip(energy.style_terms, energy.config.style_layers):
        parts = [_style_patches(vgg, style, name) for style in prepared.styles]
        assert term.bank.size == sum(len(part) for part in parts)
        numpy.testing.assert_allclose(term.bank.patches, numpy.concatenate(parts), rtol=1e-6)


def test_image_weights_decide_which_style_wins(vgg, monkeypatch):
    stripes, dots = two_textures()[0][:, :40], two_textures()[0][:, 40:]

    def share_of_first(image_weights):
        """Per MRF layer, the share of patches matched in the first image."""
        energy, prepared = level_energy(vgg, content_card(), [stripes, dots],
                                   style_image_weights=image_weights)
        found = matches(energy, prepared.content, monkeypatch)
        firsts = [len(_style_patches(vgg, prepared.styles[0], name))
                  for name in energy.config.style_layers]
        return [float((indices < first).mean()) for (_, indices), first in zip(found, firsts)]

    for even, first, second in zip(share_of_first(None), share_of_first((1.0, 0.3)),
                                   share_of_first((0.3, 1.0))):
        assert first > 0.95 and second < 0.05
        assert second <= even <= first
    # Weights that are all 1 are the plain pool.
    assert share_of_first((1.0, 1.0)) == share_of_first(None)


def test_several_styles_end_to_end(vgg16_path):
    stripes, dots = two_textures()[0][:, :40], two_textures()[0][:, 40:]
    result, steps = short_run(vgg16_path, style=[stripes, dots], iterations=3,
                         style_image_weights=[1.0, 0.8])
    assert result.shape == (48, 64, 3)
    with pytest.raises(ValueError, match='style_image_weights has 1 values for 2 style images'):
        synthesize(content_card(), [stripes, dots], style_image_weights=(1.0,))
    with pytest.raises(ValueError, match='at least one style image'):
        synthesize(content_card(), [])
