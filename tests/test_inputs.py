"""A synthesis's inputs (chainer_mrf.inputs): each file read once, the checks, the options that
depend on the inputs, the sizes, the start image and the random starts."""
import collections
import os

import chainer_mrf  # noqa: F401  (NumPy shims before chainer)
import numpy
import pytest

from chainer_mrf import cli, colour, image, inputs, presets, semantic
from chainer_mrf.synthesis import synthesize
from helpers import SMALL, content_card, style_stripes, two_textures


def _inputs(content=None, styles=None, content_map=None, style_maps=None, start=None):
    styles = [style_stripes()] if styles is None else styles
    return inputs.Inputs(content, styles, content_map,
                         [None] * len(styles) if style_maps is None else style_maps, start)


def _labels_rgb(labels):
    """A two-label map as a colour image: label 0 red, label 1 green."""
    rgb = numpy.zeros(labels.shape[:2] + (3,), numpy.uint8)
    rgb[..., 0] = 255 * labels[..., 0]
    rgb[..., 1] = 255 * labels[..., 1]
    return rgb


# --- each file once --------------------------------------------------------------------------

def test_the_command_line_reads_each_file_once(tmp_path, monkeypatch, vgg16_path):
    style, style_labels = two_textures()
    content = content_card()
    content_labels = numpy.zeros((72, 96, 2), numpy.float32)
    content_labels[:, :48, 0] = content_labels[:, 48:, 1] = 1
    files = {'content': content, 'style': style, 'start': style_stripes()[:50, :70],
             'content_map': _labels_rgb(content_labels), 'style_map': _labels_rgb(style_labels)}
    paths = {}
    for name, rgb in files.items():
        paths[name] = str(tmp_path / (name + '.png'))
        image.save_image(paths[name], rgb)
    images, maps = collections.Counter(), collections.Counter()

    def counted(counter, load):
        def wrapper(source):
            if isinstance(source, (str, os.PathLike)):
                counter[os.path.abspath(os.fspath(source))] += 1
            return load(source)
        return wrapper
    monkeypatch.setattr(image, 'load_image', counted(images, image.load_image))
    monkeypatch.setattr(semantic, 'load_map', counted(maps, semantic.load_map))
    out = tmp_path / 'out'
    code = cli.main(['-c', paths['content'], '-s', paths['style'], '-o', str(out),
                     '--content_map', paths['content_map'], '--style_map', paths['style_map'],
                     '--initial_image', paths['start'], '--iter', '1', '--resolution_num', '1',
                     '-w', '64', '-m', vgg16_path])
    assert code == 0 and (out / 'out.png').is_file()
    # Every file was read once: the images through load_image, the maps through load_map
    # (which decodes them with load_image).
    assert images == {os.path.abspath(p): 1 for p in paths.values()}
    assert maps == {os.path.abspath(paths['content_map']): 1,
                    os.path.abspath(paths['style_map']): 1}


def test_prepare_takes_the_loaded_start_image_without_reading_the_file(tmp_path):
    start = style_stripes()[:50, :70]
    config = presets.get_preset('dsanno').replace(
        width=64, initial_image=str(tmp_path / 'no_such_file.png'))
    prepared = inputs.prepare(_inputs(content_card(), start=start), config)
    expected = image.preprocess(image.resize_pil(start, (64, 48)), image.DSANNO)
    numpy.testing.assert_array_equal(prepared.start, expected)


def test_load_inputs_loads_the_start_image_named_by_the_preset(tmp_path):
    path = str(tmp_path / 'start.png')
    start = style_stripes()[:50, :70]
    image.save_image(path, start)
    config = presets.get_preset('dsanno').replace(initial_image=path)
    loaded = inputs.load_inputs(content_card(), style_stripes(), preset=config)
    numpy.testing.assert_array_equal(loaded.start, start)
    numpy.testing.assert_array_equal(loaded.content, content_card())
    assert len(loaded.styles) == 1 and loaded.content_map is None
    assert loaded.style_maps == [None]
    # A keyword start loads nothing.
    for keyword in inputs.START_KEYWORDS:
        if keyword != 'map':
            config = presets.get_preset('dsanno').replace(initial_image=keyword)
            assert inputs.load_inputs(content_card(), style_stripes(),
                                      preset=config).start is None


