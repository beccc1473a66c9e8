"""Semantic maps: loading, checks against the images, resizing, downsampling, steering a match."""
import numpy
import pytest
from PIL import Image

import chainer_mrf  # noqa: F401  (NumPy shims before chainer)
import chainer
from chainer.backends import cuda

from chainer_mrf import semantic
from chainer_mrf.image import resize_bilinear, resize_pil
from chainer_mrf.matching import PatchBank, match
from chainer_mrf.patches import extract_patches_array
from helpers import needs_cuda


def two_regions(height=16, width=16, split=8):
    """A one-hot map: channel 0 left of column ``split``, channel 1 from it on."""
    m = numpy.zeros((1, 2, height, width), numpy.float32)
    m[0, 0, :, :split] = 1
    m[0, 1, :, split:] = 1
    return m


def random_rgb(height=6, width=9, seed=0):
    return numpy.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(numpy.uint8)


# --- load_map -----------------------------------------------------------------------------------

def test_load_map_from_a_file_scales_its_channels(tmp_path):
    rgb = random_rgb()
    path = str(tmp_path / 'style_sem.png')
    Image.fromarray(rgb).save(path)
    m = semantic.load_map(path)
    assert m.shape == (1, 3, 6, 9) and m.dtype == numpy.float32
    numpy.testing.assert_array_equal(m[0].transpose(1, 2, 0) * 255, rgb)
    numpy.testing.assert_array_equal(semantic.load_map(Image.fromarray(rgb)), m)


def test_load_map_of_a_grayscale_image_has_three_channels():
    m = semantic.load_map(numpy.array([[0, 51], [102, 255]], numpy.uint8))
    assert m.shape == (1, 3, 2, 2)
    for channel in range(3):
        numpy.testing.assert_allclose(m[0, channel], [[0, 0.2], [0.4, 1]], rtol=1e-6)


def test_load_map_uses_channel_arrays_as_they_are():
    one_hot = numpy.zeros((3, 4, 5), numpy.float64)
    one_hot[..., 4] = 1
    one_hot[0, 0] = [0.25, 0, 0, 0, 0.75]
    m = semantic.load_map(one_hot)
    assert m.shape == (1, 5, 3, 4) and m.dtype == numpy.float32
    numpy.testing.assert_array_equal(m[0], one_hot.transpose(2, 0, 1))
    mask = semantic.load_map(numpy.array([[True, False]]))
    assert mask.tolist() == [[[[1.0, 0.0]]]]
    # A loaded map passes unchanged (scripts/generate.py loads maps before the synthesis).
    numpy.testing.assert_array_equal(semantic.load_map(m), m)
    with pytest.raises(ValueError, match='in \\[0, 1\\]'):
        semantic.load_map(m * 2)


@pytest.mark.parametrize('array, message', [
    (numpy.full((2, 2), 2.0), r'in \[0, 1\]; got values from 2 to 2'),
    (numpy.array([[numpy.nan, 0.5]]), 'finite'),
    (numpy.zeros((2, 2), numpy.int16), 'int16 of shape'),
    (numpy.zeros((2, 2, 2, 2)), r'shape \(2, 2, 2, 2\)'),
    (numpy.zeros((0, 2)), 'with pixels'),
])
def test_load_map_rejects_bad_arrays(array, message):
    with pytest.raises(ValueError, match=message):
        semantic.load_map(array)


def test_load_map_of_a_missing_file_names_it(tmp_path):
    path = str(tmp_path / 'nothing_sem.png')
    with pytest.raises(FileNotFoundError, match='nothing_sem.png'):
        semantic.load_map(path)


def test_load_map_takes_a_path_object_and_refuses_a_bad_file_in_one_line(tmp_path):
    rgb = random_rgb()
    Image.fromarray(rgb).save(tmp_path / 'a_sem.png')
    m = semantic.load_map(tmp_path / 'a_sem.png')
    numpy.testing.assert_array_equal(m[0].transpose(1, 2, 0) * 255, rgb)
    (tmp_path / 'empty_sem.png').write_bytes(b'')
    for path, reason in [(tmp_path / 'empty_sem.png', 'not an image file Pillow can read '
                                                      '(empty, corrupt or another kind of file)'),
                         (tmp_path, 'it is a folder')]:
        with pytest.raises(ValueError) as raised:
            semantic.load_map(path)
        assert str(raised.value) == 'cannot read image %r: %s' % (str(path), reason)


