"""The protobuf wire reader and writer, against hand-encoded known answers."""
import mmap

import numpy
import pytest

from chainer_mrf import protowire
from chainer_mrf.protowire import DecodeError


@pytest.mark.parametrize('value,encoded', [
    (0, b'\x00'),
    (1, b'\x01'),
    (127, b'\x7f'),
    (128, b'\x80\x01'),
    (300, b'\xac\x02'),  # the example of the protobuf encoding guide
    (2 ** 63 - 1, b'\xff' * 8 + b'\x7f'),
    (2 ** 64 - 1, b'\xff' * 9 + b'\x01'),
    (-1, b'\xff' * 9 + b'\x01'),  # negative int64: two's complement, always 10 bytes
    (-2 ** 63, b'\x80' * 9 + b'\x01'),
])
def test_varint_known_answers_and_round_trip(value, encoded):
    assert protowire.encode_varint(value) == encoded
    buf = b'\x99' + encoded + b'\x05'  # decoded from an offset, and stops at its last byte
    assert protowire.read_varint(buf, 1, len(buf)) == (value % 2 ** 64, 1 + len(encoded))


def test_varint_round_trip_many():
    rng = numpy.random.RandomState(0)
    values = [int(v) for v in rng.randint(0, 2 ** 62, size=200, dtype=numpy.int64)]
    values += [2 ** k - d for k in range(1, 65) for d in (0, 1)]
    for value in values:
        encoded = protowire.encode_varint(value)
        assert len(encoded) == max(1, -(-value.bit_length() // 7))
        assert protowire.read_varint(encoded, 0, len(encoded)) == (value, len(encoded))


def test_truncated_and_overlong_varints():
    with pytest.raises(DecodeError, match='truncated varint at byte 2'):
        protowire.read_varint(b'\x80\x80', 0, 2)
    # The end bound is honoured even where the buffer goes on.
    with pytest.raises(DecodeError, match='truncated varint'):
        protowire.read_varint(b'\xac\x02', 0, 1)
    with pytest.raises(DecodeError, match='longer than 10 bytes'):
        protowire.read_varint(b'\x80' * 10 + b'\x01', 0, 11)


def test_iter_fields_all_wire_types():
    buf = (b'\x08\x96\x01'          # field 1, varint 150
           b'\x12\x07testing'       # field 2, string
           b'\x1d\x00\x00\xc0\x3f'  # field 3, fixed32 (1.5f)
           b'\x21' + b'\x00' * 7 + b'\x40'  # field 4, fixed64 (2.0)
           + b'\xa2\x06\x00')       # field 100, empty length-delimited
    fields = list(protowire.iter_fields(buf))
    assert fields == [(1, 0, 150), (2, 2, (5, 12)), (3, 5, 13), (4, 1, 18), (100, 2, (29, 29))]
    assert protowire.read_string(buf, fields[1][2]) == 'testing'
    assert protowire.read_packed(buf, (13, 17), '<f4')[0] == 1.5
    assert protowire.read_packed(buf, (18, 26), '<f8')[0] == 2.0
    # A sub-range is walked as a message of its own.
    assert list(protowire.iter_fields(buf, 3, 12)) == [(2, 2, (5, 12))]


def test_writer_known_answers():
    assert protowire.encode_message([(1, 150), (2, 'testing')]) == b'\x08\x96\x01\x12\x07testing'
    assert protowire.encode_field(4, [3, 270, 86942]) == b'\x22\x06\x03\x8e\x02\x9e\xa7\x05'
    assert protowire.encode_field(5, numpy.array([1.5], '>f4')) == b'\x2a\x04\x00\x00\xc0\x3f'
    assert protowire.encode_field(1, protowire.encode_message([(1, 2)])) == b'\x0a\x02\x08\x02'
    # The header alone, for a value streamed after it: field 6, 300 bytes.
    assert protowire.encode_length_header(6, 300) == b'\x32\xac\x02'
    assert protowire.encode_length_header(2, 7) + b'testing' == protowire.encode_field(2, 'testing')


def test_packed_reads():
    values = numpy.array([0.0, -1.25, 3.4e38, numpy.float32(numpy.pi)], numpy.float32)
    buf = protowire.encode_message([(1, 7), (5, values), (6, [1, 300, 2 ** 40])])
    (_, _, _), (_, _, floats), (_, _, ints) = protowire.iter_fields(buf)
    view = protowire.read_packed(buf, floats, '<f4')
    assert view.dtype == numpy.float32 and not view.flags.writeable
    numpy.testing.assert_array_equal(view, values)
    assert protowire.read_packed_varints(buf, ints) == [1, 300, 2 ** 40]
    assert protowire.read_packed(buf, (2, 2), '<f4').shape == (0,)
    assert protowire.read_packed(buf, (len(buf), len(buf)), '<f8').shape == (0,)
    with pytest.raises(DecodeError, match='packed float32 array of 15 bytes at byte 4'):
        protowire.read_packed(buf, (floats[0], floats[1] - 1), '<f4')
    with pytest.raises(DecodeError, match='truncated varint'):
        protowire.read_packed_varints(b'\x01\x80', (0, 2))


def test_reads_memoryview_and_mmap(tmp_path):
    values = numpy.arange(6, dtype=numpy.float32)
    data = protowire.encode_message([(2, 'name'), (5, values)])
    path = tmp_path / 'message.bin'
    path.write_bytes(data)
    with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        for buf in (memoryview(data), mapped):
            (_, _, name), (_, _, span) = protowire.iter_fields(buf)
            assert protowire.read_string(buf, name) == 'name'
            copy = protowire.read_packed(buf, span, '<f4').copy()  # no view may outlive mmap
            numpy.testing.assert_array_equal(copy, values)


@pytest.mark.parametrize('wire', [3, 4, 6, 7])
def test_unknown_wire_types(wire):
    # 3 and 4 are the deprecated groups, 6 and 7 are undefined.
    with pytest.raises(DecodeError, match='unsupported wire type %d at byte 1' % wire):
        list(protowire.iter_fields(bytes([1 << 3 | wire, 0])))


@pytest.mark.parametrize('buf,message', [
    (b'\x00\x01', 'field number 0'),
    (b'\x12\x05abc', r'field 2 runs past the end of its message \(byte 7 > 5\)'),
    (b'\x1d\x00\x00', 'field 3 runs past the end'),
    (b'\x21\x00', 'field 4 runs past the end'),
    (b'\x08', 'truncated varint'),
    (b'\x12\xff\xff\xff\xff\x0f', 'field 2 runs past the end'),
])
def test_malformed_messages(buf, message):
    with pytest.raises(DecodeError, match=message):
        list(protowire.iter_fields(buf))


def test_nested_end_is_enforced():
    # A field that fits the buffer but not its parent message is an error.
    buf = b'\x0a\x02\x12\x05hello'
    (_, _, inner), = list(protowire.iter_fields(buf, 0, 4))
    with pytest.raises(DecodeError, match='runs past the end'):
        list(protowire.iter_fields(buf, *inner))


def test_invalid_utf8():
    with pytest.raises(DecodeError, match='invalid UTF-8 string at byte 2'):
        protowire.read_string(b'\x0a\x02\xff\xfe', (2, 4))
    assert isinstance(DecodeError('x'), ValueError)
