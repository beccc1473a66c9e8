"""Caffemodel reading, writing and conversion, on files written with :mod:`chainer_mrf.caffe`'s
writer (and, for malformed ones, protowire's).

Both layouts (V1 ``layers`` as in the official VGG files, and the current ``layer``), VGG16 and
VGG19 names, non-convolution layers to skip, Chainer's own CaffeFunction as a referee, the
errors, the writer's streaming, and scripts/convert_caffemodel.py run as a user would.
"""
import hashlib
import io
import json
import os
import re
import subprocess
import sys

import numpy
import pytest

from chainer_mrf import _io, caffe, protowire
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


#: Run in a fresh process: the growth of its peak resident memory while it reads the file named
#: by argv[1], in bytes. VmHWM is the peak of this process's own memory since its exec;
#: ru_maxrss (the fallback without /proc) can start at the parent's peak (vfork, then exec).
PEAK_GROWTH = r"""
import json, resource, sys
from chainer_mrf import caffe
def peak():
    try:
        with open('/proc/self/status') as f:
            return next(int(l.split()[1]) for l in f if l.startswith('VmHWM:')) * 1024
    except OSError:
        scale = 1 if sys.platform == 'darwin' else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
before = peak()
caffe.read_caffemodel(sys.argv[1])
print(json.dumps(peak() - before))
"""


