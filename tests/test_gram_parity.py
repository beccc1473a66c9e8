"""Parity of ``synthesize(preset='gram')`` with dsanno's neural style, ported in
``dsanno_oracle.py`` (``NeuralStyle``, ``run.py --method gram``), step by step by teacher forcing.

The runs: the paper's portrait -> Picasso pair at width 128 with the real VGG16, in two
configurations: ``RANDOM``, the preset's own (one level, 128 x 165, from 0.001 x randn; dsanno
draws it from NumPy's unseeded generator, so the test draws it from a seeded one, as dsanno
rounds it, and gives it to both: a start drawn or rounded differently fails the first step), and
``CONTENT``, two levels (strides 2 and 1: 64 x 83, then 128 x 165, whose odd height exercises
the crop after doubling) from the content image.

As in ``test_dsanno_parity.py`` (whose docstring derives the bounds), the oracle is evaluated at
our image at every step, so both compute from the same inputs, nothing is carried from one step
to the next, and every step is held to the same bounds on every NumPy and BLAS: the level's
start equal; every term, the gradient and dsanno's L-BFGS update (fed our history) within twice
one implementation's float32 rounding bound. What differs from the MRF is the Gram term
``w mean((G - G_s)^2)``, ``G = F F^T / (C HW)``: its summands are not the same numbers on both
sides, since each computes G with its own order of summation over the HW pixels; the features are
ReLU outputs (>= 0), so each computed entry of G is within ``gamma(HW)`` relative of the exact
one, and that error reaches ``G - G_s`` amplified where G is close to the style's Gram:

- a style term within ``2 (gamma(C^2) + 8 u + 2 gamma(HW) kappa)``, ``kappa = sum(G |G - G_s|) /
  sum((G - G_s)^2)``;
- the gradient, in the 2-norm, within ``2 (backward_gamma('4_3') + max over the style layers of
  (gamma(C) + gamma(HW) mu) + 8 u)``, ``mu = |G F| / |(G - G_s) F|``: the upstream gradient
  ``(G - G_s) F`` is a product over C channels, then the backward pass through VGG up to
  relu4_3.

kappa and mu are computed at each step from dsanno's features at our image (0.4 to 3 here; near
0 from the random start, where G is far from G_s). Measured on this machine: the terms agree to
2.4e-7, the gradients to 1.2e-7 (bounds 4.6e-4 to 6.7e-4), the updates bit for bit with NumPy 2
and to 1.5e-5 with NumPy 1.26, within their bounds.
"""
import os

import numpy
import pytest

from chainer_mrf import synthesis
from chainer_mrf.synthesis import synthesize
from chainer_mrf.vgg import VGG16

import dsanno_oracle as oracle

WIDTH, SEED = 128, 3
U, gamma = oracle.U, oracle.gamma
TERMS = {'content_3_3', 'content_4_3', 'style_1_2', 'style_2_2', 'style_3_3', 'style_4_3', 'tv'}
#: (initial_image, levels, steps per level)
RANDOM = ('random', 1, 6)
CONTENT = ('content', 2, 4)


@pytest.fixture(scope='module', params=[RANDOM, CONTENT], ids=['random', 'content'])
def runs(request, vgg16_path, data_dir):
    start, levels, steps = request.param
    paths = (os.path.join(data_dir, 'content', 'potrait1.jpg'),
             os.path.join(data_dir, 'style', 'picasso.jpg'))
    ours, gradients = [], []  # Steps; (x before the step, our gradient there)
    gradient = synthesis._gradient

    def recording_gradient(energy, target):
        x, values = target.x.array.copy(), gradient(energy, target)
        gradients.append((x, target.x.grad.copy()))
        return values
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synthesis, '_gradient', recording_gradient)
        result = synthesize(*paths, preset='gram', model=vgg16_path, width=WIDTH,
                            resolution_num=levels, iterations=steps, seed=SEED,
                            initial_image=start, callback=ours.append)
    content, style = (oracle.open_and_resize_image(path, WIDTH) for path in paths)
    if start == 'random':
        # dsanno's start: normal(0, 1) cast to float32, then x 0.001 in float32.
        stride = 2 ** (levels - 1)
        shape = content[:, :, ::stride, ::stride].shape
        start = (numpy.random.RandomState(SEED).standard_normal(shape).astype(numpy.float32)
                 * numpy.float32(0.001))
    per_level = [[(x, grad, step.x) for step, (x, grad) in zip(ours, gradients)
                  if step.level == level] for level in range(levels)]
    theirs = []
    for record in oracle.teacher_forced(
            oracle.neural_style_levels(content, style, VGG16(vgg16_path), resolution_num=levels),
            per_level, initial_image=start):
        record['gram'] = _gram_factors(record['energy'])
        theirs.append(record)
    return request.param, result, list(zip(ours, gradients, theirs))


