import pathlib

import numpy
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
    ({'width': 0}, 'width must be an integer >= 1'),
    ({'width': 12.5}, 'width must be an integer >= 1'),
    ({'iterations': True}, 'iterations must be an integer >= 1'),
    ({'iterations': (10, 20)}, 'iterations has 2 values for 3 levels'),
    ({'style_weight': (1.0, 2.0, 3.0)}, 'style_weight has 3 values for 2 style layers'),
    ({'num_rotation': -1}, 'num_rotation must be an integer >= 0'),
    ({'num_rotation': 6}, 'num_rotation x rotation_step must stay under 45 degrees'),
    ({'scale_step': 0}, 'scale_step must be a finite number > 0'),
    ({'size': (10,)}, r'size must be \(width, height\)'),
    ({'bank_dtype': 'float64'}, 'bank_dtype must be one of float32, float16'),
    ({'overlap': 'max'}, 'overlap must be one of sum, average'),
    ({'resolution_num': 5}, 'resolution_num must be 1, 2, 3 or 4'),
    ({'match_normalisation': 'channel'}, 'match_normalisation must be one of patch, pixel'),
    ({'style_weight': -1.0}, 'style_weight must be a finite number'),
    ({'tv_weight': float('nan')}, 'tv_weight must be a finite number'),
    ({'lr': 0}, 'lr must be a finite number > 0'),
    ({'optimizer': 'sgd'}, 'optimizer must be one of lbfgs, adam'),
    ({'initial_image': ''}, 'initial_image must be content, random, map or an image path'),
    ({'style_layers': ''}, 'style_layers is empty'),
    ({'seed': -3}, 'seed must be an integer from 0 to 4294967295, got -3'),
    ({'seed': 2**32}, 'seed must be an integer from 0 to 4294967295'),
    ({'confidence_threshold': 1.5}, 'confidence_threshold must be a finite number from -1.0 '
                                    'to 1.0, got 1.5'),
    ({'confidence_threshold': -1.01}, 'confidence_threshold must be a finite number from -1.0'),
    ({'memory_limit': 0}, 'memory_limit must be an integer >= 1'),
    ({'model': ''}, 'model must be None or the path of a weights file'),
    ({'width': numpy.float64(64.5)}, 'width must be an integer >= 1, got 64.5'),
    ({'keep_color': 'yes'}, 'keep_color must be True or False'),
    ({'luminance_only': 1}, 'luminance_only must be True or False'),
    ({'semantic_weight': 0}, 'semantic_weight must be a finite number > 0'),
    ({'semantic_weight': float('inf')}, 'semantic_weight must be a finite number'),
    ({'style_image_weights': ()}, 'style_image_weights must be None or one number per style'),
    ({'style_image_weights': (1.0, 0.0)}, 'style_image_weights must be a finite number > 0'),
    ({'style_image_weights': 'heavy'}, 'style_image_weights must be None or one number'),
])
def test_impossible_options(options, message):
    with pytest.raises(ValueError, match=message):
        presets.get_preset('dsanno').replace(**options)


def test_numpy_scalars_arrays_and_paths_are_taken_as_python_values():
    p = presets.get_preset('dsanno').replace(
        width=numpy.int64(64), lr=numpy.float32(0.5), keep_color=numpy.bool_(True),
        style_weight=numpy.array([0.1, 0.2]), iterations=[3, 2, 1],
        initial_image=pathlib.Path('start.png'), model=pathlib.Path('m.npz'),
        confidence_threshold=numpy.float64(1.0), seed=numpy.uint32(7))
    assert (p.width, p.lr, p.keep_color, p.style_weight, p.iterations) == (
        64, 0.5, True, (0.1, 0.2), (3, 2, 1))
    assert type(p.width) is int and type(p.lr) is float and type(p.keep_color) is bool
    assert (p.initial_image, p.model, p.confidence_threshold, p.seed) == (
        'start.png', 'm.npz', 1.0, 7)
    assert p == presets.get_preset('dsanno').replace(
        width=64, lr=0.5, keep_color=True, style_weight=(0.1, 0.2), iterations=(3, 2, 1),
        initial_image='start.png', model='m.npz', confidence_threshold=1.0, seed=7)


def test_cnnmrf_defaults_are_the_authors():
    p = presets.get_preset('cnnmrf')
    assert (p.arch, p.preprocessing, p.size_rule, p.max_size, p.pyramid, p.resolution_num,
            p.iterations) == ('auto', 'cnnmrf', 'max_size', 384, 'resize', 3, 100)
    assert (p.style_layers, p.style_weight, p.overlap) == (('relu3_1', 'relu4_1'), 1e-4,
                                                            'average')
    assert (p.content_layers, p.content_weight) == (('relu4_2',), 2e1)
    assert (p.tv_weight, p.tv_variant) == (1e-3, 'cnnmrf')
    assert (p.num_rotation, p.num_scale, p.rotation_step, p.scale_step) == (1, 1, 7.5, 1.05)
    assert (p.sample_stride, p.synthesis_stride, p.confidence_threshold) == (2, 2, 0.0)
    assert (p.lbfgs_history, p.lbfgs_ys_floor, p.lbfgs_scale_first_step) == (25, 0.0, True)
    assert (p.noise, p.texture_style_scale) == ('normal', 0.5)


