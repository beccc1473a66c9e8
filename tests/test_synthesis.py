"""End to end with the real VGG16 on small images: the loop, its report and its errors."""
import numpy
import pytest

from chainer_mrf import image, presets
from chainer_mrf.synthesis import synthesize
from helpers import SMALL, content_card, random_weights, style_stripes


@pytest.fixture(scope='module')
def run(vgg16_path):
    def run(iterations=6, content=None, style=None, **options):
        steps = []
        result = synthesize(content_card() if content is None else content,
                            style_stripes() if style is None else style, iterations=iterations,
                            model=vgg16_path, callback=steps.append, **{**SMALL, **options})
        return result, steps
    return run


def test_mrf_energy_falls_and_every_term_is_reported(run):
    result, steps = run(iterations=12)
    assert [s.iteration for s in steps] == list(range(1, 13))
    assert all(set(s.losses) == {'content_4_2', 'style_3_2', 'style_4_2', 'tv'} for s in steps)
    first, last = steps[0].losses, steps[-1].losses
    assert first['content_4_2'] == 0  # dsanno starts from the content image
    mrf = [s.losses['style_3_2'] + s.losses['style_4_2'] for s in steps]
    assert mrf[-1] < 0.9 * mrf[0]
    assert sum(last.values()) < sum(first.values())
    # The content was resized to width 64 with the aspect ratio kept: 72 * 64 / 96 = 48.
    assert result.shape == (48, 64, 3) and result.dtype == numpy.uint8
    numpy.testing.assert_array_equal(result, steps[-1].image())


def test_style_equal_to_content_gives_zero_mrf_energy(run):
    # Every synthesised patch finds itself in the bank: the MRF term starts at zero.
    _, steps = run(iterations=1, style=content_card())
    assert steps[0].losses['style_3_2'] == pytest.approx(0, abs=1e-3)
    assert steps[0].losses['style_4_2'] == pytest.approx(0, abs=1e-3)


def test_levels_and_cumulative_counter(run):
    _, steps = run(iterations=2, width=128, resolution_num=3)
    # 128 // 4 = 32 < 64: only strides 2 and 1 are kept.
    assert [(s.level, s.levels, s.iteration, s.level_iteration) for s in steps] == \
        [(0, 2, 1, 1), (0, 2, 2, 2), (1, 2, 3, 1), (1, 2, 4, 2)]
    assert steps[0].x.shape == (1, 3, 48, 64) and steps[-1].x.shape == (1, 3, 96, 128)


def test_seed_repeats_random_start(run):
    a, _ = run(iterations=2, initial_image='random', seed=3)
    b, _ = run(iterations=2, initial_image='random', seed=3)
    c, _ = run(iterations=2, initial_image='random', seed=4)
    numpy.testing.assert_array_equal(a, b)
    assert numpy.abs(a.astype(int) - c).mean() > 1


def test_adam_alternative(run):
    _, steps = run(iterations=4, optimizer='adam', lr=4.0)
    assert steps[-1].losses['style_3_2'] < steps[0].losses['style_3_2']


@pytest.mark.parametrize('options,message', [
    ({'style_layers': 'relu3_4'}, 'unknown VGG16 layer'),
    ({'width': 48}, 'image width 48 is too small'),
    ({'device': 0}, 'cannot use device'),
    ({'patch_size': 9, 'style_layers': '4_2'}, 'too small: relu4_2 is 8x6'),
])
def test_user_errors(vgg16_path, options, message):
    device = options.pop('device', -1)
    with pytest.raises(ValueError, match=message):
        synthesize(content_card(), style_stripes(), model=vgg16_path, device=device, iterations=1,
                   **{**SMALL, **options})


def test_accepts_paths_and_pil(run, tmp_path):
    from PIL import Image
    path = tmp_path / 'content.png'
    image.save_image(str(path), content_card())
    a, _ = run(iterations=1, content=str(path))
    b, _ = run(iterations=1, content=Image.fromarray(content_card()))
    numpy.testing.assert_array_equal(a, b)


