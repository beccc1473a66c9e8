"""End to end with the real VGG16 on small images: the loop, its report and its errors."""
import numpy
import pytest

from chainer_mrf import image, presets
from chainer_mrf.synthesis import synthesize

SMALL = dict(width=64, resolution_num=1)


def _content():
    """A 96 x 72 test card: a colour ramp with a dark disc, something VGG sees structure in."""
    y, x = numpy.mgrid[0:72, 0:96]
    rgb = numpy.stack([x * 2.5, y * 3.0, 255 - x * 2.0], axis=-1)
    rgb[(x - 40) ** 2 + (y - 30) ** 2 < 300] = (20, 30, 40)
    return rgb.clip(0, 255).astype(numpy.uint8)


def _style():
    """Diagonal colour stripes, 80 x 80."""
    y, x = numpy.mgrid[0:80, 0:80]
    stripes = ((x + y) // 6) % 3
    palette = numpy.array([[200, 40, 40], [30, 160, 60], [240, 220, 90]], numpy.uint8)
    return palette[stripes]


@pytest.fixture(scope='module')
def run(vgg16_path):
    def run(iterations=6, content=None, style=None, **options):
        steps = []
        result = synthesize(_content() if content is None else content,
                            _style() if style is None else style, iterations=iterations,
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
    _, steps = run(iterations=1, style=_content())
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
        synthesize(_content(), _style(), model=vgg16_path, device=device, iterations=1,
                   **{**SMALL, **options})


def test_accepts_paths_and_pil(run, tmp_path):
    from PIL import Image
    path = tmp_path / 'content.png'
    image.save_image(str(path), _content())
    a, _ = run(iterations=1, content=str(path))
    b, _ = run(iterations=1, content=Image.fromarray(_content()))
    numpy.testing.assert_array_equal(a, b)


def test_preset_object_and_unknown_option(vgg16_path):
    config = presets.get_preset('dsanno').replace(iterations=1, **SMALL)
    result = synthesize(_content(), _style(), preset=config, model=vgg16_path)
    assert result.shape == (48, 64, 3)
    with pytest.raises(ValueError, match='unknown option style_wieght'):
        synthesize(_content(), _style(), style_wieght=1.0)
