"""The MRF term of one layer (chainer_mrf.mrf) against a plain NumPy reference (the authors'
update loop by loop and dsanno's mean, tests/authors_oracle.py): the dense normalised
cross-correlation, its argmax and the energy written out; its gradient; the confidence
threshold; the content map; errors; the matching node; the terms of a level."""
import chainer_mrf  # noqa: F401  (NumPy shims before chainer)
import chainer
import chainer.functions as F
import numpy
import pytest
from chainer import gradient_check

from chainer_mrf import matching, mrf, patches, presets, style_copies
from chainer_mrf.matching import PatchBank

import authors_oracle as oracle
from authors_oracle import K  # the patch size throughout

# --- helpers for the library side ----------------------------------------------------------

@pytest.fixture
def recorded(monkeypatch):
    """Records the bank indices of every matching.match call."""
    found = []
    match = matching.match

    def record(queries, bank, **kwargs):
        indices, scores = match(queries, bank, **kwargs)
        found.append(indices.copy())
        return indices, scores
    monkeypatch.setattr(matching, 'match', record)
    return found


def _run(term, feature):
    """The term's energy and its gradient at a (C, H, W) map."""
    x = chainer.Variable(feature[None].astype(numpy.float32))
    loss = term(x)
    loss.backward()
    return float(loss.array), x.grad[0]


def _random(rng, *shape):
    """Post-ReLU-like float32 features."""
    return rng.uniform(0, 1, shape).astype(numpy.float32)


def _bank(styles, sample_stride=1, weights=None):
    return mrf.style_bank([s[None] for s in styles], patch_size=K, stride=sample_stride,
                          weights=weights)


def _check_against_reference(term, feature, styles, recorded, *, sample_stride=1, **reference):
    parts = [oracle.patches(s, sample_stride)[0] for s in styles]
    expected = oracle.mrf_term(feature, parts, **reference)
    _assert_agrees(term, feature, recorded, expected)
    return expected


def _assert_agrees(term, feature, recorded, expected):
    """The term's matches, energy and gradient at ``feature`` are the reference's."""
    # A clear winner everywhere, so float32 and float64 agree on the argmax.
    assert expected['margin'].min() > 1e-4
    energy, grad = _run(term, feature)
    numpy.testing.assert_array_equal(recorded[-1], expected['index'])
    assert energy == pytest.approx(expected['energy'], rel=2e-5)
    numpy.testing.assert_allclose(grad, expected['grad'], rtol=2e-4,
                                  atol=2e-6 * numpy.abs(expected['grad']).max())


# --- known answers -------------------------------------------------------------------------

