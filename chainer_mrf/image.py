"""Reading, converting, resizing and writing images as the two reference implementations do.

CNNMRF has two public implementations that prepare images differently (``docs/algorithm.md``,
"The two presets side by side"):

- **dsanno** (chainer-neural-style, ``src/style_transfer_runner.py``): ``Image.open(path)
  .convert('RGB')``, resized with Pillow's ``Image.BILINEAR`` to a fixed width, then RGB->BGR
  minus the Caffe mean (104, 117, 124) on values 0-255 (``src/net.py``).
- **CNNMRF** (the authors' Torch code, ``transfer_CNNMRF_wrapper.lua``, ``mylib/helper.lua``):
  ``image.load(path, 3)`` gives floats in [0, 1]; ``image.scale(img, max_size, 'bilinear')``
  resizes so the longer side is ``max_size``; then x 256, RGB->BGR, minus (103.939, 116.779,
  123.68).

This module offers both as data (:data:`DSANNO`, :data:`CNNMRF`) and as functions
(:func:`dsanno_size`, :func:`cnnmrf_size`, :func:`resize_pil`, :func:`resize_bilinear`), plus a
robust loader (:func:`load_image`) and an atomic writer (:func:`save_image`).

Examples:
    >>> rgb = load_image('content.jpg')  # doctest: +SKIP
    >>> height, width = rgb.shape[:2]  # doctest: +SKIP
    >>> rgb = resize_pil(rgb, dsanno_size(width, height))  # doctest: +SKIP
    >>> x = preprocess(rgb, DSANNO)  # float32 (1, 3, H, W), BGR  # doctest: +SKIP
"""
import dataclasses
import mmap
import numbers
import os
import re
import struct
import zlib

import numpy
from chainer import backend
from PIL import ExifTags, Image, UnidentifiedImageError

from chainer_mrf import _io

# Modes Pillow converts to RGB correctly by itself ('F' as Pillow does: values 0-255, clipped).
_RGB_MODES = frozenset(['1', 'L', 'P', 'RGB', 'RGBX', 'CMYK', 'YCbCr', 'HSV', 'F'])
_ALPHA_MODES = frozenset(['LA', 'PA', 'RGBA', 'RGBa'])
# Integer grayscale; Pillow hands 16-bit files over in these modes.
_WIDE_GRAY_MODES = frozenset(['I', 'I;16', 'I;16L', 'I;16B', 'I;16N'])

# What a damaged or foreign file makes Pillow raise while opening or decoding it.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error,
                  zlib.error, Image.DecompressionBombError)
