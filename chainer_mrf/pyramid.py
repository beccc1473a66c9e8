"""Coarse-to-fine levels: which levels, the level images, and carrying a result up a level.

A level is named by its factor f (4, 2, 1 for three levels, 8, 4, 2, 1 for four; coarse
first): its images are about 1/f of the full size. Each original builds them its own way, and a
preset names one class:

- :class:`SubsamplePyramid` (dsanno): a level is the plain subsample ``x[..., ::f, ::f]`` of the
  full preprocessed image, a level narrower than 64 pixels is skipped, and a result moves up by
  nearest-neighbour doubling cropped to the next size.
- :class:`ResizePyramid` (the authors): a level is the full image resized (Torch's bilinear rule)
  to ceil(size / f), and a result moves up by the same bilinear resize.

Both give a level of ceil(H / f) x ceil(W / f) pixels.
"""
import dataclasses

from chainer import backend

from chainer_mrf import image


FACTORS = (8, 4, 2, 1)
"""The levels' factors, coarse first: ``resolution_num`` levels take the last ones (the
originals offer 1 to 3 levels; neural-doodle's ``--phases=4`` takes the fourth)."""

LEVEL_COUNTS = tuple(range(1, len(FACTORS) + 1))
"""The allowed ``resolution_num`` values."""


@dataclasses.dataclass(frozen=True)
class _Pyramid:
    levels: int = 3
    min_width: int = 1

    def __post_init__(self):
        if self.levels not in LEVEL_COUNTS:
            raise ValueError('resolution_num must be 1, 2, 3 or 4, got %r' % (self.levels,))

    def factors(self, width):
        """The factors of the levels kept for an image ``width`` pixels wide, coarse first.

        Raises:
            ValueError: if no level is at least ``min_width`` wide.
        """
        kept = [f for f in FACTORS[-self.levels:] if width // f >= self.min_width]
        if not kept:
            raise ValueError('image width %d is too small: the finest level must be at least '
                             '%d pixels wide' % (width, self.min_width))
        return kept

    @staticmethod
    def level_shape(shape, factor):
        """(height, width) of a level of an image of ``shape`` (H, W): ceil(H / f), ceil(W / f)."""
        return tuple(-(-side // factor) for side in shape)


class SubsamplePyramid(_Pyramid):
    """dsanno's pyramid: subsampling by ``[4, 2, 1][-levels:]``; see the module docstring.

    Args:
        levels (int): number of resolutions, 1 to 4. Default: 3.
        min_width (int): narrowest level kept, in pixels. Default: 64.

    Examples:
        >>> SubsamplePyramid(3).factors(256)
        [4, 2, 1]
        >>> SubsamplePyramid(3).factors(200)
        [2, 1]
    """

    def __init__(self, levels=3, min_width=64):
        super().__init__(levels, min_width)

    def level(self, x, factor):
        """The level image of a batch ``x`` (N, C, H, W): ``x[..., ::f, ::f]``."""
        return x[:, :, ::factor, ::factor]

    def upsample(self, x, shape):
        """Doubles ``x`` (N, C, h, w) by repetition and crops it to ``shape`` (H, W)."""
        xp = backend.get_array_module(x)
        doubled = xp.repeat(xp.repeat(x, 2, axis=2), 2, axis=3)
        return xp.ascontiguousarray(doubled[:, :, :shape[0], :shape[1]])


class ResizePyramid(_Pyramid):
    """The authors' pyramid: bilinear resizes to ceil(size / f); see the module docstring.

    Args:
        levels (int): number of resolutions, 1 to 4. Default: 3.

    Examples:
        >>> ResizePyramid(3).factors(384)
        [4, 2, 1]
        >>> ResizePyramid.level_shape((384, 298), 4)
        (96, 75)
    """

    def __init__(self, levels=3):
        super().__init__(levels, 1)

    def level(self, x, factor):
        """The level image of a batch ``x`` (N, C, H, W), resized to ceil(H/f) x ceil(W/f)."""
        if factor == 1:
            return x
        height, width = self.level_shape(x.shape[2:], factor)
        return image.resize_bilinear(x, (width, height))

    def upsample(self, x, shape):
        """``x`` (N, C, h, w) resized bilinearly to ``shape`` (H, W)."""
        return image.resize_bilinear(x, (shape[1], shape[0]))


PYRAMIDS = {'subsample': SubsamplePyramid, 'resize': ResizePyramid}
