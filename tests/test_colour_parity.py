"""Parity of ``chainer_mrf.colour`` with dsanno's colour functions, ported in ``dsanno_oracle.py``
(``util.gray``, ``util.luminance_only``, the YIQ helpers, ``util.match_color_histogram`` and
``style_transfer_runner.run``'s ``--luminance_only`` block), on generic images: random colours
of a random, non-degenerate (full-rank) colour covariance, several sizes and seeds.

Tolerances are derived from float32 rounding, not observed, element by element. With
``u = 2^-24`` and ``gamma(n)`` the bound on the relative error of a sum of ``n`` terms in any
order, relative to the sum of their magnitudes (``dsanno_oracle.gamma``: the worst case
``n u / (1 - n u)`` or, for long sums, Higham and Mary's probabilistic ``8 sqrt(n) u``), each
implementation is within the bound below of the exact value of dsanno's formula, so the two are
within twice it (first order in u):

- a 3 x 3 colour matrix M (``gray``, YIQ): ``gamma(3) |M| |x|``; a chain of two (``join``)
  adds the first's bound carried through the second's magnitudes;
- a standardisation ``(y - m_s) / s_s * s_c + m_c`` of Y over n pixels (``luminance_only``):
  a mean is off by ``gamma(n)`` of the mean magnitude plus the largest error of its terms, a
  standard deviation by half of ``gamma(n) + 6 u`` relative (its squares and square root) plus
  the largest error of its terms, each multiplication or division by ``u``;
- the histogram map ``T (a - mean(a)) + mean(b)``: dsanno takes the means and ``a - mean(a)``
  in float32, the library in float64, so ``|T| (gamma(n) mean|a| + u |a - mean(a)|) +
  gamma(n) mean|b|``, plus the final rounding to float32 (``u |out|``) and T's float64 error
  (``eig`` against ``eigh``; ``64 eps64`` times the covariances' condition numbers, far below
  the rest).

A different formula (a Cholesky factor for the symmetric square roots, swapped YIQ rows, RGB
weights on BGR pixels, a sample standard deviation) moves the results by 1e-3 to 1e2 of their
scale, orders of magnitude beyond these bounds (a few 1e-5 at most).
"""
import numpy
import pytest

from chainer_mrf import colour, image, inputs, presets

import dsanno_oracle as oracle

U, gamma = oracle.U, oracle.gamma
EPS64 = 2.0 ** -52
WEIGHTS = numpy.array([0.114, 0.587, 0.299])  # dsanno's Y of (B, G, R), written out again
SHAPES = [(1, 3, 5, 7), (1, 3, 16, 12), (2, 3, 33, 40), (1, 3, 83, 64)]
SEEDS = [0, 1, 2]
CASES = [(shape, seed) for shape in SHAPES for seed in SEEDS]
IDS = ['%dx%dx%d-seed%d' % (shape[0], shape[2], shape[3], seed) for shape, seed in CASES]


def generic(shape, seed):
    """Preprocessed-like BGR images (0-255 scale, mean removed) whose colours have a random
    full-rank covariance and a random offset, per image."""
    rng = numpy.random.RandomState(seed)
    out = numpy.empty(shape, numpy.float32)
    for i in range(shape[0]):
        mixing = rng.uniform(-1, 1, (3, 3)) + numpy.eye(3) * 1.5
        while abs(numpy.linalg.det(mixing)) < 0.5:  # keep the covariance well conditioned
            mixing = rng.uniform(-1, 1, (3, 3)) + numpy.eye(3) * 1.5
        pixels = mixing @ rng.standard_normal((3, shape[2] * shape[3])) * rng.uniform(15, 45)
        out[i] = (pixels + rng.uniform(-40, 40, (3, 1))).reshape(shape[1:])
    return out


