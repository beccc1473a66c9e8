"""The authors' preset (``cnnmrf``) at one level against an independent port of their Torch code
(tests/authors_oracle.py): the assembled energy and image gradient, term by term, with stride-2
grids that append the last row and column, nine style copies, a weight per MRF layer and a
confidence threshold that drops patches; the style bank on the sample grid; the texture start.
The real VGG16 weights, on small images."""
import chainer_mrf  # noqa: F401  (NumPy shims before chainer)
import chainer
import numpy
import pytest

from chainer_mrf import inputs, presets, style_copies, synthesis

import authors_oracle as oracle
from helpers import content_card, image_link, level_energy, matches, style_stripes, two_textures

# The authors' parameters, as run_trans.lua and run_syn.lua call their wrappers: MRF at layers
# 12 and 21 (relu3_1, relu4_1), content at 23 (relu4_2) with weight 2e1, TV weight 1e-3,
# synthesis stride 2 (the sample stride, 2, is a case's option); one rotation of pi/24 and one
# scale of 1.05 each way (mrf_num_rotation = mrf_num_scale = 1).
AUTHORS = dict(content_layers=('relu4_2',), content_weight=2e1, mrf_layers=('relu3_1', 'relu4_1'),
               synthesis_stride=2, tv_weight=1e-3)

# Each case: content (or None), styles, options of the cnnmrf preset. The thresholds lie where
# the cosines at the images below are dense: each layer drops some patches and keeps others.
CASES = {
    # Style transfer, 64 x 48: relu3_1 is 16 x 12, relu4_1 8 x 6.
    'transfer': (content_card, [style_stripes],
                 dict(style_weight=(1e-4, 0.5e-4), confidence_threshold=0.35)),
    # Texture synthesis, 80 x 80, the style at half that size: relu3_1 20 x 20, relu4_1 10 x 10.
    'texture': (None, [style_stripes],
                dict(max_size=80, style_weight=(2e-4, 1e-4), confidence_threshold=0.68)),
    # Two style images, the second's scores weighted 0.9 (not the authors': their copies' order
    # must meet the weights' order).
    'two styles': (content_card, [style_stripes, lambda: two_textures()[0]],
                   dict(style_weight=(1e-4, 0.5e-4), confidence_threshold=0.35,
                        style_image_weights=(1.0, 0.9))),
}
IMAGES = ('noise', 'more noise', 'style')
SEED = 12  # of the images' noise: every match has a clear winner (the test checks it)


def _noisy(rgb, seed):
    """``rgb`` with seeded noise: a periodic style has equal patches, which tie in the matching."""
    noise = numpy.random.RandomState(seed).uniform(-30, 30, rgb.shape)
    return (rgb + noise).clip(0, 255).astype(numpy.uint8)