def _gram_factors(energy):
    """Per style layer, (kappa, mu, C, HW) of dsanno's features at the image it last saw (see
    above). They need a few digits: G is the float32 product, the rest float64 (with
    F F^T = C HW G, |G F|^2 = C HW trace(G^3) and |(G - G_s) F|^2 = C HW trace((G - G_s)^2 G))."""
    factors = {}
    for name, style_gram in energy.targets:
        feature = energy.seen[name]
        f = feature[0].reshape(feature.shape[1], -1)
        gram = (f.dot(f.T) / numpy.float32(f.size)).astype(numpy.float64)
        difference = gram - style_gram.array[0]
        kappa = (gram * numpy.abs(difference)).sum() / (difference ** 2).sum()
        mu = numpy.sqrt(numpy.trace(gram.dot(gram).dot(gram))
                        / numpy.trace(difference.dot(difference).dot(gram)))
        factors[name] = (kappa, mu) + f.shape
    return factors


def test_steps_and_levels_start_as_dsannos(runs):
    (_, levels, steps), _, compared = runs
    assert [(s.level, s.level_iteration) for s, _, _ in compared] == [
        (level, i) for level in range(levels) for i in range(1, steps + 1)]
    starts = [(x, record['start']) for _, (x, _), record in compared
              if record['start'] is not None]
    assert len(starts) == levels
    for x, start in starts:
        numpy.testing.assert_array_equal(x, start)


def test_every_term_is_dsannos_at_every_step(runs):
    failures = []
    for step, (x, _), record in runs[2]:
        assert set(step.losses) == set(record['losses']) == TERMS
        height, width = x.shape[2:]
        sizes = {'tv': 3 * ((height - 1) * width + height * (width - 1))}
        for name in ('3_3', '4_3'):
            _, _, channels, pixels = record['gram'][name]
            sizes['content_' + name] = channels * pixels
        rtols = {name: 2 * gamma(size) + 8 * U for name, size in sizes.items()}
        for name, (kappa, _, channels, pixels) in record['gram'].items():
            rtols['style_' + name] = 2 * (gamma(channels ** 2) + 8 * U
                                          + 2 * gamma(pixels) * kappa)
        for name in sorted(TERMS):
            got, want = step.losses[name], record['losses'][name]
            # The content term is exactly 0 at a start from the content, on both sides.
            if not abs(got - want) <= rtols[name] * abs(want):
                failures.append('level %d step %d %s: %.9g, dsanno %.9g (rel %.1e > %.1e)' % (
                    step.level, step.level_iteration, name, got, want,
                    abs(got - want) / max(abs(want), 1e-30), rtols[name]))
    assert not failures, '\n'.join(failures)


def test_gradient_and_update_are_dsannos_at_every_step(runs):
    # dsanno's gradient at our image, and dsanno's L-BFGS fed our (x, gradient) history.
    failures = ['level %d step %d: %s' % (step.level, step.level_iteration, message)
                for step, (x, grad), theirs in runs[2]
                for message in oracle.step_mismatches(theirs, x, grad, step.x,
                                                      _gradient_rtol(theirs['gram']))]
    assert not failures, '\n'.join(failures)


def _gradient_rtol(factors):
    """The gradient's bound (above) for the Gram factors of a step."""
    upstream = max(gamma(channels) + gamma(pixels) * mu
                   for _, mu, channels, pixels in factors.values())
    return 2 * (oracle.backward_gamma('4_3') + upstream + 8 * U)


def test_final_image_is_dsannos(runs):
    # Our result against dsanno's update from our last image, each rounded to 8 bits in one
    # convention: equal up to a value that the last update's rounding puts across a half.
    _, result, compared = runs
    assert result.shape == (165, 128, 3)
    step, _, record = compared[-1]
    numpy.testing.assert_array_equal(result, step.image())
    assert oracle.pixel_difference(result, record['x_next']).max() <= 1
