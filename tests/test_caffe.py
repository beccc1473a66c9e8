"""Caffemodel reading, writing and conversion, on files written with :mod:`chainer_mrf.caffe`'s
writer (and, for malformed ones, protowire's).

Both layouts (V1 ``layers`` as in the official VGG files, and the current ``layer``), VGG16 and
VGG19 names, non-convolution layers to skip, Chainer's own CaffeFunction as a referee, the
errors, the writer's streaming, and scripts/convert_caffemodel.py run as a user would.
"""
import io
import os
import re
import resource
import subprocess
import sys

import numpy
import pytest

from chainer_mrf import caffe
from chainer_mrf import weights as weights_lib
from chainer_mrf.caffe import encode_blob, encode_layer
from chainer_mrf.protowire import (DecodeError, encode_field, encode_length_header,
                                   encode_message, encode_varint)
from helpers import ROOT, random_weights

SCRIPT = os.path.join(ROOT, 'scripts', 'convert_caffemodel.py')
#: Small fully-connected layers (fc6, fc7, fc8): the reader skips them, whatever their size.
FC = (8, 8, 4)


def vgg_model(weights, layout, legacy=None):
    """The bytes of a VGG-like caffemodel (:func:`caffe.write_vgg_caffemodel`) holding
    ``weights`` between ReLU, pooling, fully-connected (random blobs), dropout and softmax
    layers. ``legacy`` (4-d blob shapes) defaults to the V1 layout, as in the official files."""
    buf = io.BytesIO()
    caffe.write_vgg_caffemodel(buf, weights, layout, legacy, fc=FC,
                               rng=numpy.random.default_rng(1))
    return buf.getvalue()


def write(path, data):
    path.write_bytes(data)
    return str(path)


def assert_same(found, expected):
    assert list(found) == list(expected)  # same keys, in file order, nothing else
    for key, value in expected.items():
        assert found[key].dtype == numpy.float32 and found[key].flags.c_contiguous, key
        assert found[key].shape == value.shape, key
        numpy.testing.assert_array_equal(found[key], value, err_msg=key)


@pytest.fixture(scope='module')
def real_vgg16(tmp_path_factory):
    """A full-size VGG16 caffemodel in the official V1 layout, and its weights."""
    weights = random_weights('vgg16', seed=3)
    path = write(tmp_path_factory.mktemp('caffe') / 'vgg16.caffemodel', vgg_model(weights, 'v1'))
    return path, weights


# --- reading --------------------------------------------------------------------------------

@pytest.mark.parametrize('layout,legacy', [('v1', True), ('v1', False), ('v2', False),
                                           ('v2', True)])
@pytest.mark.parametrize('arch', ['vgg16', 'vgg19'])
def test_reads_every_conv_layer_and_skips_the_others(tmp_path, arch, layout, legacy):
    weights = random_weights(arch, divisor=16)
    path = write(tmp_path / 'small.caffemodel', vgg_model(weights, layout, legacy))
    found = caffe.read_caffemodel(path)
    assert len(found) == 2 * len(weights_lib.conv_layers(arch))
    assert_same(found, weights)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # from Chainer's caffe_pb2
@pytest.mark.parametrize('layout', ['v1', 'v2'])
def test_agrees_with_chainer_caffe_function(tmp_path, monkeypatch, layout):
    # CaffeFunction needs protobuf 3.20.x; its C++ implementation may be absent.
    monkeypatch.setenv('PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION', 'python')
    pytest.importorskip('google.protobuf')
    from chainer.links.caffe import CaffeFunction

    weights = random_weights('vgg16', seed=7, divisor=16)
    path = write(tmp_path / 'small.caffemodel', vgg_model(weights, layout))
    reference = CaffeFunction(path)
    found = caffe.read_caffemodel(path)
    assert list(found) == list(weights)
    assert reference.fc6.W.shape == (8, 32 * 7 * 7)  # it did read the layers that we skip
    for name, _, _ in weights_lib.conv_layers('vgg16'):
        link = getattr(reference, name)
        numpy.testing.assert_array_equal(found[name + '/W'], link.W.array, err_msg=name)
        numpy.testing.assert_array_equal(found[name + '/b'], link.b.array, err_msg=name)


def fixed(key, array):
    """The unpacked encoding of a repeated float or double (``array`` little-endian): one
    fixed-width field per value."""
    raw, size = array.tobytes(), array.itemsize
    return b''.join(encode_varint(key) + raw[i:i + size] for i in range(0, len(raw), size))


