"""Tests for chainer_mrf.image: loading every Pillow mode, the two preprocessings, size rules,
Torch's bilinear mapping and atomic saving."""
import contextlib
import dataclasses
import errno
import os
import pathlib
import signal
import struct
import zlib

import numpy
import pytest
from PIL import Image

from chainer_mrf import image as image_lib
from chainer_mrf.image import (CNNMRF, DSANNO, Preprocessing, cnnmrf_size, deprocess,
                               dsanno_size, load_image, preprocess, resize_bilinear, resize_pil,
                               save_image)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _random_rgb(height=5, width=7, seed=0):
    return numpy.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(numpy.uint8)


def _mode(path):
    with Image.open(path) as opened:
        return opened.mode


def _saved(tmp_path, image, name, **options):
    path = str(tmp_path / name)
    image.save(path, **options)
    return path


# --- load_image: modes -------------------------------------------------------------------------

def test_rgb_png_round_trip(tmp_path):
    rgb = _random_rgb()
    loaded = load_image(_saved(tmp_path, Image.fromarray(rgb), 'a.png'))
    assert loaded.dtype == numpy.uint8 and loaded.shape == (5, 7, 3)
    numpy.testing.assert_array_equal(loaded, rgb)


def test_pathlike_source(tmp_path):
    rgb = _random_rgb()
    Image.fromarray(rgb).save(str(tmp_path / 'a.bmp'))
    numpy.testing.assert_array_equal(load_image(tmp_path / 'a.bmp'), rgb)


def test_gray_l_is_copied_to_three_channels(tmp_path):
    gray = numpy.array([[0, 100], [200, 255]], numpy.uint8)
    loaded = load_image(_saved(tmp_path, Image.fromarray(gray), 'g.png'))
    assert loaded.shape == (2, 2, 3)
    for channel in range(3):
        numpy.testing.assert_array_equal(loaded[:, :, channel], gray)


def test_mode_1_bilevel(tmp_path):
    bits = Image.new('1', (2, 1))
    bits.putpixel((1, 0), 1)
    loaded = load_image(_saved(tmp_path, bits, 'b.png'))
    assert loaded.tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_la_composited_onto_white(tmp_path):
    la = Image.new('LA', (2, 1))
    la.putpixel((0, 0), (0, 0))      # fully transparent black -> white
    la.putpixel((1, 0), (0, 255))    # opaque black stays black
    assert load_image(_saved(tmp_path, la, 'la.png')).tolist() == [[list(WHITE), [0, 0, 0]]]


def test_rgba_alpha_known_answer(tmp_path):
    rgba = numpy.array([[[255, 0, 0, 51], [10, 20, 30, 255], [7, 8, 9, 0]]], numpy.uint8)
    loaded = load_image(_saved(tmp_path, Image.fromarray(rgba), 'a.png'))
    # c * a + 255 * (1 - a) with a = 51/255 = 0.2: (255, 204, 204); opaque unchanged; clear white
    assert loaded.tolist() == [[[255, 204, 204], [10, 20, 30], list(WHITE)]]


def test_alpha_differs_from_pillow_convert_rgb(tmp_path):
    rgba = numpy.array([[[0, 0, 0, 0]]], numpy.uint8)
    path = _saved(tmp_path, Image.fromarray(rgba), 'a.png')
    with Image.open(path) as opened:
        assert opened.convert('RGB').getpixel((0, 0)) == (0, 0, 0)  # what dsanno gets
    assert load_image(path).tolist() == [[list(WHITE)]]


def _palette_image(transparency=None):
    image = Image.new('P', (2, 1))
    image.putpalette(list(RED) + list(GREEN) + [0, 0, 0] * 254)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    if transparency is not None:
        image.info['transparency'] = transparency
    return image


def test_palette_without_transparency(tmp_path):
    loaded = load_image(_saved(tmp_path, _palette_image(), 'p.png'))
    assert loaded.tolist() == [[list(RED), list(GREEN)]]


@pytest.mark.parametrize('extension', ['png', 'gif'])
def test_palette_with_transparency(tmp_path, extension):
    path = _saved(tmp_path, _palette_image(), 'p.' + extension, transparency=0)
    assert _mode(path) == 'P'
    assert load_image(path).tolist() == [[list(WHITE), list(GREEN)]]


