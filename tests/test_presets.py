import pytest

from chainer_mrf import presets
from chainer_mrf.pyramid import SubsamplePyramid


def test_dsanno_defaults_are_run_mrf_defaults():
    p = presets.get_preset('dsanno')
    assert (p.arch, p.width, p.resolution_num, p.iterations, p.save_iter, p.lr) == \
        ('vgg16', 256, 3, 100, 10, 1.0)
    assert (p.content_weight, p.style_weight, p.tv_weight) == (1.0, 0.2, 1e-5)
    assert p.content_layers == ('relu4_2',)
    assert p.style_layers == ('relu3_2', 'relu4_2')
    assert (p.optimizer, p.lbfgs_history, p.initial_image, p.patch_size) == \
        ('lbfgs', 10, 'content', 3)


def test_layer_shorthand():
    p = presets.get_preset('dsanno').replace(style_layers='3_1, relu4_1', content_layers=['5_2'])
    assert p.style_layers == ('relu3_1', 'relu4_1')
    assert p.content_layers == ('relu5_2',)
    assert presets.short_name('relu3_2') == '3_2'
    assert presets.short_name('conv3_2') == 'conv3_2'


@pytest.mark.parametrize('options,message', [
    ({'iteration': 5}, 'unknown option iteration'),
    ({'width': 0}, 'width must be a positive integer'),
    ({'width': 12.5}, 'width must be a positive integer'),
    ({'iterations': True}, 'iterations must be a positive integer'),
    ({'resolution_num': 4}, 'resolution_num must be 1, 2 or 3'),
    ({'style_weight': -1.0}, 'style_weight must be a finite number'),
    ({'tv_weight': float('nan')}, 'tv_weight must be a finite number'),
    ({'lr': 0}, 'lr must be positive'),
    ({'optimizer': 'sgd'}, 'optimizer must be one of lbfgs, adam'),
    ({'initial_image': 'noise'}, 'initial_image must be one of content, random'),
    ({'style_layers': ''}, 'style_layers is empty'),
    ({'seed': -3}, 'seed must be a non-negative integer'),
])
def test_impossible_options(options, message):
    with pytest.raises(ValueError, match=message):
        presets.get_preset('dsanno').replace(**options)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'torch'"):
        presets.get_preset('torch')


def test_subsample_pyramid_levels():
    assert SubsamplePyramid(3).strides(256) == [4, 2, 1]
    assert SubsamplePyramid(3).strides(255) == [2, 1]     # 255 // 4 = 63 < 64
    assert SubsamplePyramid(2).strides(1024) == [2, 1]
    assert SubsamplePyramid(1).strides(64) == [1]
    with pytest.raises(ValueError, match='image width 63 is too small'):
        SubsamplePyramid(3).strides(63)


def test_subsample_pyramid_images():
    import numpy
    x = numpy.arange(2 * 7 * 5, dtype=numpy.float32).reshape(1, 2, 7, 5)
    level = SubsamplePyramid(3).level(x, 2)
    numpy.testing.assert_array_equal(level, x[:, :, ::2, ::2])
    assert level.shape == (1, 2, 4, 3)
    up = SubsamplePyramid(3).upsample(level, (7, 5))
    assert up.shape == (1, 2, 7, 5)
    # Nearest doubling: pixel (r, c) comes from (r // 2, c // 2) of the coarse level.
    for r in range(7):
        for c in range(5):
            numpy.testing.assert_array_equal(up[0, :, r, c], level[0, :, r // 2, c // 2])
