"""What several test files share: test images, random weights, the example data's path and the
CUDA marker. Test files import from here, never from each other or from conftest."""
import os

import chainer_mrf  # noqa: F401  (installs the NumPy shims before chainer is imported)
import numpy
import pytest
from chainer.backends import cuda

from chainer_mrf import weights as weights_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The project's root folder."""

DATA = os.path.join(ROOT, os.pardir, 'shared', 'data', 'cnnmrf')
"""The paper's example images (never part of the project; absent in a user's clone)."""

SMALL = dict(width=64, resolution_num=1)
"""Options of a quick dsanno run on the test images below."""


def content_card():
    """A 96 x 72 test card: a colour ramp with a dark disc, something VGG sees structure in."""
    y, x = numpy.mgrid[0:72, 0:96]
    rgb = numpy.stack([x * 2.5, y * 3.0, 255 - x * 2.0], axis=-1)
    rgb[(x - 40) ** 2 + (y - 30) ** 2 < 300] = (20, 30, 40)
    return rgb.clip(0, 255).astype(numpy.uint8)


def style_stripes():
    """Diagonal colour stripes, 80 x 80."""
    y, x = numpy.mgrid[0:80, 0:80]
    index = ((x + y) // 6) % 3
    palette = numpy.array([[200, 40, 40], [30, 160, 60], [240, 220, 90]], numpy.uint8)
    return palette[index]


def random_weights(arch, seed=0, scale=0.1):
    """Random weights with the shapes of ``arch``."""
    rng = numpy.random.RandomState(seed)
    return {key: (rng.standard_normal(shape) * scale).astype(numpy.float32)
            for key, shape in weights_lib.expected_shapes(arch).items()}


def _cuda_ready():
    if not cuda.available:
        return False
    try:
        return cuda.cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver or no device
        return False


def needs_cuda(test):
    """Marks a test that needs CuPy and a CUDA device; elsewhere it is skipped, saying so."""
    skip = pytest.mark.skipif(not _cuda_ready(), reason='CuPy with a CUDA device is absent')
    return skip(pytest.mark.gpu(test))
