"""Shared fixtures: the real VGG16 weights, small random-weight models, the example data."""
import os

import chainer_mrf  # noqa: F401  (installs the NumPy shims before chainer is imported)
import numpy
import pytest
from chainer.backends import cuda

from chainer_mrf import weights as weights_lib

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir,
                    'shared', 'data', 'cnnmrf')


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


def _require_or_skip(what, hint):
    """Skips with a message, or fails where CI demands the resource (see the Makefile)."""
    message = '%s is absent: %s' % (what, hint)
    if os.environ.get('CHAINER_MRF_REQUIRE_WEIGHTS') == '1':
        pytest.fail(message + ' (CHAINER_MRF_REQUIRE_WEIGHTS=1 demands it)')
    pytest.skip(message)


@pytest.fixture(scope='session')
def vgg16_path():
    """The real Caffe VGG16 weights (``make weights``); the test fails in ``make test`` without."""
    path = weights_lib.default_path('vgg16')
    if not os.path.isfile(path):
        _require_or_skip(path, 'run "python -m chainer_mrf.weights fetch"')
    return path


def random_weights(arch, seed=0, scale=0.1):
    """Random weights with the shapes of ``arch``."""
    rng = numpy.random.RandomState(seed)
    return {key: (rng.standard_normal(shape) * scale).astype(numpy.float32)
            for key, shape in weights_lib.expected_shapes(arch).items()}


@pytest.fixture(scope='session')
def random_vgg16_path(tmp_path_factory):
    """An npz of random VGG16-shaped weights (for tests that need no real features)."""
    path = str(tmp_path_factory.mktemp('weights') / 'random16.npz')
    weights_lib.save_weights(path, random_weights('vgg16'), 'vgg16')
    return path


@pytest.fixture(scope='session')
def data_dir():
    """The paper's example images (../shared/data/cnnmrf); tests skip where it is absent."""
    if not os.path.isdir(DATA):
        pytest.skip('example data %s is absent (it is not part of a user\'s clone)' % DATA)
    return DATA
