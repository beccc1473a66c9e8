"""paper/measures.py and paper/plot.py against answers worked out here independently: SSIM of
one window by its formula, CIELAB of known colours, sliced Wasserstein distances of crafted
point sets, the settle step of crafted energies; and plots that draw what they are given."""
import sys

import numpy
import pytest

from helpers import ROOT, content_card

# The figure set is no part of the library: it lies in paper/, imported from the project's
# root as scripts/reproduce_figures.py does.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from paper import measures, plot  # noqa: E402

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _photo(size=192, seed=0):
    """A smooth random picture with edges, big enough for MS-SSIM's 5 scales."""
    rng = numpy.random.RandomState(seed)
    y, x = numpy.mgrid[0:size, 0:size] / size
    rgb = numpy.stack([128 + 100 * numpy.sin(6 * x + 3 * y), 128 + 100 * numpy.cos(5 * y),
                       255 * x * y], axis=-1)
    rgb[(x - 0.4) ** 2 + (y - 0.6) ** 2 < 0.05] = (30, 200, 60)
    rgb += rng.normal(0, 3, rgb.shape)
    return rgb.clip(0, 255).astype(numpy.uint8)


def _luma(rgb):
    return rgb.astype(numpy.float64) @ [0.299, 0.587, 0.114]


# ---- ms_ssim ----