# --- checks --------------------------------------------------------------------------------

@pytest.mark.parametrize('options, message', [
    (dict(keep_color=True), '^keep_color needs a content image'),
    (dict(luminance_only=True, match_color_histogram=True),
     '^luminance_only and match_color_histogram need a content image'),
])
def test_colour_options_need_a_content_image(options, message):
    config = presets.get_preset('dsanno').replace(**options)
    with pytest.raises(ValueError, match=message):
        inputs.check_inputs(_inputs(), config)
    with pytest.raises(ValueError, match=message):
        inputs.load_inputs(None, style_stripes(), preset=config)
    # With a content image they are fine.
    inputs.check_inputs(_inputs(content_card()), config)


def test_the_map_start_needs_a_content_map():
    config = presets.get_preset('dsanno').replace(initial_image='map')
    with pytest.raises(ValueError, match="initial_image 'map' paints the content map"):
        inputs.check_inputs(_inputs(content_card()), config)
    style, labels = two_textures()
    content_labels = numpy.zeros((72, 96, 2), numpy.float32)
    content_labels[..., 0] = 1
    inputs.check_inputs(_inputs(content_card(), [style], semantic.load_map(content_labels),
                                [semantic.load_map(labels)]), config)


def test_style_image_weights_need_one_value_per_style():
    styles = [style_stripes(), two_textures()[0]]
    config = presets.get_preset('dsanno').replace(style_image_weights=(1.0, 0.5, 2.0))
    with pytest.raises(ValueError, match='style_image_weights has 3 values for 2 style images'):
        inputs.check_inputs(_inputs(content_card(), styles), config)
    inputs.check_inputs(_inputs(content_card(), styles),
                        config.replace(style_image_weights=(1.0, 0.5)))


def test_one_style_map_per_style_image():
    style, labels = two_textures()
    with pytest.raises(ValueError, match='1 style maps for 2 style images'):
        inputs.load_inputs(content_card(), [style, style], content_map=numpy.zeros((72, 96, 2)),
                           style_map=[labels])


# --- configure -----------------------------------------------------------------------------

def test_configure_leaves_style_transfer_alone():
    config = presets.get_preset('dsanno')
    assert inputs.configure(config, _inputs(content_card())) is config


@pytest.mark.parametrize('start, expected', [('content', 'random'), ('random', 'random'),
                                             ('start.png', 'start.png')])
def test_configure_a_texture(start, expected):
    config = presets.get_preset('cnnmrf').replace(initial_image=start)
    settled = inputs.configure(config, _inputs())
    assert settled.content_layers == () and settled.initial_image == expected
    assert settled.style_layers == config.style_layers  # nothing else changes
    assert settled.replace(content_layers=config.content_layers,
                           initial_image=start) == config


def test_configure_a_doodle():
    config = presets.get_preset('dsanno')
    doodle = _inputs(content_map=numpy.zeros((1, 2, 30, 40), numpy.float32))
    settled = inputs.configure(config, doodle)
    assert settled.content_layers == () and settled.initial_image == 'map'


# --- prepare -------------------------------------------------------------------------------

def _tall():
    """A content 72 wide and 96 high, so the two size rules differ."""
    return content_card().transpose(1, 0, 2).copy()


