"""Damaged input files, fuzzed: each must be refused in one clear line, or read as what the
format lets a reader know (issue #13; detection required since issue #16).

Hundreds of variants of small PNG, JPEG, GIF, BMP and WebP files (truncated, bytes flipped, runs
of bytes overwritten, headers damaged, emptied, chunks doubled) go through ``load_image``,
``load_map`` and ``load_inputs``, damaged weights files through ``read_arrays`` and
``file_arch``, and a few damaged images through the command line. Each variant is drawn from its
own seed: a failure names the kind, the seed and the damage, and ``variant(kind, seed)`` makes
the same file again.

What each variant must give is decided from the bytes, not from what the library did
(:func:`required`): a truncated file is refused in every format; so is any change to a PNG's
bytes (each chunk has a CRC) and to a weights file's (zip CRCs and the content digest), or the
result equals the undamaged file's. JPEG, GIF, BMP and WebP pixel data have no redundancy, so a
damaged byte there decodes as other pixels: that cannot be detected, and the test checks what
can be, the size.
"""
import functools
import glob
import io
import os
import struct
import tempfile

import numpy
import pytest
from PIL import Image, ImageFile, features

from chainer_mrf import image as image_lib
from chainer_mrf import inputs, semantic
from chainer_mrf import weights as weights_lib
from helpers import assert_one_error, content_card, generate, small_args, style_stripes

# Pillow warns of the damage it reads past (corrupt EXIF data, a truncated tag): expected here.
pytestmark = pytest.mark.filterwarnings('ignore::UserWarning:PIL')

SEED = 13
"""Seeds every variant, with the variant's own number."""

KINDS = ['npz', 'npz-compressed', 'png', 'png-palette', 'jpeg', 'jpeg-progressive', 'gif', 'bmp',
         'webp']
"""What the variants are made from: weights files, then images."""
IMAGE_KINDS = [kind for kind in KINDS[2:] if kind != 'webp' or features.check('webp')]
VARIANTS = 60
"""Variants of each kind: 360 or 420 images, 120 weights files."""
WEIGHTS = {key: numpy.random.RandomState(SEED).standard_normal(shape).astype(numpy.float32)
           for key, shape in [('conv1_1/W', (2, 3, 3, 3)), ('conv1_1/b', (2,))]}
"""The arrays of the weights files the variants are made from."""


def _numbered(kinds):
    """``(kind, seed)`` of every variant of ``kinds``; no two variants share a seed."""
    return [(kind, SEED * 1000 + KINDS.index(kind) * VARIANTS + n) for kind in kinds
            for n in range(VARIANTS)]


def _encoded(picture, kind, **options):
    stream = io.BytesIO()
    picture.save(stream, kind, **options)
    return stream.getvalue()


@functools.lru_cache(maxsize=None)
def original(kind):
    """The intact file the variants of ``kind`` are made from."""
    if kind == 'npz':  # as save_weights writes it, with its content digest
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, 'w.npz')
            weights_lib.write_arrays(path, WEIGHTS)
            with open(path, 'rb') as stream:
                return stream.read()
    if kind == 'npz-compressed':  # without a digest: an older file, or numpy's
        stream = io.BytesIO()
        numpy.savez_compressed(stream, **WEIGHTS)
        return stream.getvalue()
    card, stripes = Image.fromarray(content_card()), Image.fromarray(style_stripes())
    exif = Image.Exif()
    exif[0x0112] = 6  # the orientation: turned upright when read
    exif[0x011a] = 72.0  # a rational: a damaged one once broke the turning
    if kind == 'png':
        return _encoded(card, 'PNG', exif=exif)
    if kind == 'png-palette':
        return _encoded(stripes.quantize(3), 'PNG', transparency=0)
    if kind.startswith('jpeg'):
        return _encoded(card, 'JPEG', exif=exif, progressive=kind.endswith('progressive'))
    return _encoded(stripes if kind == 'bmp' else card, kind.upper())


def _chunks(data):
    """``(start, end)`` of each PNG chunk, or each JPEG segment before the image data; the
    whole file for another format."""
    spans = []
    if data.startswith(b'\x89PNG'):
        start = 8
        while start + 12 <= len(data):
            end = start + 12 + struct.unpack('>I', data[start:start + 4])[0]
            spans.append((start, end))
            start = end
    elif data.startswith(b'\xff\xd8'):
        start = 2
        while data[start + 1] != 0xda:  # start of scan: the entropy-coded data follow
            end = start + 2 + struct.unpack('>H', data[start + 2:start + 4])[0]
            spans.append((start, end))
            start = end
    return spans or [(0, len(data))]


def _places(rng, end, most):
    return sorted(int(place) for place in rng.randint(0, end, rng.randint(1, most + 1)))


