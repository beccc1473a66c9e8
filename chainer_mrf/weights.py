"""VGG weights files: the layer tables, checking, saving and loading ``models/vgg16.npz``.

A weights file is an uncompressed ``.npz`` holding ``conv{B}_{C}/W`` (float32, (out, in, 3, 3),
input channels BGR, for Caffe-preprocessed input) and ``conv{B}_{C}/b`` (float32, (out,)) for
every convolution layer of VGG16 or VGG19, nothing else.

Its zip comment holds a content digest, ``chainer-mrf sha256:HEX``, the sha256 of every array's
name, dtype, shape and bytes (:func:`content_digest`); loading recomputes it and refuses a file
whose arrays do not match. The zip format's own CRC-32 of each member catches damage to the
members' bytes; the digest also covers what the CRCs do not: which members the archive lists (a
damaged central directory can drop one), and a member rewritten whole with a valid CRC. A file
without a comment (written before the digest, or by ``numpy.savez``) still loads, unverified.

This module is the format only. Files are made by :mod:`chainer_mrf.fetch` (the
``chainer-mrf-weights fetch`` command) or converted from a caffemodel by :mod:`chainer_mrf.caffe`
(``scripts/convert_caffemodel.py``); ``chainer-mrf-weights check`` tells what one holds.
"""
import errno
import hashlib
import os
import pickle
import re
import sys
import zipfile
import zlib

import numpy

from chainer_mrf import _io

#: Convolution blocks of each architecture: (layers per block, output channels).
_BLOCKS = {
    'vgg16': ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),
    'vgg19': ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),
}
#: The architectures a weights file may hold.
ARCHS = tuple(sorted(_BLOCKS))


def conv_layers(arch):
    """Lists the convolution layers of an architecture.

    Args:
        arch (str): ``'vgg16'`` or ``'vgg19'``.

    Returns:
        list: ``(name, in_channels, out_channels)`` in forward order, e.g.
        ``('conv1_1', 3, 64)``.

    Raises:
        ValueError: for an unknown architecture.
    """
    if arch not in _BLOCKS:
        raise ValueError('unknown architecture %r (expected one of: %s)'
                         % (arch, ', '.join(sorted(_BLOCKS))))
    layers, channels = [], 3
    for block, (count, out) in enumerate(_BLOCKS[arch], 1):
        for i in range(1, count + 1):
            layers.append(('conv%d_%d' % (block, i), channels, out))
            channels = out
    return layers


def expected_shapes(arch):
    """Returns ``{key: shape}`` of every array a weights file of ``arch`` holds."""
    shapes = {}
    for name, cin, cout in conv_layers(arch):
        shapes[name + '/W'] = (cout, cin, 3, 3)
        shapes[name + '/b'] = (cout,)
    return shapes


def check_weights(weights, arch, source='weights'):
    """Checks that ``weights`` holds exactly the layers of ``arch`` with the right shapes.

    Args:
        weights (dict): ``{key: array}`` as described in the module docstring.
        arch (str): ``'vgg16'`` or ``'vgg19'``.
        source (str): what to call the weights in error messages (a file name). Default:
            ``'weights'``.

    Raises:
        ValueError: naming the first missing or unexpected array, or one that is not a
            floating-point array of the layer's shape with finite values.
    """
    expected = expected_shapes(arch)
    missing = [k for k in expected if k not in weights]
    if missing:
        raise ValueError('%s: not %s weights, missing %s' % (source, arch.upper(),
                                                             ', '.join(missing[:4])
                                                             + (' ...' if len(missing) > 4 else '')))
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise ValueError('%s: unexpected arrays for %s: %s' % (source, arch.upper(),
                                                               ', '.join(extra[:4])))
    for key, shape in expected.items():
        array = weights[key]
        if not isinstance(array, numpy.ndarray) or array.dtype.kind != 'f':
            raise ValueError('%s: %s is not a floating-point array (%s)'
                             % (source, key, getattr(array, 'dtype', type(array).__name__)))
        if tuple(array.shape) != shape:
            raise ValueError('%s: %s has shape %s, expected %s'
                             % (source, key, tuple(array.shape), shape))
        if not numpy.all(numpy.isfinite(array)):
            raise ValueError('%s: %s holds non-finite values' % (source, key))


