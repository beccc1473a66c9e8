"""Patch extraction: known answers, layout, the authors' grid, gradients (overlap-add)."""
import numpy
import pytest

import chainer_mrf  # noqa: F401  (NumPy shims before chainer)
import chainer
import chainer.functions as F
from chainer import gradient_check

from chainer_mrf import patches as pt


def naive_patches(x, ksize, rows, cols):
    """Reference: one window at a time, flattened in (channel, ky, kx) order."""
    return numpy.stack([x[0, :, r:r + ksize, c:c + ksize].ravel() for r in rows for c in cols])


def arange_map(channels=2, height=4, width=5):
    return numpy.arange(channels * height * width, dtype=numpy.float32).reshape(
        1, channels, height, width)


def test_known_answer_stride1():
    p = pt.extract_patches_array(arange_map(), 3)
    assert p.shape == (6, 18)  # 2 x 3 positions, 2 channels x 3 x 3
    # Channel 0 rows 0-2, columns 0-2 then channel 1 (offset 20), row-major positions.
    assert p[0].tolist() == [0, 1, 2, 5, 6, 7, 10, 11, 12, 20, 21, 22, 25, 26, 27, 30, 31, 32]
    assert p[1].tolist() == [1, 2, 3, 6, 7, 8, 11, 12, 13, 21, 22, 23, 26, 27, 28, 31, 32, 33]
    assert p[3].tolist() == [5, 6, 7, 10, 11, 12, 15, 16, 17, 25, 26, 27, 30, 31, 32, 35, 36, 37]
    assert p[5][0] == 7 and p[5][-1] == 39


def test_known_answer_stride2_and_layout():
    x = numpy.arange(25, dtype=numpy.float32).reshape(1, 1, 5, 5)
    p = pt.extract_patches_array(x, 3, 2)
    assert p.tolist() == [[0, 1, 2, 5, 6, 7, 10, 11, 12],
                          [2, 3, 4, 7, 8, 9, 12, 13, 14],
                          [10, 11, 12, 15, 16, 17, 20, 21, 22],
                          [12, 13, 14, 17, 18, 19, 22, 23, 24]]
    # A transposed view of a (D, P) array: the layout match() and the loss rely on.
    assert p.T.flags['C_CONTIGUOUS']


@pytest.mark.parametrize('ksize,stride', [(3, 1), (3, 2), (2, 3), (1, 1), (5, 2)])
def test_equals_im2col(ksize, stride):
    x = numpy.random.RandomState(0).randn(1, 3, 9, 11).astype(numpy.float32)
    p = pt.extract_patches_array(x, ksize, stride)
    col = F.im2col(x, ksize, stride).array  # (1, C*k*k, oh, ow)
    numpy.testing.assert_array_equal(p, col.reshape(col.shape[1], -1).T)


def test_grid_starts_known_answers():
    assert pt.grid_starts(10, 3, 2).tolist() == [0, 2, 4, 6, 7]
    assert pt.grid_starts(9, 3, 2).tolist() == [0, 2, 4, 6]
    assert pt.grid_starts(8, 3, 3).tolist() == [0, 3, 5]
    assert pt.grid_starts(4, 3, 2).tolist() == [0, 1]
    assert pt.grid_starts(3, 3, 5).tolist() == [0]
    assert pt.grid_starts(6, 3, 1).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        pt.grid_starts(2, 3, 1)
    with pytest.raises(ValueError):
        pt.grid_starts(5, 3, 0)


@pytest.mark.parametrize('rows,cols', [
    ([0, 2, 4, 6, 7], [0, 2, 4, 6, 7, 8]),  # the authors' grids of a 10 x 11 map
    ([1, 2, 5], [3]),
    ([0, 1, 3, 6, 7], [0, 4, 8]),
])
def test_grid_positions(rows, cols):
    x = numpy.random.RandomState(1).randn(1, 2, 10, 11).astype(numpy.float32)
    p = pt.extract_patches_array(x, 3, rows=rows, cols=cols)
    numpy.testing.assert_array_equal(p, naive_patches(x, 3, rows, cols))
    v = pt.extract_patches(chainer.Variable(x), 3, rows=numpy.array(rows), cols=cols)
    assert isinstance(v, chainer.Variable)
    numpy.testing.assert_array_equal(v.array, p)


def test_authors_grid_rows_and_cols_from_grid_starts():
    x = numpy.random.RandomState(2).randn(1, 1, 7, 8).astype(numpy.float32)
    rows, cols = pt.grid_starts(7, 3, 2), pt.grid_starts(8, 3, 2)
    assert rows.tolist() == [0, 2, 4] and cols.tolist() == [0, 2, 4, 5]
    p = pt.extract_patches_array(x, 3, rows=rows, cols=cols)
    numpy.testing.assert_array_equal(p, naive_patches(x, 3, rows, cols))


def test_coverage_count_map():
    x = chainer.Variable(arange_map(1, 4, 5))
    F.sum(pt.extract_patches(x, 3)).backward()
    assert x.grad[0, 0].tolist() == [[1, 2, 3, 2, 1],
                                     [2, 4, 6, 4, 2],
                                     [2, 4, 6, 4, 2],
                                     [1, 2, 3, 2, 1]]