def _truncated(data, rng):
    size = rng.randint(0, len(data))
    return data[:size], 'cut to %d of %d bytes' % (size, len(data))


def _flipped(data, rng):
    damaged, places = bytearray(data), _places(rng, len(data), 8)
    for place in places:
        damaged[place] ^= rng.randint(1, 256)
    return bytes(damaged), 'bytes %s flipped' % places


def _overwritten(data, rng):
    start, size = rng.randint(0, len(data)), rng.randint(1, 65)
    damaged = bytearray(data)
    damaged[start:start + size] = rng.bytes(size)
    return bytes(damaged[:len(data)]), '%d bytes from %d overwritten' % (size, start)


def _header_damaged(data, rng):
    damaged, places = bytearray(data), _places(rng, min(32, len(data)), 4)
    for place in places:
        damaged[place] = rng.randint(0, 256)
    return bytes(damaged), 'header bytes %s replaced' % places


def _emptied(data, rng):
    return b'', 'emptied'


def _doubled(data, rng):
    spans = _chunks(data)
    start, end = spans[rng.randint(len(spans))]
    if len(spans) == 1:  # no chunks: a random slice
        start = rng.randint(0, len(data))
        end = min(len(data), start + rng.randint(1, 200))
    return data[:end] + data[start:end] + data[end:], 'bytes %d:%d doubled' % (start, end)


DAMAGES = {_truncated: 3, _flipped: 3, _overwritten: 3, _header_damaged: 2, _doubled: 2,
           _emptied: 1}
"""Each damage and how often it is drawn (an emptied file is always the same)."""


def variant(kind, seed):
    """A damaged file of ``kind`` and what was done to it, the same for the same seed."""
    rng = numpy.random.RandomState([SEED, seed])
    weights = numpy.array(list(DAMAGES.values()), float)
    damage = list(DAMAGES)[rng.choice(len(DAMAGES), p=weights / weights.sum())]
    data, how = damage(original(kind), rng)
    return data, '%s seed %d: %s' % (kind, seed, how)


def _read_or_refused(load, path, what, beginning="cannot read image '"):
    """``load(path)``, or ``None`` where it refuses the file in one line that starts with
    ``beginning``, names ``path`` and gives a reason; anything else fails, naming ``what``."""
    try:
        return load(path)
    except (ValueError, FileNotFoundError) as error:
        message = str(error)
        assert message.startswith(beginning) and '\n' not in message, (what, message)
        assert message.split(path, 1)[-1].strip(" ':"), (what, message)  # a reason follows
        assert 'allow_pickle' not in message, (what, message)  # numpy's advice: load unsafely
        return None
    except Exception as error:  # what the suite is for: nothing else may escape
        pytest.fail('%s: %s: %s' % (what, type(error).__name__, error))


def _written(folder, name, data):
    path = str(folder / name)
    with open(path, 'wb') as stream:
        stream.write(data)
    return path


@pytest.fixture(scope='module')
def intact(tmp_path_factory):
    """Intact files: ``{'content': path, 'style': path}``, the other input of a synthesis,
    and ``'originals'``: ``{kind: path}`` of every image kind's."""
    folder = tmp_path_factory.mktemp('intact')
    return {'content': _written(folder, 'content.png', original('png')),
            'style': _written(folder, 'style.bmp', original('bmp')),
            'originals': {kind: _written(folder, kind + '.' + kind.split('-')[0], original(kind))
                          for kind in IMAGE_KINDS}}


@pytest.mark.parametrize('kind', IMAGE_KINDS)
def test_the_originals_are_read(tmp_path, kind):
    path = _written(tmp_path, 'intact.' + kind.split('-')[0], original(kind))
    expected = {'png': (96, 72), 'jpeg': (96, 72), 'jpeg-progressive': (96, 72),  # turned
                'png-palette': (80, 80), 'bmp': (80, 80)}.get(kind, (72, 96))
    assert image_lib.load_image(path).shape == expected + (3,)


def _size_end(kind, data):
    """Where the bytes that set an image's size and orientation end: the first SOS segment's
    header of a JPEG (the EXIF orientation and the frame header come before it), the first
    image descriptor of a GIF (Pillow widens the screen to it), a BMP's headers and a simple
    WebP's frame header."""
    if kind.startswith('jpeg'):
        sos = _chunks(data)[-1][1]
        return sos + 2 + struct.unpack('>H', data[sos + 2:sos + 4])[0]
    if kind == 'gif':
        pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
        while data[pos] == 0x21:  # extensions: a label, then sub-blocks up to an empty one
            pos += 2
            while data[pos]:
                pos += 1 + data[pos]
            pos += 1
        assert data[pos] == 0x2c, 'an image descriptor'
        return pos + 10
    if kind == 'bmp':
        return 14 + struct.unpack('<I', data[14:18])[0]
    assert kind == 'webp' and data[12:16] == b'VP8 ', 'a simple lossy WebP'
    return 30  # RIFF and chunk headers, then the frame tag, start code, width and height