def test_skipped_blobs_are_never_touched(tmp_path):
    # A 2 GiB fully-connected blob, stored as a hole of a sparse file, before the convolutions.
    # Reading it would map 2 GiB more. Measured in a fresh process, whose peak is its own: in
    # this one, a peak left by an earlier test could hide the growth.
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
    done = subprocess.run([sys.executable, '-c', PEAK_GROWTH, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) < 256 << 20
    assert_same(caffe.read_caffemodel(path), weights)


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


def tiny_model(layout):
    """``(caffemodel bytes, weights)`` of a VGG16-named model whose blobs hold a few values
    (2 x 2 x 1 x 1 weights, 2 biases) between small fully-connected ones, so that random
    damage hits the structure as often as the values."""
    weights = {key: value[:4, :4, :2, :2] if value.ndim == 4 else value[:4]
               for key, value in random_weights('vgg16', divisor=16).items()}
    buf = io.BytesIO()
    caffe.write_vgg_caffemodel(buf, weights, layout, fc=(2, 2, 2),
                               rng=numpy.random.default_rng(1))
    return buf.getvalue(), weights


def damage(data, rng):
    """A damaged copy of ``data`` and what was done: random bytes, a cut, 1 to 8 bytes
    flipped, or a run of up to 64 bytes overwritten."""
    choice = rng.integers(4)
    if choice == 0:
        return rng.bytes(int(rng.integers(1, 3000))), 'random bytes'
    if choice == 1:
        size = int(rng.integers(0, len(data)))
        return data[:size], 'cut to %d bytes' % size
    damaged = bytearray(data)
    if choice == 2:
        places = rng.integers(len(data), size=int(rng.integers(1, 9)))
        for place in places:
            damaged[place] ^= int(rng.integers(1, 256))
        return bytes(damaged), 'bytes %s flipped' % sorted(places.tolist())
    start, size = int(rng.integers(len(data))), int(rng.integers(1, 65))
    damaged[start:start + size] = rng.bytes(size)
    return bytes(damaged[:len(data)]), '%d bytes from %d overwritten' % (size, start)


@pytest.mark.parametrize('layout', ['v1', 'v2'])
def test_damage_is_refused_or_confined_to_the_values_it_hit(tmp_path, monkeypatch, layout):
    """Protobuf has no checksum: a damaged byte inside a float is another float, and parses.
    So each damaged file must be (1) refused by the hash check, the file standing for a
    published one here, whatever the parser makes of it, and (2) refused by the parser in one
    line naming the file, or read with its damage provably confined: every value read is what
    the damaged file holds at that value's place (so only the values whose bytes were hit
    differ); a cut drops whole layers at the end, nothing else; random bytes hold no VGG
    layer. A change of layer names or shapes (a name or shape byte hit) is left to the
    converter's layer check, which refuses a file without every layer at its shape."""
    data, weights = tiny_model(layout)
    places = {}  # the byte offset of each array's values
    for key, array in weights.items():
        assert data.count(array.tobytes()) == 1, key
        places[key] = data.index(array.tobytes())
    monkeypatch.setattr(caffe, 'PUBLISHED', {hashlib.sha1(data).hexdigest():
                                             ('tiny.caffemodel', len(data), 'vgg16')})
    path = write(tmp_path / 'tiny.caffemodel', data)
    assert caffe.check_published(path, 'vgg16').startswith(path + ': the published tiny')
    rng = numpy.random.default_rng(0)
    # Random damage, and a cut after each top-level message (where a cut can parse).
    variants = [damage(data, rng) for _ in range(150)] + [
        (data[:span[1]], 'cut to %d bytes' % span[1]) for _, wire, span in
        protowire.iter_fields(data) if wire == protowire.LENGTH and span[1] < len(data)]
    seen = set()
    for trial, (damaged, how) in enumerate(variants):
        if damaged == data:
            continue
        what = 'variant %d: %s' % (trial, how)
        write(tmp_path / 'tiny.caffemodel', damaged)
        with pytest.raises(ValueError, match='^%s: damaged or altered: it has the name of the '
                                             'published tiny' % re.escape(path)):
            caffe.check_published(path, 'vgg16')
        try:
            found = caffe.read_caffemodel(path)
        except ValueError as error:
            assert str(error).startswith(path + ': ') and '\n' not in str(error), what
            continue
        if how == 'random bytes':
            assert not set(found) & set(weights), what
        elif how.startswith('cut'):
            assert_same(found, {key: weights[key] for key in list(weights)[:len(found)]})
            seen.add('a cut read')
        else:
            for key in set(found) & set(weights):
                if found[key].shape == weights[key].shape:
                    held = numpy.frombuffer(damaged, '<f4', weights[key].size, places[key])
                    numpy.testing.assert_array_equal(found[key].view('<u4').ravel(),
                                                     held.view('<u4'), err_msg=what)
                    if not numpy.array_equal(held.view('<u4'), weights[key].view('<u4').ravel()):
                        seen.add('values hit')
    assert seen == {'a cut read', 'values hit'}  # what the draw must exercise


def test_a_published_file_is_known_by_its_sha1(tmp_path, monkeypatch):
    data, _ = tiny_model('v1')
    digest = hashlib.sha1(data).hexdigest()
    monkeypatch.setattr(caffe, 'PUBLISHED', {digest: ('tiny.caffemodel', len(data), 'vgg16')})
    path = write(tmp_path / 'tiny.caffemodel', data)
    assert caffe.check_published(path, 'vgg16') == (
        '%s: the published tiny.caffemodel (sha1 %s)' % (path, digest))
    with pytest.raises(ValueError, match=r'^%s is the published tiny.caffemodel \(VGG16\): '
                                         'convert it with --arch vgg16, not vgg19$'
                       % re.escape(path)):
        caffe.check_published(path, 'vgg19')
    # Another file: unverified. One with the name or the size but not the hash: refused, or
    # unverified when asked for.
    other = write(tmp_path / 'other.caffemodel', data + b'\0')
    assert caffe.check_published(other, 'vgg16') == (
        '%s: sha1 %s is not a published VGG caffemodel: its values are unverified'
        % (other, hashlib.sha1(data + b'\0').hexdigest()))
    altered = bytearray(data)
    altered[-1] ^= 1
    altered_digest = hashlib.sha1(altered).hexdigest()
    for name, what in [('tiny.caffemodel', 'name'), ('same-size.caffemodel', 'size')]:
        path = write(tmp_path / name, bytes(altered))
        line = '%s: damaged or altered: it has the %s of the published tiny.caffemodel but ' \
               'sha1 %s, not %s' % (path, what, altered_digest, digest)
        with pytest.raises(ValueError) as raised:
            caffe.check_published(path, 'vgg16')
        assert str(raised.value) == line + ' (download it again; --unverified converts it ' \
                                           'anyway)'
        assert caffe.check_published(path, 'vgg16', unverified=True) == (
            line.replace('damaged or altered: ', '') + ': its values are unverified')


def test_the_published_table_names_the_model_zoo_files():
    # The sha1 of the Caffe model zoo's readme for each VGG file; the sizes as Caffe reports
    # reading them.
    assert caffe.PUBLISHED == {
        '9363e1f6d65f7dba68c4f27a1e62105cdf6c4e24': ('VGG_ILSVRC_16_layers.caffemodel',
                                                     553432081, 'vgg16'),
        '239785e7862442717d831f682bb824055e51e9ba': ('VGG_ILSVRC_19_layers.caffemodel',
                                                     574671192, 'vgg19')}


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
    unverified, wrote = done.stdout.splitlines()
    assert unverified == '%s: sha1 %s is not a published VGG caffemodel: its values are ' \
                         'unverified' % (path, _io.file_digest(path, 'sha1'))
    assert wrote.startswith('wrote %s: 13 VGG16 convolution layers in ' % out)
    assert_same(weights_lib.load_weights(out)[1], weights)

    before = os.stat(out).st_mtime_ns
    again = run_script(path, out)
    assert again.returncode == 2
    assert again.stderr == 'error: %s exists (use --force to replace it)\n' % out
    assert os.stat(out).st_mtime_ns == before
    assert run_script(path, out, '--force').returncode == 0
    assert os.listdir(tmp_path) == ['vgg16.npz']


def test_script_refuses_a_file_named_as_a_published_one_with_another_hash(tmp_path, real_vgg16):
    path = str(tmp_path / 'VGG_ILSVRC_16_layers.caffemodel')
    os.symlink(real_vgg16[0], path)
    out = str(tmp_path / 'vgg16.npz')
    done = run_script(path, out)
    assert done.returncode == 2 and done.stdout == ''
    assert done.stderr == (
        'error: %s: damaged or altered: it has the name of the published '
        'VGG_ILSVRC_16_layers.caffemodel but sha1 %s, not 9363e1f6d65f7dba68c4f27a1e62105cdf6c4e24'
        ' (download it again; --unverified converts it anyway)\n' % (path, _io.file_digest(path, 'sha1')))
    assert not os.path.exists(out)
    done = run_script(path, out, '--unverified')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].endswith(': its values are unverified')
    assert_same(weights_lib.load_weights(out)[1], real_vgg16[1])


def test_script_names_a_published_file(tmp_path, monkeypatch, capsys, real_vgg16):
    # The table stands for the published files, whose 528 MB are not at hand.
    path, weights = real_vgg16
    digest = _io.file_digest(path, 'sha1')
    monkeypatch.setattr(caffe, 'PUBLISHED', {digest: ('vgg16.caffemodel', 1, 'vgg16')})
    out = str(tmp_path / 'vgg16.npz')
    assert caffe.main([path, out]) == 0
    published, wrote = capsys.readouterr().out.splitlines()
    assert published == '%s: the published vgg16.caffemodel (sha1 %s)' % (path, digest)
    assert_same(weights_lib.load_weights(out)[1], weights)
    with pytest.raises(ValueError, match='is the published vgg16.caffemodel .VGG16.: convert '
                                         'it with --arch vgg16, not vgg19'):
        caffe.main([path, str(tmp_path / 'vgg19.npz'), '--arch', 'vgg19'])
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
