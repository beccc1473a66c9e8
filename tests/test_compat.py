"""Chainer 7.8.1 runs on this NumPy and Python through chainer_mrf._compat."""
import subprocess
import sys

import numpy
import pytest

import chainer_mrf  # noqa: F401
import chainer
import chainer.functions as F
from chainer import gradient_check


def test_chainer_imports_in_a_fresh_interpreter():
    # Without the shims this import fails on NumPy 2 (numpy.sctypes) and Python 3.12
    # (numpy.distutils); a fresh process proves the package alone is enough.
    code = 'import chainer_mrf, chainer, chainer.functions; print(chainer.__version__)'
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '7.8.1'


def test_resize_images_uses_numpy_float():
    x = numpy.arange(16, dtype=numpy.float32).reshape(1, 1, 4, 4)
    y = F.resize_images(x, (7, 7), align_corners=True).array
    assert y.shape == (1, 1, 7, 7)
    assert y[0, 0, 0, 0] == 0 and y[0, 0, -1, -1] == 15
    assert y[0, 0, 0, 1] == pytest.approx(0.5)


def test_as_strided_uses_numpy_sctypes():
    x = numpy.arange(6, dtype=numpy.float32)
    y = F.as_strided(x, (2, 3), (3, 1)).array
    numpy.testing.assert_array_equal(y, [[0, 1, 2], [3, 4, 5]])


def test_convolution_gradient_check():
    rng = numpy.random.RandomState(0)
    x = rng.standard_normal((1, 2, 4, 3))
    w = rng.standard_normal((3, 2, 3, 3))
    gy = rng.standard_normal((1, 3, 4, 3))
    gradient_check.check_backward(lambda x, w: F.convolution_2d(x, w, pad=1), (x, w), gy)
    assert chainer.__version__ == '7.8.1'