def save_weights(path, weights, arch):
    """Checks ``weights`` (see :func:`check_weights`) and writes them atomically as float32 npz,
    with their content digest (:func:`write_arrays`)."""
    check_weights(weights, arch, source=os.fspath(path))
    write_arrays(path, {k: numpy.ascontiguousarray(v, dtype=numpy.float32)
                        for k, v in weights.items()})


def write_arrays(path, arrays):
    """Writes ``{name: array}`` atomically as an uncompressed npz whose zip comment is their
    content digest (:func:`content_digest`), as ``numpy.savez`` lays the members out.

    Args:
        path (str or os.PathLike): the file; its folder is made if missing.
        arrays (dict): numeric arrays (no object arrays), stored as they are.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with _io.atomic_path(path) as tmp, zipfile.ZipFile(tmp, 'w') as archive:
        for name, array in arrays.items():
            with archive.open(name + '.npy', 'w', force_zip64=True) as member:
                numpy.lib.format.write_array(member, numpy.asanyarray(array),
                                             allow_pickle=False)
        archive.comment = _DIGEST_PREFIX + content_digest(arrays).encode('ascii')


def content_digest(arrays):
    """The hex sha256 of ``{name: array}``: for each name in sorted order, the name (UTF-8),
    the little-endian dtype (``dtype.str``, e.g. ``<f4``) and the shape (``64,3,3,3``), each
    followed by a NUL byte, then the array's bytes, little-endian, in C order. Independent of
    how and where the arrays are stored (zip layout, members' order, compression, the
    machine's byte order)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = numpy.asarray(arrays[name])
        array = numpy.ascontiguousarray(array, dtype=array.dtype.newbyteorder('<'))
        digest.update(b'%s\0%s\0%s\0' % (name.encode('utf-8'), array.dtype.str.encode('ascii'),
                                          ','.join(map(str, array.shape)).encode('ascii')))
        digest.update(memoryview(array).cast('B'))
    return digest.hexdigest()


def read_arrays(path):
    """Reads every array of a weights file, verified against its content digest.

    Args:
        path (str or os.PathLike): an ``.npz``.

    Returns:
        tuple: ``({name: array}, digest)``: the arrays as stored, and the hex content digest
        they were verified against, or ``None`` for a file without one (unverified: only the
        zip CRCs checked them).

    Raises:
        FileNotFoundError, ValueError: as :func:`load_weights`; ValueError also (``PATH: not a
            readable weights file (.npz): damaged: ...``) when the arrays do not match the
            digest, or the zip comment is not a content digest.
    """
    path = os.fspath(path)
    arrays, comment = _read(path, lambda npz: ({k: npz[k] for k in npz.files}, npz.zip.comment))
    if not comment:
        return arrays, None
    stored = _DIGEST.fullmatch(comment)
    if stored is None:
        raise _unreadable(path, 'damaged: its zip comment is not a chainer-mrf content digest')
    stored = stored.group(1).decode('ascii')
    if content_digest(arrays) != stored:
        raise _unreadable(path, 'damaged: sha256 content digest mismatch (its arrays are not '
                                'those it was written with); make it again ("chainer-mrf-weights '
                                'fetch --force" or scripts/convert_caffemodel.py --force)')
    return arrays, stored


def load_weights(path):
    """Reads a weights file, verified against its content digest, and tells which architecture
    it holds.

    Args:
        path (str or os.PathLike): an ``.npz`` written by :func:`save_weights` (or, without a
            content digest, by an older version or ``numpy.savez``: loaded unverified).

    Returns:
        tuple: ``(arch, {key: float32 array})``.

    Raises:
        FileNotFoundError: if ``path`` does not exist (the message says how to make it).
        ValueError: if the file cannot be read (``PATH: not a readable weights file (.npz):
            REASON``: a folder, a broken link, no permission, not an npz, damaged (a zip CRC
            or the content digest does not match), pickled objects) or is not an npz of VGG16
            or VGG19 convolution weights.
    """
    path = os.fspath(path)
    weights, _ = read_arrays(path)
    arch = _arch_of(weights)
    check_weights(weights, arch, source=path)
    return arch, {k: v.astype(numpy.float32, copy=False) for k, v in weights.items()}


def file_arch(path):
    """The architecture a weights file holds, judged from its array names (no data is read).

    Raises:
        FileNotFoundError, ValueError: as :func:`load_weights`, for a missing or unreadable
            file (the arrays themselves are checked when the file is loaded).
    """
    return _arch_of(_read(os.fspath(path), lambda npz: npz.files))


def _arch_of(names):
    return 'vgg19' if 'conv3_4/W' in names else 'vgg16'


#: What a damaged npz makes numpy.load or zipfile raise (RuntimeError: an encrypted member,
#: and NotImplementedError, a subclass: an unknown compression method or zip version).
_NPZ_ERRORS = (OSError, EOFError, ValueError, KeyError, RuntimeError, MemoryError,
               zipfile.BadZipFile, zlib.error)
#: The zip comment :func:`write_arrays` writes: this prefix, then the hex content digest.
_DIGEST_PREFIX = b'chainer-mrf sha256:'
_DIGEST = re.compile(re.escape(_DIGEST_PREFIX) + rb'([0-9a-f]{64})')
#: The first bytes numpy.load takes for a zip archive, i.e. an npz.
_ZIP_HEADS = (b'PK\x03\x04', b'PK\x05\x06')
#: The first bytes of a pickle of protocol 2 or later.
_PICKLE_HEADS = tuple(bytes([0x80, protocol])
                      for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1))