def test_legal_encoding_variants(tmp_path):
    rng = numpy.random.default_rng(2)
    weight = rng.standard_normal((4, 3, 3, 3), dtype=numpy.float32)
    bias = rng.standard_normal(4, dtype=numpy.float32)
    unpacked_dims = encode_message([(1, d) for d in weight.shape])
    variants = {
        # unpacked floats (fixed32 fields) and unpacked BlobShape dims
        'unpacked': (encode_message([(7, unpacked_dims)]) + fixed(5 << 3 | 5, weight),
                     encode_message([(7, encode_message([(1, 4)]))]) + fixed(5 << 3 | 5, bias)),
        # data split over two packed fields, which a parser concatenates
        'split': (encode_message([(7, encode_message([(1, list(weight.shape))])),
                                  (5, weight.ravel()[:50]), (5, weight.ravel()[50:])]),
                  encode_blob(bias, legacy=False)),
        # double_data, packed and unpacked, with data also present: Caffe reads the doubles
        'double': (encode_message([(1, 4), (2, 3), (3, 3), (4, 3),
                                   (5, numpy.zeros(108, numpy.float32)),
                                   (8, weight.astype(numpy.float64).ravel())]),
                   encode_message([(1, 1), (2, 1), (3, 1), (4, 4)])
                   + fixed(8 << 3 | 1, bias.astype('<f8'))),
    }
    for variant, blobs in variants.items():
        layer = encode_layer('v2', 'conv1_1', 'Convolution', blobs)
        found = caffe.read_caffemodel(write(tmp_path / (variant + '.caffemodel'), layer))
        assert_same(found, {'conv1_1/W': weight, 'conv1_1/b': bias})


def test_skipped_blobs_are_never_touched(tmp_path):
    # A 2 GiB fully-connected blob, stored as a hole of a sparse file, before the convolutions.
    # Reading it would map 2 GiB more, far above this process's earlier peak (under 1 GiB).
    size = 2 << 30
    blob = encode_message([(1, 1), (2, 1), (3, 1 << 14), (4, 1 << 14)]) \
        + encode_length_header(5, size)
    layer = encode_message([(4, 'fc6'), (5, caffe.V1_TYPES['InnerProduct'])]) \
        + encode_length_header(6, len(blob) + size) + blob
    data, weights = small_model()
    path = tmp_path / 'sparse.caffemodel'
    with open(path, 'wb') as f:
        f.write(encode_length_header(2, len(layer) + size) + layer)
        f.seek(size, os.SEEK_CUR)
        f.write(data)
    unit = 1 if sys.platform == 'darwin' else 1024  # ru_maxrss is in bytes there, else KiB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    found = caffe.read_caffemodel(path)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) * unit < 256 << 20
    assert_same(found, weights)


def test_convolution_without_bias(tmp_path):
    weight = numpy.arange(54, dtype=numpy.float32).reshape(2, 3, 3, 3)
    layer = encode_layer('v1', 'conv1_1', 'Convolution', [encode_blob(weight, legacy=True)])
    assert_same(caffe.read_caffemodel(write(tmp_path / 'nobias.caffemodel', layer)),
                {'conv1_1/W': weight})


# --- the writer -----------------------------------------------------------------------------

def test_writer_draws_blobs_given_as_shapes_in_chunks(tmp_path):
    # Values drawn a few at a time are those drawn at once, in file order; without a generator,
    # zeros.
    shapes = {'conv1_1/W': (4, 3, 3, 3), 'conv1_1/b': (4,), 'conv1_2/W': (4, 4, 3, 3),
              'conv1_2/b': (4,)}
    buf = io.BytesIO()
    caffe.write_vgg_caffemodel(buf, shapes, 'v2', fc=FC, rng=numpy.random.default_rng(5), chunk=5)
    rng = numpy.random.default_rng(5)
    expected = {key: rng.standard_normal(shape, dtype=numpy.float32)
                for key, shape in shapes.items()}
    assert_same(caffe.read_caffemodel(write(tmp_path / 'drawn.caffemodel', buf.getvalue())),
                expected)
    buf = io.BytesIO()
    caffe.write_vgg_caffemodel(buf, shapes, fc=FC)
    assert_same(caffe.read_caffemodel(write(tmp_path / 'zeros.caffemodel', buf.getvalue())),
                {key: numpy.zeros(shape, numpy.float32) for key, shape in shapes.items()})