def test_preset_object_and_unknown_option(vgg16_path):
    config = presets.get_preset('dsanno').replace(iterations=1, **SMALL)
    result = synthesize(content_card(), style_stripes(), preset=config, model=vgg16_path)
    assert result.shape == (48, 64, 3)
    with pytest.raises(ValueError, match='unknown option style_wieght'):
        synthesize(content_card(), style_stripes(), style_wieght=1.0)


# --- the authors' preset and texture synthesis -----------------------------------------------

CNNMRF_SMALL = dict(preset='cnnmrf', max_size=64, resolution_num=1)


def test_cnnmrf_preset_energy_falls(run):
    result, steps = run(iterations=16, **CNNMRF_SMALL)  # the first step is scaled down
    assert set(steps[0].losses) == {'content_4_2', 'style_3_1', 'style_4_1', 'tv'}
    mrf = [s.losses['style_3_1'] + s.losses['style_4_1'] for s in steps]
    assert mrf[-1] < 0.9 * mrf[0]
    # Longer side 64: 96 x 72 -> 64 x 48.
    assert result.shape == (48, 64, 3)


def test_cnnmrf_style_equal_to_content_gives_zero_mrf_energy(run):
    # Same grids (stride 2, last row and column) on the same features, no rotated copies:
    # every synthesised patch is in the bank.
    _, steps = run(iterations=1, style=content_card(), num_rotation=0, num_scale=0, **CNNMRF_SMALL)
    assert steps[0].losses['style_3_1'] == pytest.approx(0, abs=1e-6)
    assert steps[0].losses['style_4_1'] == pytest.approx(0, abs=1e-6)


def test_cnnmrf_levels_iterations_per_level(run):
    _, steps = run(iterations=(2, 3), preset='cnnmrf', max_size=64, resolution_num=2)
    assert [(s.level, s.level_iteration) for s in steps] == \
        [(0, 1), (0, 2), (1, 1), (1, 2), (1, 3)]
    # ceil(48 / 2) x ceil(64 / 2), then the full 48 x 64.
    assert steps[0].x.shape == (1, 3, 24, 32) and steps[-1].x.shape == (1, 3, 48, 64)


@pytest.mark.parametrize('preset,extra', [('dsanno', {}), ('cnnmrf', {'max_size': 96})])
def test_texture_synthesis(vgg16_path, preset, extra):
    steps = []
    texture = synthesize(None, style_stripes(), preset=preset, size=(72, 64), iterations=6,
                         resolution_num=1, seed=1, model=vgg16_path, callback=steps.append,
                         **extra)
    assert texture.shape == (64, 72, 3)
    assert not any(name.startswith('content') for name in steps[0].losses)
    mrf = [sum(v for k, v in s.losses.items() if k.startswith('style')) for s in steps]
    assert mrf[-1] < mrf[0]
    again = synthesize(None, style_stripes(), preset=preset, size=(72, 64), iterations=6,
                       resolution_num=1, seed=1, model=vgg16_path, **extra)
    numpy.testing.assert_array_equal(texture, again)


def test_texture_default_size_is_the_style_at_full_size(vgg16_path):
    steps = []
    synthesize(None, style_stripes(), preset='cnnmrf', max_size=64, iterations=1, resolution_num=1,
               model=vgg16_path, callback=steps.append)
    # The 80 x 80 style at longer side 64 (the style itself is used at 32, max_size / 2).
    assert steps[0].x.shape == (1, 3, 64, 64)


def test_initial_image_from_a_file(run, tmp_path):
    path = str(tmp_path / 'start.png')
    image.save_image(path, style_stripes())
    _, steps = run(iterations=1, initial_image=path)
    # Started from the stripes, not the content: the content term is far from zero.
    assert steps[0].losses['content_4_2'] > 1e3


def test_auto_network_prefers_converted_vgg19(tmp_path, monkeypatch):
    from chainer_mrf import weights as weights_lib
    from chainer_mrf.vgg import weights_for
    monkeypatch.setenv('CHAINER_MRF_MODELS', str(tmp_path))
    assert weights_for('auto') == ('vgg16', str(tmp_path / 'vgg16.npz'))
    weights_lib.save_weights(str(tmp_path / 'vgg19.npz'), random_weights('vgg19'), 'vgg19')
    assert weights_for('auto') == ('vgg19', str(tmp_path / 'vgg19.npz'))
    assert weights_for('vgg16') == ('vgg16', str(tmp_path / 'vgg16.npz'))
    # An explicit file decides by its contents.
    assert weights_for('auto', str(tmp_path / 'vgg19.npz'))[0] == 'vgg19'


