"""Line plots for ``docs/figures.md``, drawn with Pillow alone (the project has no plotting
library): :func:`line_plot`.

Like ``paper/figures.py`` this module is no part of the library and is not installed with it.
"""
import math
import numbers

import numpy
from PIL import Image, ImageDraw, ImageFont

#: The series' colours, in order: Tableau's ten, distinct from one another and on white.
COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))

_GRID = (225, 225, 225)
_MARKER = (110, 110, 110)
# Pillow's default font (Aileron where Pillow has FreeType) at 13 px, readable at 100 %
# in a browser; its bitmap font, where there is no FreeType.
_FONT_SIZE = 13
_TICK = 4  # length of a tick mark, in pixels
_PAD = 6   # space between neighbouring texts and the frame
_SMALLEST_PLOT = 40  # the least width and height of the frame, in pixels


def line_plot(series, *, title, x_label, y_label, log_y=False, size=(640, 400), markers=()):
    """Draws named curves on common axes, with tick labels at round numbers and a legend.

    The x axis is linear; the y axis linear, or logarithmic (base 10) with ``log_y``. A
    linear axis runs between round numbers just outside the data, with 4 to 8 labelled
    ticks at steps of 1, 2 or 5 times a power of 10. A logarithmic axis runs between whole
    decades, labelled at each decade (at most 8 of them, every second or further one when
    there are more), and also at 2 and 5 times each when it spans at most two decades; the
    other multiples get unlabelled ticks. Each series is a 2-pixel line in its colour of
    :data:`COLOURS` (a single point, a dot); the legend lies under the x axis, where it
    covers no curve. A marker is a dashed grey vertical line, labelled at the top of the
    frame (a level's end, the step a run settled at).

    Args:
        series (sequence of tuple): the curves, ``(label, xs, ys)`` each: ``label`` a str,
            ``xs`` and ``ys`` finite reals of one length (at least 1); at most 10 curves.
        title (str): drawn centred above the frame.
        x_label (str): drawn under the x axis.
        y_label (str): drawn upright, left of the y axis.
        log_y (bool): a logarithmic y axis; every y must then be positive. Default: False.
        size (tuple of int): (width, height) of the image in pixels. Default: (640, 400).
        markers (sequence of tuple): vertical lines, ``(x, label)`` each, ``x`` finite; the
            x axis widens to hold them. Default: none.

    Returns:
        PIL.Image.Image: an RGB image of ``size``, white behind.

    Raises:
        ValueError: if ``series`` is empty or holds more than 10 curves, if a curve is not
            ``(label, xs, ys)`` with one length of finite reals, if a y is not positive with
            ``log_y``, if a marker is not ``(x, label)`` with a finite ``x``, or if ``size``
            leaves the frame under 40 x 40 pixels, or if a title or label is not a str.

    Examples:
        >>> picture = line_plot([('MRF', [0, 1, 2], [9.0, 4.0, 3.0]),
        ...                      ('Gram', [0, 1, 2], [8.0, 2.0, 1.0])],
        ...                     title='Energy', x_label='iteration', y_label='energy',
        ...                     log_y=True)
        >>> picture.size, picture.mode
        ((640, 400), 'RGB')
    """
    for name, text in (('title', title), ('x_label', x_label), ('y_label', y_label)):
        if not isinstance(text, str):
            raise ValueError('%s must be a str, got %r' % (name, text))
    curves = _checked_series(series, log_y)
    marks = _checked_markers(markers)
    width, height = _checked_size(size)
    font = ImageFont.load_default(size=_FONT_SIZE)
    picture = Image.new('RGB', (width, height), 'white')
    draw = ImageDraw.Draw(picture)
    text_height = _text_size(draw, 'Ag', font)[1]

    xs = numpy.concatenate([x for _, x, _ in curves] + [numpy.array([x for x, _ in marks])])
    ys = numpy.concatenate([y for _, _, y in curves])
    x_ticks = _linear_ticks(xs.min(), xs.max())
    if log_y:
        y_ticks, y_minor = _log_ticks(ys.min(), ys.max())
        to_y = numpy.log10
    else:
        y_ticks, y_minor = _linear_ticks(ys.min(), ys.max()), []
        to_y = numpy.asarray

    # The frame's corners follow from the texts around it: the title above, the y label and
    # the y tick labels on the left, half the last x tick label on the right, the x tick
    # labels, the x label and the legend's rows below.
    y_labels, x_labels = _labelled(y_ticks), _labelled(x_ticks)
    left = (_PAD + text_height + _PAD + max(_text_size(draw, t, font)[0] for _, t in y_labels)
            + _PAD + _TICK)
    right = width - max(2 * _PAD, _text_size(draw, x_labels[-1][1], font)[0] // 2 + _PAD)
    top = _PAD + text_height + 2 * _PAD
    legend = _legend_rows(draw, font, [label for label, _, _ in curves], width - 2 * _PAD)
    bottom = (height - _PAD - len(legend) * (text_height + _PAD) - text_height - _PAD
              - text_height - 2 * _PAD - _TICK)
    if right - left < _SMALLEST_PLOT or bottom - top < _SMALLEST_PLOT:
        raise ValueError('size %s leaves no room for a plot with these labels (the frame '
                         'would be %d x %d pixels, under %d x %d)'
                         % ((width, height), right - left, bottom - top, _SMALLEST_PLOT,
                            _SMALLEST_PLOT))

    x_low, x_high = x_ticks[0], x_ticks[-1]
    y_low, y_high = float(to_y(y_ticks[0])), float(to_y(y_ticks[-1]))

    def to_column(x):
        """Pixel columns of x values."""
        return left + (numpy.asarray(x, numpy.float64) - x_low) / (x_high - x_low) * (
            right - left)

    def to_row(y):
        """Pixel rows of y values."""
        return bottom - (to_y(numpy.asarray(y, numpy.float64)) - y_low) / (y_high - y_low) * (
            bottom - top)

    for value, text in x_labels:
        column = float(to_column(value))
        draw.line([(column, top), (column, bottom)], fill=_GRID)
        draw.line([(column, bottom), (column, bottom + _TICK)], fill='black')
        _write(draw, font, (column, bottom + _TICK + _PAD // 2), text, 0.5)
    for value, text in y_labels:
        row = float(to_row(value))
        draw.line([(left, row), (right, row)], fill=_GRID)
        draw.line([(left - _TICK, row), (left, row)], fill='black')
        _write(draw, font, (left - _TICK - _PAD // 2, row - text_height / 2), text, 1.0)
    for value in y_minor:
        row = float(to_row(value))
        draw.line([(left - _TICK // 2, row), (left, row)], fill='black')
    draw.rectangle([left, top, right, bottom], outline='black')

    _draw_markers(draw, font, [(float(to_column(x)), label) for x, label in marks],
                  (left, top, right, bottom), text_height)
    for (_, x, y), colour in zip(curves, COLOURS):
        points = list(zip(to_column(x).tolist(), to_row(y).tolist()))
        if len(points) == 1:
            (column, row), = points
            draw.ellipse([column - 2, row - 2, column + 2, row + 2], fill=colour)
        else:
            draw.line(points, fill=colour, width=2, joint='curve')

    _write(draw, font, (width / 2, _PAD), title, 0.5)
    label_row = bottom + _TICK + 2 * _PAD + text_height
    _write(draw, font, ((left + right) / 2, label_row), x_label, 0.5)
    _draw_upright(picture, y_label, font, _PAD, (top + bottom) / 2)
    row = label_row + text_height + _PAD
    for entries in legend:
        column = (width - entries[-1][0] - entries[-1][1]) / 2  # each row centred
        for offset, _, index, label in entries:
            colour = COLOURS[index]
            middle = row + text_height / 2
            draw.line([(column + offset, middle), (column + offset + 20, middle)],
                      fill=colour, width=3)
            _write(draw, font, (column + offset + 20 + _PAD, row), label)
        row += text_height + _PAD
    return picture


def _checked_series(series, log_y):
    """The curves as ``(label, xs, ys)`` with float64 arrays, checked."""
    series = list(series)
    if not series:
        raise ValueError('series is empty: give at least one (label, xs, ys)')
    if len(series) > len(COLOURS):
        raise ValueError('at most %d series, one colour each, got %d'
                         % (len(COLOURS), len(series)))
    curves = []
    for number, entry in enumerate(series):
        if not (isinstance(entry, (tuple, list)) and len(entry) == 3
                and isinstance(entry[0], str)):
            raise ValueError('series[%d] must be (label, xs, ys) with a str label, got %r'
                             % (number, entry))
        label, xs, ys = entry
        try:
            xs, ys = numpy.asarray(xs, numpy.float64), numpy.asarray(ys, numpy.float64)
        except (TypeError, ValueError):
            raise ValueError('series %r: xs and ys must be real numbers' % label) from None
        if xs.ndim != 1 or ys.ndim != 1 or len(xs) != len(ys) or len(xs) == 0:
            raise ValueError('series %r: xs and ys must be 1-D, of one length, at least 1 '
                             '(got shapes %s and %s)' % (label, xs.shape, ys.shape))
        if not (numpy.isfinite(xs).all() and numpy.isfinite(ys).all()):
            raise ValueError('series %r holds a value that is not finite' % label)
        if log_y and (ys <= 0).any():
            raise ValueError('series %r holds a y <= 0, which a logarithmic axis cannot show'
                             % label)
        curves.append((label, xs, ys))
    return curves


def _checked_markers(markers):
    """The markers as ``(x, label)`` with float x, checked."""
    checked = []
    for entry in markers:
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2
                and isinstance(entry[1], str) and isinstance(entry[0], numbers.Real)
                and math.isfinite(entry[0])):
            raise ValueError('a marker must be (x, label) with a finite x and a str label, '
                             'got %r' % (entry,))
        checked.append((float(entry[0]), entry[1]))
    return checked


def _checked_size(size):
    """``size`` as two ints, checked (the frame's room is checked once the texts are known)."""
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(side, int) and side > 0 for side in size)):
        raise ValueError('size must be (width, height), two positive ints, got %r' % (size,))
    return size


def _linear_ticks(low, high):
    """Round ticks covering [low, high]: 3 to 7 steps of 1, 2 or 5 times a power of 10."""
    low, high = float(low), float(high)
    if low == high:  # one value: an interval around it
        pad = abs(low) / 2 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / 6
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step), math.ceil(high / step)
    return [k * step for k in range(first, last + 1)]


def _log_ticks(low, high):
    """Labelled and unlabelled ticks of a log axis from the decade at or below ``low`` to the
    one at or above ``high``."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    if first == last:
        last += 1
    decades = list(range(first, last + 1))
    labelled = [10.0 ** k for k in decades[::math.ceil(len(decades) / 8)]]
    if labelled[-1] != 10.0 ** last:  # a skipped last decade is still the axis's end
        labelled.append(10.0 ** last)
    every = (2, 5) if last - first <= 2 else ()
    labelled += [m * 10.0 ** k for k in decades[:-1] for m in every]
    minor = [m * 10.0 ** k for k in decades[:-1] for m in range(2, 10) if m not in every]
    return sorted(labelled), minor


def _labelled(ticks):
    """``(value, label)`` of each tick: all in plain decimals (at most 6 significant digits),
    or, where one would be 100000 or more or under 0.001, all as ``1.5e6``, ``2e-4``."""
    scientific = any(abs(v) >= 1e5 or 0 < abs(v) < 1e-3 for v in ticks)
    labels = []
    for value in ticks:
        if value == 0:
            text = '0'
        elif scientific:
            mantissa, exponent = ('%.5e' % value).split('e')
            text = '%se%d' % (mantissa.rstrip('0').rstrip('.'), int(exponent))
        else:
            text = '%.6g' % value
        labels.append((value, text))
    return labels


def _write(draw, font, position, text, align=0.0, fill='black'):
    """Draws ``text`` with its box's top at ``position``'s row and the point ``align`` of
    the way across its box (0 left, 0.5 centre, 1 right) at its column."""
    box = draw.textbbox((0, 0), text, font=font)
    draw.text((position[0] - align * (box[2] - box[0]) - box[0], position[1] - box[1]), text,
              fill=fill, font=font)


def _text_size(draw, text, font):
    """Width and height of ``text``'s box, in pixels."""
    box = draw.textbbox((0, 0), text, font=font)
    return box[2] - box[0], box[3] - box[1]


def _legend_rows(draw, font, labels, room):
    """The legend's entries in rows no wider than ``room``: each row a list of
    ``(offset, width, series index, label)``."""
    rows, row, offset = [], [], 0
    for index, label in enumerate(labels):
        entry = 20 + _PAD + _text_size(draw, label, font)[0]
        if row and offset + entry > room:
            rows.append(row)
            row, offset = [], 0
        row.append((offset, entry, index, label))
        offset += entry + 3 * _PAD
    rows.append(row)
    return rows


def _draw_markers(draw, font, marks, frame, text_height):
    """Dashed vertical lines at pixel columns in the ``frame`` (left, top, right, bottom),
    each labelled at its top, right of the line (left of it where the frame ends first); a
    label that would overlap an earlier one goes one line lower."""
    _, top, right, bottom = frame
    line_ends = []  # the right end of the last label in each line of labels
    for column, label in marks:
        for y in range(int(top) + 1, int(bottom), 8):
            draw.line([(column, y), (column, min(y + 4, bottom - 1))], fill=_MARKER)
        label_width = _text_size(draw, label, font)[0]
        start = column + 3 if column + 3 + label_width <= right else column - 3 - label_width
        line = next((i for i, end in enumerate(line_ends) if end < start), len(line_ends))
        if line == len(line_ends):
            line_ends.append(0)
        line_ends[line] = start + label_width + _PAD
        _write(draw, font, (start, top + 3 + line * (text_height + 3)), label, fill=_MARKER)


def _draw_upright(picture, text, font, left, middle):
    """Pastes ``text`` turned a quarter left, its left edge at ``left``, centred on row
    ``middle``."""
    draw = ImageDraw.Draw(picture)
    text_width, text_height = _text_size(draw, text, font)
    box = draw.textbbox((0, 0), text, font=font)
    strip = Image.new('RGB', (text_width + 2, text_height + 2), 'white')
    ImageDraw.Draw(strip).text((1 - box[0], 1 - box[1]), text, fill='black', font=font)
    turned = strip.rotate(90, expand=True)
    picture.paste(turned, (int(left), int(middle - turned.height / 2)))