def pair(shape, seed):
    """A style of ``shape`` and a content of about half its pixels, both generic."""
    content_shape = shape[:2] + (shape[2] // 2 + 2, shape[3] + 1)
    return generic(shape, seed), generic(content_shape, seed + 100)


def assert_within(ours, theirs, bound, what):
    assert ours.dtype == numpy.float32, (what, ours.dtype)
    ours, theirs = numpy.asarray(ours, numpy.float64), numpy.asarray(theirs, numpy.float64)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    excess = numpy.abs(ours - theirs) - bound
    worst = numpy.unravel_index(numpy.argmax(excess), excess.shape)
    assert (excess <= 0).all(), (
        '%s: |ours - dsanno\'s| = %.3g at %s exceeds the rounding bound %.3g (%d elements over)'
        % (what, abs(ours[worst] - theirs[worst]), worst, bound[worst], (excess > 0).sum()))


def mix_bound(matrix, magnitude):
    """One implementation's error bound for a 3 x 3 colour matrix applied to channels of the
    given magnitudes (N, 3, H, W)."""
    return gamma(3) * numpy.einsum('ij,njhw->nihw', numpy.abs(matrix), magnitude)


def y_bound(x):
    """Bound on one implementation's Y of x, (N, 1, H, W)."""
    return mix_bound(WEIGHTS[None], numpy.abs(x.astype(numpy.float64)))


def standardised_bound(style_y, content_y, style_error, content_error):
    """One implementation's error bound for Y_s standardised to Y_c (per image, over all the
    elements given), the Ys known to within the given errors (same shapes)."""
    out = numpy.empty(style_y.shape)
    for i in range(len(style_y)):
        ys, yc, es, ec = style_y[i], content_y[i], style_error[i], content_error[i]
        n_s, n_c = ys.size, yc.size
        mean_s = gamma(n_s) * numpy.abs(ys).mean() + es.max()
        mean_c = gamma(n_c) * numpy.abs(yc).mean() + ec.max()
        std_s, std_c = ys.std(), yc.std()
        rel_s = (gamma(n_s) + 6 * U) / 2 + es.max() / std_s
        rel_c = (gamma(n_c) + 6 * U) / 2 + ec.max() / std_c
        ratio = std_c / std_s
        centred = numpy.abs(ys - ys.mean()) * ratio
        result = centred + abs(yc.mean())
        out[i] = (ratio * (es + mean_s) + centred * (rel_s + rel_c) + mean_c
                  + 4 * U * (centred + result))
    return out


def histogram_bound(style, content):
    """One implementation's error bound for match_color_histogram(style, content)."""
    out = numpy.empty(style.shape)
    for i in range(len(style)):
        a = style[i].reshape(3, -1).astype(numpy.float64)
        b = content[i].reshape(3, -1).astype(numpy.float64)
        cov_a, cov_b = numpy.cov(a) + 1e-6 * numpy.eye(3), numpy.cov(b)
        transform = (_sqrtm(cov_b) @ numpy.linalg.inv(_sqrtm(cov_a)))
        centred = numpy.abs(a - a.mean(axis=1, keepdims=True))
        mean_a = gamma(a.shape[1]) * numpy.abs(a).mean(axis=1, keepdims=True)
        mean_b = gamma(b.shape[1]) * numpy.abs(b).mean(axis=1, keepdims=True)
        result = numpy.abs(transform) @ centred + numpy.abs(b.mean(axis=1, keepdims=True))
        eig = 64 * EPS64 * (numpy.linalg.cond(cov_a) + numpy.linalg.cond(cov_b))
        out[i] = (numpy.abs(transform) @ (mean_a + U * centred) + mean_b + U * result
                  + eig * result).reshape(style.shape[1:])
    return out


def _sqrtm(matrix):
    values, vectors = numpy.linalg.eigh(matrix)
    return (vectors * numpy.sqrt(values)) @ vectors.T


# --- luminance (util.gray), keep_color's network input -------------------------------------------

@pytest.mark.parametrize('shape,seed', CASES, ids=IDS)
def test_luminance_is_dsannos_gray(shape, seed):
    x = generic(shape, seed)
    ours, theirs = colour.luminance(x).array, oracle.gray(x).array
    bound = 2 * y_bound(x)
    assert_within(ours, theirs, numpy.repeat(bound, 3, axis=1), 'luminance')


# --- match_luminance (util.luminance_only), keep_color's style at each level --------------------

@pytest.mark.parametrize('shape,seed', CASES, ids=IDS)
def test_match_luminance_is_dsannos_luminance_only(shape, seed):
    style, content = pair(shape, seed)
    ours, theirs = colour.match_luminance(style, content), oracle.luminance_only(style, content)
    style_y, content_y = (numpy.einsum('c,nchw->nhw', WEIGHTS, v.astype(numpy.float64))
                          for v in (style, content))
    bound = 2 * standardised_bound(style_y, content_y, y_bound(style)[:, 0],
                                   y_bound(content)[:, 0])
    assert_within(ours, theirs, numpy.repeat(bound[:, None], 3, axis=1), 'match_luminance')


# --- YIQ (util.bgr_to_yiq, yiq_to_bgr, split_bgr_to_yiq, join_yiq_to_bgr) -----------------------

BGR_TO_YIQ = numpy.array([WEIGHTS, [-0.322, -0.274, 0.596], [0.312, -0.523, 0.211]])
YIQ_TO_BGR = numpy.array([[1, -1.106, 1.703], [1, -0.272, -0.647], [1, 0.956, 0.621]])


@pytest.mark.parametrize('shape,seed', CASES, ids=IDS)
def test_yiq_conversions_are_dsannos(shape, seed):
    x = generic(shape, seed)
    magnitude = numpy.abs(x.astype(numpy.float64))
    to_yiq = 2 * mix_bound(BGR_TO_YIQ, magnitude)
    assert_within(colour.bgr_to_yiq(x), oracle.bgr_to_yiq(x), to_yiq, 'bgr_to_yiq')
    assert_within(colour.yiq_to_bgr(x), oracle.yiq_to_bgr(x),
                  2 * mix_bound(YIQ_TO_BGR, magnitude), 'yiq_to_bgr')
    luma, iq = colour.split_yiq(x)
    their_luma, their_iq = oracle.split_bgr_to_yiq(x)
    assert_within(luma, their_luma, numpy.repeat(to_yiq[:, :1], 3, axis=1), 'split: Y')
    assert_within(iq, their_iq, to_yiq[:, 1:], 'split: IQ')


@pytest.mark.parametrize('shape,seed', CASES, ids=IDS)
def test_join_yiq_is_dsannos(shape, seed):
    x, iq = generic(shape, seed), generic(shape, seed + 50)[:, 1:] * 0.3
    y = numpy.einsum('c,nchw->nhw', WEIGHTS, x.astype(numpy.float64))[:, None]
    joined = numpy.abs(numpy.concatenate([y, iq.astype(numpy.float64)], axis=1))
    # The Y's own error, carried through the first column of the second matrix.
    carried = numpy.abs(YIQ_TO_BGR[:, :1])[None, :, :, None] * y_bound(x)
    bound = 2 * (mix_bound(YIQ_TO_BGR, joined) + carried)
    assert_within(colour.join_yiq(x, iq), oracle.join_yiq_to_bgr(x, iq), bound, 'join_yiq')


# --- luminance_only's inputs (style_transfer_runner.py run) -------------------------------------

@pytest.mark.parametrize('shape,seed', CASES, ids=IDS)
def test_luminance_only_inputs_are_dsannos(shape, seed):
    style, content = pair(shape, seed)
    ours = colour.luminance_only_inputs(content, style)
    theirs = oracle.run_inputs(content, style, luminance_only_=True)
    content_bound = numpy.repeat(2 * y_bound(content), 3, axis=1)
    assert_within(ours[0], theirs[0], content_bound, 'content luminance')
    iq_bound = 2 * mix_bound(BGR_TO_YIQ[1:], numpy.abs(content.astype(numpy.float64)))
    assert_within(ours[2], theirs[2], iq_bound, 'content chroma')
    # dsanno standardises over the three equal channels (3n terms), the library over one.
    style_y, content_y = (numpy.einsum('c,nchw->nhw', WEIGHTS, v.astype(numpy.float64))
                          for v in (style, content))
    bound = 2 * standardised_bound(numpy.repeat(style_y[:, None], 3, axis=1),
                                   numpy.repeat(content_y[:, None], 3, axis=1),
                                   numpy.repeat(y_bound(style), 3, axis=1),
                                   numpy.repeat(y_bound(content), 3, axis=1))
    assert_within(ours[1], theirs[1], bound, 'style luminance')


# --- match_color_histogram ----------------------------------------------------------------------

@pytest.mark.parametrize('shape,seed', CASES, ids=IDS)
def test_match_color_histogram_is_dsannos(shape, seed):
    style, content = pair(shape, seed)
    bound = 2 * histogram_bound(style, content)
    assert_within(colour.match_color_histogram(style, content),
                  oracle.match_color_histogram(style, content), bound, 'match_color_histogram')


# --- The options as the synthesis prepares its inputs -------------------------------------------

def _files(tmp_path, seed):
    """A generic content and two styles as PNG files of other sizes than the synthesis'."""
    paths = []
    for name, shape in (('content', (1, 3, 90, 120)), ('style', (1, 3, 100, 80)),
                        ('style2', (1, 3, 70, 110))):
        rgb = (generic(shape, seed)[0].transpose(1, 2, 0) * 0.8 + 128).clip(0, 255)
        paths.append(str(tmp_path / (name + '.png')))
        image.save_image(paths[-1], rgb.astype(numpy.uint8))
        seed += 1
    return paths


@pytest.mark.parametrize('option', ['match_color_histogram', 'luminance_only'])
def test_prepared_inputs_are_dsannos(tmp_path, option):
    # The library applies each option to the arrays dsanno's run does (the resized,
    # preprocessed images), once, to each style image.
    content_path, *style_paths = _files(tmp_path, 7)
    config = presets.get_preset('dsanno').replace(width=64, **{option: True})
    loaded = inputs.load_inputs(content_path, style_paths, preset=config)
    prepared = inputs.prepare(loaded, inputs.configure(config, loaded))
    content = oracle.open_and_resize_image(content_path, 64)
    assert len(prepared.styles) == 2
    for style_path, ours in zip(style_paths, prepared.styles):
        style = oracle.open_and_resize_image(style_path, 64)
        theirs = oracle.run_inputs(content, style, **{option + '_': True})
        if option == 'match_color_histogram':
            numpy.testing.assert_array_equal(prepared.content, content)
            assert_within(ours, theirs[1], 2 * histogram_bound(style, content), 'matched style')
            assert prepared.chroma is None
        else:
            # The values as test_luminance_only_inputs_are_dsannos proves them; here, that
            # they are made from these arrays.
            expected = colour.luminance_only_inputs(content, style)
            numpy.testing.assert_array_equal(prepared.content, expected[0])
            numpy.testing.assert_array_equal(ours, expected[1])
            numpy.testing.assert_array_equal(prepared.chroma, expected[2])