# The transpose that shows an image upright, by its EXIF orientation: ImageOps.exif_transpose's
# table. That function also rewrites the EXIF block, which fails on a damaged tag, and only the
# pixels are needed here.
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def load_image(source):
    """Loads an image as an 8-bit RGB array.

    Accepts anything Pillow reads. The EXIF orientation is applied (as
    ``ImageOps.exif_transpose`` applies it), so a photo comes out the way viewers show it;
    neither original does this (Pillow's and Torch's loaders ignore EXIF), which matters only
    for photos whose orientation tag is not 1.
    Only the first frame of an animated or multi-page file is used.

    Conversion by mode:

    - ``1``, ``L``, ``P``, ``RGB``, ``RGBX``, ``CMYK``, ``YCbCr``, ``HSV``: Pillow's own
      conversion (CMYK naively, without colour management; ICC profiles are ignored throughout).
    - ``F`` (32-bit float): as Pillow converts it, i.e. values taken on the 0-255 scale, clipped.
    - ``I``, ``I;16``, ``I;16B``, ``I;16L``, ``I;16N`` (16-bit grayscale, as Pillow gives 16-bit
      PNG, TIFF and PGM files): scaled to 8 bits, ``round(v * 255 / 65535)``, so 65535 -> 255
      and 32896 -> 128; values outside 0-65535 are clipped. (``.convert('RGB')``, as dsanno
      does, would clip at 255 and turn most of such an image white.) Pillow reduces 16-bit
      colour files (48- and 64-bit PNGs) to 8 bits itself by keeping the high byte.
    - With transparency (``LA``, ``PA``, ``RGBA``, ``RGBa``, or ``L``/``P``/``RGB`` with a
      transparent colour): composited onto white, ``c * a + 255 * (1 - a)``. Transparent
      regions (of logos, clip-art, scans) are meant to be seen on a page; the colour stored
      under them is arbitrary, often black, and would otherwise enter the synthesis as content
      or style. This differs from both originals (Pillow's ``.convert('RGB')`` and Torch's
      ``image.load(path, 3)`` just drop the alpha channel) only where alpha < 255.
    - Other modes (``LAB``, ``La``, ...): ``ValueError`` naming the mode.

    Args:
        source (str, os.PathLike, PIL.Image.Image or numpy.ndarray): a file path; an image
            already opened with Pillow (left open and unchanged); or an array of shape (H, W),
            (H, W, 1) (grayscale), (H, W, 3) (RGB) or (H, W, 4) (RGBA), either ``uint8`` in
            0-255 or floating point in [0, 1] (values outside [0, 1] or not finite are rejected,
            since they usually mean a 0-255 float image; floats are scaled by 255 and rounded).

    Returns:
        numpy.ndarray: ``uint8`` RGB array of shape (H, W, 3), a new writable array.

    Raises:
        FileNotFoundError: the path does not exist (``cannot read image PATH: no such file``).
        ValueError: the file cannot be read, in one line, ``cannot read image PATH: REASON``:
            the path is a folder, a FIFO or a device, a broken symbolic link, or the system
            refuses it (the system's reason: permission denied, too many levels of symbolic
            links, ...); the file is empty, truncated, corrupt or not an image, or its pixels
            do not fit in memory; its mode is not supported. A PNG, JPEG, GIF or BMP file is
            walked to its end marker, so a truncated one is refused even where a program set
            ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``, and every PNG chunk's CRC is checked
            (Pillow leaves IDAT's unchecked). Damage that a format cannot show (a changed byte
            of JPEG, GIF, BMP or WebP pixel data) decodes as other pixels. Or the array has an unsupported
            shape, dtype or range.
        TypeError: ``source`` is of another type.

    Shape:
        Output: (H, W, 3), ``uint8``.

    Examples:
        >>> load_image(numpy.zeros((2, 3), numpy.uint8)).shape
        (2, 3, 3)
        >>> load_image(numpy.array([[[255, 0, 0, 51]]], numpy.uint8)).tolist()
        [[[255, 204, 204]]]
    """
    if isinstance(source, numpy.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _decode(source, getattr(source, 'filename', '') or '<PIL image>')
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError('load_image takes a path, a PIL image or a numpy array, got %s'
                        % type(source).__name__)
    path = os.fspath(source)
    try:
        stream = _io.open_regular(path)
    except FileNotFoundError:
        raise FileNotFoundError('cannot read image %r: no such file' % path) from None
    except OSError as error:
        raise ValueError('cannot read image %r: %s' % (path, error.strerror)) from None
    with stream:
        try:
            image = Image.open(stream)
        except UnidentifiedImageError:
            raise ValueError('cannot read image %r: not an image file Pillow can read (empty, '
                             'corrupt or another kind of file)' % path) from None
        except _DECODE_ERRORS as error:
            raise ValueError('cannot read image %r: %s' % (path, error)) from None
        with image:
            damage = _damage(stream, image.format)
            if damage:
                raise ValueError('cannot read image %r: %s' % (path, damage))
            return _decode(image, path)


def _damage(stream, kind):
    """What is wrong with the structure of a PNG, JPEG, GIF or BMP file, or ``None``.

    Pillow reads a PNG whose end (IEND) is cut off or whose image data (IDAT) have a wrong
    CRC, and a GIF whose trailer is cut off; and it reads any truncated file, padded, if a
    program sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``. So the file is walked here: every
    PNG chunk's CRC up to IEND; JPEG markers up to the end-of-image marker; GIF blocks up to
    the trailer; and a BMP's size against its uncompressed rows. A truncated file of these
    formats is refused whatever Pillow is set to do. Bytes after the end are allowed.
    """
    walk = _WALKS.get(kind)
    size = os.fstat(stream.fileno()).st_size
    if walk is None or size == 0:
        return None
    with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return walk(data, size)


def _png_damage(data, size):
    pos = 8  # after the signature, which Pillow checked
    while pos + 8 <= size:
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        end = pos + 12 + length
        if end > size:
            break
        crc = 0
        for start in range(pos + 4, end - 4, 1 << 20):  # 1 MiB at a time: no copy of a chunk
            crc = zlib.crc32(data[start:min(start + (1 << 20), end - 4)], crc)
        if crc != struct.unpack('>I', data[end - 4:end])[0]:
            return 'damaged PNG: chunk %r at byte %d has a wrong CRC' % (
                kind.decode('latin-1'), pos)
        if kind == b'IEND':
            return None
        pos = end
    return 'truncated or damaged PNG: it ends at byte %d, before its IEND chunk' % size


#: A JPEG marker: 0xFF (and fill bytes 0xFF), then a code other than 0 (a stuffed 0xFF).
_JPEG_MARKER = re.compile(rb'\xff+([^\x00\xff])')
#: Markers without a length: TEM, RST0-7, SOI.
_JPEG_BARE = frozenset([0x01, 0xd8] + list(range(0xd0, 0xd8)))


def _jpeg_damage(data, size):
    pos = 2  # after the start-of-image marker, which Pillow checked
    while True:
        # Entropy-coded data and stray bytes hold no marker but RST: they are skipped, as
        # libjpeg skips them; a segment is skipped by its length.
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            return ('truncated or damaged JPEG: it ends at byte %d, before its end-of-image '
                    'marker' % size)
        code, pos = found.group(1)[0], found.end()
        if code == 0xd9:
            return None
        if code in _JPEG_BARE:
            continue
        if pos + 2 > size:
            return 'truncated JPEG: it ends at byte %d, inside a segment' % size
        length = struct.unpack('>H', data[pos:pos + 2])[0]
        if length < 2:
            return 'damaged JPEG: segment 0xff%02x at byte %d has length %d' % (
                code, pos - 2, length)
        pos += length


def _gif_damage(data, size):
    truncated = 'truncated or damaged GIF: it ends at byte %d, before its trailer' % size
    pos = 13  # after the header and the logical screen descriptor
    if size < pos:
        return truncated
    if data[10] & 0x80:  # a global colour table
        pos += 3 << ((data[10] & 7) + 1)
    while pos < size:
        block = data[pos]
        if block == 0x3b:  # the trailer
            return None
        if block == 0x21:  # an extension: its label, then sub-blocks
            pos += 2
        elif block == 0x2c:  # an image: its descriptor, a local colour table, the LZW size
            if pos + 10 > size:
                break
            flags = data[pos + 9]
            pos += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
        else:  # a stray byte, which Pillow skips too
            pos += 1
            continue
        while pos < size and data[pos]:  # sub-blocks, up to an empty one
            pos += 1 + data[pos]
        pos += 1
    return truncated


def _bmp_damage(data, size):
    if size < 34:
        return None  # Pillow refuses it as it is
    offset, header = struct.unpack('<II', data[10:18])
    if header == 12:  # OS/2 1.x
        width, height, bits, compression = (*struct.unpack('<HH', data[18:22]), data[24], 0)
    else:
        width, height, _, bits, compression = struct.unpack('<iiHHI', data[18:34])
    if compression not in (0, 3, 6):  # uncompressed rows, with or without bit fields
        return None
    need = offset + (width * bits + 31) // 32 * 4 * abs(height)
    if size < need:
        return 'truncated BMP: it has %d bytes, its %d rows need %d' % (size, abs(height), need)
    return None


_WALKS = {'PNG': _png_damage, 'JPEG': _jpeg_damage, 'MPO': _jpeg_damage, 'GIF': _gif_damage,
          'BMP': _bmp_damage}


def _decode(image, name):
    """Fully decodes an opened PIL image and converts it to RGB ``uint8``."""
    try:
        image.load()  # Pillow decodes lazily: make a truncated file fail here, not later
        method = _UPRIGHT.get(image.getexif().get(ExifTags.Base.Orientation))
        rgb = _to_rgb(image if method is None else image.transpose(method))
    except MemoryError:
        raise ValueError('cannot read image %r: its %d x %d pixels do not fit in memory'
                         % ((name,) + image.size)) from None
    except _DECODE_ERRORS as error:
        raise ValueError('cannot read image %r: %s' % (name, error)) from None
    if rgb is None:
        raise ValueError('cannot read image %r: unsupported image mode %r' % (name, image.mode))
    return rgb


def _to_rgb(image):
    """A decoded PIL image as RGB ``uint8`` (see :func:`load_image`), or ``None`` for a mode
    that is not supported."""
    mode = image.mode
    if mode in _ALPHA_MODES or (mode in _RGB_MODES and 'transparency' in image.info):
        return _finish(numpy.asarray(image.convert('RGBA')))
    if mode in _RGB_MODES:
        return numpy.array(image.convert('RGB'))
    if mode in _WIDE_GRAY_MODES:
        values = numpy.asarray(image).astype(numpy.int64).clip(0, 65535)
        # round(v / 257) in integers: exact, with no float ties
        return _finish(((values + 128) // 257).astype(numpy.uint8)[..., None])
    return None


def _array_to_rgb(array):
    """Validates a caller's array and converts it (see :func:`load_image`)."""
    values = array[..., None] if array.ndim == 2 else array
    if values.ndim != 3 or values.shape[2] not in (1, 3, 4) or 0 in values.shape:
        raise ValueError('image arrays must have shape (H, W), (H, W, 1), (H, W, 3) or '
                         '(H, W, 4) with H, W > 0; got shape %s' % (array.shape,))
    if values.dtype == numpy.uint8:
        return _finish(values)
    if values.dtype.kind != 'f':
        raise ValueError('image arrays must be uint8 (0-255) or floating point (0-1); got %s'
                         % values.dtype)
    if not numpy.isfinite(values).all():
        raise ValueError('image array contains NaN or infinity')
    low, high = values.min(), values.max()
    if low < 0 or high > 1:
        raise ValueError('floating-point image arrays must hold values in [0, 1]; got values '
                         'from %g to %g (divide 0-255 data by 255)' % (low, high))
    return _finish(values.astype(numpy.float64) * 255.0)


def _finish(values):
    """(H, W, 1|3|4) values on the 0-255 scale -> (H, W, 3) ``uint8``; alpha onto white."""
    channels = values.shape[2]
    if values.dtype == numpy.uint8 and channels == 4:
        # In 16-bit integers, a quarter of float64's memory (c * a + 255 * (255 - a) <= 65025):
        # x // 255 after adding 127 rounds exactly as rint(x / 255), x / 255 being never a tie.
        alpha = values[..., 3:].astype(numpy.uint16)
        return ((values[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(numpy.uint8)
    if values.dtype == numpy.uint8:
        return numpy.repeat(values, 3, axis=2) if channels == 1 else values.copy()
    values = values.astype(numpy.float64)
    if channels == 4:
        alpha = values[..., 3:] / 255.0
        values = values[..., :3] * alpha + 255.0 * (1.0 - alpha)
    elif channels == 1:
        values = numpy.repeat(values, 3, axis=2)
    return numpy.rint(values).clip(0, 255).astype(numpy.uint8)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How 8-bit RGB pixels become network input: ``x = pixel * scale - mean``, in BGR order.

    Attributes:
        scale (float): factor applied to the 0-255 pixel values (1.0 for dsanno, 256/255 for
            CNNMRF, whose loader gives [0, 1] that it then multiplies by 256).
        mean_bgr (tuple of float): the mean subtracted from the (B, G, R) channels.
    """

    scale: float
    mean_bgr: tuple

    def from_pixels(self, bgr):
        """Pixel values (0-255, BGR along axis 1, any values: noise, bounds) in the network's
        space, ``bgr * scale - mean``, computed in float64.

        Shape:
            bgr: (N, 3, ...). Output: the same.

        Examples:
            >>> DSANNO.from_pixels(numpy.zeros((1, 3))).tolist()
            [[-104.0, -117.0, -124.0]]
        """
        mean = numpy.asarray(self.mean_bgr, numpy.float64).reshape(
            (1, 3) + (1,) * (numpy.ndim(bgr) - 2))
        return numpy.asarray(bgr, numpy.float64) * self.scale - mean


#: dsanno's ``VGG.preprocess`` (``src/net.py``): RGB->BGR, 0-255, minus (104, 117, 124).
DSANNO = Preprocessing(scale=1.0, mean_bgr=(104.0, 117.0, 124.0))
#: CNNMRF's ``preprocess`` (``mylib/helper.lua``): [0, 1] x 256, RGB->BGR, minus the means.
CNNMRF = Preprocessing(scale=256.0 / 255.0, mean_bgr=(103.939, 116.779, 123.68))
#: neural-doodle's ``Model.prepare_image`` (``doodle.py``): RGB->BGR, 0-255, minus the same means.
DOODLE = Preprocessing(scale=1.0, mean_bgr=(103.939, 116.779, 123.68))


def preprocess(rgb, preprocessing):
    """Turns an 8-bit RGB image into a network input batch of one.

    Args:
        rgb (numpy.ndarray): ``uint8`` RGB image, as :func:`load_image` returns.
        preprocessing (Preprocessing): :data:`DSANNO` or :data:`CNNMRF` (or your own).

    Returns:
        numpy.ndarray: ``float32`` array of shape (1, 3, H, W), channels in BGR order.

    Raises:
        ValueError: ``rgb`` is not a ``uint8`` (H, W, 3) array.

    Shape:
        Input: (H, W, 3). Output: (1, 3, H, W).

    Examples:
        >>> preprocess(numpy.array([[[10, 20, 30]]], numpy.uint8), DSANNO).ravel().tolist()
        [-74.0, -97.0, -114.0]
    """
    _check_rgb(rgb)
    return preprocessing.from_pixels(rgb[:, :, ::-1].transpose(2, 0, 1)[None]).astype(
        numpy.float32)


def deprocess(x, preprocessing):
    """Inverse of :func:`preprocess`: adds the mean, undoes the scale, BGR->RGB, rounds, clips.

    Values are rounded to the nearest integer before clipping to 0-255, so
    ``deprocess(preprocess(img, p), p)`` gives ``img`` back exactly. (dsanno's ``postprocess``
    truncates with ``astype(uint8)`` instead; CNNMRF divides by 256 and lets Torch's
    ``image.save`` clip to [0, 1] and multiply by 255.)

    Args:
        x (numpy.ndarray or cupy.ndarray): network-space image of shape (1, 3, H, W) or
            (3, H, W), BGR. A CuPy array is copied to the host.
        preprocessing (Preprocessing): the preprocessing ``x`` was made with.

    Returns:
        numpy.ndarray: ``uint8`` RGB array of shape (H, W, 3).

    Raises:
        ValueError: ``x`` has another shape, or holds NaN or infinity (a diverged optimisation
            would otherwise be saved as a black or white picture).

    Shape:
        Input: (1, 3, H, W) or (3, H, W). Output: (H, W, 3).

    Examples:
        >>> x = numpy.array([-74.0, -97.0, -114.0], numpy.float32).reshape(3, 1, 1)
        >>> deprocess(x, DSANNO).tolist()
        [[[10, 20, 30]]]
    """
    if not isinstance(x, numpy.ndarray) and hasattr(x, 'get'):
        x = x.get()  # CuPy -> NumPy
    x = numpy.asarray(x)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError('deprocess takes an array of shape (1, 3, H, W) or (3, H, W); got %s'
                         % (x.shape,))
    if not numpy.isfinite(x).all():
        raise ValueError('cannot convert to an image: the array contains NaN or infinity')
    mean = numpy.asarray(preprocessing.mean_bgr, dtype=numpy.float64)[:, None, None]
    bgr = (x.astype(numpy.float64) + mean) / preprocessing.scale
    return numpy.rint(bgr[::-1].transpose(1, 2, 0)).clip(0, 255).astype(numpy.uint8)


def dsanno_size(width, height, target_width=256):
    """dsanno's size rule: width ``target_width``, height following the aspect ratio.

    dsanno (Python 2) computes ``int(round(float(height * target_width) / width))``; Python 2's
    ``round`` rounds halves away from zero (Python 3's rounds them to even), so an exact .5 goes
    up: 512 x 5 -> 256 x 3 (2.5 -> 3). Computed here in integers, which gives the same result.

    Args:
        width (int): the image's width.
        height (int): the image's height.
        target_width (int): the output width. Defaults to 256 (dsanno's ``--width``).

    Returns:
        tuple of int: ``(new_width, new_height)``.

    Raises:
        ValueError: a size is not a positive integer, or the image is so wide that its height
            would round to 0.

    Examples:
        >>> dsanno_size(298, 384)
        (256, 330)
        >>> dsanno_size(512, 5)
        (256, 3)
    """
    width, height, target_width = _positive(width=width, height=height,
                                            target_width=target_width)
    new_height = (2 * height * target_width + width) // (2 * width)  # floor(h*t/w + 1/2)
    return target_width, _nonzero(new_height, width, height)


def cnnmrf_size(width, height, max_size=384):
    """The authors' size rule, Torch's ``image.scale(img, max_size)``: longer side ``max_size``.

    Torch computes the other side as ``side * max_size / longer`` in floating point and hands it
    to the tensor constructor, which truncates it (``luaL_checklong``: a C cast under LuaJIT on
    64-bit machines, Torch's default): 9 x 7 -> 384 x 298 (298.67 is truncated). Images smaller
    than ``max_size`` are enlarged.

    Args:
        width (int): the image's width.
        height (int): the image's height.
        max_size (int): the longer side of the result. Defaults to 384 (``run_trans.lua``).

    Returns:
        tuple of int: ``(new_width, new_height)``.

    Raises:
        ValueError: a size is not a positive integer, or the shorter side would be 0.

    Examples:
        >>> cnnmrf_size(298, 384)
        (298, 384)
        >>> cnnmrf_size(9, 7)
        (384, 298)
    """
    width, height, max_size = _positive(width=width, height=height, max_size=max_size)
    longer = max(width, height)
    # Integer floor equals the truncated float quotient: the quotient of two integers this
    # small is never within rounding distance of the next integer unless it equals it.
    new_width, new_height = width * max_size // longer, height * max_size // longer
    return _nonzero(new_width, width, height), _nonzero(new_height, width, height)


def original_size(width, height, side=None):
    """neural-doodle's size rule: every image keeps its own size (``side`` is not used).

    Examples:
        >>> original_size(512, 384)
        (512, 384)
    """
    return _positive(width=width, height=height)


SIZE_RULES = {'width': dsanno_size, 'max_size': cnnmrf_size, 'original': original_size}
"""The sizing rules by name (a preset's ``size_rule``): dsanno's width rule, the authors'
longer-side rule and neural-doodle's own sizes, each ``rule(width, height, side) ->
(new_width, new_height)``."""


def resize_pil(rgb, size, resample=Image.Resampling.BILINEAR):
    """Resizes an 8-bit RGB image with Pillow, as dsanno does (``image.resize(size,
    Image.BILINEAR)`` in ``open_and_resize_image``).

    Pillow's bilinear filter antialiases when shrinking (its triangle filter is widened by the
    scale factor), so it is not plain bilinear interpolation: 4 px [0, 0, 255, 255] -> 2 px
    gives [36, 219], not [0, 255]. Results can differ by one level between Pillow versions.

    Args:
        rgb (numpy.ndarray): ``uint8`` RGB image.
        size (tuple of int): ``(width, height)`` of the result.
        resample (PIL.Image.Resampling): the filter. Defaults to ``Image.Resampling.BILINEAR``.

    Returns:
        numpy.ndarray: ``uint8`` RGB array of shape (height, width, 3).

    Raises:
        ValueError: ``rgb`` is not a ``uint8`` (H, W, 3) array, or a size is not positive.

    Shape:
        Input: (H, W, 3). Output: (size[1], size[0], 3).
    """
    _check_rgb(rgb)
    width, height = _width_height(size)
    return numpy.array(Image.fromarray(numpy.ascontiguousarray(rgb)).resize(
        (width, height), resample))


def resize_bilinear(array, size):
    """Resizes float images exactly as Torch's ``image.scale(..., 'bilinear')`` maps pixels.

    Torch (``generic/image.c``, ``scaleBilinear`` and ``scaleLinear_rowcol``) resizes rows,
    then columns, each axis on its own, with coordinates in single precision:

    - enlarging (n -> m > n): corners aligned, output i samples input ``i * (n-1)/(m-1)``
      linearly; the last output is the last input; a single input pixel is repeated.
    - shrinking (n -> m < n): each output is the mean of the input interval
      ``[i * n/m, (i+1) * n/m)``, partly covered pixels weighted by their coverage. So Torch's
      "bilinear" shrink is an area average (it antialiases), not bilinear sampling.
    - same size: a copy.

    The weights here are computed the way Torch computes them (float32 positions, truncation to
    an index, float32 fractions) and applied as two matrix products in the array's dtype, so a
    float32 result agrees with Torch's to float32 rounding (about 1e-7 relative), not bit for bit.

    Args:
        array (numpy.ndarray or cupy.ndarray): floating-point images; the last two axes are
            (height, width), e.g. (C, H, W) or (N, C, H, W).
        size (tuple of int): ``(width, height)`` of the result.

    Returns:
        numpy.ndarray or cupy.ndarray: same leading axes and dtype, last two axes resized.

    Raises:
        ValueError: ``array`` has fewer than two axes, no pixels, or an integer dtype; or a size
            is not positive.

    Shape:
        Input: (..., H, W). Output: (..., size[1], size[0]).

    Examples:
        >>> resize_bilinear(numpy.array([[0.0, 1.0], [2.0, 3.0]]), (3, 3)).tolist()
        [[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]]
        >>> resize_bilinear(numpy.array([[0.0, 3.0, 6.0]]), (2, 1)).tolist()
        [[1.0, 5.0]]
    """
    width, height = _width_height(size)
    if array.ndim < 2 or 0 in array.shape or array.dtype.kind != 'f':
        raise ValueError('resize_bilinear takes a floating-point array of shape (..., H, W) '
                         'with pixels; got %s of shape %s' % (array.dtype, array.shape))
    xp = backend.get_array_module(array)
    rows = xp.asarray(_torch_linear_weights(array.shape[-2], height), dtype=array.dtype)
    cols = xp.asarray(_torch_linear_weights(array.shape[-1], width), dtype=array.dtype)
    return xp.matmul(xp.matmul(rows, array), cols.T)


def _torch_linear_weights(src_len, dst_len):
    """The (dst_len, src_len) matrix of Torch's ``scaleLinear_rowcol`` along one axis."""
    if dst_len == src_len:
        return numpy.eye(src_len)
    f32 = numpy.float32
    weights = numpy.zeros((dst_len, src_len))
    if dst_len > src_len:
        weights[-1, -1] = 1.0  # Torch copies the last pixel
        if src_len == 1:
            weights[:, 0] = 1.0
            return weights
        scale = f32(src_len - 1) / f32(dst_len - 1)
        position = numpy.arange(dst_len - 1, dtype=f32) * scale
        index = position.astype(numpy.int64)  # C's (long) cast: truncation
        fraction = position - index.astype(f32)
        out = numpy.arange(dst_len - 1)
        weights[out, index] = f32(1) - fraction
        # min(): float32 rounding could put a position on the last pixel, fraction then 0
        weights[out, numpy.minimum(index + 1, src_len - 1)] += fraction
        return weights
    scale = f32(src_len) / f32(dst_len)
    end = numpy.arange(1, dst_len + 1, dtype=f32) * scale
    end_index = end.astype(numpy.int64)
    end_fraction = end - end_index.astype(f32)
    start_index = numpy.concatenate([[0], end_index[:-1]])
    start_fraction = numpy.concatenate([[f32(0)], end_fraction[:-1]])
    for out in range(dst_len):
        weights[out, start_index[out]] = f32(1) - start_fraction[out]
        weights[out, start_index[out] + 1:end_index[out]] = 1.0
        if end_index[out] < src_len:
            weights[out, end_index[out]] += end_fraction[out]
    return weights / weights.sum(axis=1, keepdims=True)  # Torch divides by the covered length


def save_image(path, rgb):
    """Writes an 8-bit RGB image atomically; the format follows the file extension.

    Any extension Pillow can write is accepted (``.png``, ``.jpg``/``.jpeg``, ``.bmp``,
    ``.tif``/``.tiff``, ``.webp``, ``.gif``, ``.ppm``, ...), in any letter case, with Pillow's
    default options (JPEG quality 75, as Torch's ``image.save``). The image is written to a
    temporary file beside ``path`` and renamed onto it, so ``path`` is either the complete new
    image or left as it was, even if encoding fails.

    Args:
        path (str or os.PathLike): the file to write; its folder must exist.
        rgb (numpy.ndarray): ``uint8`` RGB image of shape (H, W, 3).

    Raises:
        ValueError: the extension is missing or not one Pillow writes, or ``rgb`` is not a
            ``uint8`` (H, W, 3) array (nothing is written).
        FileNotFoundError: the folder does not exist (nothing is written).
        OSError: Pillow cannot encode the image in that format, or the disk refuses it
            (``path`` is left as it was).

    Examples:
        >>> save_image('out.png', numpy.zeros((4, 4, 3), numpy.uint8))  # doctest: +SKIP
    """
    path = os.fspath(path)
    _check_rgb(rgb)
    extension = os.path.splitext(path)[1].lower()
    image_format = Image.registered_extensions().get(extension)
    if image_format not in Image.SAVE:
        raise ValueError('cannot save image %r: unknown or read-only image file extension %r '
                         '(use e.g. .png, .jpg, .bmp or .tif)' % (path, extension))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError('cannot save image %r: folder %r does not exist'
                                % (path, folder))
    image = Image.fromarray(numpy.ascontiguousarray(rgb))
    with _io.atomic_path(path) as temporary:
        image.save(temporary, format=image_format)


def _check_rgb(rgb):
    """Raises ValueError unless ``rgb`` is a ``uint8`` (H, W, 3) array with pixels."""
    if (not isinstance(rgb, numpy.ndarray) or rgb.dtype != numpy.uint8 or rgb.ndim != 3
            or rgb.shape[2] != 3 or 0 in rgb.shape):
        raise ValueError('expected a uint8 RGB array of shape (H, W, 3) with H, W > 0; got %s'
                         % (('%s of shape %s' % (rgb.dtype, rgb.shape))
                            if isinstance(rgb, numpy.ndarray) else type(rgb).__name__))


def _positive(**sizes):
    """Returns the values of ``sizes`` as ints; ValueError unless each is a positive integer."""
    for name, value in sizes.items():
        if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
                or value <= 0):
            raise ValueError('%s must be a positive integer, got %r' % (name, value))
    return tuple(int(value) for value in sizes.values())


def _width_height(size):
    """Validates a ``(width, height)`` pair of positive integers."""
    if len(size) != 2:
        raise ValueError('size must be (width, height), got %r' % (size,))
    return _positive(width=size[0], height=size[1])


def _nonzero(new_side, width, height):
    """Raises ValueError if a computed side is 0 (an extremely elongated image)."""
    if new_side == 0:
        raise ValueError('an image of %d x %d is too elongated to resize: a side would be 0'
                         % (width, height))
    return new_side