def test_pa_mode():
    image = Image.new('PA', (1, 1))
    image.putpalette(list(BLUE) + [0, 0, 0] * 255)
    image.putpixel((0, 0), (0, 0))
    assert load_image(image).tolist() == [[list(WHITE)]]


def test_gray_and_rgb_with_transparent_colour(tmp_path):
    gray = Image.fromarray(numpy.array([[10, 20]], numpy.uint8))
    assert load_image(_saved(tmp_path, gray, 'l.png', transparency=10)).tolist() == [
        [list(WHITE), [20, 20, 20]]]
    rgb = Image.fromarray(numpy.array([[[1, 2, 3], [4, 5, 6]]], numpy.uint8))
    assert load_image(_saved(tmp_path, rgb, 'rgb.png', transparency=(1, 2, 3))).tolist() == [
        [list(WHITE), [4, 5, 6]]]


def test_cmyk_tiff(tmp_path):
    cmyk = Image.new('CMYK', (1, 2), (0, 255, 0, 0))  # full magenta ink
    cmyk.putpixel((0, 1), (0, 0, 0, 255))             # full black
    path = _saved(tmp_path, cmyk, 'c.tif')
    assert _mode(path) == 'CMYK'
    assert load_image(path).tolist() == [[[255, 0, 255]], [[0, 0, 0]]]


def test_ycbcr_and_hsv_images():
    assert load_image(Image.new('YCbCr', (1, 1), (128, 128, 128))).tolist() == [[[128] * 3]]
    assert load_image(Image.new('HSV', (1, 1), (0, 255, 255))).tolist() == [[list(RED)]]


def test_16_bit_gray_png_is_scaled_not_clipped(tmp_path):
    values = numpy.array([[0, 32896, 65535, 257, 385]], numpy.uint16)
    path = _saved(tmp_path, Image.fromarray(values), 'g16.png')
    assert _mode(path).startswith('I')
    # round(v / 257): 385 / 257 = 1.498 -> 1
    assert load_image(path)[0, :, 0].tolist() == [0, 128, 255, 1, 1]


def test_16_bit_big_endian_and_32_bit_integer_modes():
    big = Image.new('I;16B', (2, 1))
    big.putpixel((0, 0), 65535)
    big.putpixel((1, 0), 32896)
    assert load_image(big)[0, :, 0].tolist() == [255, 128]
    wide = Image.fromarray(numpy.array([[-5, 32896, 70000]], numpy.int32))
    assert wide.mode == 'I'
    assert load_image(wide)[0, :, 0].tolist() == [0, 128, 255]  # clipped to 0-65535 first


def test_float_mode_f_follows_pillow(tmp_path):
    values = numpy.array([[0.0, 200.0, 300.0, -4.0]], numpy.float32)
    path = _saved(tmp_path, Image.fromarray(values), 'f.tif')
    assert _mode(path) == 'F'
    assert load_image(path)[0, :, 0].tolist() == [0, 200, 255, 0]


def _png_chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))


def test_48_bit_png(tmp_path):
    # Pillow keeps the high byte of each 16-bit sample; values chosen where that equals rounding
    samples = numpy.array([[[65535, 0, 32896], [0, 65535, 0]]], '>u2')
    png = (b'\x89PNG\r\n\x1a\n'
           + _png_chunk(b'IHDR', struct.pack('>IIBBBBB', 2, 1, 16, 2, 0, 0, 0))
           + _png_chunk(b'IDAT', zlib.compress(b'\x00' + samples.tobytes()))
           + _png_chunk(b'IEND', b''))
    path = tmp_path / 'rgb48.png'
    path.write_bytes(png)
    assert load_image(str(path)).tolist() == [[[255, 0, 128], [0, 255, 0]]]


def test_unsupported_mode_is_named():
    with pytest.raises(ValueError, match="unsupported image mode 'LAB'"):
        load_image(Image.new('LAB', (1, 1)))


# --- load_image: EXIF orientation --------------------------------------------------------------

