"""Damaged input files, fuzzed: each is read, or refused with one clear line (issue #13).

Hundreds of variants of small PNG, JPEG, GIF, BMP and WebP files (truncated, bytes flipped, runs
of bytes overwritten, headers damaged, emptied, chunks doubled) go through ``load_image``,
``load_map`` and ``load_inputs``, damaged weights files through ``load_weights`` and
``file_arch``, and a few damaged images through the command line. Each variant is drawn from its
own seed: a failure names the kind, the seed and the damage, and ``variant(kind, seed)`` makes
the same file again.
"""
import functools
import glob
import io
import struct

import numpy
import pytest
from PIL import Image, features

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
    if kind.startswith('npz'):
        stream = io.BytesIO()
        save = numpy.savez_compressed if kind.endswith('compressed') else numpy.savez
        save(stream, **{'conv1_1/W': numpy.ones((2, 3, 3, 3), numpy.float32),
                        'conv1_1/b': numpy.zeros(2, numpy.float32)})
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
    """Intact files: ``{'content': path, 'style': path}``, the other input of a synthesis."""
    folder = tmp_path_factory.mktemp('intact')
    return {'content': _written(folder, 'content.png', original('png')),
            'style': _written(folder, 'style.bmp', original('bmp'))}


@pytest.mark.parametrize('kind', IMAGE_KINDS)
def test_the_originals_are_read(tmp_path, kind):
    path = _written(tmp_path, 'intact.' + kind.split('-')[0], original(kind))
    expected = {'png': (96, 72), 'jpeg': (96, 72), 'jpeg-progressive': (96, 72),  # turned
                'png-palette': (80, 80), 'bmp': (80, 80)}.get(kind, (72, 96))
    assert image_lib.load_image(path).shape == expected + (3,)


@pytest.mark.parametrize('kind,seed', _numbered(IMAGE_KINDS))
def test_a_damaged_image_is_read_or_refused_in_one_line(tmp_path, intact, kind, seed):
    data, what = variant(kind, seed)
    path = _written(tmp_path, 'damaged.' + kind.split('-')[0], data)
    rgb = _read_or_refused(image_lib.load_image, path, what)
    if rgb is not None:
        assert rgb.dtype == numpy.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, what
        assert min(rgb.shape[:2]) >= 1, what
    semantic_map = _read_or_refused(semantic.load_map, path, what)
    if semantic_map is not None:
        assert semantic_map.dtype == numpy.float32 and semantic_map.shape[:2] == (1, 3), what
        assert numpy.isfinite(semantic_map).all(), what
        assert semantic_map.min() >= 0 and semantic_map.max() <= 1, what
    as_content = _read_or_refused(lambda p: inputs.load_inputs(p, intact['style']), path, what)
    as_style = _read_or_refused(lambda p: inputs.load_inputs(intact['content'], p), path, what)
    assert ((rgb is None) == (semantic_map is None) == (as_content is None)
            == (as_style is None)), what


@pytest.mark.parametrize('kind,seed', _numbered(['npz', 'npz-compressed']))
def test_a_damaged_weights_file_is_refused_in_one_line(tmp_path, kind, seed):
    data, what = variant(kind, seed)
    path = _written(tmp_path, 'damaged.npz', data)
    # The intact file holds conv1_1 only: load_weights refuses even that (not VGG16 weights).
    assert _read_or_refused(weights_lib.load_weights, path, what, path + ': ') is None
    assert _read_or_refused(weights_lib.file_arch, path, what, path + ': ') in (None, 'vgg16')


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
