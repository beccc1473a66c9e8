"""The optional profiler (chainer_mrf.profiling): phases, FLOPs counted from what ran, no effect
on the result, hooks removed afterwards."""
import chainer_mrf  # noqa: F401  (NumPy shims before chainer)
import chainer
import chainer.functions as F
import numpy
import pytest

from chainer_mrf import image
from chainer_mrf.matching import PatchBank
from chainer_mrf.mrf import NearestPatches
from chainer_mrf.profiling import PHASES, Profiler
from helpers import content_card, level_energy, profiled_gradient, short_run, style_stripes

#: VGG16's convolutions as (name, input channels, output channels, pooling steps before it).
VGG16_CONVS = [('conv1_1', 3, 64, 0), ('conv1_2', 64, 64, 0),
               ('conv2_1', 64, 128, 1), ('conv2_2', 128, 128, 1),
               ('conv3_1', 128, 256, 2), ('conv3_2', 256, 256, 2), ('conv3_3', 256, 256, 2),
               ('conv4_1', 256, 512, 3), ('conv4_2', 512, 512, 3), ('conv4_3', 512, 512, 3),
               ('conv5_1', 512, 512, 4), ('conv5_2', 512, 512, 4), ('conv5_3', 512, 512, 4)]


def _convolution_flops(shape, last):
    """2 * 9 * C_in * C_out * H * W summed over VGG16's convolutions up to ``last``, the map
    halved (rounding up) at each pooling."""
    total = 0
    for name, c_in, c_out, pools in VGG16_CONVS:
        height, width = shape
        for _ in range(pools):
            height, width = -(-height // 2), -(-width // 2)
        total += 2 * 9 * c_in * c_out * height * width
        if name == last:
            return total
    raise AssertionError(last)


def _grid(n, stride=1):
    return len(range(0, n - 3 + 1, stride))


@pytest.fixture(scope='module')
def runs(vgg16_path):
    """The same short run without and with the profiler."""
    return (short_run(vgg16_path, iterations=2),
            short_run(vgg16_path, iterations=2, profile=True))


def test_every_step_is_split_into_the_phases(runs):
    _, steps = runs[1]
    assert len(steps) == 2
    for step in steps:
        assert list(step.timings) == list(PHASES)
        assert all(seconds >= 0 for seconds in step.timings.values())
        # The network's passes and the matching take measurable time; 'other' may be tiny.
        assert min(step.timings[phase] for phase in PHASES[:3]) > 0
        # The phases are the profiled block's time, which the step's holds (the step also
        # holds setting the profiler up and taking it down).
        total = sum(step.timings.values())
        assert total <= step.seconds
        assert total == pytest.approx(step.seconds, rel=0.05, abs=2e-3)


def test_flops_are_those_of_the_work_that_ran(runs, vgg):
    _, steps = runs[1]
    # content_card is 96 x 72: width 64 gives 64 x 48; the content and style layers are
    # relu4_2 and relu3_2, so the network runs up to conv4_2.
    shape = (48, 64)
    assert image.dsanno_size(96, 72, 64) == shape[::-1]
    convolutions = _convolution_flops(shape, 'conv4_2')
    assert convolutions == vgg.flops(shape, ['relu3_2', 'relu4_2'])
    # P synthesised patches (stride 1) of the 16 x 12 and 8 x 6 maps, S style patches of the
    # 80 x 80 style at width 64 (16 x 16 and 8 x 8 maps), D = 9 C.
    matching = (2 * _grid(12) * _grid(16) * _grid(16) ** 2 * 256 * 9
                + 2 * _grid(6) * _grid(8) * _grid(8) ** 2 * 512 * 9)
    for step in steps:
        assert step.flops == {'vgg_forward': convolutions, 'matching': matching,
                              'vgg_backward': convolutions}


def test_matching_flops_equal_the_terms_patch_counts(vgg):
    energy, prepared = level_energy(vgg, content_card(), style_stripes())
    expected = sum(2 * term.patch_count * term.bank.size * term.bank.dim
                   for term in energy.style_terms)
    profile = profiled_gradient(energy, prepared.content)
    assert profile.flops['matching'] == expected
    layers = set(energy.config.style_layers) | set(energy.config.content_layers)
    assert profile.flops['vgg_forward'] == profile.flops['vgg_backward'] == \
        vgg.flops(prepared.shape, layers)


def test_keep_color_runs_the_network_twice(vgg16_path):
    _, steps = short_run(vgg16_path, iterations=1, profile=True, keep_color=True)
    # Once on the image for the content (up to relu4_2), once on its luminance for the MRF
    # term (up to relu4_2 as well).
    convolutions = 2 * _convolution_flops((48, 64), 'conv4_2')
    assert steps[0].flops['vgg_forward'] == steps[0].flops['vgg_backward'] == convolutions


def test_without_profile_there_are_no_timings(runs):
    _, steps = runs[0]
    assert steps and all(s.timings is None and s.flops is None for s in steps)


def test_the_profiler_does_not_change_the_result(runs):
    (plain, plain_steps), (profiled, profiled_steps) = runs
    numpy.testing.assert_array_equal(profiled, plain)
    assert [s.losses for s in profiled_steps] == [s.losses for s in plain_steps]
    for a, b in zip(plain_steps, profiled_steps):
        numpy.testing.assert_array_equal(a.x, b.x)


def _no_hooks():
    return not chainer.get_function_hooks() and not chainer._get_link_hooks()


def test_hooks_are_removed_after_a_run(runs):
    assert _no_hooks()


def test_hooks_are_removed_after_a_step_that_raises(vgg):
    profiler = Profiler(vgg, chainer.get_device('@numpy'))
    assert _no_hooks()
    with pytest.raises(RuntimeError, match='inside the step'):
        with profiler.step():
            # The hooks are on while the step runs.
            assert list(chainer.get_function_hooks()) == ['chainer_mrf_profiler']
            assert list(chainer._get_link_hooks()) == ['chainer_mrf_profiler']
            raise RuntimeError('inside the step')
    assert _no_hooks()
    # The profiler still works afterwards, and counts only its own step.
    x = numpy.zeros((1, 3, 32, 32), numpy.float32)
    with profiler.step() as profile:
        vgg(x, layers=['relu1_1'])
    assert profile.flops['vgg_forward'] == _convolution_flops((32, 32), 'conv1_1')
    assert _no_hooks()


def test_the_network_outside_a_step_is_not_counted(vgg):
    profiler = Profiler(vgg, chainer.get_device('@numpy'))
    x = chainer.Variable(numpy.zeros((1, 3, 32, 32), numpy.float32))
    vgg(x, layers=['relu2_1'])  # before the step: not seen
    with profiler.step() as profile:
        F.sum(vgg(x, layers=['relu1_2'])['relu1_2']).backward()
    F.sum(vgg(x, layers=['relu2_1'])['relu2_1']).backward()  # after: not added
    assert profile.flops == {'vgg_forward': _convolution_flops((32, 32), 'conv1_2'),
                             'matching': 0,
                             'vgg_backward': _convolution_flops((32, 32), 'conv1_2')}
    assert profile.seconds['vgg_forward'] > 0 and profile.seconds['vgg_backward'] > 0
    assert profile.seconds['matching'] == 0


def _matching_step(profiler):
    """A step that only matches 4 queries against 10 patches of length 6: 480 FLOPs."""
    rng = numpy.random.RandomState(0)
    bank = PatchBank(rng.uniform(0, 1, (10, 6)).astype(numpy.float32))
    with profiler.step() as profile:
        NearestPatches(bank).apply((rng.uniform(0, 1, (4, 6)).astype(numpy.float32),))
    return profile


def test_a_network_call_that_raises_leaves_the_profiler_as_it_was(vgg):
    profiler = Profiler(vgg, chainer.get_device('@numpy'))
    assert _matching_step(profiler).flops['matching'] == 2 * 4 * 10 * 6
    with pytest.raises(ValueError, match='expected an image batch'):
        with profiler.step():
            vgg(numpy.zeros((1, 4, 32, 32), numpy.float32))  # four channels: refused
    assert _no_hooks()
    # The next step measures as the first did: the matching is the matching's, not taken
    # for part of a network call that never returned.
    profile = _matching_step(profiler)
    assert profile.flops['matching'] == 2 * 4 * 10 * 6
    assert profile.seconds['matching'] > 0


def test_the_network_reports_its_own_errors_under_the_profiler(vgg):
    x = numpy.zeros((1, 3, 32, 32), numpy.float32)
    with pytest.raises(ValueError, match='unknown VGG16 layer relu9_9') as plain:
        vgg(x, layers=['relu9_9'])
    with pytest.raises(ValueError) as profiled:
        with Profiler(vgg, chainer.get_device('@numpy')).step():
            vgg(x, layers=['relu9_9'])
    assert str(profiled.value) == str(plain.value)
