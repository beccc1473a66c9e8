"""Fixtures: the real VGG16 weights, small random-weight models, the example data; the skip policy.

Skips are reported (``make test`` passes ``-rs``). Where ``CHAINER_MRF_NO_SKIP=1`` (CI sets it:
``.ci/run``), only a test marked ``gpu`` may skip: any other skip, a missing compiler, data folder
or package, is turned into a failure that keeps the skip's reason, which says what to install.
"""
import os

import pytest

from chainer_mrf import image
from chainer_mrf import weights as weights_lib
from helpers import DATA, content_card, random_weights, style_stripes


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if (report.skipped and os.environ.get('CHAINER_MRF_NO_SKIP') == '1'
            and item.get_closest_marker('gpu') is None):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = 'failed'
        report.longrepr = ('only GPU tests may skip here (CHAINER_MRF_NO_SKIP=1), and this one '
                           'skipped: %s' % reason)
    return report


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
        _require_or_skip(path, 'run "chainer-mrf-weights fetch" (or make weights)')
    return path


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
        pytest.skip('example data %s is absent: it is not part of a user\'s clone; put the '
                    'project\'s shared/data/cnnmrf folder (the paper\'s images) beside the clone'
                    % DATA)
    return DATA


@pytest.fixture(scope='module')
def vgg(vgg16_path):
    """The real VGG16, on the CPU."""
    from chainer_mrf.vgg import VGG
    return VGG(vgg16_path)


@pytest.fixture(scope='session')
def cli_images(tmp_path_factory):
    """(content, style) files for the command line: the test card as PNG, the stripes as JPEG."""
    folder = tmp_path_factory.mktemp('images')
    content, style = str(folder / 'content.png'), str(folder / 'style.jpg')
    image.save_image(content, content_card())
    image.save_image(style, style_stripes())
    return content, style
