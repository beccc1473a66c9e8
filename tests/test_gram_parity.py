"""Parity of ``synthesize(preset='gram')`` with dsanno's neural style, ported in
``dsanno_oracle.py`` (``NeuralStyle``, ``run.py --method gram``).

Both run the paper's portrait -> Picasso pair at width 128 with the real VGG16, in two
configurations: ``RANDOM``, the preset's own (one level, 128 x 165, from 0.001 x randn; dsanno
draws it from NumPy's unseeded generator, so the test draws it from a seeded one, as dsanno
rounds it, and gives it to both: a start drawn or rounded differently fails the first step), and
``CONTENT``, two levels (strides 2 and 1: 64 x 83, then 128 x 165, whose odd height exercises
the crop after doubling) from the content image. Every term is compared at every step, then the
final images.

Tolerances, as for the MRF parity (``test_dsanno_parity.py``): the two compute the same float32
values in different orders (the mean squared errors, the Gram products as one 2-D product or a
batch of one): their gradients at one image are equal here, and the terms agree to about 1e-6.
The fixed-step L-BFGS amplifies that rounding: its second step from noise is |dx| ~ 1e3 along a
direction found by cancelling nearly parallel vectors, and from the content the energy reaches
4e13 at the second step before it falls, so the images part by 1e-3 (noise) or 1e-5 (content)
of their range within a few steps and the terms follow (observed: at most 2e-5 over the strict
steps, 6e-4 after). ``STRICT_RTOL`` holds over each configuration's first ``strict`` steps of a
level, ``DRIFT_RTOL`` after, which still catches a wrong weight, layer, Gram normalisation, TV,
start or upsampling at the first step.
"""
import os

import numpy
import pytest

from chainer_mrf.synthesis import synthesize
from chainer_mrf.vgg import VGG16

import dsanno_oracle as oracle

WIDTH, SEED = 128, 3
TERMS = {'content_3_3', 'content_4_3', 'style_1_2', 'style_2_2', 'style_3_3', 'style_4_3', 'tv'}
#: (initial_image, levels, steps per level, strict steps per level)
RANDOM = ('random', 1, 10, 8)
CONTENT = ('content', 2, 8, 5)
STRICT_RTOL = 1e-4
DRIFT_RTOL = 1e-2
NUMPY_1 = numpy.lib.NumpyVersion(numpy.__version__) < '2.0.0'


@pytest.fixture(scope='module', params=[RANDOM, CONTENT], ids=['random', 'content'])
def runs(request, vgg16_path, data_dir):
    start, levels, steps, strict = request.param
    paths = (os.path.join(data_dir, 'content', 'potrait1.jpg'),
             os.path.join(data_dir, 'style', 'picasso.jpg'))
    ours = []
    result = synthesize(*paths, preset='gram', model=vgg16_path, width=WIDTH,
                        resolution_num=levels, iterations=steps, seed=SEED,
                        initial_image=start,
                        callback=lambda step: ours.append((step, step.x.copy())))
    content, style = (oracle.open_and_resize_image(path, WIDTH) for path in paths)
    if start == 'random':
        # dsanno's start: normal(0, 1) cast to float32, then x 0.001 in float32.
        stride = 2 ** (levels - 1)
        shape = content[:, :, ::stride, ::stride].shape
        start = (numpy.random.RandomState(SEED).standard_normal(shape).astype(numpy.float32)
                 * numpy.float32(0.001))
    theirs = []
    final = oracle.neural_style(content, style, VGG16(vgg16_path), steps, start,
                                resolution_num=levels,
                                callback=lambda epoch, x, info: theirs.append(
                                    (epoch, dict(info), x.array.copy())))
    return request.param, result, ours, final, theirs


def test_every_term_matches_dsannos_neural_style_at_every_step(runs):
    (_, levels, steps, strict), _, ours, _, theirs = runs
    assert [(s.level, s.level_iteration) for s, _ in ours] == [
        (level, i) for level in range(levels) for i in range(1, steps + 1)]
    assert [s.iteration - 1 for s, _ in ours] == [epoch for epoch, _, _ in theirs]
    failures = []
    for (step, _), (_, expected, _) in zip(ours, theirs):
        assert set(step.losses) == set(expected) == TERMS
        # NumPy 1.26's generic OpenBLAS kernels round the two runs apart sooner: with them the
        # second level starts from images that differ (as for the MRF parity).
        strict_here = step.level_iteration <= strict and not (NUMPY_1 and step.level > 0)
        rtol = STRICT_RTOL if strict_here else DRIFT_RTOL
        for name in sorted(TERMS):
            got, want = step.losses[name], expected[name]
            # The content term is exactly 0 at a content start.
            if not abs(got - want) <= rtol * abs(want) + 1e-6:
                failures.append('level %d step %d %s: %.7g, dsanno %.7g (rel %.1e > %.0e)' % (
                    step.level, step.level_iteration, name, got, want,
                    abs(got - want) / max(abs(want), 1e-6), rtol))
    assert not failures, '\n'.join(failures)


def test_final_image_matches_dsannos_neural_style(runs):
    _, result, ours, final, _ = runs
    assert result.shape == (165, 128, 3)
    numpy.testing.assert_array_equal(result, ours[-1][0].image())
    difference = oracle.pixel_difference(result, final)
    # Observed: max 1 to 4 levels, mean under 0.05 with NumPy 2; max 15 and mean 0.63 with
    # NumPy 1.26, whose runs part sooner (above). A wrong term moves the mean by tens.
    largest, mean = (20, 1.0) if NUMPY_1 else (4, 0.1)
    assert difference.max() <= largest, difference.max()
    assert difference.mean() <= mean, difference.mean()