def _oriented_jpeg(tmp_path, orientation, tags=None):
    stored = numpy.zeros((32, 64, 3), numpy.uint8)
    stored[:] = BLUE
    stored[:16, :16] = RED  # mark the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif.update(tags or {})
    return _saved(tmp_path, Image.fromarray(stored), 'o%d.jpg' % orientation, exif=exif,
                  quality=95)


def _is_red(block):
    return block[..., 0].mean() > 200 and block[..., 2].mean() < 60


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    loaded = load_image(_oriented_jpeg(tmp_path, 6))
    assert loaded.shape == (64, 32, 3)  # portrait once turned
    assert _is_red(loaded[2:14, 18:30])  # stored top-left is now top-right
    assert not _is_red(loaded[2:14, 2:14])


def test_exif_orientation_3_rotates_half_turn(tmp_path):
    loaded = load_image(_oriented_jpeg(tmp_path, 3))
    assert loaded.shape == (32, 64, 3)
    assert _is_red(loaded[18:30, 50:62])  # bottom-right
    assert not _is_red(loaded[2:14, 2:14])


def test_exif_orientation_1_is_untouched(tmp_path):
    loaded = load_image(_oriented_jpeg(tmp_path, 1))
    assert loaded.shape == (32, 64, 3) and _is_red(loaded[2:14, 2:14])


# --- load_image: arrays and PIL images ---------------------------------------------------------

def test_uint8_arrays():
    rgb = _random_rgb()
    loaded = load_image(rgb)
    numpy.testing.assert_array_equal(loaded, rgb)
    assert not numpy.shares_memory(loaded, rgb)  # a copy: the caller's array is not aliased
    gray = rgb[:, :, 0]
    assert load_image(gray).shape == (5, 7, 3)
    numpy.testing.assert_array_equal(load_image(gray[:, :, None])[:, :, 2], gray)
    rgba = numpy.concatenate([rgb, numpy.full((5, 7, 1), 255, numpy.uint8)], axis=2)
    numpy.testing.assert_array_equal(load_image(rgba), rgb)


def test_float_arrays_in_unit_range():
    values = numpy.array([[[0.0, 0.5, 1.0]]], numpy.float32)
    assert load_image(values).tolist() == [[[0, 128, 255]]]  # 127.5 rounds to even 128
    assert load_image(numpy.array([[0.2]])).tolist() == [[[51, 51, 51]]]
    rgba = numpy.array([[[1.0, 0.0, 0.0, 0.2]]])
    assert load_image(rgba).tolist() == [[[255, 204, 204]]]


@pytest.mark.parametrize('array', [
    numpy.zeros((2, 2, 2), numpy.uint8),
    numpy.zeros((2, 2, 5), numpy.uint8),
    numpy.zeros((4,), numpy.uint8),
    numpy.zeros((1, 2, 2, 3), numpy.uint8),
    numpy.zeros((0, 2, 3), numpy.uint8),
    numpy.zeros((2, 2, 3), numpy.uint16),
    numpy.zeros((2, 2, 3), bool),
    numpy.full((2, 2, 3), 255.0),
    numpy.full((2, 2, 3), -0.1),
    numpy.full((2, 2, 3), numpy.nan),
])
def test_bad_arrays_are_rejected(array):
    with pytest.raises(ValueError):
        load_image(array)


def test_pil_image_source_is_left_unchanged(tmp_path):
    rgb = _random_rgb()
    path = _saved(tmp_path, Image.fromarray(rgb), 'a.png')
    with Image.open(path) as opened:
        numpy.testing.assert_array_equal(load_image(opened), rgb)
        assert opened.mode == 'RGB' and opened.size == (7, 5)
        numpy.testing.assert_array_equal(numpy.asarray(opened), rgb)  # still open


def test_other_source_types_are_rejected():
    with pytest.raises(TypeError):
        load_image(42)


# --- load_image: errors ------------------------------------------------------------------------

def _system(code):
    """The system's reason for ``code``, as the loaders give it: in lower case."""
    reason = os.strerror(code)
    return reason[:1].lower() + reason[1:]


@contextlib.contextmanager
def _within(seconds):
    """Fails the test after ``seconds`` in the block: a loader that waits on a FIFO or reads a
    device for ever fails instead of hanging the suite (and no ``except`` catches it)."""
    def expire(signum, frame):
        pytest.fail('still running after %d s' % seconds)
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _symlink_loop(folder):
    os.symlink(folder / 'b.png', folder / 'a.png')
    os.symlink(folder / 'a.png', folder / 'b.png')
    return folder / 'a.png'