def test_prepare_under_the_width_rule():
    config = presets.get_preset('dsanno').replace(width=64)
    prepared = inputs.prepare(_inputs(_tall(), [style_stripes()[:, :60]]), config)
    # 96 * 64 / 72 = 85.3 -> 85; the 60 x 80 style: 80 * 64 / 60 = 85.3 -> 85.
    assert image.dsanno_size(72, 96, 64) == (64, 85)
    assert prepared.shape == (85, 64)
    assert prepared.content.shape == (1, 3, 85, 64)
    assert prepared.styles[0].shape == (1, 3) + image.dsanno_size(60, 80, 64)[::-1]
    assert prepared.preprocessing is image.DSANNO
    # dsanno resizes the 8-bit image with Pillow, then preprocesses.
    numpy.testing.assert_array_equal(
        prepared.content, image.preprocess(image.resize_pil(_tall(), (64, 85)), image.DSANNO))
    # The default start is the content.
    numpy.testing.assert_array_equal(prepared.start, prepared.content)
    assert prepared.chroma is None and prepared.content_map is None
    assert prepared.style_maps is None


def test_prepare_under_the_max_size_rule():
    config = presets.get_preset('cnnmrf').replace(max_size=64)
    prepared = inputs.prepare(_inputs(_tall(), [style_stripes()[:, :60]]), config)
    # Longer side 64: 72 * 64 / 96 = 48; the style's 60 * 64 / 80 = 48.
    assert image.cnnmrf_size(72, 96, 64) == (48, 64)
    assert prepared.shape == (64, 48)
    assert prepared.content.shape == (1, 3, 64, 48)
    assert prepared.styles[0].shape == (1, 3) + image.cnnmrf_size(60, 80, 64)[::-1]
    assert prepared.preprocessing is image.CNNMRF
    numpy.testing.assert_allclose(
        prepared.content, image.resize_bilinear(image.preprocess(_tall(), image.CNNMRF),
                                                (48, 64)), rtol=1e-6, atol=1e-4)


def test_prepare_a_texture_of_a_given_size():
    config = inputs.configure(presets.get_preset('dsanno').replace(width=64, size=(40, 30)),
                              _inputs())
    prepared = inputs.prepare(_inputs(), config)
    assert prepared.shape == (30, 40)
    assert prepared.content is None and prepared.start is None
    assert prepared.styles[0].shape == (1, 3, 64, 64)  # the style at the full width


@pytest.mark.parametrize('preset, side', [('dsanno', 'width'), ('cnnmrf', 'max_size')])
def test_texture_style_scale(preset, side):
    style = style_stripes()[:, :60]  # 60 wide, 80 high
    config = inputs.configure(presets.get_preset(preset).replace(
        **{side: 64, 'texture_style_scale': 0.5}), _inputs())
    prepared = inputs.prepare(_inputs(styles=[style]), config)
    rule = image.dsanno_size if side == 'width' else image.cnnmrf_size
    # The style is resized to floor(64 * 0.5) = 32; without a size option the output takes
    # the style's shape at the full side.
    assert prepared.styles[0].shape == (1, 3) + rule(60, 80, 32)[::-1]
    assert prepared.shape == rule(60, 80, 64)[::-1]
    # In style transfer the scale does not apply.
    transfer = inputs.prepare(_inputs(_tall(), [style]), config.replace(
        content_layers=('relu4_2',), initial_image='content'))
    assert transfer.styles[0].shape == (1, 3) + rule(60, 80, 64)[::-1]


@pytest.mark.parametrize('preset', ['dsanno', 'cnnmrf'])
def test_a_start_image_file_is_resized_to_the_output(tmp_path, preset):
    path = str(tmp_path / 'start.png')
    start = style_stripes()[:50, :70]
    image.save_image(path, start)
    config = presets.get_preset(preset).replace(width=64, max_size=64, initial_image=path)
    loaded = inputs.load_inputs(content_card(), style_stripes(), preset=config)
    prepared = inputs.prepare(loaded, config)
    assert prepared.shape == (48, 64)
    assert prepared.start.shape == (1, 3, 48, 64) and prepared.start.dtype == numpy.float32
    if preset == 'dsanno':
        expected = image.preprocess(image.resize_pil(start, (64, 48)), image.DSANNO)
    else:
        expected = image.resize_bilinear(image.preprocess(start, image.CNNMRF), (64, 48))
    numpy.testing.assert_allclose(prepared.start, expected, rtol=1e-6, atol=1e-4)


