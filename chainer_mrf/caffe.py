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

Protobuf has no checksum: a damaged byte inside a float payload still parses, as another value.
So the converter identifies a caffemodel by its SHA1 (:func:`check_published`): the two files
the VGG authors published are recognised, a file with one's name or size but another hash is
refused as damaged or altered, and any other file is converted with a line saying that its
values are unverified.

The writer (:func:`write_vgg_caffemodel`, :func:`write_layer`, :func:`encode_blob`) makes the
files that the tests and ``benchmarks/convert_caffemodel.py`` read: both layouts, both blob
shapes, and the ReLU, pooling, fully-connected, dropout and softmax layers around the
convolutions (their ``bottom``, ``top`` and parameter fields, so that Chainer's
``CaffeFunction`` can load them too).

Command line::

    scripts/convert_caffemodel.py VGG_ILSVRC_16_layers.caffemodel models/vgg16.npz
    scripts/convert_caffemodel.py VGG_ILSVRC_19_layers.caffemodel models/vgg19.npz --arch vgg19
"""
import io
import math
import mmap
import os
import sys
import time

import numpy

from chainer_mrf import _cli, _io, protowire
from chainer_mrf import weights as weights_lib

#: Field numbers of the two layouts (caffe.proto): the NetParameter field holding the layers,
#: the layer message's fields, and the field of each kind's parameter message.
LAYOUTS = {
    # V1LayerParameter in NetParameter.layers; its type is an enum (V1_TYPES).
    'v1': {'net': 2, 'name': 4, 'type': 5, 'bottom': 2, 'top': 3, 'blobs': 6,
           'Convolution': 10, 'InnerProduct': 17, 'Pooling': 19},
    # LayerParameter in NetParameter.layer; its type is the kind's name.
    'v2': {'net': 100, 'name': 1, 'type': 2, 'bottom': 3, 'top': 4, 'blobs': 7,
           'Convolution': 106, 'InnerProduct': 117, 'Pooling': 121},
}
#: caffe.proto's V1LayerParameter.LayerType values of the layer kinds that are written here.
V1_TYPES = {'Convolution': 4, 'Dropout': 6, 'InnerProduct': 14, 'Pooling': 17, 'ReLU': 18,
            'Softmax': 20}
_BY_NET_FIELD = {fields['net']: layout for layout, fields in LAYOUTS.items()}
_V1_V0_LAYER = 1
_BLOB_LEGACY_SHAPE = (1, 2, 3, 4)  # num, channels, height, width
_BLOB_DATA, _BLOB_SHAPE, _BLOB_DOUBLE_DATA = 5, 7, 8
_SHAPE_DIM = 1


#: The caffemodels the VGG authors published, by SHA1: ``(file name, size in bytes, arch)``.
#: The hashes are those of the Caffe model zoo's readme front matter (``sha1:``) for
#: http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_16_layers.caffemodel
#: and ..._19_layers.caffemodel; the sizes are the bytes Caffe's protobuf reader reports
#: reading for them.
PUBLISHED = {
    '9363e1f6d65f7dba68c4f27a1e62105cdf6c4e24': ('VGG_ILSVRC_16_layers.caffemodel', 553432081,
                                                 'vgg16'),
    '239785e7862442717d831f682bb824055e51e9ba': ('VGG_ILSVRC_19_layers.caffemodel', 574671192,
                                                 'vgg19'),
}


def check_published(path, arch, unverified=False):
    """Tells, by its SHA1, whether a caffemodel is one of :data:`PUBLISHED`.

    Args:
        path (str or os.PathLike): the caffemodel.
        arch (str): the architecture it is converted as.
        unverified (bool): accept a file that has a published file's name or size but
            another hash (a fine-tuned copy) instead of refusing it. Default: ``False``.

    Returns:
        str: one line: ``PATH: the published VGG_ILSVRC_16_layers.caffemodel (sha1 ...)``, or
        ``PATH: sha1 ... is not a published VGG caffemodel: its values are unverified``.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: naming the file: a published file converted as another architecture, or,
            unless ``unverified``, a file with a published file's name or size but another
            SHA1 (damaged or altered: a damaged float would convert without an error).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError('caffemodel not found: %s' % path)
    digest = _io.file_digest(path, 'sha1')
    if digest in PUBLISHED:
        published, _, published_arch = PUBLISHED[digest]
        if published_arch != arch:
            raise ValueError('%s is the published %s (%s): convert it with --arch %s, not %s'
                             % (path, published, published_arch.upper(), published_arch, arch))
        return '%s: the published %s (sha1 %s)' % (path, published, digest)
    size, base = os.path.getsize(path), os.path.basename(path)
    for published_digest, (published, published_size, _) in PUBLISHED.items():
        if base == published or size == published_size:
            what = 'it has the %s of the published %s but sha1 %s, not %s' % (
                'name' if base == published else 'size', published, digest, published_digest)
            if not unverified:
                raise ValueError('%s: damaged or altered: %s (download it again; --unverified '
                                 'converts it anyway)' % (path, what))
            return '%s: %s: its values are unverified' % (path, what)
    return '%s: sha1 %s is not a published VGG caffemodel: its values are unverified' \
        % (path, digest)


