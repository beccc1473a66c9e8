"""A small reader and writer of the protobuf wire format, enough for Caffe and ONNX weights.

Protobuf messages are sequences of (field number, wire type, value). This module walks them
without a schema and without the ``protobuf`` package: the caller knows which field numbers it
wants. Length-delimited values are returned as ``(start, end)`` offsets into the buffer, so a
500 MB file is never copied: packed floats become ``numpy.frombuffer`` views and sub-messages
are walked in place. The writer exists to build small test files and benchmark inputs.

A buffer is anything indexable by byte that ``numpy.frombuffer`` accepts: ``bytes``,
``memoryview`` or ``mmap.mmap``.
"""
import numpy

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class DecodeError(ValueError):
    """The bytes are not a well-formed protobuf message (truncated, corrupt or another format)."""


def read_varint(buf, pos, end):
    """Decodes one base-128 varint.

    Args:
        buf: the buffer.
        pos (int): offset of the varint's first byte.
        end (int): offset the varint must not reach past.

    Returns:
        tuple: ``(value, offset after the varint)``.

    Raises:
        DecodeError: on truncation or a varint longer than 10 bytes.
    """
    value = 0
    shift = 0
    while pos < end and shift < 70:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    if pos >= end:
        raise DecodeError('truncated varint at byte %d' % pos)
    raise DecodeError('varint longer than 10 bytes at byte %d' % pos)


def iter_fields(buf, start=0, end=None):
    """Walks the fields of one message.

    Args:
        buf: the buffer.
        start (int): offset of the message's first byte. Default: 0.
        end (int): offset just past the message. Default: ``len(buf)``.

    Yields:
        tuple: ``(field_number, wire_type, value)`` where ``value`` is an ``int`` for varints,
        the offset of the 4 or 8 bytes for fixed32/fixed64, and ``(start, end)`` for
        length-delimited fields (strings, bytes, sub-messages, packed arrays).

    Raises:
        DecodeError: on truncation, an unknown wire type, field number 0, or a group
            (deprecated and used by neither Caffe nor ONNX).
    """
    if end is None:
        end = len(buf)
    pos = start
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DecodeError('field number 0 at byte %d' % pos)
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
        elif wire == LENGTH:
            size, pos = read_varint(buf, pos, end)
            value = (pos, pos + size)
            pos += size
        elif wire == FIXED32:
            value = pos
            pos += 4
        elif wire == FIXED64:
            value = pos
            pos += 8
        else:
            raise DecodeError('unsupported wire type %d at byte %d' % (wire, pos))
        if pos > end:
            raise DecodeError('field %d runs past the end of its message (byte %d > %d)'
                              % (number, pos, end))
        yield number, wire, value


def read_string(buf, span):
    """Decodes a length-delimited UTF-8 string given its ``(start, end)`` span."""
    try:
        return bytes(buf[span[0]:span[1]]).decode('utf-8')
    except UnicodeDecodeError as e:
        raise DecodeError('invalid UTF-8 string at byte %d' % span[0]) from e


def read_packed(buf, span, dtype):
    """Returns a read-only ``numpy`` view of a packed fixed-width array (float32, float64...).

    Args:
        buf: the buffer.
        span (tuple): ``(start, end)`` of the packed bytes.
        dtype (str): little-endian fixed-width dtype, e.g. ``'<f4'``.

    Raises:
        DecodeError: if the length is not a multiple of the item size.
    """
    dtype = numpy.dtype(dtype)
    start, end = span
    if (end - start) % dtype.itemsize:
        raise DecodeError('packed %s array of %d bytes at byte %d'
                          % (dtype.name, end - start, start))
    return numpy.frombuffer(buf, dtype=dtype, count=(end - start) // dtype.itemsize,
                            offset=start)


def read_packed_varints(buf, span):
    """Decodes a packed array of varints (e.g. ``repeated int64 dims``) into a list of ints."""
    values = []
    pos, end = span
    while pos < end:
        value, pos = read_varint(buf, pos, end)
        values.append(value)
    return values


# --- writer (test files and benchmark inputs) ---------------------------------------------

def encode_varint(value):
    """Encodes a non-negative integer (or a negative int64, as 10 bytes) as a varint."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_field(number, value):
    """Encodes one field: an ``int`` as a varint, ``str``/``bytes`` as length-delimited.

    A sub-message is passed as the ``bytes`` of its encoding. Packed arrays are passed as
    ``numpy`` arrays (fixed width, encoded little-endian) or ``list`` of ints (varints).
    """
    if isinstance(value, int):
        return encode_varint(number << 3 | VARINT) + encode_varint(value)
    if isinstance(value, str):
        value = value.encode('utf-8')
    elif isinstance(value, numpy.ndarray):
        value = value.astype(value.dtype.newbyteorder('<'), copy=False).tobytes()
    elif isinstance(value, list):
        value = b''.join(encode_varint(v) for v in value)
    return encode_length_header(number, len(value)) + bytes(value)


def encode_length_header(number, size):
    """The key and length of a length-delimited field whose ``size`` bytes the caller writes
    next: how a large value (a 400 MB blob) is streamed rather than built in memory."""
    return encode_varint(number << 3 | LENGTH) + encode_varint(size)


def encode_message(fields):
    """Encodes a message from ``(number, value)`` pairs, in order (see :func:`encode_field`)."""
    return b''.join(encode_field(number, value) for number, value in fields)