def _dangling_link(folder):
    os.symlink(folder / 'gone.png', folder / 'link.png')
    return folder / 'link.png'


def _under_a_file(folder):
    (folder / 'notes.txt').write_text('a file, not a folder')
    return folder / 'notes.txt' / 'a.png'


def _fifo(folder):
    os.mkfifo(folder / 'pipe.png')  # opening it to read would wait for a writer
    return folder / 'pipe.png'


@pytest.mark.parametrize('where,reason', [
    (_symlink_loop, _system(errno.ELOOP)),
    (_dangling_link, 'broken symbolic link'),
    (_under_a_file, _system(errno.ENOTDIR)),
    (lambda folder: folder / ('a' * 300 + '.png'), _system(errno.ENAMETOOLONG)),
    (lambda folder: folder, 'it is a folder'),
    (_fifo, 'not a regular file'),
    (lambda folder: pathlib.Path('/dev/zero'), 'not a regular file'),  # endless
    (lambda folder: folder / 'a\0b.png', 'embedded null byte'),
], ids=['symlink loop', 'dangling link', 'under a file', 'name too long', 'folder', 'fifo',
        'device', 'nul'])
def test_an_unreadable_path_is_one_line_with_the_reason(tmp_path, where, reason):
    path = where(tmp_path)
    with _within(10), pytest.raises(ValueError) as raised:
        load_image(path)  # a pathlib.Path: any os.PathLike is taken
    assert str(raised.value) == 'cannot read image %r: %s' % (str(path), reason)


@pytest.mark.parametrize('code', [errno.EACCES, errno.EIO])
def test_an_os_error_on_opening_is_one_line_with_the_reason(tmp_path, monkeypatch, code):
    # Simulated: as root (CI, containers) a file without read permission is still read.
    def refuse(path, flags, *args):
        raise OSError(code, os.strerror(code), path)
    monkeypatch.setattr(os, 'open', refuse)
    path = str(tmp_path / 'a.png')
    with pytest.raises(ValueError) as raised:
        load_image(path)
    assert str(raised.value) == 'cannot read image %r: %s' % (path, _system(code))


def test_missing_file(tmp_path):
    path = tmp_path / 'nothing.png'
    with pytest.raises(FileNotFoundError) as raised:
        load_image(path)
    assert str(raised.value) == "cannot read image %r: no such file" % str(path)


def test_a_damaged_exif_tag_does_not_stop_the_turning(tmp_path):
    # Found by tests/test_fuzz_inputs.py's method: ImageOps.exif_transpose rewrote the EXIF
    # block after turning the image and raised AttributeError on a Make tag (text) holding a
    # number. XResolution (0x011a, a rational) renamed Make (0x010f), its type kept:
    path = tmp_path / 'o.jpg'
    data = pathlib.Path(_oriented_jpeg(tmp_path, 6, {0x011a: 72.0})).read_bytes()
    assert data.count(b'\x01\x1a\x00\x05') == 1  # big-endian tag id and type RATIONAL
    path.write_bytes(data.replace(b'\x01\x1a\x00\x05', b'\x01\x0f\x00\x05'))
    with Image.open(path) as opened:
        assert not isinstance(opened.getexif()[0x010f], str)  # Make: a number, not text
    loaded = load_image(path)
    assert loaded.shape == (64, 32, 3) and _is_red(loaded[2:14, 18:30])  # turned all the same