def _type_value(layout, kind):
    """A layer kind as ``layout`` stores it: V1's enum value, or the name itself."""
    if kind not in V1_TYPES:
        raise ValueError('unknown layer kind %r (expected one of: %s)'
                         % (kind, ', '.join(sorted(V1_TYPES))))
    return V1_TYPES[kind] if layout == 'v1' else kind


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
        layout = _BY_NET_FIELD.get(number)
        if layout is None or wire != protowire.LENGTH:
            continue
        layers += 1
        name, is_conv, blobs = _read_layer(buf, span, layout)
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
    fields = LAYOUTS[layout]
    name_field, type_field, blobs_field = fields['name'], fields['type'], fields['blobs']
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
        elif layout == 'v1' and number == _V1_V0_LAYER:
            raise ValueError('a V0 model (Caffe before 2014), not supported: upgrade it with '
                             "Caffe's tools/upgrade_net_proto_binary first")
    return name, kind == _type_value(layout, 'Convolution'), blobs


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


def convert_caffemodel(src, dst, arch='vgg16', unverified=False, report=None):
    """Converts the convolution layers of a VGG caffemodel to a weights file.

    The file is first identified by its SHA1 (:func:`check_published`), then read.

    Args:
        src (str or os.PathLike): the ``.caffemodel``.
        dst (str or os.PathLike): the ``.npz`` to write, atomically; an existing file is
            replaced.
        arch (str): ``'vgg16'`` or ``'vgg19'``. Default: ``'vgg16'``.
        unverified (bool): see :func:`check_published`. Default: ``False``.
        report (callable or None): called with :func:`check_published`'s line once the file
            is written (``print`` shows it). Default: ``None``.

    Returns:
        dict: the arrays written, as returned by :func:`read_caffemodel`.

    Raises:
        FileNotFoundError, protowire.DecodeError, ValueError: see :func:`check_published` and
            :func:`read_caffemodel`; ValueError also for an unknown ``arch`` and for
            convolution layers that are not exactly those of ``arch`` with its shapes (the
            missing ones are named). Nothing is written then.

    Examples:
        >>> convert_caffemodel('VGG_ILSVRC_19_layers.caffemodel', 'models/vgg19.npz',
        ...                    'vgg19', report=print)  # doctest: +SKIP
        VGG_ILSVRC_19_layers.caffemodel: the published VGG_ILSVRC_19_layers.caffemodel (sha1 ...)
    """
    src = os.fspath(src)
    names = [name for name, _, _ in weights_lib.conv_layers(arch)]  # checks arch first
    note = check_published(src, arch, unverified)
    found = read_caffemodel(src)
    missing = [name for name in names if name + '/W' not in found]
    if missing:
        raise ValueError('%s: missing %s convolution layers %s (the file has %d convolution '
                         'layers)' % (src, arch.upper(), ', '.join(missing),
                                      sum(key.endswith('/W') for key in found)))
    # Checked here as well as in save_weights so that an error names the caffemodel, not dst.
    weights_lib.check_weights(found, arch, source=src)
    weights_lib.save_weights(dst, found, arch)
    if report is not None:
        report(note)
    return found


# --- writing (test files and benchmark inputs) --------------------------------------------

#: The outputs of VGG16's and VGG19's fully-connected layers, fc6 to fc8.
VGG_FC = (4096, 4096, 1000)


def _shape(blob):
    return blob.shape if isinstance(blob, numpy.ndarray) else tuple(blob)


def _blob_head(shape, legacy):
    """A BlobProto's fields before its values: the shape, then the key and length of the packed
    float data whose ``4 * prod(shape)`` bytes follow."""
    if legacy:
        if len(shape) > 4:
            raise ValueError('a legacy blob shape has 4 dimensions at most, not %s' % (shape,))
        # Old Caffe left-padded the shape with ones (a bias is 1 x 1 x 1 x out).
        fields = list(zip(_BLOB_LEGACY_SHAPE, (1,) * (4 - len(shape)) + tuple(shape)))
    else:
        fields = [(_BLOB_SHAPE, protowire.encode_message([(_SHAPE_DIM, list(shape))]))]
    return (protowire.encode_message(fields)
            + protowire.encode_length_header(_BLOB_DATA, 4 * math.prod(shape)))


