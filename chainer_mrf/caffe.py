"""Convolution weights out of a ``.caffemodel``, read with protowire (no ``protobuf`` package).

A caffemodel is a serialised ``NetParameter``. The field numbers below are those of Caffe's
``caffe.proto`` (as compiled into ``chainer/links/caffe/protobuf3/caffe_pb2.py``):

- ``NetParameter.layers`` (2) holds ``V1LayerParameter``, the layout of the official
  ``VGG_ILSVRC_16_layers.caffemodel`` and ``VGG_ILSVRC_19_layers.caffemodel``: ``name`` (4),
  ``type`` (5, an enum where ``CONVOLUTION`` = 4), ``blobs`` (6). Its ``layer`` (1) wraps a V0
  layer, which is refused.
- ``NetParameter.layer`` (100) holds ``LayerParameter``, the newer layout: ``name`` (1),
  ``type`` (2, the string ``"Convolution"``), ``blobs`` (7).
- ``BlobProto``: the legacy 4-d shape ``num``, ``channels``, ``height``, ``width`` (1 to 4),
  ``data`` (5, packed float), ``shape`` (7, a ``BlobShape`` whose ``dim`` (1) is packed int64)
  and ``double_data`` (8, packed double).

The file is memory-mapped and walked in place: only the convolution blobs are read and copied,
so the 400 MB fully-connected blob of VGG16's ``fc6`` is skipped without being touched.

Command line::

    scripts/convert_caffemodel.py VGG_ILSVRC_16_layers.caffemodel models/vgg16.npz
    scripts/convert_caffemodel.py VGG_ILSVRC_19_layers.caffemodel models/vgg19.npz --arch vgg19
"""
import math
import mmap
import os
import sys
import time

import numpy

from chainer_mrf import _cli, protowire
from chainer_mrf import weights as weights_lib

_NET_LAYERS_V1, _NET_LAYER = 2, 100
#: NetParameter fields holding layers, mapped to the layer message's (name, type, blobs) field
#: numbers and the type value of a convolution.
_LAYOUTS = {
    _NET_LAYERS_V1: (4, 5, 6, 4),           # V1LayerParameter, type enum CONVOLUTION
    _NET_LAYER: (1, 2, 7, 'Convolution'),   # LayerParameter, type string
}
_V1_V0_LAYER = 1
_BLOB_LEGACY_SHAPE = (1, 2, 3, 4)  # num, channels, height, width
_BLOB_DATA, _BLOB_SHAPE, _BLOB_DOUBLE_DATA = 5, 7, 8
_SHAPE_DIM = 1