class _NoRoom(numpy.ndarray):
    """An image whose map does not fit in memory: dividing it raises MemoryError."""

    def __truediv__(self, other):
        raise MemoryError


def test_load_map_too_large_for_memory_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(semantic.image, 'load_image',
                        lambda source: random_rgb(5, 7).view(_NoRoom))
    path = tmp_path / 'huge_sem.png'
    with pytest.raises(ValueError) as raised:
        semantic.load_map(path)
    assert str(raised.value) == ("cannot read image %r: its 7 x 5 pixels do not fit in memory "
                                 "as a semantic map" % str(path))


# --- check_maps ---------------------------------------------------------------------------------

def test_check_maps_accepts_matching_maps_and_no_maps():
    semantic.check_maps(None, None, (4, 6), (5, 7))
    semantic.check_maps(numpy.zeros((1, 3, 4, 6)), numpy.zeros((1, 3, 5, 7)), (4, 6), (5, 7))
    # Texture synthesis: no content image to compare the content map with.
    semantic.check_maps(numpy.zeros((1, 3, 4, 6)), numpy.zeros((1, 3, 5, 7)), None, (5, 7))


@pytest.mark.parametrize('given', ['content', 'style'])
def test_check_maps_refuses_a_map_on_one_side(given):
    maps = {'content_map': None, 'style_map': None}
    maps[given + '_map'] = numpy.zeros((1, 3, 4, 4))
    other = 'style' if given == 'content' else 'content'
    with pytest.raises(ValueError) as error:
        semantic.check_maps(**maps, content_name='c_sem.png', style_name='s_sem.png')
    message = str(error.value)
    assert '\n' not in message
    assert message == ('a semantic map for the %s (%s_sem.png) needs one for the %s too'
                       % (given, given[0], other))


def test_check_maps_names_the_map_and_both_sizes():
    content_map, style_map = numpy.zeros((1, 3, 4, 6)), numpy.zeros((1, 3, 200, 300))
    with pytest.raises(ValueError) as error:
        semantic.check_maps(content_map, style_map, (4, 6), (300, 400),
                            content_name='c_sem.png', style_name='/data/s_sem.png')
    assert str(error.value) == ('semantic map /data/s_sem.png is 300x200 but the style image is '
                                '400x300: resize the map to its image')
    with pytest.raises(ValueError, match='semantic map c_sem.png is 6x4 but the content image '
                                         'is 5x4'):
        semantic.check_maps(content_map, style_map, (4, 5), None, content_name='c_sem.png')


def test_check_maps_names_both_files_on_a_channel_mismatch():
    with pytest.raises(ValueError) as error:
        semantic.check_maps(numpy.zeros((1, 3, 4, 4)), numpy.zeros((1, 4, 4, 4)), (4, 4), (4, 4),
                            content_name='c_sem.png', style_name='s_sem.png')
    assert str(error.value) == ('semantic maps c_sem.png (3 channels) and s_sem.png (4 channels) '
                                'must have the same number of channels')


# --- resize_map ---------------------------------------------------------------------------------

def test_resize_map_width_rule_is_the_photo_resize():
    rgb = random_rgb(30, 40, seed=1)
    resized = semantic.resize_map(semantic.load_map(rgb), (16, 12), 'width')
    assert resized.shape == (1, 3, 12, 16) and resized.dtype == numpy.float32
    numpy.testing.assert_array_equal(resized[0].transpose(1, 2, 0) * 255,
                                     resize_pil(rgb, (16, 12)))


def test_resize_map_width_rule_keeps_channels_apart():
    rng = numpy.random.RandomState(2)
    m = numpy.rint(rng.uniform(0, 255, (1, 5, 20, 24))).astype(numpy.float32) / 255
    resized = semantic.resize_map(m, (9, 7), 'width')
    assert resized.shape == (1, 5, 7, 9)
    for channel in range(5):  # each channel as if resized on its own, in the red channel
        alone = numpy.zeros((20, 24, 3), numpy.uint8)
        alone[..., 0] = numpy.rint(m[0, channel] * 255)
        numpy.testing.assert_array_equal(resized[0, channel] * 255,
                                         resize_pil(alone, (9, 7))[..., 0])