def encode_blob(array, legacy=False):
    """A ``BlobProto`` holding ``array`` as float32, as :func:`write_layer` writes it.

    Args:
        array (numpy.ndarray): the values.
        legacy (bool): give the shape as the legacy 4-d ``num``, ``channels``, ``height``,
            ``width`` (left-padded with ones, as old Caffe wrote it) instead of a ``BlobShape``.
            Default: ``False``.

    Returns:
        bytes: the encoded message.
    """
    array = numpy.ascontiguousarray(array, dtype='<f4')
    return _blob_head(array.shape, legacy) + array.tobytes()


def write_layer(f, layout, name, kind, blobs=(), legacy=None, bottom=None, top=None, param=(),
                rng=None, chunk=1 << 22):
    """Writes one layer of a caffemodel (a NetParameter ``layers`` or ``layer`` field).

    The layer's length is computed from the blobs' shapes first, so their values are written
    as they are drawn: a 400 MB blob never sits in memory.

    Args:
        f: a binary file (or ``io.BytesIO``) open for writing.
        layout (str): ``'v1'`` (``V1LayerParameter``, as in the official VGG files) or
            ``'v2'`` (``LayerParameter``, the current layout).
        name (str): the layer's name.
        kind (str): its type, a key of :data:`V1_TYPES` (``'Convolution'``, ``'ReLU'`` ...).
        blobs (sequence): each a ``numpy`` array (written as float32, with its shape), a shape
            (a tuple: values drawn from ``rng``), or ``bytes``: an encoded ``BlobProto``
            written as it is (a malformed one, for a test). Default: none.
        legacy (bool or None): legacy 4-d blob shapes (see :func:`encode_blob`); ``None``:
            with ``'v1'`` only, as in the official files. Default: ``None``.
        bottom (str or None): the input blob's name; ``None`` omits it. Default: ``None``.
        top (str or None): the output blob's name; ``None`` omits it. Default: ``None``.
        param (sequence): ``(number, value)`` fields of the kind's parameter message
            (``convolution_param``, ``inner_product_param`` or ``pooling_param``; see
            :func:`chainer_mrf.protowire.encode_message`); empty: none. Default: ``()``.
        rng (numpy.random.Generator or None): draws the values of blobs given as shapes,
            standard normal float32; ``None`` writes zeros. Default: ``None``.
        chunk (int): values drawn and written at a time. Default: 4 Mi (16 MiB).

    Raises:
        ValueError: for an unknown kind, or a legacy shape of more than 4 dimensions.
    """
    fields = LAYOUTS[layout]
    legacy = layout == 'v1' if legacy is None else legacy
    head = [(fields[key], value) for key, value in (('bottom', bottom), ('top', top))
            if value is not None]
    head += [(fields['name'], name), (fields['type'], _type_value(layout, kind))]
    if param:
        head.append((fields[kind], protowire.encode_message(param)))
    head = protowire.encode_message(head)
    parts = []  # (bytes up to the values, the values: an array, a shape or None, their size)
    for blob in blobs:
        if isinstance(blob, bytes):
            parts.append((protowire.encode_length_header(fields['blobs'], len(blob)) + blob,
                          None, 0))
            continue
        if isinstance(blob, numpy.ndarray):
            blob = numpy.ascontiguousarray(blob, dtype='<f4')
        blob_head = _blob_head(_shape(blob), legacy)
        size = 4 * math.prod(_shape(blob))
        parts.append((protowire.encode_length_header(fields['blobs'], len(blob_head) + size)
                      + blob_head, blob, size))
    f.write(protowire.encode_length_header(
        fields['net'], len(head) + sum(len(prefix) + size for prefix, _, size in parts)) + head)
    for prefix, values, _ in parts:
        f.write(prefix)
        if isinstance(values, numpy.ndarray):
            f.write(memoryview(values).cast('B'))
        elif values is not None:
            count = math.prod(values)
            for start in range(0, count, chunk):
                n = min(chunk, count - start)
                f.write(numpy.zeros(n, '<f4') if rng is None else
                        rng.standard_normal(n, dtype=numpy.float32).astype('<f4', copy=False))


def encode_layer(layout, name, kind, blobs=(), **options):
    """The bytes :func:`write_layer` writes for one layer (same arguments), for small layers."""
    buf = io.BytesIO()
    write_layer(buf, layout, name, kind, blobs, **options)
    return buf.getvalue()


