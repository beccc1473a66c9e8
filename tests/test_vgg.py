import chainer
import chainer.functions as F
import numpy
import pytest
from chainer import gradient_check
from chainer.functions.connection import convolution_2d

from chainer_mrf import layers
from chainer_mrf import weights as weights_lib
from chainer_mrf.vgg import VGG, VGG16, VGG19
from helpers import random_weights


def _correlate_pixel(x, w, b, y, xx):
    """conv output at (y, xx) with zero padding 1, by direct summation."""
    padded = numpy.pad(x, ((0, 0), (1, 1), (1, 1)))
    window = padded[:, y:y + 3, xx:xx + 3].astype(numpy.float64)
    return numpy.tensordot(w.astype(numpy.float64), window, axes=3) + b


def _pool_ceil(x, reduce):
    """2x2/2 pooling that rounds the output size up, by loops over windows."""
    c, h, w = x.shape
    out = numpy.empty((c, -(-h // 2), -(-w // 2)), x.dtype)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = reduce(x[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(c, -1), axis=1)
    return out


# --- the real weights --------------------------------------------------------------------

@pytest.fixture(scope='module')
def vgg16(vgg16_path):
    return VGG16(vgg16_path)


@pytest.fixture(scope='module')
def image_240x301():
    rng = numpy.random.RandomState(1)
    return rng.uniform(-120, 130, (1, 3, 301, 240)).astype(numpy.float32)


def test_real_weights_canary(vgg16):
    assert vgg16.arch == 'vgg16'
    assert vgg16.conv1_1_b[0] == numpy.float32(0.73429835)


def test_real_weights_layer_shapes_with_ceil_pooling(vgg16, image_240x301):
    layers = ['relu1_2', 'pool1', 'relu2_2', 'pool2', 'relu3_3', 'pool3', 'relu4_3', 'pool4',
              'relu5_3', 'pool5']
    out = vgg16(image_240x301, layers=layers)
    # 301 x 240 halves with rounding up: 151 x 120, 76 x 60, 38 x 30, 19 x 15, 10 x 8.
    expected = [(64, 301, 240), (64, 151, 120), (128, 151, 120), (128, 76, 60),
                (256, 76, 60), (256, 38, 30), (512, 38, 30), (512, 19, 15),
                (512, 19, 15), (512, 10, 8)]
    assert [out[name].shape[1:] for name in layers] == expected


def test_real_weights_activations_finite_and_deterministic(vgg16, image_240x301):
    first = vgg16(image_240x301, layers=['relu3_1', 'relu4_2'])
    second = vgg16(image_240x301, layers=['relu3_1', 'relu4_2'])
    for name in first:
        a = first[name].array
        assert numpy.isfinite(a).all()
        assert (a >= 0).all() and a.max() > 0
        numpy.testing.assert_array_equal(a, second[name].array)


def test_real_weights_conv1_1_known_answer(vgg16, image_240x301):
    x = image_240x301[0]
    conv = vgg16(image_240x301, layers=['conv1_1'])['conv1_1'].array[0]
    for y, xx in [(0, 0), (300, 239), (150, 7), (0, 120)]:
        expected = _correlate_pixel(x, vgg16.conv1_1_W, vgg16.conv1_1_b, y, xx)
        numpy.testing.assert_allclose(conv[:, y, xx], expected, rtol=1e-4, atol=1e-2)


# --- random weights (fast, no real weights needed) -------------------------------------------

@pytest.fixture(scope='module')
def small_input():
    return numpy.random.RandomState(2).uniform(-1, 1, (1, 3, 7, 5)).astype(numpy.float32)


@pytest.mark.parametrize('pooling,reduce', [('max', numpy.max), ('average', numpy.mean)])
def test_pooling_rounds_up_and_matches_loops(random_vgg16_path, small_input, pooling, reduce):
    vgg = VGG(random_vgg16_path, pooling=pooling)
    out = vgg(small_input, layers=['relu1_2', 'pool1', 'relu2_2', 'pool2'])
    assert out['pool1'].shape == (1, 64, 4, 3)
    assert out['pool2'].shape == (1, 128, 2, 2)
    for before, after in [('relu1_2', 'pool1'), ('relu2_2', 'pool2')]:
        numpy.testing.assert_allclose(out[after].array[0], _pool_ceil(out[before].array[0], reduce),
                                      rtol=1e-6, atol=1e-6)


def test_stops_after_last_requested_layer(random_vgg16_path, small_input, monkeypatch):
    vgg = VGG16(random_vgg16_path)
    calls = []
    original = layers.convolution_3x3

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(layers, 'convolution_3x3', counting)
    out = vgg(small_input, layers=['relu2_1', 'conv1_2'])
    assert sorted(out) == ['conv1_2', 'relu2_1']
    assert len(calls) == 3


@pytest.mark.parametrize('pixels,threaded', [(35, True), (36, False)])
def test_threads_for_a_large_image_in_every_layer(random_vgg16_path, small_input, monkeypatch,
                                                   pixels, threaded):
    # One thread count for every convolution of a pass, from the input's size (7 x 5 = 35).
    from chainer_mrf import vgg as vgg_lib
    monkeypatch.setattr(vgg_lib, 'THREADED_PIXELS', pixels)
    monkeypatch.setattr(layers, 'THREADS', 2)
    vgg = VGG16(random_vgg16_path)
    counts = []
    original = layers.convolution_3x3

    def counting(*args, **kwargs):
        counts.append(kwargs['threads'])
        return original(*args, **kwargs)

    monkeypatch.setattr(layers, 'convolution_3x3', counting)
    x = chainer.Variable(small_input.copy())
    out = vgg(x, layers=['relu3_1'])
    F.sum(out['relu3_1']).backward()
    assert counts == [2 if threaded else 1] * 5
    monkeypatch.setattr(layers, 'THREADS', 1)
    plain = VGG16(random_vgg16_path)
    reference = chainer.Variable(small_input.copy())
    out_plain = plain(reference, layers=['relu3_1'])
    F.sum(out_plain['relu3_1']).backward()
    numpy.testing.assert_allclose(out['relu3_1'].array, out_plain['relu3_1'].array,
                                  rtol=1e-5, atol=1e-5)
    numpy.testing.assert_allclose(x.grad, reference.grad, rtol=1e-5, atol=1e-5)


def test_no_weight_gradients(random_vgg16_path, small_input, monkeypatch):
    vgg = VGG16(random_vgg16_path)
    assert list(vgg.params()) == []

    def refuse(*args):
        raise AssertionError('a weight gradient was computed')

    monkeypatch.setattr(convolution_2d.Convolution2DGradW, 'forward', refuse)
    x = chainer.Variable(small_input.copy())
    F.sum(vgg(x, layers=['relu2_1'])['relu2_1']).backward()
    assert x.grad is not None and numpy.abs(x.grad).sum() > 0


@pytest.mark.parametrize('pooling', ['max', 'average'])
def test_gradient_check(random_vgg16_path, pooling):
    vgg = VGG(random_vgg16_path, pooling=pooling)
    rng = numpy.random.RandomState(3)
    x = rng.uniform(-1, 1, (1, 3, 5, 3)).astype(numpy.float64)
    out_shape = (1, 128, 3, 2)
    gy = rng.standard_normal(out_shape)
    # Run in float64 so the numerical gradient is exact enough to compare.
    for name in vgg._persistent:
        setattr(vgg, name, getattr(vgg, name).astype(numpy.float64))
    gradient_check.check_backward(lambda v: vgg(v, layers=['relu2_1'])['relu2_1'], x, gy,
                                  eps=1e-4, atol=1e-5, rtol=1e-4)


# --- errors ----------------------------------------------------------------------------------

def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='chainer-mrf-weights fetch'):
        VGG16(str(tmp_path / 'none.npz'))


def test_corrupt_weights_file(tmp_path):
    path = tmp_path / 'corrupt.npz'
    path.write_bytes(b'PK\x03\x04 this is not a zip archive')
    with pytest.raises(ValueError, match='not a readable weights file'):
        VGG16(str(path))


def test_weights_missing_layers(tmp_path):
    weights = random_weights('vgg16')
    del weights['conv4_3/W']
    path = str(tmp_path / 'partial.npz')
    numpy.savez(path, **weights)
    with pytest.raises(ValueError, match='missing conv4_3/W'):
        VGG16(path)


def test_wrong_architecture(random_vgg16_path):
    with pytest.raises(ValueError, match='holds VGG16 weights, not VGG19'):
        VGG19(random_vgg16_path)


def test_vgg19_layers(tmp_path):
    path = str(tmp_path / 'random19.npz')
    weights_lib.save_weights(path, random_weights('vgg19'), 'vgg19')
    vgg = VGG(path)
    assert vgg.arch == 'vgg19'
    assert 'relu3_4' in vgg.layer_names and 'relu5_4' in vgg.layer_names
    assert vgg.layer_names.index('pool3') == vgg.layer_names.index('relu3_4') + 1


def test_bad_layer_name_and_pooling(random_vgg16_path, small_input):
    vgg = VGG16(random_vgg16_path)
    with pytest.raises(ValueError, match='unknown VGG16 layer relu3_4'):
        vgg(small_input, layers=['relu3_4'])
    with pytest.raises(ValueError, match='unknown pooling'):
        VGG16(random_vgg16_path, pooling='median')


def test_flops_known_answer(random_vgg16_path):
    vgg = VGG16(random_vgg16_path)
    assert vgg.flops((224, 224), ['relu1_1']) == 2 * 9 * 3 * 64 * 224 * 224
    # conv1_1 and conv1_2 at 5x7, then conv2_1 at the ceil-pooled 3x4.
    assert vgg.flops((5, 7), ['relu2_1']) == 2 * 9 * (3 * 64 * 35 + 64 * 64 * 35 + 64 * 128 * 12)
    assert vgg.flops((5, 7), []) == 0


def test_fused_relu_matches_separate(random_vgg16_path, small_input):
    vgg = VGG16(random_vgg16_path)
    fused = vgg(small_input, layers=['relu2_1'])['relu2_1'].array
    separate = vgg(small_input, layers=['conv1_1', 'conv1_2', 'conv2_1', 'relu2_1'])
    numpy.testing.assert_array_equal(fused, separate['relu2_1'].array)
    numpy.testing.assert_array_equal(separate['relu2_1'].array,
                                     numpy.maximum(separate['conv2_1'].array, 0))