def test_resize_map_max_size_rule_is_torch_bilinear():
    m = two_regions(10, 12, split=5)
    numpy.testing.assert_array_equal(semantic.resize_map(m, (7, 6), 'max_size'),
                                     resize_bilinear(m, (7, 6)))


def test_resize_map_rejects_an_unknown_rule():
    with pytest.raises(ValueError, match="size_rule must be one of .*got 'height'"):
        semantic.resize_map(two_regions(), (4, 4), 'height')


# --- downsample_map -----------------------------------------------------------------------------

def test_downsampling_a_two_region_map_keeps_the_regions():
    small = semantic.downsample_map(two_regions(16, 16, split=8), (4, 4))
    assert small.shape == (1, 2, 4, 4) and small.dtype == numpy.float32
    assert small[0, 0].tolist() == [[1, 1, 0, 0]] * 4
    assert small[0, 1].tolist() == [[0, 0, 1, 1]] * 4


def test_downsampling_shares_a_border_pixel_by_area():
    # 15 columns to 4 (a ceil-mode VGG size): the border at column 6 falls inside output
    # column 1, which covers columns [3.75, 7.5): 2.25 of its 3.75 columns are region 0.
    small = semantic.downsample_map(two_regions(15, 15, split=6), (4, 4))
    numpy.testing.assert_allclose(small[0, 0, 0], [1, 2.25 / 3.75, 0, 0], rtol=1e-6)
    numpy.testing.assert_allclose(small.sum(axis=1), 1, rtol=1e-6)  # shares add up to 1


def test_downsampling_keeps_a_thin_region():
    m = two_regions(32, 32, split=32)
    m[0, :, :, 13] = [[0], [1]]  # a one-pixel line of region 1
    small = semantic.downsample_map(m, (4, 4))
    numpy.testing.assert_allclose(small[0, 1, :, 1], 1 / 8, rtol=1e-6)  # columns 8-15
    assert small[0, 1, :, [0, 2, 3]].max() == 0
    assert m[0, 1, ::8, ::8].max() == 0  # which subsampling would have lost


# --- append_map ---------------------------------------------------------------------------------

def test_append_map_concatenates_the_weighted_map():
    features = numpy.random.RandomState(3).standard_normal((1, 4, 3, 5)).astype(numpy.float32)
    layer_map = semantic.downsample_map(two_regions(6, 10, split=4), (3, 5))
    out = semantic.append_map(chainer.Variable(features), layer_map, 2.5)
    assert out.shape == (1, 6, 3, 5) and out.dtype == numpy.float32
    numpy.testing.assert_array_equal(out[:, :4], features)
    numpy.testing.assert_array_equal(out[:, 4:], 2.5 * layer_map)


def test_append_map_rejects_a_map_of_another_size_and_a_bad_weight():
    features = numpy.zeros((1, 4, 3, 5), numpy.float32)
    with pytest.raises(ValueError, match='downsample_map it first'):
        semantic.append_map(features, two_regions(6, 10), 1.0)
    with pytest.raises(ValueError, match='semantic_weight must be > 0'):
        semantic.append_map(features, numpy.zeros((1, 2, 3, 5), numpy.float32), 0.0)


def test_the_map_steers_the_match():
    # Style: features (1, 0) on the left three columns (region 0), (0, 1) on the right three.
    style = numpy.zeros((1, 2, 3, 6), numpy.float32)
    style[0, 0, :, :3] = 1
    style[0, 1, :, 3:] = 1
    style_map = two_regions(3, 6, split=3)
    # A query that looks like region 1 but lies in region 0 of the content map.
    query = numpy.zeros((1, 2, 3, 3), numpy.float32)
    query[0] = numpy.array([0.1, 1.0])[:, None, None]
    query_map = two_regions(3, 3, split=3)
    plain, _ = match(extract_patches_array(query), PatchBank(extract_patches_array(style)))
    assert plain.tolist() == [3]  # the patch starting at column 3: region 1
    steered, _ = match(extract_patches_array(semantic.append_map(query, query_map, 10.0)),
                       PatchBank(extract_patches_array(semantic.append_map(style, style_map,
                                                                           10.0))))
    assert steered.tolist() == [0]  # region 0, as the map says


# --- paint_map ----------------------------------------------------------------------------------