@pytest.mark.parametrize('layout', ['v1', 'v2'])
def test_writer_lays_out_the_vgg_net(layout):
    # Layer names, kinds, bottoms and tops in file order, read back with protowire.
    from chainer_mrf import protowire

    data = vgg_model(random_weights('vgg16', divisor=16), layout)
    fields = caffe.LAYOUTS[layout]
    layers = []
    for number, _, span in protowire.iter_fields(data):
        if number != fields['net']:
            continue
        layer = {}
        for field, _, value in protowire.iter_fields(data, *span):
            for key in ('name', 'type', 'bottom', 'top'):
                if field == fields[key]:
                    layer[key] = value if isinstance(value, int) \
                        else protowire.read_string(data, value)
        layers.append(layer)
    kinds = {value: kind for kind, value in caffe.V1_TYPES.items()}
    names = [(layer['name'], kinds.get(layer['type'], layer['type'])) for layer in layers]
    assert names[:5] == [('conv1_1', 'Convolution'), ('relu1_1', 'ReLU'),
                         ('conv1_2', 'Convolution'), ('relu1_2', 'ReLU'), ('pool1', 'Pooling')]
    assert names[-9:] == [('pool5', 'Pooling'), ('fc6', 'InnerProduct'), ('relu6', 'ReLU'),
                          ('drop6', 'Dropout'), ('fc7', 'InnerProduct'), ('relu7', 'ReLU'),
                          ('drop7', 'Dropout'), ('fc8', 'InnerProduct'), ('prob', 'Softmax')]
    assert len(names) == 13 * 2 + 5 + 3 + 2 * 2 + 1
    # Each layer reads the previous one's top; ReLU and dropout work in place.
    assert layers[0]['bottom'] == 'data'
    for before, layer in zip(layers, layers[1:]):
        assert layer['bottom'] == before['top'], layer['name']


def test_writer_refuses_what_caffe_cannot_hold():
    with pytest.raises(ValueError, match="unknown layer kind 'Deconvolution'"):
        encode_layer('v2', 'up', 'Deconvolution')
    with pytest.raises(ValueError, match=r'4 dimensions at most, not \(1, 2, 3, 4, 5\)'):
        encode_layer('v1', 'conv1_1', 'Convolution', [(1, 2, 3, 4, 5)])


# --- conversion -----------------------------------------------------------------------------

def test_convert_official_layout_vgg16(tmp_path, real_vgg16):
    path, weights = real_vgg16
    out = str(tmp_path / 'vgg16.npz')
    assert_same(caffe.convert_caffemodel(path, out), weights)
    arch, loaded = weights_lib.load_weights(out)
    assert arch == 'vgg16'
    assert_same(loaded, weights)


def test_convert_current_layout_vgg19(tmp_path):
    weights = random_weights('vgg19', seed=4)
    path = write(tmp_path / 'vgg19.caffemodel', vgg_model(weights, 'v2'))
    out = str(tmp_path / 'vgg19.npz')
    assert_same(caffe.convert_caffemodel(path, out, arch='vgg19'), weights)
    arch, loaded = weights_lib.load_weights(out)
    assert arch == 'vgg19'
    assert_same(loaded, weights)


def drop_block5(weights):
    return {k: v for k, v in weights.items() if not k.startswith('conv5_')}


@pytest.mark.parametrize('arch,model_arch,change,message', [
    ('vgg16', 'vgg16', drop_block5,
     r'missing VGG16 convolution layers conv5_1, conv5_2, conv5_3 \(the file has 10 '),
    ('vgg19', 'vgg16', None,
     r'missing VGG19 convolution layers conv3_4, conv4_4, conv5_4 \(the file has 13 '),
    ('vgg16', 'vgg19', None, 'unexpected arrays for VGG16: conv3_4/W'),
    ('vgg16', 'vgg16', None, r'conv1_1/W has shape \(4, 3, 3, 3\), expected \(64, 3, 3, 3\)'),
])
def test_convert_checks_the_architecture(tmp_path, arch, model_arch, change, message):
    weights = random_weights(model_arch, divisor=16)
    weights = change(weights) if change else weights
    path = write(tmp_path / 'model.caffemodel', vgg_model(weights, 'v1'))
    with pytest.raises(ValueError, match=message) as error:
        caffe.convert_caffemodel(path, str(tmp_path / 'out.npz'), arch)
    assert str(error.value).startswith(path + ': ')
    assert os.listdir(tmp_path) == ['model.caffemodel']