def test_steps_keep_their_own_image(run):
    _, steps = run(iterations=3)
    # Each step holds the image after it: consecutive ones differ, none was overwritten.
    assert numpy.abs(steps[0].x - steps[1].x).max() > 0
    assert numpy.abs(steps[1].x - steps[2].x).max() > 0


def test_gram_preset_runs_neural_style(run):
    result, steps = run(iterations=30, preset='gram', seed=0)
    assert set(steps[0].losses) == {'content_3_3', 'content_4_3', 'style_1_2', 'style_2_2',
                                    'style_3_3', 'style_4_3', 'tv'}
    assert [s.levels for s in steps] == [1] * 30  # dsanno's run.py: one resolution
    style = [sum(v for k, v in s.losses.items() if k.startswith('style')) for s in steps]
    assert style[-1] < 0.5 * style[0]  # from noise, slowly at first (observed: 0.15 at 30)
    assert result.shape == (48, 64, 3)


def test_gram_style_equal_to_content_gives_zero_style_energy(run):
    # From the content, with the content as the style: the Gram matrices are the style's.
    _, steps = run(iterations=1, preset='gram', style=content_card(), initial_image='content')
    assert all(v == pytest.approx(0, abs=1e-6) for k, v in steps[0].losses.items()
               if k.startswith('style'))


def test_gram_refuses_maps(vgg16_path):
    card = content_card()
    with pytest.raises(ValueError, match='gram method has none'):
        synthesize(card, style_stripes(), preset='gram', model=vgg16_path,
                   content_map=numpy.ones(card.shape[:2] + (1,), numpy.float32),
                   style_map=numpy.ones(style_stripes().shape[:2] + (1,), numpy.float32))


@pytest.mark.parametrize('options,stop,steps_made', [
    # No gradient is that small: the first step of each level stops, and moves nothing.
    ({'lbfgs_tolerance_fun': 1e30}, 'gradient', 1),
    # g . H g (H = I at the first step) is below it: the direction test stops at once.
    ({'lbfgs_tolerance_x': 1e30}, 'direction', 1),
    # A step of about 1e-20 is below it: the second step of each level stops.
    ({'lbfgs_tolerance_x': 1e-3, 'lr': 1e-20}, 'step', 2),
])
def test_lbfgs_stopping_rule_ends_a_level_early(run, options, stop, steps_made):
    _, steps = run(iterations=(4, 4), preset='cnnmrf', max_size=64, resolution_num=2,
                   **options)
    assert [(s.level, s.level_iteration, s.stop) for s in steps] == [
        (level, i, stop if i == steps_made else None)
        for level in (0, 1) for i in range(1, steps_made + 1)]
    assert [s.iteration for s in steps] == list(range(1, 2 * steps_made + 1))
    if steps_made == 2:
        # The stopping step leaves the image where it was evaluated.
        numpy.testing.assert_array_equal(steps[1].x, steps[0].x)


def test_the_authors_stopping_rules_never_end_a_normal_run_early(run):
    # tolX = tolFun = 0: only an exactly zero gradient or step, or a direction that does not
    # descend, stops; none occurs here.
    _, steps = run(iterations=6, **CNNMRF_SMALL)
    assert presets.get_preset('cnnmrf').lbfgs_tolerance_x == 0.0
    assert len(steps) == 6 and not any(s.stop for s in steps)


@pytest.mark.parametrize('option', ['keep_color', 'luminance_only', 'match_color_histogram'])
def test_gram_takes_dsannos_colour_options(run, option):
    # run.py applies them to both methods alike; each changes the style term's first value.
    _, plain = run(iterations=1, preset='gram', seed=0)
    result, steps = run(iterations=2, preset='gram', seed=0, **{option: True})
    style = [sum(v for k, v in s.losses.items() if k.startswith('style')) for s in steps]
    plain_style = sum(v for k, v in plain[0].losses.items() if k.startswith('style'))
    assert all(numpy.isfinite(style)) and style[0] != plain_style
    assert result.shape == (48, 64, 3)