def read_caffemodel(path):
    """Reads the weights and biases of every convolution layer of a caffemodel.

    Args:
        path (str or os.PathLike): a serialised Caffe ``NetParameter``, in the V1 (``layers``)
            or the current (``layer``) layout.

    Returns:
        dict: ``{'conv1_1/W': array, 'conv1_1/b': array, ...}`` in file order: float32 copies,
        weights shaped (out, in, kh, kw) and biases (out,). A convolution without a bias
        (``bias_term: false``) has no ``/b`` entry. Other layers are skipped.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        protowire.DecodeError: if the file is empty, truncated, corrupt or not a caffemodel.
        ValueError: for a V0 model, two convolutions with one name, a blob whose value count
            does not match its shape or with a negative dimension, or a convolution whose
            blobs are not a 4-d weight and an optional bias of matching size.
        Every message names ``path``.

    Examples:
        >>> weights = read_caffemodel('VGG_ILSVRC_16_layers.caffemodel')  # doctest: +SKIP
        >>> weights['conv1_1/W'].shape  # doctest: +SKIP
        (64, 3, 3, 3)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError('caffemodel not found: %s' % path)
    if os.path.getsize(path) == 0:  # mmap refuses empty files
        raise protowire.DecodeError('%s: empty file, not a caffemodel' % path)
    try:
        # Arrays returned by _read_net are copies: no view of the mapping outlives it, which
        # mmap.close() would refuse.
        with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _read_net(buf)
    except protowire.DecodeError as e:
        raise protowire.DecodeError('%s: not a valid caffemodel (truncated, corrupt or another '
                                    'format): %s' % (path, e)) from None
    except ValueError as e:
        raise ValueError('%s: %s' % (path, e)) from None


def _read_net(buf):
    found = {}
    layers = 0
    for number, wire, span in protowire.iter_fields(buf):
        if number not in _LAYOUTS or wire != protowire.LENGTH:
            continue
        layers += 1
        name, is_conv, blobs = _read_layer(buf, span, number)
        if not is_conv:
            continue
        if name + '/W' in found:
            raise ValueError('two convolution layers are named %r' % name)
        found.update(_read_conv(buf, name, blobs))
    if not layers:
        raise protowire.DecodeError('no layers')
    return found


def _read_layer(buf, span, layout):
    """Returns ``(name, is_convolution, blob spans)`` of one layer message."""
    name_field, type_field, blobs_field, conv_type = _LAYOUTS[layout]
    name, kind, blobs = '', None, []
    for number, wire, value in protowire.iter_fields(buf, *span):
        if number == name_field and wire == protowire.LENGTH:
            name = protowire.read_string(buf, value)
        elif number == type_field and wire == protowire.VARINT:
            kind = value  # V1 enum
        elif number == type_field and wire == protowire.LENGTH:
            kind = protowire.read_string(buf, value)
        elif number == blobs_field and wire == protowire.LENGTH:
            blobs.append(value)
        elif layout == _NET_LAYERS_V1 and number == _V1_V0_LAYER:
            raise ValueError('a V0 model (Caffe before 2014), not supported: upgrade it with '
                             "Caffe's tools/upgrade_net_proto_binary first")
    return name, kind == conv_type, blobs


def _read_conv(buf, name, blobs):
    """Reads a convolution's weights (out, in, kh, kw) and optional bias (out,)."""
    if len(blobs) not in (1, 2):
        raise ValueError('convolution layer %r holds %d blobs, expected weights and an '
                         'optional bias' % (name, len(blobs)))
    weight = _read_blob(buf, blobs[0], 'layer %r weights' % name)
    if weight.ndim != 4:
        raise ValueError('layer %r weights have shape %s, expected 4 dimensions'
                         % (name, weight.shape))
    arrays = {name + '/W': weight}
    if len(blobs) == 2:
        bias = _read_blob(buf, blobs[1], 'layer %r bias' % name)
        if bias.size != weight.shape[0]:
            raise ValueError('layer %r has %d biases for %d outputs'
                             % (name, bias.size, weight.shape[0]))
        # Old Caffe stored biases as (1, 1, 1, out).
        arrays[name + '/b'] = bias.reshape(-1)
    return arrays


def _read_blob(buf, span, what):
    """Reads a ``BlobProto`` into a float32 array of its shape."""
    legacy, dims, floats, doubles = {}, [], [], []
    for number, wire, value in protowire.iter_fields(buf, *span):
        if number in _BLOB_LEGACY_SHAPE and wire == protowire.VARINT:
            legacy[number] = value
        elif number == _BLOB_SHAPE and wire == protowire.LENGTH:
            dims += _read_dims(buf, value)
        elif number == _BLOB_DATA:
            floats.append(_values_span(wire, value, protowire.FIXED32, 4))
        elif number == _BLOB_DOUBLE_DATA:
            doubles.append(_values_span(wire, value, protowire.FIXED64, 8))
    # As Caffe's Blob::FromProto: any legacy field means a 4-d shape whose absent fields are 0,
    # and double_data, when present, wins over data.
    shape = tuple(legacy.get(n, 0) for n in _BLOB_LEGACY_SHAPE) if legacy else tuple(dims)
    if any(d >= 1 << 63 for d in shape):  # a negative int32/int64 is encoded as a huge varint
        raise ValueError('%s: negative dimension in shape' % what)
    values = _copy_values(buf, doubles, '<f8') if doubles else _copy_values(buf, floats, '<f4')
    if values.size != math.prod(shape):
        raise ValueError('%s: %d values for shape %s' % (what, values.size, shape))
    return values.reshape(shape)