def required(kind, data):
    """What a damaged image file must give: ``(requirement, why)``, the requirement one of
    ``'equal'`` (the undamaged file's pixels), ``'refused'``, ``'equal or refused'``,
    ``'size or refused'`` (the undamaged file's size) and ``'image or refused'``."""
    intact = original(kind)
    if data == intact:
        return 'equal', 'no byte changed'
    if intact.startswith(data):
        return 'refused', 'truncated: detectable in every format'
    first = next((i for i, (a, b) in enumerate(zip(data, intact)) if a != b), len(intact))
    if len(data) > len(intact) and kind.startswith(('png', 'jpeg')):
        # _doubled repeats a whole PNG chunk or JPEG segment before the image data: the same
        # header or ancillary data twice, which a decoder reads again or refuses.
        return 'equal or refused', 'a chunk or segment repeated'
    if kind.startswith('png'):
        return 'refused', 'a CRC covers every byte but the signature, which names the format'
    if first >= _size_end(kind, intact):
        return 'size or refused', 'pixel data damaged: undetectable, the size is already set'
    return 'image or refused', 'a header without redundancy damaged: undetectable'


@pytest.mark.parametrize('kind,seed', _numbered(IMAGE_KINDS))
def test_a_damaged_image_is_refused_in_one_line_or_read_as_its_format_allows(tmp_path, intact,
                                                                              kind, seed):
    data, what = variant(kind, seed)
    requirement, why = required(kind, data)
    what = '%s (%s: %s)' % (what, requirement, why)
    path = _written(tmp_path, 'damaged.' + kind.split('-')[0], data)
    rgb = _read_or_refused(image_lib.load_image, path, what)
    semantic_map = _read_or_refused(semantic.load_map, path, what)
    as_content = _read_or_refused(lambda p: inputs.load_inputs(p, intact['style']), path, what)
    as_style = _read_or_refused(lambda p: inputs.load_inputs(intact['content'], p), path, what)
    assert ((rgb is None) == (semantic_map is None) == (as_content is None)
            == (as_style is None)), what
    if rgb is None:
        assert requirement != 'equal', what
        return
    assert requirement != 'refused', what
    undamaged = image_lib.load_image(intact['originals'][kind])
    if requirement.startswith('equal'):
        numpy.testing.assert_array_equal(rgb, undamaged, err_msg=what)
    elif requirement.startswith('size'):
        assert rgb.shape == undamaged.shape, what
    assert rgb.dtype == numpy.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, what
    assert min(rgb.shape[:2]) >= 1, what
    numpy.testing.assert_array_equal(as_content.content, rgb, err_msg=what)
    numpy.testing.assert_array_equal(as_style.styles[0], rgb, err_msg=what)
    assert semantic_map.dtype == numpy.float32 and semantic_map.shape[:2] == (1, 3), what
    assert semantic_map.shape[2:] == rgb.shape[:2], what
    assert numpy.isfinite(semantic_map).all(), what
    assert semantic_map.min() >= 0 and semantic_map.max() <= 1, what


