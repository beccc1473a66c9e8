"""The authors' style copies: crop boxes (computeBB), Torch's bilinear rotation, the copy loop."""
import math

import numpy
import pytest

import chainer_mrf  # noqa: F401  (NumPy shims before chainer)
from chainer.backends import cuda

from chainer_mrf import image, patches
from chainer_mrf.style_copies import (crop_box, crop_slices, rotate_bilinear,
                                      style_copies)
from helpers import needs_cuda


# --- crop_box ----------------------------------------------------------------------------------

def test_crop_box_hand_worked_384x298_plus_7_5():
    # c = cos 7.5 deg = 0.991445, s = sin 7.5 deg = 0.130526, centre (192, 149), 1-based.
    # r(1,1)   = (192 - 191c - 148s, 149 + 191s - 148c) = (-16.684,  27.197)
    # r(384,1) = (192 + 192c - 148s, 149 - 192s - 148c) = (363.040, -22.795)
    # r(384,298) = (192 + 192c + 149s, 149 - 192s + 149c) = (401.806, 271.664)
    # P on x = 1: t = 17.684 / 379.723 = 0.046571, Py = 27.197 - 0.046571 * 49.992 = 24.869
    # Q at y = 24.869 on r(384,1)-r(384,298): t = 47.664 / 294.459 = 0.161867,
    #   Qx = 363.040 + 0.161867 * 38.766 = 369.315
    # x: floor(384 - 369.315) = 14 .. floor(369.315) = 369; y: 24 .. floor(298 - 24.869) = 273
    assert crop_box(384, 298, 7.5) == (14, 369, 24, 273)


def test_crop_box_hand_worked_7x5_minus_7_5():
    # c = 0.991445, s = -0.130526, centre (3.5, 2.5).
    # r(1,1) = (3.5 - 2.5c - 1.5s, 2.5 + 2.5s - 1.5c) = (1.2172, 0.6865)
    # r(7,1) = (3.5 + 3.5c - 1.5s, 2.5 - 3.5s - 1.5c) = (7.1659, 1.4697)
    # r(1,5) = (3.5 - 2.5c + 2.5s, 2.5 + 2.5s + 2.5c) = (0.6951, 4.6523)
    # P on x = 7: t = 5.7828 / 5.9487 = 0.97211, Py = 0.6865 + 0.97211 * 0.7832 = 1.4479
    # Q at y = 1.4479 on r(1,1)-r(1,5): t = 0.7614 / 3.9658 = 0.19199,
    #   Qx = 1.2172 - 0.19199 * 0.5221 = 1.1170
    # x: floor(1.1170) = 1 .. floor(7 - 1.1170) = 5; y: 1 .. floor(5 - 1.4479) = 3
    assert crop_box(7, 5, -7.5) == (1, 5, 1, 3)


def test_crop_box_clipped_where_the_authors_box_leaves_the_image():
    # 7x5 at +7.5 deg: Qx = 6.8743, so x_min = floor(7 - 6.8743) = 0, a column Torch cannot
    # index; this project clips it to 1 (docs/algorithm.md, "Where this project departs").
    assert crop_box(7, 5, 7.5) == (1, 6, 1, 3)
    # 3x3 at 22.5 deg: x from 0.015 to 2.985, y from 1.166 to 1.834: one row, two columns.
    assert crop_box(3, 3, 22.5) == (1, 2, 1, 1)


def test_crop_box_depends_on_the_sign_of_the_angle():
    # P lies on the left side for +a and on the right side for -a: not mirror images.
    assert crop_box(384, 298, -7.5) == (15, 368, 25, 272)
    assert crop_box(384, 298, 7.5) != crop_box(384, 298, -7.5)


def test_crop_box_zero_angle_is_the_whole_image():
    assert crop_box(1, 1, 0) == (1, 1, 1, 1)
    assert crop_box(384, 298, 0.0) == (1, 384, 1, 298)


def _meet(a, b, c, d):
    """Intersection of lines a-b and c-d, solved as a + t(b - a) = c + u(d - c)."""
    a, b, c, d = (numpy.asarray(p, numpy.float64) for p in (a, b, c, d))
    t, _ = numpy.linalg.solve(numpy.column_stack([b - a, c - d]), c - a)
    return a + t * (b - a)