def test_a_start_image_under_luminance_only_is_its_luminance(tmp_path):
    path = str(tmp_path / 'start.png')
    start = style_stripes()[:50, :70]
    image.save_image(path, start)
    config = presets.get_preset('dsanno').replace(width=64, initial_image=path,
                                                  luminance_only=True)
    prepared = inputs.prepare(inputs.load_inputs(content_card(), style_stripes(),
                                                 preset=config), config)
    bgr = image.preprocess(image.resize_pil(start, (64, 48)), image.DSANNO).astype(numpy.float64)
    luma = 0.114 * bgr[:, 0] + 0.587 * bgr[:, 1] + 0.299 * bgr[:, 2]
    assert prepared.start.shape == (1, 3, 48, 64)
    for channel in range(3):
        numpy.testing.assert_allclose(prepared.start[:, channel], luma, rtol=1e-5, atol=1e-3)
    assert prepared.chroma.shape == (1, 2, 48, 64)
    # The content, the start of the default, is in luminance too.
    numpy.testing.assert_array_equal(prepared.content[:, 0], prepared.content[:, 1])
    numpy.testing.assert_array_equal(
        prepared.content, colour.split_yiq(image.preprocess(
            image.resize_pil(content_card(), (64, 48)), image.DSANNO))[0])


# --- noise ---------------------------------------------------------------------------------

def test_uniform_noise():
    values = inputs.noise((50, 60), 'uniform', numpy.random.RandomState(0))
    assert values.shape == (1, 3, 50, 60) and values.dtype == numpy.float32
    assert values.min() >= -20 and values.max() <= 20
    # 9000 draws fill the range and centre on 0.
    assert values.min() < -19.9 and values.max() > 19.9
    assert abs(values.mean()) < 0.5
    assert values.std() == pytest.approx(40 / 12 ** 0.5, rel=0.03)


def test_normal_noise():
    values = inputs.noise((50, 60), 'normal', numpy.random.RandomState(0))
    assert values.shape == (1, 3, 50, 60) and values.dtype == numpy.float32
    assert values.std() == pytest.approx(0.001, rel=0.03)
    assert abs(values.mean()) < 5e-5


@pytest.mark.parametrize('kind', inputs.NOISES)
def test_noise_is_reproducible(kind):
    a = inputs.noise((7, 9), kind, numpy.random.RandomState(3))
    b = inputs.noise((7, 9), kind, numpy.random.RandomState(3))
    c = inputs.noise((7, 9), kind, numpy.random.RandomState(4))
    numpy.testing.assert_array_equal(a, b)
    assert not numpy.array_equal(a, c)


# --- synthesize(inputs=...) ----------------------------------------------------------------

def test_synthesize_from_loaded_inputs_equals_from_images(vgg16_path):
    options = dict(SMALL, iterations=2, initial_image='random', seed=5, model=vgg16_path)
    loaded = inputs.load_inputs(content_card(), style_stripes())
    from_inputs, from_images = [], []
    a = synthesize(inputs=loaded, callback=from_inputs.append, **options)
    b = synthesize(content_card(), style_stripes(), callback=from_images.append, **options)
    assert a.shape == (48, 64, 3)
    numpy.testing.assert_array_equal(a, b)
    assert [s.losses for s in from_inputs] == [s.losses for s in from_images]
    with pytest.raises(ValueError, match='either inputs or the images and maps, not both'):
        synthesize(content_card(), inputs=loaded, **options)
    with pytest.raises(ValueError, match='either inputs or the images and maps, not both'):
        synthesize(style=style_stripes(), inputs=loaded, **options)
    # Loaded inputs are checked against the options too.
    with pytest.raises(ValueError, match='keep_color needs a content image'):
        synthesize(inputs=inputs.load_inputs(None, style_stripes()), keep_color=True,
                   **options)