def test_pixels_that_do_not_fit_in_memory_are_one_line(tmp_path, monkeypatch):
    path = _saved(tmp_path, Image.fromarray(_random_rgb()), 'a.png')

    def exhausted(self, *args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(Image.Image, 'convert', exhausted)
    with pytest.raises(ValueError) as raised:
        load_image(path)
    assert str(raised.value) == ("cannot read image %r: its 7 x 5 pixels do not fit in memory"
                                 % path)


@pytest.mark.parametrize('content', [b'', b'just some text\n', b'\x89PNG\r\n\x1a\n' + b'\x07' * 60],
                         ids=['empty', 'text', 'corrupt'])
def test_non_images(tmp_path, content):
    path = tmp_path / 'bad.png'
    path.write_bytes(content)
    with pytest.raises(ValueError, match='cannot read image .*bad.png'):
        load_image(str(path))


@pytest.mark.parametrize('extension', ['jpg', 'png'])
def test_truncated_files(tmp_path, extension):
    noise = Image.fromarray(numpy.random.RandomState(1).randint(0, 256, (64, 64, 3))
                            .astype(numpy.uint8))
    whole = _saved(tmp_path, noise, 'whole.' + extension)
    with open(whole, 'rb') as stream:
        data = stream.read()
    path = tmp_path / ('cut.' + extension)
    path.write_bytes(data[:len(data) // 2])
    with Image.open(str(path)) as lazy:  # Pillow opens it happily: the error is in decoding
        assert lazy.size == (64, 64)
    with pytest.raises(ValueError, match='cannot read image .*cut.%s.*truncated' % extension):
        load_image(str(path))


# --- preprocessing -----------------------------------------------------------------------------

def test_preprocessing_constants():
    assert DSANNO == Preprocessing(scale=1.0, mean_bgr=(104.0, 117.0, 124.0))
    assert CNNMRF.mean_bgr == (103.939, 116.779, 123.68)
    assert CNNMRF.scale == pytest.approx(256 / 255)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DSANNO.scale = 2.0


def test_preprocess_known_answers():
    rgb = numpy.array([[[10, 20, 30], [255, 255, 255]]], numpy.uint8)
    x = preprocess(rgb, DSANNO)
    assert x.shape == (1, 3, 1, 2) and x.dtype == numpy.float32
    assert x[0, :, 0, 0].tolist() == [30 - 104, 20 - 117, 10 - 124]  # B, G, R
    y = preprocess(rgb, CNNMRF)
    numpy.testing.assert_allclose(y[0, :, 0, 1], [256 - 103.939, 256 - 116.779, 256 - 123.68],
                                  rtol=0, atol=1e-4)
    numpy.testing.assert_allclose(y[0, :, 0, 0], [30 / 255 * 256 - 103.939,
                                                  20 / 255 * 256 - 116.779,
                                                  10 / 255 * 256 - 123.68], rtol=0, atol=1e-4)


@pytest.mark.parametrize('preprocessing', [DSANNO, CNNMRF], ids=['dsanno', 'cnnmrf'])
def test_round_trip_is_exact(preprocessing):
    rgb = numpy.random.RandomState(2).randint(0, 256, (31, 17, 3)).astype(numpy.uint8)
    rgb[0, :3] = [[0, 0, 0], [255, 255, 255], [0, 128, 255]]
    numpy.testing.assert_array_equal(deprocess(preprocess(rgb, preprocessing), preprocessing),
                                     rgb)
    numpy.testing.assert_array_equal(deprocess(preprocess(rgb, preprocessing)[0],
                                               preprocessing), rgb)


def test_deprocess_rounds_and_clips():
    x = numpy.zeros((1, 3, 1, 4), numpy.float32)
    x[0, :, 0, 0] = 1000.0                       # far above -> 255
    x[0, :, 0, 1] = -1000.0                      # far below -> 0
    x[0, :, 0, 2] = [0.6 - 104, -117.4, -124.0]  # B 0.6 -> 1, G -0.4 -> 0, R 0
    x[0, :, 0, 3] = [0.0, 0.0, 10.0]             # B 104, G 117, R 134
    assert deprocess(x, DSANNO)[0].tolist() == [[255] * 3, [0] * 3, [0, 0, 1], [134, 117, 104]]


@pytest.mark.parametrize('x', [numpy.zeros((2, 3, 2, 2)), numpy.zeros((1, 4, 2, 2)),
                               numpy.zeros((3, 2)), numpy.full((3, 2, 2), numpy.inf)])
def test_deprocess_rejects(x):
    with pytest.raises(ValueError):
        deprocess(x, DSANNO)


@pytest.mark.parametrize('bad', [numpy.zeros((2, 2, 3), numpy.float32),
                                 numpy.zeros((2, 2), numpy.uint8), [[[0, 0, 0]]]])
def test_preprocess_rejects(bad):
    with pytest.raises(ValueError):
        preprocess(bad, DSANNO)


# --- size rules --------------------------------------------------------------------------------

def test_dsanno_size_rounds_halves_up_like_python_2():
    assert dsanno_size(512, 1) == (256, 1)   # 0.5 -> 1 (Python 3's round() would give 0)
    assert dsanno_size(512, 5) == (256, 3)   # 2.5 -> 3 (round() -> 2)
    assert dsanno_size(512, 3) == (256, 2)   # 1.5 -> 2
    assert dsanno_size(300, 384) == (256, 328)  # 327.68
    assert dsanno_size(298, 384) == (256, 330)  # 329.88
    assert dsanno_size(1024, 700) == (256, 175)
    assert dsanno_size(100, 50, target_width=64) == (64, 32)
    assert dsanno_size(numpy.int64(512), numpy.int32(5)) == (256, 3)


def test_dsanno_size_matches_python_2_round_on_many_sizes():
    def python2_round(value):  # half away from zero, for positive values
        whole = int(value)
        return whole + 1 if value - whole >= 0.5 else whole
    for width in range(1, 300, 7):
        for height in range(1, 300, 11):
            expected = python2_round(float(height * 256) / width)
            if expected:
                assert dsanno_size(width, height) == (256, expected)


def test_cnnmrf_size_truncates_like_torch():
    assert cnnmrf_size(298, 384) == (298, 384)     # potrait1.jpg: already 384 high
    assert cnnmrf_size(9, 7) == (384, 298)         # 298.67 truncated, not rounded
    assert cnnmrf_size(7, 9) == (298, 384)         # portrait
    assert cnnmrf_size(1437, 2127) == (259, 384)   # content/0.jpg
    assert cnnmrf_size(100, 50) == (384, 192)      # small images are enlarged
    assert cnnmrf_size(50, 50, max_size=192) == (192, 192)


@pytest.mark.parametrize('arguments', [(0, 10), (10, -1), (10.0, 10), (True, 10), (10, 10, 0)])
def test_size_rules_validate(arguments):
    with pytest.raises(ValueError):
        dsanno_size(*arguments)
    with pytest.raises(ValueError):
        cnnmrf_size(*arguments)


def test_size_rules_reject_a_zero_side():
    with pytest.raises(ValueError, match='elongated'):
        dsanno_size(1000, 1)   # 0.256 -> 0
    with pytest.raises(ValueError, match='elongated'):
        cnnmrf_size(1000, 2)   # 0.768 -> 0


# --- resizing ----------------------------------------------------------------------------------

def test_resize_pil_antialiases_when_shrinking():
    rgb = numpy.zeros((1, 4, 3), numpy.uint8)
    rgb[:, 2:] = 255
    assert resize_pil(rgb, (2, 1))[0, :, 0].tolist() == [36, 219]


def test_resize_pil_shape_identity_and_validation():
    rgb = _random_rgb(10, 20)
    out = resize_pil(rgb, (8, 4))
    assert out.shape == (4, 8, 3) and out.dtype == numpy.uint8
    numpy.testing.assert_array_equal(resize_pil(rgb, (20, 10)), rgb)
    with pytest.raises(ValueError):
        resize_pil(rgb, (0, 4))
    with pytest.raises(ValueError):
        resize_pil(rgb.astype(numpy.float32), (4, 4))


def test_resize_bilinear_upscale_known_answer():
    x = numpy.array([[[0.0, 1.0], [2.0, 3.0]]], numpy.float32)  # (C, H, W) = (1, 2, 2)
    out = resize_bilinear(x, (3, 3))
    assert out.dtype == numpy.float32
    assert out[0].tolist() == [[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]]
    # corners aligned: 2 -> 4 samples at 0, 1/3, 2/3, 1
    numpy.testing.assert_allclose(resize_bilinear(numpy.array([[0.0, 3.0]]), (4, 1)),
                                  [[0.0, 1.0, 2.0, 3.0]], atol=1e-6)
    assert resize_bilinear(numpy.array([[5.0]]), (3, 2)).tolist() == [[5.0] * 3] * 2


def test_resize_bilinear_downscale_is_an_area_average():
    assert resize_bilinear(numpy.array([[0.0, 1.0, 2.0, 3.0]]), (2, 1)).tolist() == [[0.5, 2.5]]
    # 3 -> 2: [0, 1.5) and [1.5, 3): (0 + 0.5 * 3) / 1.5, (0.5 * 3 + 6) / 1.5
    assert resize_bilinear(numpy.array([[0.0, 3.0, 6.0]]), (2, 1)).tolist() == [[1.0, 5.0]]
    numpy.testing.assert_allclose(resize_bilinear(numpy.arange(5.0)[None], (2, 1)),
                                  [[0.8, 3.2]], atol=1e-6)
    assert resize_bilinear(numpy.arange(6.0)[None], (1, 1)).tolist() == [[2.5]]


def test_resize_bilinear_identity_and_batch_shapes():
    x = numpy.random.RandomState(3).rand(2, 3, 5, 4)
    same = resize_bilinear(x, (4, 5))
    numpy.testing.assert_array_equal(same, x)
    assert not numpy.shares_memory(same, x)
    assert resize_bilinear(x, (7, 2)).shape == (2, 3, 2, 7)
    assert resize_bilinear(x[0].astype(numpy.float32), (7, 2)).dtype == numpy.float32


def test_resize_bilinear_rejects():
    with pytest.raises(ValueError):
        resize_bilinear(numpy.zeros((3, 4, 4), numpy.uint8), (2, 2))
    with pytest.raises(ValueError):
        resize_bilinear(numpy.zeros((4,)), (2, 2))
    with pytest.raises(ValueError):
        resize_bilinear(numpy.zeros((3, 4, 4)), (2, 0))


def _torch_rowcol(src, dst_len):
    """A line-by-line transcription of Torch's scaleLinear_rowcol in float32 (the reference)."""
    f32 = numpy.float32
    src = src.astype(f32)
    src_len = len(src)
    dst = numpy.zeros(dst_len, f32)
    if dst_len > src_len:
        scale = f32(src_len - 1) / f32(dst_len - 1)
        for di in range(dst_len - 1):
            if src_len == 1:
                dst[di] = src[0]
                continue
            si_f = f32(di) * scale
            si_i = int(si_f)
            si_f = si_f - f32(si_i)
            dst[di] = (f32(1) - si_f) * src[si_i] + si_f * src[si_i + 1]
        dst[dst_len - 1] = src[src_len - 1]
    elif dst_len < src_len:
        scale = f32(src_len) / f32(dst_len)
        si0_i, si0_f = 0, f32(0)
        for di in range(dst_len):
            si1_f = f32(di + 1) * scale
            si1_i = int(si1_f)
            si1_f = si1_f - f32(si1_i)
            acc = (f32(1) - si0_f) * src[si0_i]
            n = f32(1) - si0_f
            for si in range(si0_i + 1, si1_i):
                acc += src[si]
                n += f32(1)
            if si1_i < src_len:
                acc += si1_f * src[si1_i]
                n += si1_f
            dst[di] = acc / n
            si0_i, si0_f = si1_i, si1_f
    else:
        dst[:] = src
    return dst


@pytest.mark.parametrize('src_len,dst_len', [(7, 3), (3, 7), (50, 19), (19, 50), (48, 12),
                                             (384, 96), (13, 13), (1, 5), (9, 1)])
def test_resize_bilinear_matches_a_transcription_of_torch(src_len, dst_len):
    rng = numpy.random.RandomState(src_len * 100 + dst_len)
    line = rng.rand(src_len).astype(numpy.float32)
    expected = _torch_rowcol(line, dst_len)
    got = resize_bilinear(line[None], (dst_len, 1))[0]
    numpy.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    # and along the other axis, with both axes resized at once (rows first, as Torch does)
    image = rng.rand(src_len, 4).astype(numpy.float32)
    expected_2d = numpy.stack([_torch_rowcol(column, dst_len) for column in
                               numpy.stack([_torch_rowcol(row, 3) for row in image]).T], axis=1)
    numpy.testing.assert_allclose(resize_bilinear(image, (3, dst_len)), expected_2d,
                                  rtol=0, atol=2e-6)


def test_torch_weights_rows_sum_to_one():
    for src_len, dst_len in [(384, 96), (96, 384), (385, 97), (100, 99), (99, 100)]:
        weights = image_lib._torch_linear_weights(src_len, dst_len)
        assert weights.shape == (dst_len, src_len)
        numpy.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
        assert (weights >= 0).all()


# --- saving ------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['out.png', 'out.PNG', 'out.bmp', 'out.tif', 'out.tiff'])
def test_save_lossless_round_trip(tmp_path, name):
    rgb = _random_rgb()
    save_image(str(tmp_path / name), rgb)
    numpy.testing.assert_array_equal(load_image(str(tmp_path / name)), rgb)
    assert os.listdir(str(tmp_path)) == [name]  # no temporary file left


@pytest.mark.parametrize('name', ['out.jpg', 'out.jpeg'])
def test_save_jpeg(tmp_path, name):
    rgb = numpy.full((16, 16, 3), 120, numpy.uint8)
    save_image(tmp_path / name, rgb)
    with Image.open(str(tmp_path / name)) as saved:
        assert saved.format == 'JPEG'
    assert numpy.abs(load_image(str(tmp_path / name)).astype(int) - 120).max() <= 2


def test_save_overwrites(tmp_path):
    path = str(tmp_path / 'out.png')
    save_image(path, numpy.zeros((2, 2, 3), numpy.uint8))
    rgb = _random_rgb()
    save_image(path, rgb)
    numpy.testing.assert_array_equal(load_image(path), rgb)


@pytest.mark.parametrize('name', ['out.xyz', 'out', 'out.psd'])
def test_save_unknown_extension_writes_nothing(tmp_path, name):
    with pytest.raises(ValueError, match='extension'):
        save_image(str(tmp_path / name), _random_rgb())
    assert os.listdir(str(tmp_path)) == []


def test_save_missing_folder(tmp_path):
    missing = tmp_path / 'no' / 'such'
    with pytest.raises(FileNotFoundError, match=str(missing)):
        save_image(str(missing / 'out.png'), _random_rgb())
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('bad', [numpy.zeros((2, 2, 3), numpy.float32), numpy.zeros((2, 2),
                                                                                   numpy.uint8)])
def test_save_bad_array_writes_nothing(tmp_path, bad):
    with pytest.raises(ValueError):
        save_image(str(tmp_path / 'out.png'), bad)
    assert os.listdir(str(tmp_path)) == []


def test_failed_encoding_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / 'out.png'
    path.write_bytes(b'previous content')

    def failing_save(self, fp, format=None, **params):
        with open(fp, 'wb') as stream:
            stream.write(b'half an image')  # the encoder got part way
        raise OSError('encoder failed')

    monkeypatch.setattr(Image.Image, 'save', failing_save)
    with pytest.raises(OSError, match='encoder failed'):
        save_image(str(path), _random_rgb())
    assert path.read_bytes() == b'previous content'
    assert os.listdir(str(tmp_path)) == ['out.png']
    with pytest.raises(OSError, match='encoder failed'):
        save_image(str(tmp_path / 'new.png'), _random_rgb())
    assert os.listdir(str(tmp_path)) == ['out.png']


# --- the paper's images ------------------------------------------------------------------------

def _example(data_dir, relative):
    path = os.path.join(data_dir, relative)
    if not os.path.isfile(path):
        pytest.skip('example image %s is absent' % path)
    return path


def test_example_portrait_sizes(data_dir):
    rgb = load_image(_example(data_dir, 'content/potrait1.jpg'))
    assert rgb.shape == (384, 298, 3)
    height, width = rgb.shape[:2]
    assert dsanno_size(width, height) == (256, 330)
    assert cnnmrf_size(width, height) == (298, 384)
    assert resize_pil(rgb, dsanno_size(width, height)).shape == (330, 256, 3)
    x = preprocess(rgb, CNNMRF)
    small = resize_bilinear(x, (149, 192))
    assert small.shape == (1, 3, 192, 149)
    numpy.testing.assert_allclose(small.mean(), x.mean(), atol=0.5)  # an average, no shift


def test_example_style_sizes(data_dir):
    rgb = load_image(_example(data_dir, 'style/picasso.jpg'))
    assert rgb.shape == (384, 300, 3)
    assert dsanno_size(300, 384) == (256, 328)