@pytest.mark.parametrize('overlap', mrf.OVERLAPS)
@pytest.mark.parametrize('stride, sample_stride', [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_term_equals_the_dense_reference(recorded, overlap, stride, sample_stride):
    rng = numpy.random.RandomState(10 * stride + sample_stride)
    # 8 x 10 with stride 2: rows 0, 2, 4 and the appended 5; columns 0, 2, 4, 6 and 7.
    feature = _random(rng, 6, 8, 10)
    styles = [_random(rng, 6, 9, 7)]
    bank = _bank(styles, sample_stride)
    term = mrf.MRFTerm(bank, feature.shape, weight=0.7, stride=stride, overlap=overlap)
    rows, cols = oracle.starts(8, stride), oracle.starts(10, stride)
    assert term.patch_count == len(rows) * len(cols)
    assert bank.size == len(oracle.starts(9, sample_stride)) * len(oracle.starts(7, sample_stride))
    _check_against_reference(term, feature, styles, recorded, sample_stride=sample_stride,
                             weight=0.7, stride=stride, overlap=overlap)


def test_stride_two_grid_covers_the_last_row_and_column():
    # Every pixel is covered and gets a gradient, the last row and column included.
    rng = numpy.random.RandomState(4)
    feature = _random(rng, 4, 8, 10)
    term = mrf.MRFTerm(_bank([_random(rng, 4, 7, 7)]), feature.shape, weight=1.0, stride=2,
                       overlap='average')
    _, grad = _run(term, feature)
    assert numpy.abs(grad[:, -1, :]).min() > 0 and numpy.abs(grad[:, :, -1]).min() > 0
    # The coverage the term divides by: windows at rows 0, 2, 4, 5 and columns 0, 2, 4, 6, 7.
    count = numpy.zeros((8, 10))
    for r in (0, 2, 4, 5):
        for c in (0, 2, 4, 6, 7):
            count[r:r + 3, c:c + 3] += 1
    expected = numpy.array([numpy.tile(count[r:r + 3, c:c + 3].ravel(), 4)
                            for r in (0, 2, 4, 5) for c in (0, 2, 4, 6, 7)])
    numpy.testing.assert_array_equal(term.coverage, expected)


@pytest.mark.parametrize('overlap', mrf.OVERLAPS)
def test_part_weights_decide_which_part_wins(recorded, overlap):
    rng = numpy.random.RandomState(7)
    feature = _random(rng, 5, 7, 9)
    styles = [_random(rng, 5, 8, 8), _random(rng, 5, 7, 9)]
    first = len(oracle.patches(styles[0], 1)[0])
    shares = []
    for weights in [None, (1.0, 0.97), (0.97, 1.0)]:
        term = mrf.MRFTerm(_bank(styles, weights=weights), feature.shape, weight=0.3,
                           overlap=overlap)
        expected = _check_against_reference(term, feature, styles, recorded, weight=0.3,
                                            stride=1, overlap=overlap, weights=weights)
        shares.append((expected['index'] < first).mean())
    even, first_favoured, second_favoured = shares
    # The test data must make the weights matter both ways.
    assert 0 < second_favoured < even < first_favoured < 1


def test_bank_weights_scale_scores_not_targets():
    rng = numpy.random.RandomState(8)
    parts = [_random(rng, 6, 12), _random(rng, 4, 12)]
    plain, weighted = PatchBank(parts), PatchBank(parts, weights=[2.0, 0.5])
    numpy.testing.assert_array_equal(weighted.patches, plain.patches)
    numpy.testing.assert_allclose(weighted.inverse_norms / plain.inverse_norms,
                                  [2.0] * 6 + [0.5] * 4, rtol=1e-6)


# --- the gradient --------------------------------------------------------------------------

@pytest.mark.parametrize('overlap', mrf.OVERLAPS)
@pytest.mark.parametrize('stride', [1, 2])
def test_check_backward(recorded, overlap, stride):
    rng = numpy.random.RandomState(20 + stride)
    style = _random(rng, 4, 8, 10)
    # Every synthesised patch is a style patch plus a little noise: a clear winner, which a
    # perturbation of the size check_backward makes cannot change.
    feature = (style + rng.uniform(-0.05, 0.05, style.shape)).astype(numpy.float32)
    term = mrf.MRFTerm(_bank([style]), feature.shape, weight=5.0, stride=stride,
                       overlap=overlap)
    expected = _check_against_reference(term, feature, [style], recorded, weight=5.0,
                                        stride=stride, overlap=overlap)
    assert expected['margin'].min() > 0.05
    gradient_check.check_backward(term, feature[None], numpy.array(1.3, numpy.float32),
                                  eps=1e-2, atol=1e-4, rtol=1e-3)
    # The matches did not move while the energy was probed.
    assert all((indices == expected['index']).all() for indices in recorded)


def test_known_answer_for_a_shifted_style():
    # Each synthesised patch is its style patch plus 0.01: it matches that patch, the energy is
    # weight * 0.01**2 and each pixel's gradient 2 * weight * 0.01 * coverage / (P * D).
    rng = numpy.random.RandomState(5)
    style = _random(rng, 3, 7, 7)
    feature = (style + 0.01).astype(numpy.float32)
    term = mrf.MRFTerm(_bank([style]), feature.shape, weight=1.0)
    energy, grad = _run(term, feature)
    # Each patch matched itself shifted by 0.01: every difference is 0.01.
    assert energy == pytest.approx(1.0 * 0.01 ** 2, rel=1e-4)
    queries, rows, cols = oracle.patches(feature, 1)
    count = numpy.zeros((7, 7))
    for r in rows:
        for c in cols:
            count[r:r + 3, c:c + 3] += 1
    numpy.testing.assert_allclose(grad, numpy.broadcast_to(2 * 0.01 * count / queries.size,
                                                           grad.shape), rtol=1e-3)


# --- confidence threshold ------------------------------------------------------------------

def _half_confident(rng):
    """A style and a feature map whose left columns are the style's (plus noise) and whose
    right columns are unrelated: left patches match with cosine ~1, right ones far below."""
    style = _random(rng, 5, 8, 10)
    feature = _random(rng, 5, 8, 10)
    feature[:, :, :5] = style[:, :, :5] + rng.uniform(-0.01, 0.01, (5, 8, 5))
    return style, feature


@pytest.mark.parametrize('overlap', mrf.OVERLAPS)
def test_confidence_threshold_drops_unconfident_patches(recorded, overlap):
    rng = numpy.random.RandomState(11)
    style, feature = _half_confident(rng)
    threshold = 0.97
    term = mrf.MRFTerm(_bank([style]), feature.shape, weight=2.0, overlap=overlap,
                       confidence_threshold=threshold)
    expected = _check_against_reference(term, feature, [style], recorded, weight=2.0,
                                        stride=1, overlap=overlap, threshold=threshold)
    # Both kinds are there, none near the threshold.
    assert 0 < expected['keep'].mean() < 1
    assert numpy.abs(expected['cosine'] - threshold).min() > 5e-3
    # Columns 7-9 lie only in patches starting at column 5 or later, all dropped: no gradient.
    starts = numpy.array([c for r in range(6) for c in range(8)])
    assert not expected['keep'][starts >= 5].any() and expected['keep'][starts <= 2].all()
    _, grad = _run(term, feature)
    assert not grad[:, :, 7:].any()
    assert numpy.abs(grad[:, :, :3]).min() > 0
    # Without the threshold they do get one, and with 'average' the kept pixels' divisor
    # counts every patch again.
    plain = mrf.MRFTerm(_bank([style]), feature.shape, weight=2.0, overlap=overlap)
    _, plain_grad = _run(plain, feature)
    assert numpy.abs(plain_grad[:, :, 7:]).min() > 0
    if overlap == 'average':
        # Column 4 is covered by kept patches (start 2) and dropped ones (starts 3, 4): with
        # the dropped ones out of the count, its gradient is divided by fewer patches.
        assert not numpy.allclose(grad[:, :, 4], plain_grad[:, :, 4], rtol=1e-3)


@pytest.mark.parametrize('overlap', mrf.OVERLAPS)
def test_threshold_minus_one_keeps_everything(overlap):
    rng = numpy.random.RandomState(12)
    style, feature = _half_confident(rng)
    none = mrf.MRFTerm(_bank([style]), feature.shape, overlap=overlap)
    low = mrf.MRFTerm(_bank([style]), feature.shape, overlap=overlap, confidence_threshold=-1)
    energy, grad = _run(none, feature)
    low_energy, low_grad = _run(low, feature)
    assert low_energy == energy
    numpy.testing.assert_array_equal(low_grad, grad)
    # ... while a threshold above some cosines changes both.
    high = mrf.MRFTerm(_bank([style]), feature.shape, overlap=overlap, confidence_threshold=0.97)
    high_energy, _ = _run(high, feature)
    assert high_energy < 0.5 * energy


def test_a_patch_at_the_threshold_is_kept():
    # "Below the threshold" drops a patch: one whose cosine equals it stays.
    rng = numpy.random.RandomState(22)
    style, feature = _half_confident(rng)
    bank = _bank([style])
    # The term's own queries (same values and memory layout, so the same rounding).
    queries = patches.extract_patches_array(feature[None], K)
    _, cosines = matching.match(queries, bank, cosine=True)
    boundary = numpy.sort(cosines)[len(cosines) // 2]
    above = numpy.nextafter(boundary, numpy.float32(2))

    def energy(threshold):
        return _run(mrf.MRFTerm(bank, feature.shape, confidence_threshold=float(threshold)),
                    feature)[0]
    kept = (cosines >= boundary).sum()
    assert kept == (cosines > boundary).sum() + 1
    assert energy(boundary) > energy(above)


# --- content map ---------------------------------------------------------------------------

def _map_case(rng):
    """A style whose left columns (0-4) are region 0 and right ones (5-9) region 1, and a
    feature map that looks like the style's left half everywhere while its map puts its
    right half in region 1."""
    style = _random(rng, 4, 8, 10)
    feature = numpy.concatenate([style[:, :, :5]] * 2, axis=2)
    feature = (feature + rng.uniform(-0.02, 0.02, feature.shape)).astype(numpy.float32)
    labels = numpy.zeros((2, 8, 10), numpy.float32)
    labels[0, :, :5] = labels[1, :, 5:] = 1
    return style, feature, labels


@pytest.mark.parametrize('overlap', mrf.OVERLAPS)
def test_content_map_steers_the_matching_and_not_the_energy(recorded, overlap):
    rng = numpy.random.RandomState(13)
    style, feature, labels = _map_case(rng)
    strength = 50.0  # a patch of one full label channel has norm 3 * 50, the features ~3
    bank = mrf.style_bank([style[None]], patch_size=K, maps=[labels[None]],
                          semantic_weight=strength)
    # The content's labels are soft (0.9): its map columns never equal a style patch's, so
    # an energy that took them in would differ from one on the features alone.
    content_map = labels * numpy.float32(0.9 * strength)
    term = mrf.MRFTerm(bank, feature.shape, weight=0.4, overlap=overlap,
                       content_map=content_map[None])
    assert bank.dim == (4 + 2) * 9
    # The reference: matched on features and map columns, the energy on the features only.
    map_columns = oracle.patches(content_map, 1)[0]
    style_columns = oracle.patches(numpy.concatenate([style, labels * strength]), 1)[0]
    expected = oracle.mrf_term(feature, [style_columns], weight=0.4, stride=1, overlap=overlap,
                               extra=map_columns)
    _assert_agrees(term, feature, recorded, expected)
    # The map columns' differences are large: the energy left them out.
    queries = oracle.patches(feature, 1)[0]
    map_part = ((map_columns - style_columns[expected['index'], 36:]) ** 2).sum()
    feature_part = ((queries - style_columns[expected['index'], :36]) ** 2).sum()
    assert map_part > 10 * feature_part
    # Patches wholly in the right region (column starts 5-7) match the style's right region;
    # the features alone send them to the left region, which they copy.
    grid_cols = numpy.array([c for r in range(6) for c in range(8)])  # query and bank grids
    right = grid_cols >= 5
    assert (grid_cols[recorded[-1][right]] >= 5).all()
    plain = mrf.MRFTerm(_bank([style]), feature.shape, weight=0.4, overlap=overlap)
    _run(plain, feature)
    assert (grid_cols[recorded[-1][right]] <= 4).mean() > 0.9


def test_content_map_columns_are_refreshed_each_call(recorded):
    # The term keeps the queries' buffer between calls: the second call must match its own
    # features, not the first call's.
    rng = numpy.random.RandomState(14)
    style, feature, labels = _map_case(rng)
    bank = mrf.style_bank([style[None]], patch_size=K, maps=[labels[None]], semantic_weight=1.0)
    term = mrf.MRFTerm(bank, feature.shape, content_map=labels[None])
    other = _random(rng, *feature.shape)
    first, _ = _run(term, feature)
    second, _ = _run(term, other)
    fresh = mrf.MRFTerm(bank, feature.shape, content_map=labels[None])
    again, _ = _run(fresh, other)
    assert second == again and second != first


# --- errors --------------------------------------------------------------------------------

def test_a_bank_of_another_patch_length_is_refused():
    rng = numpy.random.RandomState(15)
    bank = _bank([_random(rng, 4, 6, 6)])
    with pytest.raises(ValueError, match='length 36.*have 45'):
        mrf.MRFTerm(bank, (5, 6, 6))
    # A content map adds columns the bank lacks.
    with pytest.raises(ValueError, match='length 36.*have 54'):
        mrf.MRFTerm(bank, (4, 6, 6), content_map=numpy.zeros((1, 2, 6, 6), numpy.float32))


def test_a_feature_map_smaller_than_a_patch_names_the_layer():
    rng = numpy.random.RandomState(16)
    bank = _bank([_random(rng, 4, 6, 6)])
    with pytest.raises(ValueError, match='synthesised image is too small: relu4_1 is 6x2'):
        mrf.MRFTerm(bank, (4, 2, 6), layer='relu4_1')
    with pytest.raises(ValueError, match='style image is too small: relu5_1 is 2x6'):
        mrf.style_bank([_random(rng, 4, 6, 2)[None]], layer='relu5_1')


def test_an_unknown_overlap_is_refused():
    rng = numpy.random.RandomState(17)
    with pytest.raises(ValueError, match='overlap must be one of sum, average'):
        mrf.MRFTerm(_bank([_random(rng, 4, 6, 6)]), (4, 6, 6), overlap='mean')


# --- the matching node ---------------------------------------------------------------------

@pytest.mark.parametrize('cosine', [False, True])
def test_nearest_patches_node(cosine):
    rng = numpy.random.RandomState(18)
    parts = [_random(rng, 30, 20), _random(rng, 25, 20)]
    bank = PatchBank(parts, weights=[1.0, 0.9])
    queries = chainer.Variable(_random(rng, 17, 20))
    matched, scores = mrf.NearestPatches(bank, cosine=cosine).apply((queries,))
    index, cos, margin = oracle.nearest(queries.array.astype(numpy.float64),
                                  [p.astype(numpy.float64) for p in parts], [1.0, 0.9])
    assert margin.min() > 1e-4
    numpy.testing.assert_array_equal(matched.array, numpy.concatenate(parts)[index])
    indices, expected_scores = matching.match(queries.array, bank, cosine=cosine)
    numpy.testing.assert_array_equal(indices, index)
    numpy.testing.assert_array_equal(scores.array, expected_scores)
    if cosine:
        numpy.testing.assert_allclose(scores.array, cos, rtol=1e-5)
    # No gradient reaches the queries, though both outputs feed the loss.
    F.sum(matched * matched + 3 * queries).backward()
    numpy.testing.assert_array_equal(queries.grad, numpy.full(queries.shape, 3, numpy.float32))
    queries.cleargrad()
    F.sum(scores * scores).backward()
    assert queries.grad is None or not queries.grad.any()


# --- the terms of a level ------------------------------------------------------------------

def _grid_count(shape, stride):
    height, width = shape
    return len(oracle.starts(height, stride)) * len(oracle.starts(width, stride))


def test_mrf_terms_build_one_bank_per_layer_from_every_copy(vgg):
    rng = numpy.random.RandomState(19)
    styles = [rng.uniform(-100, 100, (1, 3, 36, 44)).astype(numpy.float32),
              rng.uniform(-100, 100, (1, 3, 40, 32)).astype(numpy.float32)]
    layers = ('relu3_1', 'relu4_1')
    config = presets.get_preset('cnnmrf').replace(arch='vgg16', num_rotation=1, num_scale=1)
    shape = (40, 48)
    feature_shapes = vgg.shapes(shape, layers)
    plain = mrf.mrf_terms(vgg, styles, feature_shapes, config)
    weighted = mrf.mrf_terms(vgg, styles, feature_shapes,
                             config.replace(style_image_weights=(1.0, 0.25)))
    assert len(plain) == len(weighted) == len(layers)
    copies = [style_copies.style_copies(s[0], 1, 1, 7.5, 1.05) for s in styles]
    assert [len(c) for c in copies] == [9, 9]
    for name, term, heavy in zip(layers, plain, weighted):
        sizes = [[_grid_count(vgg.shapes(copy.shape[1:], [name])[name][1:], 2)
                  for copy in image_copies] for image_copies in copies]
        assert term.bank.size == heavy.bank.size == sum(map(sum, sizes))
        channels = feature_shapes[name][0]
        assert term.bank.dim == channels * 9
        assert term.patch_count == _grid_count(feature_shapes[name][1:], 2)
        assert term.weight == 1e-4 and term.coverage is not None
        assert term.confidence_threshold == 0.0
        # The bank's patches are those of every copy's features, in order.
        expected = []
        for image_copies in copies:
            for copy in image_copies:
                with chainer.no_backprop_mode():
                    features = vgg(copy[None], layers=[name])[name].array
                expected.append(oracle.patches(features[0], 2)[0])
        numpy.testing.assert_allclose(term.bank.patches, numpy.concatenate(expected),
                                      rtol=1e-5, atol=1e-5 * numpy.abs(expected[0]).max())
        # The second image's nine copies carry its weight in the inverse norms, the targets
        # stay as they are.
        first = sum(sizes[0])
        ratio = heavy.bank.inverse_norms / term.bank.inverse_norms
        numpy.testing.assert_allclose(ratio[:first], 1.0, rtol=1e-6)
        numpy.testing.assert_allclose(ratio[first:], 0.25, rtol=1e-6)
        numpy.testing.assert_array_equal(heavy.bank.patches, term.bank.patches)


def test_mrf_terms_take_the_per_layer_options(vgg):
    rng = numpy.random.RandomState(21)
    styles = [rng.uniform(-100, 100, (1, 3, 40, 40)).astype(numpy.float32)]
    config = presets.get_preset('dsanno').replace(style_weight=(0.5, 2.0))
    feature_shapes = vgg.shapes((32, 40), config.style_layers)
    terms = mrf.mrf_terms(vgg, styles, feature_shapes, config)
    assert [t.weight for t in terms] == [0.5, 2.0]
    for name, term in zip(config.style_layers, terms):
        # One copy, stride 1 on both sides, no coverage.
        assert term.bank.size == _grid_count(vgg.shapes((40, 40), [name])[name][1:], 1)
        assert term.patch_count == _grid_count(feature_shapes[name][1:], 1)
        assert term.coverage is None and term.confidence_threshold is None
    with pytest.raises(ValueError, match='synthesised image is too small: relu4_2'):
        mrf.mrf_terms(vgg, styles, vgg.shapes((16, 40), config.style_layers), config)