def test_convert_rejects_unknown_arch_before_reading(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture 'vgg11'"):
        caffe.convert_caffemodel(str(tmp_path / 'absent.caffemodel'), str(tmp_path / 'o.npz'),
                                 'vgg11')


# --- errors ---------------------------------------------------------------------------------

def small_model(layout='v1'):
    """``(caffemodel bytes, weights)`` of a VGG16 with channel counts divided by 16."""
    weights = random_weights('vgg16', divisor=16)
    return vgg_model(weights, layout), weights


def test_missing_and_empty_files(tmp_path):
    missing = str(tmp_path / 'absent.caffemodel')
    with pytest.raises(FileNotFoundError, match='caffemodel not found: ' + re.escape(missing)):
        caffe.read_caffemodel(missing)
    with pytest.raises(FileNotFoundError, match='caffemodel not found'):
        caffe.read_caffemodel(str(tmp_path))  # a folder
    empty = write(tmp_path / 'empty.caffemodel', b'')
    with pytest.raises(DecodeError, match='^%s: empty file, not a caffemodel$' % re.escape(empty)):
        caffe.read_caffemodel(empty)


PROTOTXT = b'''name: "VGG_ILSVRC_16_layers"
input: "data"
layers {
  bottom: "data"
  top: "conv1_1"
  name: "conv1_1"
  type: CONVOLUTION
}
'''


def npz_bytes():
    """A weights file, given by mistake (a zip: it starts with b'PK\\x03\\x04')."""
    buf = io.BytesIO()
    numpy.savez(buf, x=numpy.zeros(3, numpy.float32))
    return buf.getvalue()


def truncated(data, weights):
    """Cut in the middle of conv3_1's weights."""
    middle = data.index(weights['conv3_1/W'].tobytes()) + weights['conv3_1/W'].nbytes // 2
    return data[:middle]


def corrupt(data, weights):
    """A byte of conv2_1's weight blob header turned into a key of wire type 7."""
    data = bytearray(data)
    data[data.index(encode_blob(weights['conv2_1/W'], legacy=True))] = 1 << 3 | 7
    return bytes(data)


@pytest.mark.parametrize('make,message', [
    (truncated, r'field 2 runs past the end of its message \(byte \d+ > \d+\)'),
    (corrupt, r'unsupported wire type 7 at byte \d+'),
    (lambda data, weights: npz_bytes(), 'field number 0 at byte 3'),
    (lambda data, weights: PROTOTXT, 'unsupported wire type 6 at byte 1$'),  # 'n' = 0x6e
    (lambda data, weights: encode_message([(1, 'a net without layers')]), 'no layers$'),
])
def test_damaged_or_foreign_files(tmp_path, make, message):
    path = write(tmp_path / 'bad.caffemodel', make(*small_model()))
    with pytest.raises(DecodeError, match=message) as error:
        caffe.read_caffemodel(path)
    assert str(error.value).startswith(
        path + ': not a valid caffemodel (truncated, corrupt or another format): ')


def test_random_damage_only_raises_value_errors(tmp_path):
    # Whatever the bytes, the reader returns or raises a ValueError naming the file: never an
    # IndexError, a struct or buffer error. One value per blob, so that most damage hits the
    # structure rather than the floats.
    tiny = {k: v[(slice(0, 1),) * v.ndim] for k, v in random_weights('vgg16', divisor=16).items()}
    data = vgg_model(tiny, 'v2')
    rng = numpy.random.default_rng(0)
    path = str(tmp_path / 'damaged.caffemodel')
    for trial in range(300):
        if trial % 3 == 0:
            damaged = rng.bytes(int(rng.integers(1, 3000)))
        elif trial % 3 == 1:
            damaged = data[:int(rng.integers(1, len(data)))]
        else:
            damaged = bytearray(data)
            damaged[int(rng.integers(len(data)))] = int(rng.integers(256))
        write(tmp_path / 'damaged.caffemodel', bytes(damaged))
        try:
            caffe.read_caffemodel(path)
        except ValueError as e:
            assert str(e).startswith(path + ': '), trial


def test_png_is_not_a_caffemodel(tmp_path):
    from PIL import Image

    path = str(tmp_path / 'image.caffemodel')
    Image.new('RGB', (16, 16), (200, 30, 90)).save(path, format='PNG')
    with pytest.raises(DecodeError, match='^%s: not a valid caffemodel' % re.escape(path)):
        caffe.read_caffemodel(path)


W = numpy.ones((4, 3, 3, 3), numpy.float32)
B = numpy.ones(4, numpy.float32)


def conv_with_blobs(*blobs):
    return encode_layer('v2', 'conv1_1', 'Convolution', blobs)


@pytest.mark.parametrize('data,error,message', [
    (conv_with_blobs(encode_message([(1, 4), (2, 3), (3, 3), (4, 3),
                                     (5, numpy.zeros(100, numpy.float32))])),
     ValueError, r"layer 'conv1_1' weights: 100 values for shape \(4, 3, 3, 3\)"),
    # As in Caffe, a legacy shape's absent fields are 0, not 1.
    (conv_with_blobs(encode_blob(W, legacy=True), encode_message([(4, 4), (5, B)])),
     ValueError, r"layer 'conv1_1' bias: 4 values for shape \(0, 0, 0, 4\)"),
    (conv_with_blobs(encode_blob(W, legacy=False), encode_blob(B[:3], legacy=False)),
     ValueError, "layer 'conv1_1' has 3 biases for 4 outputs"),
    (conv_with_blobs(encode_blob(W.reshape(4, 27), legacy=False)),
     ValueError, r"layer 'conv1_1' weights have shape \(4, 27\), expected 4 dimensions"),
    (conv_with_blobs(), ValueError, "layer 'conv1_1' holds 0 blobs"),
    (conv_with_blobs(*[encode_blob(B, legacy=False)] * 3), ValueError,
     "layer 'conv1_1' holds 3 blobs"),
    (conv_with_blobs(encode_message([(1, -1), (2, 3), (3, 3), (4, 3)])), ValueError,
     "layer 'conv1_1' weights: negative dimension in shape"),
    (conv_with_blobs(encode_message([(5, 7)])), DecodeError, 'blob values with wire type 0'),
    (conv_with_blobs(encode_blob(W, legacy=False)) * 2, ValueError,
     "two convolution layers are named 'conv1_1'"),
    (encode_field(2, encode_message([(1, encode_message([(1, 'conv1'), (2, 'conv')]))])),
     ValueError, r'a V0 model \(Caffe before 2014\), not supported'),
])
def test_inconsistent_contents(tmp_path, data, error, message):
    path = write(tmp_path / 'odd.caffemodel', data)
    with pytest.raises(error, match=message) as raised:
        caffe.read_caffemodel(path)
    assert str(raised.value).startswith(path + ': ')


# --- the script -----------------------------------------------------------------------------

def run_script(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=120)


def test_script_converts_and_refuses_to_overwrite(tmp_path, real_vgg16):
    path, weights = real_vgg16
    out = str(tmp_path / 'vgg16.npz')
    done = run_script(path, out)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ''
    assert done.stdout.startswith('wrote %s: 13 VGG16 convolution layers in ' % out)
    assert done.stdout.count('\n') == 1
    assert_same(weights_lib.load_weights(out)[1], weights)

    before = os.stat(out).st_mtime_ns
    again = run_script(path, out)
    assert again.returncode == 2
    assert again.stderr == 'error: %s exists (use --force to replace it)\n' % out
    assert os.stat(out).st_mtime_ns == before
    assert run_script(path, out, '--force').returncode == 0
    assert os.listdir(tmp_path) == ['vgg16.npz']


def test_script_is_executable():
    assert os.access(SCRIPT, os.X_OK)
    with open(SCRIPT) as f:
        assert f.readline() == '#!/usr/bin/env python3\n'


@pytest.mark.parametrize('name,make,arch,message', [
    ('absent.caffemodel', None, 'vgg16', 'caffemodel not found: '),
    ('prototxt.caffemodel', lambda: PROTOTXT, 'vgg16', 'not a valid caffemodel'),
    ('truncated.caffemodel', lambda: truncated(*small_model()), 'vgg16',
     'runs past the end'),
    ('small.caffemodel', lambda: small_model('v2')[0], 'vgg19',
     'missing VGG19 convolution layers conv3_4, conv4_4, conv5_4'),
])
def test_script_reports_bad_input_in_one_line(tmp_path, name, make, arch, message):
    path = str(tmp_path / name)
    if make:
        write(tmp_path / name, make())
    before = sorted(os.listdir(tmp_path))
    done = run_script(path, str(tmp_path / 'out.npz'), '--arch', arch)
    assert done.returncode == 2
    assert done.stdout == ''
    assert done.stderr.startswith('error: ') and done.stderr.count('\n') == 1, done.stderr
    assert message in done.stderr and 'Traceback' not in done.stderr
    assert sorted(os.listdir(tmp_path)) == before  # no output, no temporary file