def reference_box(width, height, degrees):
    """computeBB by a rotation matrix and linear solves; clipped; None where it collapses."""
    alpha = math.radians(degrees)
    centre = numpy.array([width / 2, height / 2])
    # r(p) = centre + M (p - centre): the authors' rotation of a point, as a matrix.
    m = numpy.array([[math.cos(alpha), math.sin(alpha)], [-math.sin(alpha), math.cos(alpha)]])
    corner = {name: centre + m @ (numpy.array(p, numpy.float64) - centre) for name, p in
              {'tl': (1, 1), 'tr': (width, 1), 'br': (width, height), 'bl': (1, height)}.items()}
    side_x = 1 if alpha > 0 else width
    p = _meet((side_x, 1), (side_x, height), corner['tl'], corner['tr'])
    edge = (corner['tr'], corner['br']) if alpha > 0 else (corner['tl'], corner['bl'])
    q = _meet(p, p + (1, 0), *edge)
    low_x = width - q[0] if alpha > 0 else q[0]
    bounds = (low_x, width - low_x, q[1], height - q[1])
    # Floors of values this far from an integer cannot depend on the rounding of either method.
    assert all(abs(v - round(v)) > 1e-9 for v in bounds)
    if bounds[0] > bounds[1] or bounds[2] > bounds[3]:
        return None
    box = (max(math.floor(bounds[0]), 1), min(math.floor(bounds[1]), width),
           max(math.floor(bounds[2]), 1), min(math.floor(bounds[3]), height))
    return box if box[0] <= box[1] and box[2] <= box[3] else None


@pytest.mark.parametrize('size', [(384, 298), (298, 384), (101, 57), (57, 101), (7, 5), (5, 7),
                                  (256, 200), (96, 75), (10, 100), (100, 10)])
@pytest.mark.parametrize('degrees', [-22.5, -15.0, -7.5, 7.5, 15.0, 22.5])
def test_crop_box_matches_an_independent_construction(size, degrees):
    expected = reference_box(size[0], size[1], degrees)
    if expected is None:
        with pytest.raises(ValueError, match='collapses'):
            crop_box(size[0], size[1], degrees)
    else:
        assert crop_box(size[0], size[1], degrees) == expected


def test_crop_box_is_centred():
    # floor(W - Q) + floor(Q) = W - 1 for a non-integer Q: the same margin on both sides, up to
    # the 1-based convention (a clipped bound would break the sum). Near-square sizes of at least
    # 33 pixels (20 x 20 at 7.5 deg already needs clipping: x_min = floor(20 - 19.05) = 0).
    for width in range(33, 200, 13):
        for height in range(int(width * 0.8), int(width * 1.25), 7):
            for degrees in (-22.5, -15.0, -7.5, 7.5, 15.0, 22.5):
                x_min, x_max, y_min, y_max = crop_box(width, height, degrees)
                assert (x_min + x_max, y_min + y_max) == (width - 1, height - 1)


def test_crop_slices_are_the_0_based_box():
    x_min, x_max, y_min, y_max = crop_box(101, 57, -15)
    rows, cols = crop_slices(101, 57, -15)
    grid = numpy.arange(57 * 101).reshape(57, 101)
    assert grid[rows, cols].shape == (y_max - y_min + 1, x_max - x_min + 1)
    assert grid[rows, cols][0, 0] == (y_min - 1) * 101 + (x_min - 1)
    assert grid[rows, cols][-1, -1] == (y_max - 1) * 101 + (x_max - 1)


@pytest.mark.parametrize('width, height, degrees', [(2, 7, 22.5), (10, 100, 7.5),
                                                    (100, 10, -7.5), (1, 5, 7.5), (5, 1, -7.5)])
def test_crop_box_collapse_is_a_clear_error(width, height, degrees):
    with pytest.raises(ValueError, match=r'%d x %d image rotated by %g degrees'
                       % (width, height, degrees)):
        crop_box(width, height, degrees)


@pytest.mark.parametrize('args', [(0, 5, 7.5), (5, -1, 7.5), (5.0, 5, 7.5), (True, 5, 7.5),
                                  (5, 5, 45), (5, 5, -90), (5, 5, float('nan')), (5, 5, '7.5'),
                                  (5, 5, None)])
def test_crop_box_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        crop_box(*args)


# --- rotate_bilinear ---------------------------------------------------------------------------