def test_ms_ssim_of_an_image_with_itself_is_1():
    picture = _photo()
    assert measures.ms_ssim(picture, picture) == pytest.approx(1.0, abs=1e-12)
    assert measures.ms_ssim(content_card(), content_card()) == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_falls_as_noise_grows():
    picture = _photo()
    rng = numpy.random.RandomState(1)
    noise = rng.standard_normal(picture.shape)
    scores = [measures.ms_ssim(picture, (picture + sigma * noise).clip(0, 255).astype(
        numpy.uint8)) for sigma in (2, 5, 10, 20, 40, 80)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert scores[0] > 0.95 and scores[-1] < 0.5, scores


def test_ms_ssim_is_symmetric():
    a, b = _photo(seed=0), _photo(seed=1)[::-1]
    assert measures.ms_ssim(a, b) == pytest.approx(measures.ms_ssim(b, a), abs=1e-12)
    assert measures.ms_ssim(a, b) < 0.9


def test_ms_ssim_of_one_window_is_ssim_by_its_formula():
    """11 x 11 images hold exactly one 11 x 11 window: one scale, and the Gaussian-weighted
    statistics over the whole image."""
    rng = numpy.random.RandomState(2)
    a = rng.randint(0, 256, (11, 11, 3)).astype(numpy.uint8)
    b = (a * 0.6 + rng.randint(0, 100, (11, 11, 3))).astype(numpy.uint8)
    g = numpy.exp(-numpy.arange(-5, 6) ** 2 / (2 * 1.5 ** 2))
    w = numpy.outer(g, g) / numpy.outer(g, g).sum()
    ya, yb = _luma(a), _luma(b)
    ma, mb = (w * ya).sum(), (w * yb).sum()
    va, vb = (w * (ya - ma) ** 2).sum(), (w * (yb - mb) ** 2).sum()
    cov = (w * (ya - ma) * (yb - mb)).sum()
    expected = ((2 * ma * mb + C1) * (2 * cov + C2)
                / ((ma ** 2 + mb ** 2 + C1) * (va + vb + C2)))
    assert measures.ms_ssim(a, b) == pytest.approx(expected, rel=1e-9)
    # Luminance arrays give the same.
    assert measures.ms_ssim(ya, yb) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize('side, exponent', [(16, 1.0), (200, measures.MS_SSIM_WEIGHTS[-1]),
                                             (100, 0.2363 / (0.0448 + 0.2856 + 0.3001 + 0.2363))])
def test_ms_ssim_of_constant_images(side, exponent):
    """Flat images: every contrast-structure term is C2 / C2 = 1, and the luminance term at
    the coarsest scale (2 x 2 means keep the value) carries that scale's exponent: 1 with one
    scale (16 px), 0.1333 with five (200 px), 0.2363 renormalised over four (100 px: 100, 50, 25,
    13; 7 would hold no window)."""
    a = numpy.full((side, side, 3), 100, numpy.uint8)
    b = numpy.full((side, side, 3), 150, numpy.uint8)
    luminance = (2 * 100.0 * 150.0 + C1) / (100.0 ** 2 + 150.0 ** 2 + C1)
    assert measures.ms_ssim(a, b) == pytest.approx(luminance ** exponent, rel=1e-9)


def test_ms_ssim_resizes_b_to_a():
    picture = _photo()
    wider = numpy.asarray(plot.Image.fromarray(picture).resize((193, 192)))
    score = measures.ms_ssim(picture, wider)
    assert 0.95 < score < 1.0


@pytest.mark.parametrize('a, b, message', [
    (numpy.zeros((10, 40, 3), numpy.uint8), numpy.zeros((10, 40, 3), numpy.uint8), '11 x 11'),
    (numpy.zeros((20, 20, 3), numpy.float32), numpy.zeros((20, 20, 3), numpy.uint8), 'a must'),
    (numpy.zeros((20, 20)), numpy.zeros((20, 20, 4), numpy.uint8), 'b must'),
    (numpy.full((20, 20), numpy.nan), numpy.zeros((20, 20)), 'non-finite'),
])
def test_ms_ssim_refuses_bad_images(a, b, message):
    with pytest.raises(ValueError, match=message):
        measures.ms_ssim(a, b)


# ---- CIELAB and colour_distance ----

@pytest.mark.parametrize('rgb, lab, tolerance', [
    ((255, 255, 255), (100.0, 0.0, 0.0), 0.01),
    ((0, 0, 0), (0.0, 0.0, 0.0), 0.01),
    ((255, 0, 0), (53.24, 80.09, 67.20), 0.05),
    ((0, 255, 0), (87.73, -86.18, 83.18), 0.05),
    ((0, 0, 255), (32.30, 79.19, -107.86), 0.05),
])
def test_lab_of_known_colours(rgb, lab, tolerance):
    got = measures.srgb_to_lab(numpy.array(rgb, numpy.uint8))
    assert numpy.abs(got - lab).max() <= tolerance, got


def test_lab_keeps_the_shape_and_refuses_floats():
    assert measures.srgb_to_lab(numpy.zeros((4, 5, 3), numpy.uint8)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match='uint8'):
        measures.srgb_to_lab(numpy.zeros((4, 3)))


def test_directions_are_unit_with_half_their_lightness():
    assert measures.DIRECTIONS.shape == (64, 3)
    assert numpy.linalg.norm(measures.DIRECTIONS, axis=1) == pytest.approx(numpy.ones(64))
    assert numpy.abs(measures.DIRECTIONS[:, 0]).mean() == pytest.approx(0.5, abs=1e-15)


def test_a_shift_of_lightness_moves_by_half_of_it():
    points = numpy.random.RandomState(3).normal(50, 20, (500, 3))
    shifted = points + [10.0, 0.0, 0.0]
    expected = 10 * numpy.abs(measures.DIRECTIONS[:, 0]).mean()
    assert measures.sliced_wasserstein(points, shifted) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(5.0)


def test_sliced_wasserstein_of_unequal_sets_is_exact():
    """Uniform on {0, 1} against {0, 0, 1}, along L*: the quantile functions differ by 1 on
    (1/2, 2/3], so each direction gives |d_L| / 6 and the mean 1/12."""
    two = numpy.array([[0.0, 0, 0], [1, 0, 0]])
    three = numpy.array([[0.0, 0, 0], [0, 0, 0], [1, 0, 0]])
    assert measures.sliced_wasserstein(two, three) == pytest.approx(1 / 12, rel=1e-12)
    assert measures.sliced_wasserstein(three, two) == pytest.approx(1 / 12, rel=1e-12)


def test_colour_distance_of_the_same_colours_is_0():
    picture = _photo(64)
    assert measures.colour_distance(picture, picture) == 0.0
    shuffled = numpy.random.RandomState(4).permutation(picture.reshape(-1, 3)).reshape(
        picture.shape)
    assert measures.colour_distance(picture, shuffled) == 0.0
    tiled = numpy.tile(picture, (2, 3, 1))  # other size, same distribution
    assert measures.colour_distance(picture, tiled) == pytest.approx(0.0, abs=1e-12)


def test_colour_distance_is_symmetric_and_positive():
    a, b = _photo(64, seed=0), content_card()
    forward, backward = measures.colour_distance(a, b), measures.colour_distance(b, a)
    assert forward > 1.0
    assert forward == pytest.approx(backward, rel=1e-12)


def test_colour_distance_of_two_greys_is_half_their_lightness_gap():
    """Flat greys: a* = b* = 0, so every pixel moves by (delta L*, 0, 0)."""
    dark = numpy.full((8, 8, 3), 80, numpy.uint8)
    light = numpy.full((5, 7, 3), 160, numpy.uint8)
    gap = (measures.srgb_to_lab(light[0, 0]) - measures.srgb_to_lab(dark[0, 0]))[0]
    assert gap > 20
    assert measures.colour_distance(dark, light) == pytest.approx(gap / 2, rel=1e-5)


def test_colour_distance_refuses_bad_images():
    with pytest.raises(ValueError, match='b must be'):
        measures.colour_distance(_photo(16), numpy.zeros((16, 16)))
    with pytest.raises(ValueError, match='a must be'):
        measures.colour_distance(numpy.zeros((0, 4, 3), numpy.uint8), _photo(16))
    with pytest.raises(ValueError, match='non-finite'):
        measures.sliced_wasserstein(numpy.full((2, 3), numpy.inf), numpy.zeros((2, 3)))


# ---- settled ----

@pytest.mark.parametrize('energies, tolerance, expected', [
    ([10, 10, 10, 1, 1, 1], 0.01, 4),  # a step
    ([1 + 2.0 ** -j for j in range(1, 21)], 0.01, 7),  # 2^-7 <= 0.01 (1 + 2^-20) < 2^-6
    ([1 + 2.0 ** -j for j in range(1, 21)], 0.1, 4),
    ([5, 5, 5, 1], 0.01, 4),  # only the last
    ([3], 0.01, 1),
    ([2, 2, 2], 0.0, 1),  # flat from the start
    ([1, 0.5, 2], 0.0, 1),  # below the final energy counts as settled
    ([1.0, 1.02, 1.0], 0.01, 3),
    ([1.0, 1.02, 1.0], 0.05, 1),
])
def test_settled(energies, tolerance, expected):
    assert measures.settled(energies, tolerance) == expected


@pytest.mark.parametrize('energies, tolerance, message', [
    ([], 0.01, 'non-empty'),
    ([[1, 2]], 0.01, 'non-empty 1-D'),
    ([1, 0, 1], 0.01, 'positive'),
    ([1, numpy.nan], 0.01, 'finite'),
    ([1, 1], -0.1, 'tolerance'),
])
def test_settled_refuses_bad_input(energies, tolerance, message):
    with pytest.raises(ValueError, match=message):
        measures.settled(energies, tolerance)


# ---- line_plot ----

def _colour_count(picture, colour, rows=None):
    pixels = numpy.asarray(picture)[rows] if rows is not None else numpy.asarray(picture)
    return int((pixels == colour).all(axis=-1).sum())


def test_line_plot_draws_each_series_in_its_colour():
    steps = numpy.arange(1, 101)
    series = [('MRF', steps, 1e6 / steps), ('Gram', steps, 5e4 + 1e3 * steps),
              ('third', steps, numpy.full(100, 3e5))]
    picture = plot.line_plot(series, title='energy', x_label='iteration', y_label='energy',
                             log_y=True, size=(500, 320), markers=[(50, 'level 1 ends')])
    assert picture.size == (500, 320) and picture.mode == 'RGB'
    # The legend lies in the bottom rows; above them only the curves use these colours.
    frame = slice(0, 240)
    for colour in plot.COLOURS[:3]:
        assert _colour_count(picture, colour, frame) > 100, colour
    assert _colour_count(picture, plot.COLOURS[3]) == 0
    assert _colour_count(picture, plot._MARKER) > 20  # the dashed marker


def test_line_plot_linear_and_a_single_point():
    picture = plot.line_plot([('one', [3.0], [0.5]), ('two', [0, 10], [-1, 1])], title='t',
                             x_label='x', y_label='y')
    assert picture.size == (640, 400)
    assert _colour_count(picture, plot.COLOURS[0], slice(0, 330)) > 5
    assert _colour_count(picture, plot.COLOURS[1], slice(0, 330)) > 100


def test_ticks_are_round():
    assert plot._linear_ticks(0.0, 2.6e6) == [0.0, 5e5, 1e6, 1.5e6, 2e6, 2.5e6, 3e6]
    assert plot._linear_ticks(3.0, 3.0) == [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]  # 3 +- 1.5
    labelled, minor = plot._log_ticks(2e5, 9e5)
    assert labelled == [1e5, 2e5, 5e5, 1e6] and len(minor) == 6
    assert [text for _, text in plot._labelled(labelled)] == ['1e5', '2e5', '5e5', '1e6']
    assert [text for _, text in plot._labelled([0.0, 0.1 * 3, 0.6])] == ['0', '0.3', '0.6']


@pytest.mark.parametrize('series, keywords, message', [
    ([], {}, 'empty'),
    ([('a', [1, 2, 3], [1, 2])], {}, 'one length'),
    ([('a', [], [])], {}, 'at least 1'),
    ([('a', [1, 2], [1, numpy.nan])], {}, 'not finite'),
    ([('a', [1, 2], [1, 0])], {'log_y': True}, 'logarithmic'),
    ([('a', [1, 2], [1, -3])], {'log_y': True}, 'logarithmic'),
    ([('a', [1, 2])], {}, r'\(label, xs, ys\)'),
    ([(1, [1, 2], [1, 2])], {}, 'str label'),
    ([('s%d' % i, [1], [1]) for i in range(11)], {}, 'at most 10'),
    ([('a', [1, 2], [1, 2])], {'markers': [('x', 1)]}, 'marker'),
    ([('a', [1, 2], [1, 2])], {'markers': [(numpy.inf, 'end')]}, 'marker'),
    ([('a', [1, 2], [1, 2])], {'size': (0, 100)}, 'positive ints'),
    ([('a', [1, 2], [1, 2])], {'size': (100, 60)}, 'no room'),
    ([('a', [1, 2], [1, 2])], {'title': None}, 'title must be a str'),
])
def test_line_plot_refuses_bad_input(series, keywords, message):
    arguments = {'title': 't', 'x_label': 'x', 'y_label': 'y', **keywords}
    with pytest.raises(ValueError, match=message):
        plot.line_plot(series, **arguments)


def test_docstring_examples():
    import doctest
    for module in (measures, plot):
        failed, attempted = doctest.testmod(module)
        assert attempted > 0 and failed == 0, module.__name__