@pytest.mark.parametrize('kind', IMAGE_KINDS)
def test_every_truncation_is_refused_even_where_pillow_is_told_to_load_it(tmp_path, monkeypatch,
                                                                          kind):
    # Pillow pads a truncated file instead of refusing it once a program sets
    # LOAD_TRUNCATED_IMAGES, and reads a PNG cut before IEND or a GIF cut before its trailer
    # even without: the library walks the file itself. Cuts near the end, where only the end
    # marker is lost, and spread over the file.
    monkeypatch.setattr(ImageFile, 'LOAD_TRUNCATED_IMAGES', True)
    data = original(kind)
    cuts = sorted(set(range(len(data) - 24, len(data))) | set(range(0, len(data), len(data) // 24)))
    for cut in cuts:
        path = _written(tmp_path, 'cut.' + kind.split('-')[0], data[:cut])
        what = '%s cut to %d of %d bytes' % (kind, cut, len(data))
        assert _read_or_refused(image_lib.load_image, path, what) is None, what


@pytest.mark.parametrize('kind', ['png', 'png-palette'])
def test_every_byte_of_a_png_is_covered(tmp_path, kind):
    # Each byte changed in its lowest and its highest bit is refused: the signature names the
    # format, and each chunk's CRC covers its type and data (Pillow leaves IDAT's and IEND's
    # unchecked); a changed length or CRC makes a CRC wrong, or the walk miss IEND.
    data = original(kind)
    for place in range(len(data)):
        for bit in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[place] ^= bit
            path = _written(tmp_path, 'damaged.png', damaged)
            what = '%s byte %d ^ 0x%02x' % (kind, place, bit)
            assert _read_or_refused(image_lib.load_image, path, what) is None, what


def test_the_library_never_tells_pillow_to_load_truncated_images():
    import pkgutil

    import chainer_mrf
    for module in pkgutil.walk_packages(chainer_mrf.__path__, 'chainer_mrf.'):
        if module.name not in ('chainer_mrf.__main__',):
            __import__(module.name)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def _same_arrays(found, expected):
    return sorted(found) == sorted(expected) and all(
        found[k].dtype == expected[k].dtype and found[k].shape == expected[k].shape
        and numpy.array_equal(found[k], expected[k]) for k in expected)


def _weights_read_or_refused(path, what):
    """``read_arrays(path)``'s arrays, or ``None`` where it refuses the file in one line as
    an unreadable weights file."""
    read = _read_or_refused(weights_lib.read_arrays, path, what,
                            path + ': not a readable weights file (.npz): ')
    return None if read is None else read[0]


@pytest.mark.parametrize('kind,seed', _numbered(['npz', 'npz-compressed']))
def test_a_damaged_weights_file_is_refused_in_one_line_or_reads_the_same(tmp_path, kind, seed):
    data, what = variant(kind, seed)
    path = _written(tmp_path, 'damaged.npz', data)
    found = _weights_read_or_refused(path, what)
    if found is not None and kind == 'npz':  # the digest covers the names and the bytes
        assert _same_arrays(found, WEIGHTS), what
    elif found is not None:
        # Without a digest, only the zip CRCs check the members: a damaged directory can
        # drop one (load_weights refuses a VGG file without a layer), never change one.
        assert _same_arrays(found, {k: WEIGHTS[k] for k in found}), what
    assert _read_or_refused(weights_lib.file_arch, path, what, path + ': ') in (None, 'vgg16')


def test_every_byte_of_a_weights_file_is_covered(tmp_path):
    # Each byte of a file with a content digest, changed in its lowest and its highest bit:
    # refused, or the same arrays read (a byte no reader uses: a time stamp, the version
    # that made the archive). The zip CRCs cover the members' bytes; the digest covers the
    # rest, e.g. the directory's count of members, which can drop one.
    data = original('npz')
    refused = 'w.npz: not a readable weights file (.npz): '
    reasons = set()
    for place in range(len(data)):
        for bit in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[place] ^= bit
            path = _written(tmp_path, 'w.npz', damaged)
            try:
                found, _ = weights_lib.read_arrays(path)
            except ValueError as error:
                message = str(error).replace(str(tmp_path) + os.sep, '')
                assert message.startswith(refused) and '\n' not in message, (place, message)
                reasons.add(message[len(refused):].split(' (')[0])
            else:
                assert _same_arrays(found, WEIGHTS), 'byte %d ^ 0x%02x' % (place, bit)
    assert 'damaged: sha256 content digest mismatch' in reasons, reasons


def _first(kind, readable, folder):
    """The first variant of ``kind`` that ``load_image`` reads (``readable``) or refuses: its
    path, what it is, and the refusal's message (or ``None``)."""
    for _, seed in _numbered([kind]):
        data, what = variant(kind, seed)
        path = _written(folder, 'damaged-%d.%s' % (seed, kind.split('-')[0]), data)
        try:
            image_lib.load_image(path)
        except ValueError as error:
            if not readable:
                return path, what, str(error)
        else:
            if readable:
                return path, what, None
    raise AssertionError('no %s variant of %s' % ('readable' if readable else 'refused', kind))


@pytest.mark.parametrize('kind,role,readable', [
    ('jpeg', 'content', True), ('bmp', 'style', True),
    ('png', 'content', False), ('gif', 'style', False)])
def test_the_command_line_runs_or_refuses_a_damaged_image_in_one_line(
        tmp_path, intact, vgg16_path, kind, role, readable):
    path, what, refusal = _first(kind, readable, tmp_path)
    files = dict(intact, **{role: path})
    out = tmp_path / 'out'
    done = generate(*small_args((files['content'], files['style']), out, '--iter', '2',
                                '-m', vgg16_path))
    assert 'Traceback' not in done.stdout + done.stderr, (what, done.stderr)
    if readable:
        assert done.returncode == 0, (what, done.stderr)
        assert image_lib.load_image(str(out / 'out.png')).shape[1] == 64, what
    else:
        assert_one_error(done, refusal)  # the library's own message, as one line
        left = glob.glob(str(out / 'out*.png')) + glob.glob(str(out / 'trace.jsonl'))
        assert not left, (what, left)