def torch_rotate(src, degrees):
    """torch/image rotateBilinear for a FloatTensor, one pixel at a time, in C's precisions."""
    f32 = numpy.float32
    theta = f32(math.radians(degrees))
    channels, height, width = src.shape
    xc, yc = f32((width - 1) / 2.0), f32((height - 1) / 2.0)
    out = numpy.zeros_like(src)
    for j in range(height):
        for i in range(width):
            ri = f32(math.cos(theta) * float(f32(i) - xc) - math.sin(theta) * float(f32(j) - yc))
            rj = f32(math.cos(theta) * float(f32(j) - yc) + math.sin(theta) * float(f32(i) - xc))
            ii_0, jj_0 = math.floor(ri + xc), math.floor(rj + yc)
            ii_1, jj_1 = ii_0 + 1, jj_0 + 1
            wi, wj = float(ri + xc - f32(ii_0)), float(rj + yc - f32(jj_0))
            blank = False
            if ii_1 == width and wi < 0.5:
                ii_1 = ii_0
            elif ii_1 >= width:
                blank = True
            if jj_1 == height and wj < 0.5:
                jj_1 = jj_0
            elif jj_1 >= height:
                blank = True
            if ii_0 == -1 and wi > 0.5:
                ii_0 = ii_1
            elif ii_0 < 0:
                blank = True
            if jj_0 == -1 and wj > 0.5:
                jj_0 = jj_1
            elif jj_0 < 0:
                blank = True
            for k in range(channels):
                if not blank:
                    out[k, j, i] = ((1.0 - wi) * (1.0 - wj) * float(src[k, jj_0, ii_0])
                                    + wi * (1.0 - wj) * float(src[k, jj_0, ii_1])
                                    + (1.0 - wi) * wj * float(src[k, jj_1, ii_0])
                                    + wi * wj * float(src[k, jj_1, ii_1]))
    return out


@pytest.mark.parametrize('shape', [(2, 7, 9), (1, 8, 6)])
@pytest.mark.parametrize('degrees', [-22.5, -7.5, 7.5, 15.0, 33.0, -60.0, 170.0])
def test_rotate_equals_torch_pixel_by_pixel(shape, degrees):
    src = numpy.random.RandomState(3).uniform(-120, 120, shape).astype(numpy.float32)
    numpy.testing.assert_array_equal(rotate_bilinear(src, degrees), torch_rotate(src, degrees))


@pytest.mark.parametrize('shape', [(3, 5, 7), (2, 6, 4), (1, 1, 1)])
def test_rotate_by_zero_is_the_identity(shape):
    src = numpy.random.RandomState(0).standard_normal(shape).astype(numpy.float32)
    numpy.testing.assert_array_equal(rotate_bilinear(src, 0), src)


@pytest.mark.parametrize('size', [5, 6])
def test_rotate_90_is_numpy_rot90_counterclockwise(size):
    src = numpy.random.RandomState(1).standard_normal((2, size, size)).astype(numpy.float32)
    # Torch samples source (x, y) = (N-1-j, i) for output (i, j): numpy.rot90 with k=1.
    numpy.testing.assert_allclose(rotate_bilinear(src, 90), numpy.rot90(src, 1, axes=(1, 2)),
                                  atol=1e-5)
    numpy.testing.assert_allclose(rotate_bilinear(src, -90), numpy.rot90(src, -1, axes=(1, 2)),
                                  atol=1e-5)


def test_rotate_hand_worked_45_degrees():
    # f(x, y) = 3y + x (0-based column x, row y) is linear, so bilinear samples equal f at the
    # source position. Centre (1, 1), c = s = 0.70711; output (i, j) samples
    # x = 1 + c(i-1) - s(j-1), y = 1 + c(j-1) + s(i-1):
    #   (1,0): x = 1.70711, y = 0.29289 -> 2.58579    (0,1): x = y = 0.29289 -> 1.17157
    #   (2,1): x = y = 1.70711 -> 6.82843             (1,2): x = 0.29289, y = 1.70711 -> 5.41421
    #   (0,0): y = -0.41421, within half a pixel: row 0 -> f(1, 0) = 1
    #   (2,0): x = 2.41421 -> column 2, y = 1 -> 5;  (0,2): x = -0.41421 -> column 0, y = 1 -> 3
    #   (2,2): y = 2.41421 -> row 2, x = 1 -> 7;      (1,1): the centre -> 4
    src = numpy.arange(9, dtype=numpy.float32).reshape(1, 3, 3)
    expected = [[1.0, 2.58579, 5.0], [1.17157, 4.0, 6.82843], [3.0, 5.41421, 7.0]]
    numpy.testing.assert_allclose(rotate_bilinear(src, 45)[0], expected, atol=1e-5)


