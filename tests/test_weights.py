"""The weights file format: layer tables, checking, saving, loading (fetching: test_fetch.py)."""
import errno
import hashlib
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile

import numpy
import pytest

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
    assert weights_lib.ARCHS == ('vgg16', 'vgg19')
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
    (lambda w: w.__setitem__('conv1_2/b', numpy.array(['x'] * 64)),
     r'conv1_2/b is not a floating-point array \(<U1\)'),  # numpy.isfinite raised TypeError
])
def test_check_weights_errors(tmp_path, change, message):
    weights = random_weights('vgg16', seed=5)
    change(weights)
    with pytest.raises(ValueError, match=message):
        weights_lib.save_weights(str(tmp_path / 'w.npz'), weights, 'vgg16')
    assert not os.listdir(tmp_path)


def test_file_arch_reads_names_only(tmp_path):
    path = str(tmp_path / 'w19.npz')
    weights_lib.save_weights(path, random_weights('vgg19'), 'vgg19')
    assert weights_lib.file_arch(path) == 'vgg19'
    (tmp_path / 'bad.npz').write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='not a readable weights file'):
        weights_lib.file_arch(str(tmp_path / 'bad.npz'))
    # The message names the command that makes the file.
    with pytest.raises(FileNotFoundError, match='weights file not found: .*none.npz .make it '
                                                'with "chainer-mrf-weights fetch"'):
        weights_lib.file_arch(str(tmp_path / 'none.npz'))


def _npz(**arrays):
    stream = io.BytesIO()
    numpy.savez(stream, **arrays)
    return stream.getvalue()


def _zip(**members):
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, 'w') as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return stream.getvalue()


def _method_99(data):
    """An npz whose central directory names compression method 99 (not one zipfile has)."""
    entry = data.index(b'PK\x01\x02')  # a central directory entry; its method at byte 10
    return data[:entry + 10] + (99).to_bytes(2, 'little') + data[entry + 12:]


SMALL_NPZ = _npz(**{'conv1_1/W': numpy.ones((2, 3, 3, 3), numpy.float32)})
PICKLED = 'it holds pickled Python objects, which are never loaded'