def _image(prepared, which):
    """An image to evaluate the energy at: a base image plus noise, or half of it and half of
    the style; the base is the content, or for a texture the style upside down and tiled."""
    rng = numpy.random.RandomState(SEED + IMAGES.index(which))
    height, width = prepared.shape
    style = prepared.styles[0]
    if prepared.content is None:
        tiles = (1, 1, -(-height // style.shape[2]), -(-width // style.shape[3]))
        base = numpy.tile(style[:, :, ::-1], tiles)[:, :, :height, :width]
    else:
        base = prepared.content
    if which == 'style':
        padded = numpy.zeros_like(base)
        crop = style[:, :, :height, :width]
        padded[:, :, :crop.shape[2], :crop.shape[3]] = crop
        base = (base + padded) / 2
    amplitude = {'noise': 20, 'more noise': 60, 'style': 10}[which]
    return (base + rng.uniform(-amplitude, amplitude, base.shape)).astype(numpy.float32)


def _term(name):
    """The oracle's name of one of our terms: ``style_3_1`` -> ``('mrf', 'relu3_1')``."""
    if name == 'tv':
        return 'tv', None
    kind, layer = name.split('_', 1)
    return {'content': 'content', 'style': 'mrf'}[kind], 'relu' + layer


class _Case:
    """Our level energy and the oracle's, built once; the oracle's values at each image."""

    def __init__(self, vgg, weights, content, styles, options):
        self.energy, self.prepared = level_energy(
            vgg, None if content is None else content(),
            [_noisy(style(), seed) for seed, style in enumerate(styles)], preset='cnnmrf',
            **options)
        copies = [style_copies.style_copies(s[0], 1, 1, 7.5, 1.05) for s in self.prepared.styles]
        self.oracle = oracle.Level(
            weights, self.prepared.content, copies, **AUTHORS,
            sample_stride=options.get('sample_stride', 2), mrf_weights=options['style_weight'],
            threshold=options['confidence_threshold'],
            image_weights=options.get('style_image_weights'))
        self.copies = copies
        self._expected = {}

    def expected(self, which):
        if which not in self._expected:
            x = _image(self.prepared, which)
            self._expected[which] = x, self.oracle(x)
        return self._expected[which]


@pytest.fixture(scope='module')
def weights(vgg16_path):
    """The real VGG16 weights as the oracle reads them: the file's arrays."""
    with numpy.load(vgg16_path) as arrays:
        return {key: arrays[key] for key in arrays.files}


@pytest.fixture(scope='module', params=list(CASES))
def case(request, vgg, weights):
    return _Case(vgg, weights, *CASES[request.param])


def test_every_synthesised_grid_appends_its_last_row_and_column(case):
    # n - 3 is odd on both axes of each MRF layer: the stride-2 grid skips n - 3, which the
    # authors append.
    for shape in case.energy.vgg.shapes(case.prepared.shape, AUTHORS['mrf_layers']).values():
        assert shape[1] % 2 == shape[2] % 2 == 0
    assert [len(copies) for copies in case.copies] == [9] * len(case.copies)


def test_the_threshold_drops_some_patches_at_each_layer(case):
    kept = numpy.array([[found['keep'].mean() for found in case.expected(which)[1]['mrf']
                         .values()] for which in IMAGES])
    # At some image each layer drops some of its patches and keeps others.
    assert ((0 < kept) & (kept < 1)).any(axis=0).all(), kept


def _through_our_network(energy, x, grads):
    """The image gradient of terms whose gradients at their layers are ``grads`` ({(kind,
    layer): array}; layer ``None``: at the image), back-propagated through our VGG run as the
    level energy runs it (the same layers, so the same ReLU and max-pooling decisions)."""
    image = chainer.Variable(x.copy())
    config = energy.config
    features = energy.vgg(image, layers=set(config.content_layers) | set(config.style_layers))
    at_layers, at_image = {}, 0
    for (_, layer), g in grads.items():
        if layer is None:
            at_image = at_image + g
        else:
            at_layers[layer] = at_layers.get(layer, 0) + g
    if not at_layers:
        return at_image
    back, = chainer.grad([features[layer] for layer in at_layers], [image], grad_outputs=[
        chainer.Variable(g.astype(numpy.float32)) for g in at_layers.values()])
    return back.array + at_image


@pytest.mark.parametrize('which', IMAGES)
def test_level_energy_and_gradient_are_the_authors(case, which, monkeypatch):
    x, expected = case.expected(which)
    for found in expected['mrf'].values():
        # Clear winners, and no cosine at the threshold: float32 decides as float64.
        assert (found['margin'] / found['norm']).min() > 1e-5
        assert numpy.abs(found['cosine'] - case.oracle.threshold).min() > 1e-4
    # The same style patch for every synthesised one, at each layer.
    for found, (_, indices) in zip(expected['mrf'].values(), matches(case.energy, x,
                                                                     monkeypatch)):
        numpy.testing.assert_array_equal(indices, found['index'])
    # Each term's energy, and its image gradient: the authors' update at the term's layer
    # back-propagated through our network. (Not through the oracle's: ours runs in float32,
    # which orders some near-equal values of a max-pooling window otherwise than float64 does
    # (two largest of one window 1.4e-7 apart, relatively, in a trial image), sending that
    # window's gradient elsewhere: an O(1) local difference. Our network's gradient has its
    # own tests, test_layers.py and test_vgg.py.)
    image = chainer.Variable(x.copy())
    terms = case.energy(image)
    assert sorted(map(_term, terms), key=str) == sorted(expected['energy'], key=str)
    for name, term in terms.items():
        key = _term(name)
        assert float(term.array) == pytest.approx(expected['energy'][key], rel=1e-5)
        want = _through_our_network(case.energy, x, {key: expected['grad'][key]})
        numpy.testing.assert_allclose(chainer.grad([term], [image])[0].array, want, rtol=1e-4,
                                      atol=1e-5 * numpy.abs(want).max(), err_msg=name)
    # Their sum and its gradient, as synthesize steps on them.
    target = image_link(x)
    values = synthesis._gradient(case.energy, target)
    assert sum(values.values()) == pytest.approx(sum(expected['energy'].values()), rel=1e-5)
    want = _through_our_network(case.energy, x, expected['grad'])
    numpy.testing.assert_allclose(target.x.grad, want, rtol=1e-4,
                                  atol=1e-5 * numpy.abs(want).max())


def _assert_banks_are_the_oracles(case):
    """Each layer's bank holds the patches of every copy on the sample grid, in order."""
    for name, term in zip(AUTHORS['mrf_layers'], case.energy.style_terms):
        want = numpy.concatenate(case.oracle.banks[name])
        assert term.bank.size == len(want)
        numpy.testing.assert_allclose(term.bank.patches, want, rtol=1e-4,
                                      atol=1e-5 * numpy.abs(want).max(), err_msg=name)


def test_the_style_bank_is_every_copy_on_the_sample_grid(case):
    _assert_banks_are_the_oracles(case)


@pytest.mark.parametrize('sample_stride', [1, 3])
def test_the_style_bank_follows_the_sample_stride(vgg, weights, sample_stride):
    content, styles, options = CASES['transfer']
    case = _Case(vgg, weights, content, styles, dict(options, sample_stride=sample_stride))
    _assert_banks_are_the_oracles(case)
    # The unrotated, unscaled copy (the fifth) is the 64 x 64 style: relu3_1 16 x 16, relu4_1
    # 8 x 8, whose grids are 0 to 13 and 0 to 5 at stride 1, and 0, 3, 6, 9, 12, 13 and 0, 3, 5
    # at stride 3 (the last appended).
    counts = {1: (14 * 14, 6 * 6), 3: (6 * 6, 3 * 3)}[sample_stride]
    assert tuple(len(case.oracle.banks[name][4]) for name in AUTHORS['mrf_layers']) == counts


class _Started(Exception):
    """Raised by the recording energy at the first gradient, before any step."""


@pytest.mark.parametrize('levels, start_shape, block', [(1, (80, 96), 1), (3, (20, 24), 4)],
                         ids=['one level', 'three levels'])
def test_texture_starts_from_the_authors_noise_with_the_style_at_half_size(
        monkeypatch, levels, start_shape, block):
    # A 48 x 40 style and max_size 96: the output is the style with its longer side 96, 96 x 80
    # (run_syn.lua synthesises at the size of its "content" image, the style itself, scaled to
    # max_size); the style is scaled to floor(96 / 2) = 48 on its longer side, its own size
    # (Torch's image.scale copies it). The first level (factor 4 of 3 levels) starts from
    # 0.001 x randn at ceil(80 / 4) x ceil(96 / 4), with the style at ceil(40 / 4) x
    # ceil(48 / 4), each pixel the mean of a 4 x 4 block (Torch's shrink by a whole factor);
    # with one level, at the full sizes.
    rgb = numpy.random.RandomState(3).randint(0, 256, (40, 48, 3)).astype(numpy.uint8)
    seen = {}

    class Recorded:
        def __init__(self, vgg, config, content, styles, shape, **kwargs):
            seen.update(config=config, content=content, styles=styles, shape=shape)

        def __call__(self, x):
            seen['x'] = x.array.copy()
            raise _Started
    monkeypatch.setattr(synthesis, '_Energy', Recorded)
    monkeypatch.setattr(synthesis, '_network', lambda config, device: None)
    with pytest.raises(_Started):
        synthesis.synthesize(None, rgb, preset='cnnmrf', max_size=96, resolution_num=levels,
                             seed=7)
    assert seen['content'] is None and seen['config'].content_layers == ()
    assert seen['shape'] == start_shape and len(seen['styles']) == 1
    # mylib/helper.lua preprocess on image.load's [0, 1] values: BGR, x 256, minus the means.
    mean = numpy.array([103.939, 116.779, 123.68])[:, None, None]
    bgr = rgb[:, :, ::-1].transpose(2, 0, 1) / 255 * 256 - mean
    height, width = 40 // block, 48 // block
    numpy.testing.assert_allclose(
        seen['styles'][0][0], bgr.reshape(3, height, block, width, block).mean(axis=(2, 4)),
        rtol=0, atol=1e-4)
    # torch.randn(...):float():mul(0.001): drawn, rounded to float32, then scaled in float32.
    noise = numpy.random.RandomState(7).standard_normal((1, 3) + start_shape)
    numpy.testing.assert_array_equal(seen['x'],
                                     noise.astype(numpy.float32) * numpy.float32(0.001))


def test_texture_style_side_is_half_the_output_side_rounded_down():
    # run_syn.lua scales the style to math.floor(max_size / scaler), scaler 2: 99 -> 49, and
    # synthesises at the style's size at max_size: 99 x floor(40 * 99 / 48) = 99 x 82.
    loaded = inputs.Inputs(None, [numpy.zeros((40, 48, 3), numpy.uint8)], None, [None], None)
    config = inputs.configure(presets.get_preset('cnnmrf').replace(max_size=99), loaded)
    assert inputs.synthesis_shapes(loaded, config) == ((82, 99), [(40, 49)])
