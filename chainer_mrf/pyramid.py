"""Coarse-to-fine levels: their sizes, the level images, and carrying a result to the next level.

Each original has its own rule, and a preset names one of the classes here:

- :class:`SubsamplePyramid` (dsanno): strides 4, 2, 1; a level is a plain subsample
  ``x[..., ::s, ::s]`` of the full preprocessed image; a result moves up by nearest-neighbour
  doubling cropped to the next size.
"""
import dataclasses

from chainer import backend


@dataclasses.dataclass(frozen=True)
class SubsamplePyramid:
    """dsanno's pyramid: subsampling strides ``[4, 2, 1][-levels:]``.

    A level whose width ``W // stride`` is under ``min_width`` is skipped, as in dsanno.

    Args:
        levels (int): number of resolutions, 1 to 3. Default: 3.
        min_width (int): narrowest level kept, in pixels. Default: 64.

    Raises:
        ValueError: if ``levels`` is not 1, 2 or 3.

    Examples:
        >>> SubsamplePyramid(3).strides(256)
        [4, 2, 1]
        >>> SubsamplePyramid(3).strides(200)
        [2, 1]
    """

    levels: int = 3
    min_width: int = 64

    def __post_init__(self):
        if self.levels not in (1, 2, 3):
            raise ValueError('resolution_num must be 1, 2 or 3, got %r' % (self.levels,))

    def strides(self, width):
        """The strides of the levels kept for an image ``width`` pixels wide, coarse first.

        Raises:
            ValueError: if no level is at least ``min_width`` wide.
        """
        kept = [s for s in (4, 2, 1)[-self.levels:] if width // s >= self.min_width]
        if not kept:
            raise ValueError('image width %d is too small: the finest level must be at least '
                             '%d pixels wide' % (width, self.min_width))
        return kept

    def level(self, x, stride):
        """The level image of a preprocessed batch ``x`` (N, C, H, W): ``x[..., ::s, ::s]``."""
        return x[:, :, ::stride, ::stride]

    def upsample(self, x, shape):
        """Doubles ``x`` (N, C, h, w) by repetition and crops it to ``shape`` (H, W)."""
        xp = backend.get_array_module(x)
        doubled = xp.repeat(xp.repeat(x, 2, axis=2), 2, axis=3)
        return xp.ascontiguousarray(doubled[:, :, :shape[0], :shape[1]])