_PICKLED = 'it holds pickled Python objects, which are never loaded'


def _read(path, read):
    """``read(npz)`` on the opened file, with one clear error for a missing or bad file."""
    try:
        stream = _io.open_regular(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            'weights file not found: %s (make it with "chainer-mrf-weights fetch" or '
            'scripts/convert_caffemodel.py)' % path) from None
    except OSError as e:
        raise _unreadable(path, e.strerror) from None
    with stream:
        head = stream.read(len(numpy.lib.format.MAGIC_PREFIX))
        stream.seek(0)
        if not head.startswith(_ZIP_HEADS):
            # numpy.load would read a .npy, or refuse anything else as a pickle and advise
            # loading it unsafely.
            raise _unreadable(path, _not_zip(head))
        try:
            with numpy.load(stream, allow_pickle=False) as npz:
                return read(npz)
        except _NPZ_ERRORS as e:
            # numpy refuses an object array by advising allow_pickle=True: say why instead.
            raise _unreadable(path, _PICKLED if 'allow_pickle' in str(e) else _reason(e)) \
                from None


def _unreadable(path, reason):
    return ValueError('%s: not a readable weights file (.npz): %s' % (path, reason))


def _reason(error):
    """What a zip or npz error says, or what it means where it says nothing useful."""
    if isinstance(error, EOFError) and not str(error):
        return 'damaged: a member ends before its data do'
    if isinstance(error, OSError) and error.errno == errno.EINVAL:  # a seek before the start
        return 'damaged: an offset in its zip directory is out of range'
    return str(error) or type(error).__name__


def _not_zip(head):
    """What a file starting with ``head``, not a zip archive, is instead."""
    if not head:
        return 'it is empty'
    if head == numpy.lib.format.MAGIC_PREFIX:
        return 'it holds one array (.npy), not named arrays (.npz)'
    if head.startswith(_PICKLE_HEADS):
        return _PICKLED
    return 'not a zip archive'


def models_dir():
    """The folder where weights are looked for and written.

    ``$CHAINER_MRF_MODELS`` if set; else the ``models/`` folder of a source checkout (where
    ``pip install -e .`` keeps the package); else ``~/.cache/chainer-mrf``.
    """
    env = os.environ.get('CHAINER_MRF_MODELS')
    if env:
        return env
    checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'models')
    if os.path.isfile(os.path.join(checkout, 'README.md')):
        return checkout
    return os.path.join(os.path.expanduser('~'), '.cache', 'chainer-mrf')


def default_path(arch='vgg16'):
    """``models_dir()/<arch>.npz``."""
    conv_layers(arch)  # validates arch
    return os.path.join(models_dir(), arch + '.npz')


if __name__ == '__main__':  # the weights command's old place: say where it went
    print('error: the weights command is now "chainer-mrf-weights" (or "python -m '
          'chainer_mrf.fetch")', file=sys.stderr)
    sys.exit(2)