def write_vgg_caffemodel(f, weights, layout='v1', legacy=None, fc=VGG_FC, rng=None,
                         chunk=1 << 22):
    """Writes a caffemodel laid out as the official VGG ones, for tests and benchmarks.

    The net of the VGG deploy files: a header naming the input (10 x 3 x 224 x 224); each
    convolution (3x3, pad 1) followed by its ReLU, and a max pooling (2x2, stride 2) after each
    block; the fully-connected layers, the first taking the last block's channels x 7 x 7
    inputs, each but the last followed by a ReLU and a dropout; a softmax. Every layer names its
    bottom and top. Blobs are streamed (see :func:`write_layer`): a full-size VGG16 (528 MiB)
    is written in a few MiB of memory.

    Args:
        f: a binary file (or ``io.BytesIO``) open for writing.
        weights (dict): ``'conv1_1/W'``, ``'conv1_1/b'``, ... in forward order (the layers of
            a weights file, with any channel counts), each an array or a shape whose values
            ``rng`` draws (``weights.expected_shapes(arch)`` gives the real ones).
        layout (str): ``'v1'`` or ``'v2'``; see :func:`write_layer`. Default: ``'v1'``.
        legacy (bool or None): see :func:`write_layer`. Default: ``None`` (legacy shapes with
            ``'v1'``, as the official files).
        fc (sequence of int): the outputs of the fully-connected layers ``fc6``, ``fc7`` ...
            Default: :data:`VGG_FC`.
        rng (numpy.random.Generator or None): draws the blobs given as shapes and the
            fully-connected ones, in file order; ``None`` writes zeros. Default: ``None``.
        chunk (int): see :func:`write_layer`. Default: 4 Mi values.
    """
    names = [key[:-2] for key in weights if key.endswith('/W')]
    write = dict(legacy=legacy, rng=rng, chunk=chunk)
    # NetParameter: name (VGG_ILSVRC_16_layers counts the convolutions and the fc layers),
    # input, input_dim.
    f.write(protowire.encode_message(
        [(1, 'VGG_ILSVRC_%d_layers' % (len(names) + len(fc))), (3, 'data')]
        + [(4, d) for d in (10, 3, 224, 224)]))
    bottom = 'data'
    for i, name in enumerate(names):
        blobs = [weights[name + '/W'], weights[name + '/b']]
        # convolution_param: num_output, pad, kernel_size
        write_layer(f, layout, name, 'Convolution', blobs, bottom=bottom, top=name,
                    param=[(1, _shape(blobs[0])[0]), (3, 1), (4, 3)], **write)
        write_layer(f, layout, 'relu' + name[4:], 'ReLU', bottom=name, top=name, **write)
        bottom = name
        block = name.split('_')[0][4:]
        if i + 1 == len(names) or not names[i + 1].startswith('conv%s_' % block):
            # pooling_param: pool MAX (0), kernel_size 2, stride 2
            write_layer(f, layout, 'pool' + block, 'Pooling', bottom=name, top='pool' + block,
                        param=[(1, 0), (2, 2), (3, 2)], **write)
            bottom = 'pool' + block
    inputs = _shape(weights[names[-1] + '/W'])[0] * 7 * 7
    for i, outputs in enumerate(fc):
        name = 'fc%d' % (6 + i)
        # inner_product_param: num_output
        write_layer(f, layout, name, 'InnerProduct', [(outputs, inputs), (outputs,)],
                    bottom=bottom, top=name, param=[(1, outputs)], **write)
        if i + 1 < len(fc):
            write_layer(f, layout, 'relu' + name[2:], 'ReLU', bottom=name, top=name, **write)
            write_layer(f, layout, 'drop' + name[2:], 'Dropout', bottom=name, top=name, **write)
        bottom, inputs = name, outputs
    write_layer(f, layout, 'prob', 'Softmax', bottom=bottom, top='prob', **write)


def main(argv=None):
    """``scripts/convert_caffemodel.py IN.caffemodel OUT.npz [--arch vgg16|vgg19] [--force]
    [--unverified]``: prints what the file is (:func:`check_published`), then what was written.

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
    parser.add_argument('--arch', default='vgg16', choices=weights_lib.ARCHS,
                        help='architecture of the caffemodel (default: vgg16)')
    parser.add_argument('--force', action='store_true', help='replace OUT if it exists')
    parser.add_argument('--unverified', action='store_true',
                        help='convert a file that has the name or size of a published VGG '
                             'caffemodel but not its SHA1 (a fine-tuned copy), which is '
                             'otherwise refused as damaged')
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and not args.force:
        raise ValueError('%s exists (use --force to replace it)' % args.out)
    start = time.perf_counter()
    found = convert_caffemodel(args.caffemodel, args.out, args.arch, args.unverified,
                               report=print)
    print('wrote %s: %d %s convolution layers in %.2f s'
          % (args.out, len(found) // 2, args.arch.upper(), time.perf_counter() - start))
    return 0


if __name__ == '__main__':
    sys.exit(_cli.run(main))
