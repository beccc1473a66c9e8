"""Float tensors out of an ONNX file, with :mod:`chainer_mrf.protowire` (no ``onnx`` package).

Only what weight extraction needs: the graph's initializers (``ModelProto.graph`` = field 7,
``GraphProto.initializer`` = field 5) of type FLOAT, stored as ``raw_data`` or ``float_data``.
"""
import numpy

from chainer_mrf import protowire

_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_FLOAT_DATA, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 4, 8, 9
_TENSOR_DATA_LOCATION = 14
_FLOAT = 1


def read_initializers(buf, names=None):
    """Reads the float32 initializers of an ONNX model.

    Args:
        buf (bytes or memoryview or mmap.mmap): the serialised ``ModelProto``.
        names (set of str or None): names to keep; ``None`` keeps every float initializer.
            Default: ``None``.

    Returns:
        dict: ``{name: numpy.ndarray}``, float32 arrays with the stored shapes (copies, so they
        outlive ``buf``).

    Raises:
        protowire.DecodeError: if ``buf`` is not a well-formed ONNX model.
        ValueError: if a wanted initializer is stored outside the file or is not float32.

    Examples:
        >>> with open('model.onnx', 'rb') as f:  # doctest: +SKIP
        ...     tensors = read_initializers(f.read())
    """
    graphs = [v for n, w, v in protowire.iter_fields(buf)
              if n == _MODEL_GRAPH and w == protowire.LENGTH]
    if not graphs:
        raise protowire.DecodeError('no graph in the ONNX model')
    out = {}
    for graph in graphs:
        for n, w, span in protowire.iter_fields(buf, *graph):
            if n == _GRAPH_INITIALIZER and w == protowire.LENGTH:
                name, array = _read_tensor(buf, span, names)
                if array is not None:
                    out[name] = array
    return out


def _read_tensor(buf, span, names):
    name, dims, dtype, data, external = '', [], None, None, False
    float_data = []
    for n, w, v in protowire.iter_fields(buf, *span):
        if n == _TENSOR_NAME and w == protowire.LENGTH:
            name = protowire.read_string(buf, v)
        elif n == _TENSOR_DIMS:
            # proto3 packs repeated ints, but unpacked encodings are legal too.
            dims += protowire.read_packed_varints(buf, v) if w == protowire.LENGTH else [v]
        elif n == _TENSOR_TYPE and w == protowire.VARINT:
            dtype = v
        elif n == _TENSOR_RAW and w == protowire.LENGTH:
            data = v
        elif n == _TENSOR_FLOAT_DATA:
            float_data.append(protowire.read_packed(buf, v, '<f4') if w == protowire.LENGTH
                              else protowire.read_packed(buf, (v, v + 4), '<f4'))
        elif n == _TENSOR_DATA_LOCATION and w == protowire.VARINT:
            external = v == 1
    if names is not None and name not in names:
        return name, None
    if dtype != _FLOAT:
        if names is None:
            return name, None
        raise ValueError('ONNX initializer %r is not float32 (data type %s)' % (name, dtype))
    if external:
        raise ValueError('ONNX initializer %r is stored in an external file' % name)
    values = (protowire.read_packed(buf, data, '<f4') if data is not None
              else numpy.concatenate(float_data) if float_data else numpy.zeros(0, 'f'))
    if values.size != int(numpy.prod(dims)):
        raise protowire.DecodeError('ONNX initializer %r holds %d values for shape %s'
                                    % (name, values.size, tuple(dims)))
    return name, values.reshape(dims).astype(numpy.float32, copy=True)