def _read_dims(buf, span):
    dims = []
    for number, wire, value in protowire.iter_fields(buf, *span):
        if number == _SHAPE_DIM:
            # Packed is what Caffe writes, but the unpacked encoding is legal too.
            dims += protowire.read_packed_varints(buf, value) if wire == protowire.LENGTH \
                else [value]
    return dims


def _values_span(wire, value, fixed_wire, size):
    """The byte span of a packed array, or of one value encoded unpacked (also legal)."""
    if wire == protowire.LENGTH:
        return value
    if wire == fixed_wire:
        return value, value + size
    raise protowire.DecodeError('blob values with wire type %d' % wire)


def _copy_values(buf, spans, dtype):
    """Concatenates packed spans into a new float32 array (a copy: no view of ``buf`` is kept)."""
    if not spans:
        return numpy.zeros(0, numpy.float32)
    return numpy.concatenate([protowire.read_packed(buf, span, dtype) for span in spans]) \
        .astype(numpy.float32, copy=False)


def convert_caffemodel(src, dst, arch='vgg16'):
    """Converts the convolution layers of a VGG caffemodel to a weights file.

    Args:
        src (str or os.PathLike): the ``.caffemodel``.
        dst (str or os.PathLike): the ``.npz`` to write, atomically; an existing file is
            replaced.
        arch (str): ``'vgg16'`` or ``'vgg19'``. Default: ``'vgg16'``.

    Returns:
        dict: the arrays written, as returned by :func:`read_caffemodel`.

    Raises:
        FileNotFoundError, protowire.DecodeError, ValueError: see :func:`read_caffemodel`;
            ValueError also for an unknown ``arch`` and for convolution layers that are not
            exactly those of ``arch`` with its shapes (the missing ones are named). Nothing
            is written then.

    Examples:
        >>> convert_caffemodel('VGG_ILSVRC_19_layers.caffemodel', 'models/vgg19.npz',
        ...                    'vgg19')  # doctest: +SKIP
    """
    src = os.fspath(src)
    names = [name for name, _, _ in weights_lib.conv_layers(arch)]  # checks arch first
    found = read_caffemodel(src)
    missing = [name for name in names if name + '/W' not in found]
    if missing:
        raise ValueError('%s: missing %s convolution layers %s (the file has %d convolution '
                         'layers)' % (src, arch.upper(), ', '.join(missing),
                                      sum(key.endswith('/W') for key in found)))
    # Checked here as well as in save_weights so that an error names the caffemodel, not dst.
    weights_lib.check_weights(found, arch, source=src)
    weights_lib.save_weights(dst, found, arch)
    return found


def main(argv=None):
    """``scripts/convert_caffemodel.py IN.caffemodel OUT.npz [--arch vgg16|vgg19] [--force]``.

    Args:
        argv (list of str or None): the arguments; ``None`` reads ``sys.argv``. Default:
            ``None``.

    Returns:
        int: 0; errors are raised for :func:`chainer_mrf._cli.run` to report.
    """
    parser = _cli.ArgumentParser(
        description='Convert the convolution layers of a VGG16 or VGG19 caffemodel to a '
                    'chainer-mrf weights file (.npz).')
    parser.add_argument('caffemodel', help='input, e.g. VGG_ILSVRC_16_layers.caffemodel')
    parser.add_argument('out', help='output .npz, e.g. models/vgg16.npz')
    parser.add_argument('--arch', default='vgg16', choices=('vgg16', 'vgg19'),
                        help='architecture of the caffemodel (default: vgg16)')
    parser.add_argument('--force', action='store_true', help='replace OUT if it exists')
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and not args.force:
        raise ValueError('%s exists (use --force to replace it)' % args.out)
    start = time.perf_counter()
    found = convert_caffemodel(args.caffemodel, args.out, args.arch)
    print('wrote %s: %d %s convolution layers in %.2f s'
          % (args.out, len(found) // 2, args.arch.upper(), time.perf_counter() - start))
    return 0


if __name__ == '__main__':
    sys.exit(_cli.run(main))