RED, BLUE, YELLOW, GREEN = (1, 0, 0), (0, 0, 1), (1, 1, 0), (0, 1, 0)


def _colour_map(rows):
    """A (1, 3, H, W) map from rows of RGB colours in [0, 1]."""
    return numpy.array(rows, numpy.float32).transpose(2, 0, 1)[None]


def test_paint_map_paints_each_region_with_its_style_pixels_mean():
    content = numpy.zeros((40, 40, 3), numpy.float32)
    content[:, :20], content[:, 20:], content[36:] = RED, BLUE, YELLOW
    content[0, 20] = (0.6, 0, 0.4)  # an anti-aliased pixel, 1 of 1600: it joins red
    rng = numpy.random.RandomState(0)
    style_a, style_b = (rng.uniform(-100, 100, (1, 3, 2, 2)).astype(numpy.float32),
                        rng.uniform(-100, 100, (1, 3, 1, 2)).astype(numpy.float32))
    # GREEN is in no content region: ignored; (0.95, 0.05, 0) is within 0.2 of RED.
    map_a = _colour_map([[RED, RED], [BLUE, GREEN]])
    map_b = _colour_map([[BLUE, (0.95, 0.05, 0)]])
    painted = semantic.paint_map(_colour_map(content), [style_a, style_b], [map_a, map_b])
    assert painted.shape == (1, 3, 40, 40) and painted.dtype == numpy.float32
    a, b = style_a[0].reshape(3, -1).T, style_b[0].reshape(3, -1).T
    red = numpy.mean([a[0], a[1], b[1]], axis=0)
    blue = numpy.mean([a[2], b[0]], axis=0)
    everything = numpy.concatenate([a, b]).mean(axis=0)  # YELLOW: no style pixel of its own
    got = painted[0].transpose(1, 2, 0)
    numpy.testing.assert_allclose(got[5, 3], red, rtol=1e-6)
    numpy.testing.assert_allclose(got[0, 20], red, rtol=1e-6)
    numpy.testing.assert_allclose(got[5, 30], blue, rtol=1e-6)
    numpy.testing.assert_allclose(got[38, 10], everything, rtol=1e-6)
    # Three regions, so three colours in all.
    assert len(numpy.unique(got.reshape(-1, 3), axis=0)) == 3


def test_paint_map_takes_one_hot_channel_maps():
    content = two_regions(4, 6, split=2)
    style = numpy.arange(2 * 8, dtype=numpy.float32).reshape(1, 2, 2, 4)
    painted = semantic.paint_map(content, [style], [two_regions(2, 4, split=1)])
    left, right = style[0, :, :, :1].mean(axis=(1, 2)), style[0, :, :, 1:].mean(axis=(1, 2))
    numpy.testing.assert_allclose(painted[0, :, :, :2], numpy.broadcast_to(
        left[:, None, None], (2, 4, 2)))
    numpy.testing.assert_allclose(painted[0, :, :, 2:], numpy.broadcast_to(
        right[:, None, None], (2, 4, 4)))


def test_paint_map_refuses_maps_that_do_not_fit():
    style = numpy.zeros((1, 3, 2, 4), numpy.float32)
    with pytest.raises(ValueError, match='one map per style image'):
        semantic.paint_map(two_regions(), [style, style], [two_regions(2, 4)])
    with pytest.raises(ValueError, match='does not fit'):
        semantic.paint_map(two_regions(), [style], [two_regions(2, 5)])


# --- GPU ----------------------------------------------------------------------------------------

@needs_cuda
def test_gpu_matches_cpu():
    cp = cuda.cupy
    m = two_regions(15, 15, split=6)
    small = semantic.downsample_map(cp.asarray(m), (4, 4))
    assert isinstance(small, cp.ndarray)
    numpy.testing.assert_allclose(cp.asnumpy(small), semantic.downsample_map(m, (4, 4)),
                                  rtol=1e-6)
    features = cp.ones((1, 3, 4, 4), numpy.float32)
    out = semantic.append_map(features, small, 3.0)
    assert isinstance(out, cp.ndarray) and out.dtype == numpy.float32
    numpy.testing.assert_allclose(cp.asnumpy(out[:, 3:]), 3 * cp.asnumpy(small), rtol=1e-6)
    with pytest.raises(ValueError, match='different devices'):
        semantic.append_map(features, cp.asnumpy(small), 3.0)