def test_doodle_defaults_are_neural_doodles():
    """alexjc/neural-doodle doodle.py (b2fac92): its argparse defaults, its Model and its
    fmin_l_bfgs_b call, as far as they are options here (docs/algorithm.md, "The doodle
    preset")."""
    p = presets.get_preset('doodle')
    # --content-layers 4_2 --content-weight 10, --style-layers 3_1,4_1 --style-weight 25
    assert (p.content_layers, p.content_weight) == (('relu4_2',), 10.0)
    assert (p.style_layers, p.style_weight, p.overlap) == (('relu3_1', 'relu4_1'), 25.0, 'sum')
    # --semantic-weight 10, normalize_components: each pixel's features and map apart
    assert (p.semantic_weight, p.match_normalisation) == (10.0, 'pixel')
    # --phases 3 --iterations 100; scale 1 / 2 ** (phases - 1 - i): resized levels
    assert (p.resolution_num, p.iterations, p.pyramid) == (3, 100, 'resize')
    # --smoothness 1; --seed noise --seed-range 16:240, at the first phase only
    assert (p.tv_weight, p.tv_variant) == (1.0, 'doodle')
    assert (p.initial_image, p.noise) == ('random', 'pixels')
    # fmin_l_bfgs_b(..., m=5, bounds (0, 255)); --save-every 10
    assert (p.optimizer, p.lbfgs_history, p.save_iter) == ('lbfgsb', 5, 10)
    # VGG19 (VGG16 where it is not converted), average_exc_pad pooling, pixel_mean
    assert (p.arch, p.pooling, p.preprocessing) == ('auto', 'average', 'doodle')
    # the images at their own sizes; the style patches stored as float16; 3 x 3, stride 1
    assert (p.size_rule, p.bank_dtype, p.patch_size) == ('original', 'float16', 3)
    assert (p.sample_stride, p.synthesis_stride, p.num_rotation, p.num_scale) == (1, 1, 0, 0)
    assert p.confidence_threshold is None  # it drops no patch


def test_per_level_and_per_layer_values():
    p = presets.get_preset('cnnmrf').replace(iterations=[30, 20, 10], style_weight=[1e-4, 2e-4])
    assert p.per_level(3) == [30, 20, 10]
    assert p.per_level(2) == [20, 10]  # levels are dropped from the coarse end
    assert p.per_layer_weights() == [1e-4, 2e-4]
    assert presets.get_preset('dsanno').per_layer_weights() == [0.2, 0.2]


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'torch'"):
        presets.get_preset('torch')


def test_subsample_pyramid_levels():
    assert SubsamplePyramid(3).factors(256) == [4, 2, 1]
    assert SubsamplePyramid(3).factors(255) == [2, 1]     # 255 // 4 = 63 < 64
    assert SubsamplePyramid(2).factors(1024) == [2, 1]
    assert SubsamplePyramid(1).factors(64) == [1]
    with pytest.raises(ValueError, match='image width 63 is too small'):
        SubsamplePyramid(3).factors(63)


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


def test_resize_pyramid_levels_are_torch_bilinear_resizes():
    import numpy
    from chainer_mrf import image
    from chainer_mrf.pyramid import ResizePyramid
    x = numpy.random.RandomState(0).standard_normal((1, 3, 37, 29)).astype(numpy.float32)
    pyramid = ResizePyramid(3)
    assert pyramid.factors(29) == [4, 2, 1]
    assert [pyramid.level(x, f).shape[2:] for f in (4, 2, 1)] == [(10, 8), (19, 15), (37, 29)]
    numpy.testing.assert_array_equal(pyramid.level(x, 2), image.resize_bilinear(x, (15, 19)))
    numpy.testing.assert_array_equal(pyramid.level(x, 1), x)
    up = pyramid.upsample(pyramid.level(x, 2), (37, 29))
    numpy.testing.assert_array_equal(up, image.resize_bilinear(pyramid.level(x, 2), (29, 37)))


def test_colour_and_map_defaults_and_image_weights():
    for name in presets.PRESETS:
        p = presets.get_preset(name)
        assert (p.keep_color, p.luminance_only, p.match_color_histogram) == (False,) * 3
        assert p.style_image_weights is None
        # The originals' maps are in the features' units; neural-doodle's weighs cosines.
        assert (p.semantic_weight, p.match_normalisation) == (
            (10.0, 'pixel') if name == 'doodle' else (1e4, 'patch'))
    p = presets.get_preset('dsanno')
    assert p.replace(style_image_weights=[1, 0.5]).style_image_weights == (1, 0.5)
    # The command line parses one value as a number.
    assert p.replace(style_image_weights=2.0).style_image_weights == (2.0,)