def test_coverage_count_map_authors_grid():
    # Rows 0, 2, 3 of a 6-row map cover rows (1, 1, 2, 2, 2, 1) times; column 1 alone (1, 1, 1).
    x = chainer.Variable(numpy.zeros((1, 2, 6, 4), numpy.float32))
    F.sum(pt.extract_patches(x, 3, rows=[0, 2, 3], cols=[1])).backward()
    expected = [[0, 1, 1, 1]] * 2 + [[0, 2, 2, 2]] * 3 + [[0, 1, 1, 1]]
    assert x.grad[0, 0].tolist() == expected and x.grad[0, 1].tolist() == expected
    ones = numpy.ones((3, 18), numpy.float32)
    counts = pt.overlap_add(ones, (1, 2, 6, 4), 3, rows=[0, 2, 3], cols=[1])
    assert counts.array[0, 0].tolist() == expected


@pytest.mark.parametrize('stride,rows,cols', [(1, None, None), (2, None, None),
                                              (1, [0, 2, 3], [0, 1, 3])])
def test_check_backward(stride, rows, cols):
    rng = numpy.random.RandomState(3)
    x = rng.randn(1, 2, 6, 6)
    n = len(rows) * len(cols) if rows else ((6 - 3) // stride + 1) ** 2
    gy = rng.randn(n, 18)
    gradient_check.check_backward(
        lambda v: pt.extract_patches(v, 3, stride, rows=rows, cols=cols), x, gy,
        dtype=numpy.float64, atol=1e-6, rtol=1e-6)
    ggx = rng.randn(1, 2, 6, 6)
    gradient_check.check_double_backward(
        lambda v: pt.extract_patches(v, 3, stride, rows=rows, cols=cols), x, gy, ggx,
        dtype=numpy.float64, atol=1e-6, rtol=1e-6)


def test_overlap_add_is_the_adjoint():
    rng = numpy.random.RandomState(4)
    x = rng.randn(1, 3, 7, 9)
    grid = dict(rows=[0, 2, 4], cols=[0, 2, 4, 6])
    p = rng.randn(12, 27)
    lhs = numpy.sum(pt.extract_patches_array(x, 3, **grid) * p)
    rhs = numpy.sum(x * pt.overlap_add(p, x.shape, 3, **grid).array)
    assert abs(lhs - rhs) < 1e-9 * abs(lhs)


def test_overlap_add_of_row_major_patches():
    # 18 x 19 = 342 patches: the blocked transpose of row-major input takes several blocks.
    p = numpy.random.RandomState(6).randn(342, 8).astype(numpy.float32)
    shape = (1, 2, 19, 20)
    row_major = pt.overlap_add(numpy.ascontiguousarray(p), shape, 2).array
    numpy.testing.assert_array_equal(row_major,
                                     pt.overlap_add(numpy.asfortranarray(p), shape, 2).array)
    expected = numpy.zeros(shape, numpy.float32)
    for i, (r, c) in enumerate((r, c) for r in range(18) for c in range(19)):
        expected[0, :, r:r + 2, c:c + 2] += p[i].reshape(2, 2, 2)
    numpy.testing.assert_allclose(row_major, expected, rtol=1e-6, atol=1e-6)


def test_dtype_and_array_twin_agree():
    x = numpy.random.RandomState(5).randn(1, 4, 5, 6).astype(numpy.float32)
    v = pt.extract_patches(x, 3, 2)
    assert v.dtype == numpy.float32
    numpy.testing.assert_array_equal(v.array, pt.extract_patches_array(x, 3, 2))


@pytest.mark.parametrize('kwargs', [
    dict(rows=[0, 0, 1]), dict(rows=[2, 1]), dict(rows=[0, 3]), dict(cols=[-1, 0]),
    dict(rows=[]), dict(rows=[0.0, 1.0]), dict(ksize=6), dict(stride=0),
])
def test_bad_grids(kwargs):
    x = numpy.zeros((1, 1, 5, 5), numpy.float32)
    with pytest.raises(ValueError):
        pt.extract_patches_array(x, **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError):
        pt.extract_patches_array(numpy.zeros((2, 1, 5, 5), numpy.float32))
    with pytest.raises(ValueError):
        pt.extract_patches_array(numpy.zeros((1, 5, 5), numpy.float32))
    with pytest.raises(ValueError):
        pt.overlap_add(numpy.zeros((8, 9), numpy.float32), (1, 1, 5, 5))


def test_grid_count_is_the_grid_s_size():
    for shape, k, stride in [((10, 4), 3, 2), ((7, 7), 3, 1), ((3, 9), 3, 4)]:
        assert pt.grid_count(shape, k, stride) == (
            len(pt.grid_starts(shape[0], k, stride))
            * len(pt.grid_starts(shape[1], k, stride)))
    assert pt.grid_count((10, 4), 3, 2) == 5 * 2
    assert pt.grid_count((2, 8), 3, 1) == 0  # a patch does not fit