def test_rotate_uncovered_corners_are_zero():
    # 5x5 at 45 deg: output (0, 0) samples y = 2 - 2.828 = -0.83, beyond half a pixel -> 0.
    out = rotate_bilinear(numpy.full((3, 5, 5), 7.0, numpy.float32), 45)
    for row, col in ((0, 0), (0, 4), (4, 0), (4, 4)):
        assert (out[:, row, col] == 0).all()
    numpy.testing.assert_allclose(out[:, 1:4, 1:4], 7.0, rtol=1e-6)
    assert (out[:, 2, :] != 0).all() and (out[:, :, 2] != 0).all()


def test_rotate_keeps_shape_and_dtype():
    x = numpy.random.RandomState(2).standard_normal((4, 6)).astype(numpy.float64)
    out = rotate_bilinear(x, 7.5)
    assert out.shape == (4, 6) and out.dtype == numpy.float64
    batch = numpy.stack([x, 2 * x]).astype(numpy.float32)[:, None]  # (2, 1, 4, 6)
    out = rotate_bilinear(batch, -15)
    assert out.shape == (2, 1, 4, 6) and out.dtype == numpy.float32
    numpy.testing.assert_allclose(out[1], 2 * out[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('array, degrees', [
    (numpy.zeros((3, 4, 4), numpy.int32), 7.5), (numpy.zeros(4, numpy.float32), 7.5),
    (numpy.zeros((3, 0, 4), numpy.float32), 7.5), (numpy.zeros((3, 4, 4), numpy.float32), 'x'),
    (numpy.zeros((3, 4, 4), numpy.float32), float('inf'))])
def test_rotate_rejects_bad_arguments(array, degrees):
    with pytest.raises(ValueError):
        rotate_bilinear(array, degrees)


# --- style_copies ------------------------------------------------------------------------------

def _style(height, width, channels=3, seed=0):
    rng = numpy.random.RandomState(seed)
    return rng.uniform(-120, 120, (channels, height, width)).astype(numpy.float32)


def test_copy_sizes_256x200_hand_worked():
    # Boxes: -7.5 deg -> columns 10..245, rows 16..183 (236 x 168); 0 -> 256 x 200;
    # +7.5 deg -> columns 9..246, rows 16..183 (238 x 168).
    # Factors float32(float32(1.05) ** s): 0.95238101, 1, 1.04999995.
    #   236: floor(224.76) = 224, 168*224 // 236 = 159 | 236 x 168 |
    #        floor(247.80) = 247, 168*247 // 236 = 175
    #   256: floor(243.81) = 243, 200*243 // 256 = 189 | 256 x 200 |
    #        floor(268.80) = 268, 200*268 // 256 = 209
    #   238: floor(226.67) = 226, 168*226 // 238 = 159 | 238 x 168 |
    #        floor(249.90) = 249, 168*249 // 238 = 175
    copies = style_copies(_style(200, 256))
    assert [c.shape for c in copies] == [
        (3, 159, 224), (3, 168, 236), (3, 175, 247),
        (3, 189, 243), (3, 200, 256), (3, 209, 268),
        (3, 159, 226), (3, 168, 238), (3, 175, 249)]
    assert all(c.dtype == numpy.float32 and c.flags.c_contiguous for c in copies)


def test_bank_size_256x200():
    # 3x3 patches on the stride-2 grid with the last start added: ceil((n - 3) / 2) + 1 starts.
    #   (159, 224): 79 * 112 = 8848   (168, 236): 84 * 118 = 9912   (175, 247): 87 * 123 = 10701
    #   (189, 243): 94 * 121 = 11374  (200, 256): 100 * 128 = 12800 (209, 268): 104 * 134 = 13936
    #   (159, 226): 79 * 113 = 8927   (168, 238): 84 * 119 = 9996   (175, 249): 87 * 124 = 10788
    copies = style_copies(_style(200, 256, channels=1))
    counts = [len(patches.grid_starts(c.shape[1], 3, 2))
              * len(patches.grid_starts(c.shape[2], 3, 2)) for c in copies]
    assert counts == [8848, 9912, 10701, 11374, 12800, 13936, 8927, 9996, 10788]
    assert sum(counts) == 97282


def test_copies_in_the_authors_order():
    style = _style(31, 40)
    copies = style_copies(style, num_rotation=2, num_scale=1)
    expected = []
    for r in (-2, -1, 0, 1, 2):  # rotations outer
        rows, cols = crop_slices(40, 31, 7.5 * r)
        cropped = rotate_bilinear(style, 7.5 * r)[:, rows, cols]
        height, width = cropped.shape[1:]
        for s in (-1, 0, 1):  # scales inner
            longer = math.floor(max(height, width) * float(numpy.float32(
                math.pow(float(numpy.float32(1.05)), s))))
            expected.append(image.resize_bilinear(cropped, image.cnnmrf_size(width, height,
                                                                              longer)))
    assert len(copies) == 15
    for got, want in zip(copies, expected):
        numpy.testing.assert_array_equal(got, want)
    numpy.testing.assert_array_equal(copies[7], style)  # r = s = 0 is the style itself


@pytest.mark.parametrize('num_rotation, num_scale, count', [(0, 0, 1), (2, 0, 5), (0, 2, 5),
                                                            (3, 3, 49)])
def test_copy_count(num_rotation, num_scale, count):
    copies = style_copies(_style(24, 30), num_rotation, num_scale)
    assert len(copies) == count
    assert copies[count // 2].shape == (3, 24, 30)


def test_scale_factor_is_single_precision_like_torch_pow():
    # floor(380 * 1.05) = 399 in double, but torch.pow(1.05, 1) is float32(1.05) = 1.04999995:
    # floor(398.99998) = 398; height 100 * 398 // 380 = 104. s = -1: floor(361.9) = 361, 95.
    assert math.floor(380 * 1.05) == 399
    copies = style_copies(_style(100, 380, channels=1), num_rotation=0, num_scale=1)
    assert [c.shape[1:] for c in copies] == [(95, 361), (100, 380), (104, 398)]


def test_other_steps_and_dtypes():
    style = _style(30, 24).astype(numpy.float64)
    copies = style_copies(style, num_rotation=1, num_scale=1, rotation_step=15.0, scale_step=0.5)
    assert all(c.dtype == numpy.float32 for c in copies)
    rows, cols = crop_slices(24, 30, 15.0)
    box_height, box_width = rows.stop - rows.start, cols.stop - cols.start
    # s = -1 doubles (0.5 ** -1), s = 1 halves: the longer side is the height here.
    assert copies[6].shape[1] == box_height * 2 and copies[8].shape[1] == box_height // 2
    assert copies[7].shape[1:] == (box_height, box_width)


@pytest.mark.parametrize('kwargs', [dict(num_rotation=-1), dict(num_scale=-1),
                                    dict(num_rotation=1.0), dict(num_scale=True),
                                    dict(rotation_step=0), dict(rotation_step=-7.5),
                                    dict(scale_step=0), dict(scale_step=-1.05),
                                    dict(scale_step=float('nan')),
                                    dict(num_rotation=6, rotation_step=7.5)])
def test_style_copies_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        style_copies(_style(20, 20), **kwargs)


@pytest.mark.parametrize('style', [numpy.zeros((20, 20), numpy.float32),
                                   numpy.zeros((3, 20, 20), numpy.int64),
                                   numpy.zeros((3, 0, 20), numpy.float32)])
def test_style_copies_rejects_bad_styles(style):
    with pytest.raises(ValueError, match='style image'):
        style_copies(style)


def test_style_copies_reports_a_collapsing_box():
    with pytest.raises(ValueError, match=r'2 x 7 image rotated by -22.5 degrees'):
        style_copies(_style(7, 2), num_rotation=3)
    with pytest.raises(ValueError, match='no pixels'):
        style_copies(_style(2, 1), num_rotation=0, num_scale=1, scale_step=4.0)


# --- CuPy on a CUDA machine --------------------------------------------------------------------


@needs_cuda
def test_gpu_copies_match_cpu():
    cp = cuda.cupy
    style = _style(37, 45)
    numpy.testing.assert_array_equal(cp.asnumpy(rotate_bilinear(cp.asarray(style), -22.5)),
                                     rotate_bilinear(style, -22.5))
    gpu = style_copies(cp.asarray(style), num_rotation=1, num_scale=1)
    for got, want in zip(gpu, style_copies(style, num_rotation=1, num_scale=1)):
        assert isinstance(got, cp.ndarray)
        numpy.testing.assert_allclose(cp.asnumpy(got), want, rtol=1e-5, atol=1e-4)