@pytest.mark.parametrize('content,reason,names_only', [
    (pickle.dumps({'conv1_1/W': [0.5]}), PICKLED, False),
    (_npz(a=numpy.array([None, {}], dtype=object)), PICKLED, True),
    (SMALL_NPZ[:len(SMALL_NPZ) // 2], 'File is not a zip file', False),
    (numpy.random.RandomState(0).bytes(300), 'not a zip archive', False),
    (b'', 'it is empty', False),
    (SMALL_NPZ[SMALL_NPZ.index(b'\x93NUMPY'):], 'it holds one array (.npy), not named arrays '
                                                 '(.npz)', False),
    (_method_99(SMALL_NPZ), 'That compression method is not supported', True),
], ids=['pickle', 'object array', 'truncated', 'random bytes', 'empty', 'npy', 'compression'])
def test_an_unreadable_weights_file_is_one_line_without_unsafe_advice(tmp_path, content, reason,
                                                                       names_only):
    path = tmp_path / 'x.npz'
    path.write_bytes(content)
    message = '%s: not a readable weights file (.npz): %s' % (path, reason)
    with pytest.raises(ValueError) as raised:
        weights_lib.load_weights(path)
    assert str(raised.value) == message  # no mention of allow_pickle or pickle.load
    if names_only:  # file_arch reads the names, which are whole
        assert weights_lib.file_arch(path) == 'vgg16'
    else:
        with pytest.raises(ValueError) as raised:
            weights_lib.file_arch(path)
        assert str(raised.value) == message


def test_a_zip_that_is_not_an_npz(tmp_path):
    path = tmp_path / 'notes.npz'
    path.write_bytes(_zip(**{'readme.txt': 'hello'}))
    with pytest.raises(ValueError, match='notes.npz: not VGG16 weights, missing conv1_1/W, '):
        weights_lib.load_weights(path)
    # with the right names but no .npy in them: numpy hands the bytes over as they are
    path.write_bytes(_zip(**{key + '.npy': b'hello' for key in
                             weights_lib.expected_shapes('vgg16')}))
    with pytest.raises(ValueError) as raised:
        weights_lib.load_weights(path)
    assert str(raised.value) == '%s: conv1_1/W is not a floating-point array (bytes)' % path


def test_an_unreadable_weights_path_is_one_line_with_the_reason(tmp_path):
    # the kinds of path load_image refuses (test_image.py): both open files the same way
    loop = tmp_path / 'a.npz'
    os.symlink(tmp_path / 'b.npz', loop)
    os.symlink(loop, tmp_path / 'b.npz')
    too_many = os.strerror(errno.ELOOP)
    for path, reason in [(loop, too_many[:1].lower() + too_many[1:]),
                         (tmp_path, 'it is a folder'), ('/dev/zero', 'not a regular file')]:
        for read in (weights_lib.load_weights, weights_lib.file_arch):
            with pytest.raises(ValueError) as raised:
                read(path)
            assert str(raised.value) == ('%s: not a readable weights file (.npz): %s'
                                         % (path, reason))


def test_the_old_command_says_where_it_went():
    done = subprocess.run([sys.executable, '-m', 'chainer_mrf.weights', 'fetch'], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ''
    assert done.stderr == ('error: the weights command is now "chainer-mrf-weights" '
                           '(or "python -m chainer_mrf.fetch")\n')


# --- the content digest ---------------------------------------------------------------------

def _digest(arrays):
    """The content digest as weights.py's docstring defines it, computed here independently."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        digest.update(('%s\0%s\0%s\0' % (name, array.dtype.str,
                                           ','.join(map(str, array.shape)))).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _rewritten(path, change, comment=None):
    """Rewrites the zip at ``path`` member by member, ``change(name, data)`` giving each
    member's new bytes (``None`` drops it), with valid CRCs; keeps its comment unless given."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
        kept = archive.comment if comment is None else comment
    with zipfile.ZipFile(path, 'w') as archive:
        for name, data in members:
            data = change(name, data)
            if data is not None:
                archive.writestr(name, data)
        archive.comment = kept


def test_a_saved_file_carries_the_digest_of_its_arrays(tmp_path):
    weights = random_weights('vgg16', seed=8)
    path = tmp_path / 'w.npz'
    weights_lib.save_weights(path, weights, 'vgg16')
    digest = _digest(weights)
    with zipfile.ZipFile(path) as archive:
        assert archive.comment == b'chainer-mrf sha256:' + digest.encode()
    assert weights_lib.content_digest(weights) == digest
    arrays, verified = weights_lib.read_arrays(path)
    assert verified == digest and sorted(arrays) == sorted(weights)


def test_a_file_without_a_digest_loads_unverified(tmp_path, random_vgg16_path):
    # As chainer-mrf wrote weights before it stored a digest: numpy.savez.
    weights = weights_lib.read_arrays(random_vgg16_path)[0]
    path = tmp_path / 'old.npz'
    with open(path, 'wb') as f:
        numpy.savez(f, **weights)
    arch, loaded = weights_lib.load_weights(path)
    assert arch == 'vgg16' and all(numpy.array_equal(loaded[k], weights[k]) for k in weights)
    assert weights_lib.read_arrays(path)[1] is None


@pytest.mark.parametrize('change', [
    # A value changed, with a CRC that matches it (the zip sees nothing wrong).
    lambda name, data: data[:-4] + b'\0\0\0\0' if name == 'conv5_3/b.npy' else data,
    # A member gone from the archive (as a damaged directory count drops one).
    lambda name, data: None if name == 'conv1_1/b.npy' else data,
], ids=['value', 'member dropped'])
def test_arrays_that_are_not_those_written_are_refused(tmp_path, random_vgg16_path, change):
    path = tmp_path / 'w.npz'
    shutil.copyfile(random_vgg16_path, path)
    _rewritten(path, change)
    message = ('%s: not a readable weights file (.npz): damaged: sha256 content digest mismatch '
               '(its arrays are not those it was written with); make it again ("chainer-mrf-'
               'weights fetch --force" or scripts/convert_caffemodel.py --force)' % path)
    for read in (weights_lib.load_weights, weights_lib.read_arrays):
        with pytest.raises(ValueError) as raised:
            read(path)
        assert str(raised.value) == message


@pytest.mark.parametrize('comment', [b'chainer-mrf sha256:' + b'0' * 64,
                                     b'chainer-mrf sha256:' + b'0' * 63,
                                     b'made by hand'])
def test_a_comment_that_is_not_the_digest_is_refused(tmp_path, comment):
    path = tmp_path / 'w.npz'
    weights_lib.write_arrays(path, {'a': numpy.arange(3, dtype=numpy.float32)})
    _rewritten(path, lambda name, data: data, comment)
    reason = ('damaged: sha256 content digest mismatch' if len(comment) == 83 else
              'damaged: its zip comment is not a chainer-mrf content digest')
    with pytest.raises(ValueError, match='^%s: not a readable weights file \\(.npz\\): %s'
                                         % (re.escape(str(path)), reason)):
        weights_lib.read_arrays(path)
