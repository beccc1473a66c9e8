"""generate.py as a user runs it: outputs, trace, refusals, errors (faults: test_faults.py)."""
import os

import numpy
import pytest

from chainer_mrf import image, presets
from helpers import assert_one_error, generate, small_args, strict_json_lines


@pytest.fixture
def images(cli_images):
    return cli_images


def test_run_writes_images_trace_and_dsanno_report(images, tmp_path, vgg16_path):
    out = tmp_path / 'out'
    done = generate(*small_args(images, out, '--iter', '5', '--save_iter', '2', '-m', vgg16_path))
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ['out.png', 'out_0002.png', 'out_0004.png',
                                       'settings.json', 'trace.jsonl']
    assert image.load_image(str(out / 'out.png')).shape == (48, 64, 3)
    records = strict_json_lines(out / 'trace.jsonl')
    assert [r['iteration'] for r in records] == [1, 2, 3, 4, 5]
    for r in records:
        assert {'level', 'seconds', 'content_4_2', 'style_3_2', 'style_4_2', 'tv'} <= set(r)
    lines = done.stdout.splitlines()
    assert sum(line.startswith('level 1/1  iter ') for line in lines) == 5
    assert 'epoch 4 done' in lines
    assert lines[lines.index('epoch 4 done') + 1] == 'losses:'
    assert lines[lines.index('epoch 4 done') + 2].startswith('  content_4_2: ')

    again = generate(*small_args(images, out, '--iter', '1', '-m', vgg16_path))
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        'error: %s already holds out.png, out_0002.png, out_0004.png ... '
        '(use --force to replace them)' % out]
    forced = generate(*small_args(images, out, '--iter', '1', '--force', '-m', vgg16_path))
    assert forced.returncode == 0, forced.stderr


def test_help_shows_preset_defaults():
    done = generate('--help')
    assert done.returncode == 0
    text = ' '.join(done.stdout.split())
    p = presets.get_preset('dsanno')
    assert '(default: %s)' % p.style_weight in text
    assert '--style_layers STYLE_LAYERS, --mrf_layers STYLE_LAYERS MRF layers, ' \
           'comma-separated, e.g. 3_2,4_2 (default: 3_2,4_2)' in text
    assert '-w WIDTH, --width WIDTH' in text
    cnnmrf = ' '.join(generate('--preset', 'cnnmrf', '--help').stdout.split())
    assert 'MRF layers, comma-separated, e.g. 3_2,4_2 (default: 3_1,4_1)' in cnnmrf
    assert 'rotated by -R..R steps (default: 1)' in cnnmrf
    assert 'rotated by -R..R steps (default: 0)' in text


@pytest.mark.parametrize('change,message', [
    (lambda a: a.__setitem__(1, '/nonexistent/content.jpg'), 'no such file'),
    (lambda a: a.extend(['--style_layers', '3_9']), 'unknown VGG16 layer'),
    (lambda a: a.__setitem__(a.index('64'), '40'), 'image width 40 is too small'),
    (lambda a: a.extend(['-g', '0']), 'cannot use device'),
    (lambda a: a.extend(['--iter', '0']), 'iterations must be an integer >= 1'),
    (lambda a: a.extend(['--initial_image', 'noise']), "cannot read image 'noise'"),
])
def test_user_mistakes_are_one_line_and_exit_2(images, tmp_path, vgg16_path, change, message):
    args = small_args(images, tmp_path / 'out', '-m', vgg16_path)
    change(args)
    assert_one_error(generate(*args), message)
    assert not (tmp_path / 'out').exists()  # a folder the failed run made is removed again


def test_a_failing_rerun_keeps_the_earlier_files(images, tmp_path, vgg16_path):
    out = tmp_path / 'out'
    assert generate(*small_args(images, out, '--iter', '1', '-m', vgg16_path)).returncode == 0
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    done = generate(*small_args(images, out, '--iter', '1', '--force', '--style_layers', '3_9',
                             '-m', vgg16_path))
    assert done.returncode == 2
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before


def test_cnnmrf_style_transfer_and_texture_synthesis(images, tmp_path, vgg16_path):
    # Where each option arrives is test_cli_options.py's; here the authors' preset runs end to
    # end, one value of --num_iter per level (num_rotation 0 only keeps it quick).
    out = tmp_path / 'trans'
    done = generate('-c', images[0], '-s', images[1], '-o', str(out), '--preset', 'cnnmrf',
                     '--max_size', '64', '--num_res', '2', '--num_iter', '2,1',
                     '--num_rotation', '0', '-m', vgg16_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('style transfer with the cnnmrf preset; network VGG16 (')
    records = strict_json_lines(out / 'trace.jsonl')
    assert [(r['level'], r['level_iteration']) for r in records] == [(0, 1), (0, 2), (1, 1)]
    assert image.load_image(str(out / 'out.png')).shape == (48, 64, 3)

    out = tmp_path / 'texture'
    done = generate('-s', images[1], '-o', str(out), '--preset', 'cnnmrf', '--size', '40x56',
                     '--num_res', '1', '--num_iter', '2', '--max_size', '64', '-m', vgg16_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('texture synthesis with the cnnmrf preset')
    assert image.load_image(str(out / 'out.png')).shape == (56, 40, 3)


@pytest.mark.parametrize('extra,message', [
    (['--num_iter', '1,2'], 'iterations has 2 values for 3 levels'),
    (['--mrf_weight', '1,2,3'], 'style_weight has 3 values for 2 style layers'),
    (['--size', '40by56'], 'argument --size: invalid _size value'),
    (['--num_iter', 'many'], 'argument --iter/--num_iter: invalid int list value'),
    (['--sample_stride', '0'], 'sample_stride must be an integer >= 1'),
    (['--bogus'], 'unrecognized arguments: --bogus'),
])
def test_cnnmrf_option_mistakes(images, tmp_path, vgg16_path, extra, message):
    assert_one_error(generate('-c', images[0], '-s', images[1], '-o', str(tmp_path / 'out'),
                              '--preset', 'cnnmrf', '-m', vgg16_path, *extra), message)


# --- colour options, semantic maps and several style images ---------------------------------

@pytest.fixture(scope='module')
def maps(tmp_path_factory):
    """Two-region maps for the content (96 x 72, left/right) and the style (80 x 80)."""
    folder = tmp_path_factory.mktemp('maps')
    content_map, style_map = str(folder / 'content_sem.png'), str(folder / 'style_sem.png')
    left = numpy.zeros((72, 96, 3), numpy.uint8)
    left[:, :48] = 255
    top = numpy.zeros((80, 80, 3), numpy.uint8)
    top[:40] = 255
    image.save_image(content_map, left)
    image.save_image(style_map, top)
    return content_map, style_map


def test_several_styles_weights_and_keep_color(images, tmp_path, vgg16_path):
    out = tmp_path / 'out'
    done = generate(*small_args(images, out, '-s', images[0], '--style_image_weights', '1,0.5',
                             '--keep_color', '--iter', '2', '-m', vgg16_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('style transfer with the dsanno preset')
    assert image.load_image(str(out / 'out.png')).shape == (48, 64, 3)


def test_a_doodle_from_the_command_line(images, maps, tmp_path, vgg16_path):
    out = tmp_path / 'doodle'
    done = generate('-s', images[1], '--content_map', maps[0], '--style_map', maps[1],
                     '-o', str(out), '-w', '64', '--resolution_num', '1', '--iter', '2',
                     '--semantic_weight', '2e4', '-m', vgg16_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('neural doodle with the dsanno preset')
    assert image.load_image(str(out / 'out.png')).shape == (48, 64, 3)  # the map's, resized


@pytest.mark.parametrize('extra,message', [
    (lambda c, s: ['--content_map', c], 'content_sem.png) needs one for the style too'),
    (lambda c, s: ['--content_map', c, '--style_map', c],
     'content_sem.png is 96x72 but the style image is 80x80: resize the map'),
    (lambda c, s: ['--content_map', c, '--style_map', s, '-s', 'SECOND'],
     '1 style maps for 2 style images'),
    (lambda c, s: ['--content_map', '/nonexistent/sem.png', '--style_map', s], 'sem.png'),
    (lambda c, s: ['--style_image_weights', '1,2'],
     'style_image_weights has 2 values for 1 style images'),
    (lambda c, s: ['--semantic_weight', '0'], 'semantic_weight must be a finite number > 0'),
])
def test_map_and_style_mistakes_are_one_line_and_exit_2(images, maps, tmp_path, vgg16_path,
                                                        extra, message):
    args = [a if a != 'SECOND' else images[1] for a in extra(*maps)]
    assert_one_error(generate(*small_args(images, tmp_path / 'out', '-m', vgg16_path, *args)),
                     message)
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('flag', ['--keep_color', '--luminance_only', '--match_color_histogram'])
def test_colour_options_without_content_are_refused(images, tmp_path, flag):
    done = generate('-s', images[1], '-o', str(tmp_path / 'out'), flag)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        'error: %s needs a content image: without one there are no colours to keep or match'
        % flag[2:]]
    assert not (tmp_path / 'out').exists()


def test_help_shows_the_new_options():
    text = ' '.join(generate('--help').stdout.split())
    assert '--keep_color, --no-keep_color' in text
    assert '--semantic_weight SEMANTIC_WEIGHT scale of the semantic maps in the matching ' \
           '(default: %s)' % presets.get_preset('dsanno').semantic_weight in text
    assert '-s STYLE, --style STYLE style image; repeat it for several' in text
    assert '--content_map CONTENT_MAP' in text and '--style_map STYLE_MAP' in text


def test_neural_style_from_the_command_line(images, tmp_path, vgg16_path):
    # dsanno's run.py options: --iter, --save_iter, --initial_image; the gram preset's defaults.
    out = tmp_path / 'out'
    done = generate(*small_args(images, out, '--preset', 'gram', '--iter', '4', '--save_iter',
                                '2', '--seed', '0', '-m', vgg16_path))
    assert done.returncode == 0, done.stderr
    assert 'style transfer with the gram preset' in done.stdout
    records = strict_json_lines(out / 'trace.jsonl')
    assert [r['iteration'] for r in records] == [1, 2, 3, 4]
    assert {'content_3_3', 'content_4_3', 'style_1_2', 'style_2_2', 'style_3_3', 'style_4_3',
            'tv'} <= set(records[0])
    assert sorted(os.listdir(out)) == ['out.png', 'out_0002.png', 'out_0004.png',
                                       'settings.json', 'trace.jsonl']
    # --method switches the style term under any preset's other defaults.
    mrf = generate(*small_args(images, tmp_path / 'mrf', '--preset', 'gram', '--method', 'mrf',
                               '--iter', '1', '-m', vgg16_path))
    assert mrf.returncode == 0, mrf.stderr
    assert 'style_1_2' in strict_json_lines(tmp_path / 'mrf' / 'trace.jsonl')[0]


def test_an_early_stop_is_in_the_trace_and_the_progress(tmp_path, capsys):
    from chainer_mrf import cli, outputs, synthesis
    folder = outputs.RunFolder(str(tmp_path / 'out'))
    with folder:
        reporter = cli._Reporter(folder, 10, {'command': 'test'})
        x = numpy.zeros((1, 3, 4, 4), numpy.float32)
        for i, stop in ((1, None), (2, 'direction')):
            reporter(synthesis.Step(0, 1, i, i, 0.1, {'tv': 1.0}, x, image.DSANNO, stop=stop))
    records = strict_json_lines(tmp_path / 'out' / 'trace.jsonl')
    assert ['stop' in r for r in records] == [False, True]
    assert records[1]['stop'] == 'direction'
    assert ('level 1/1 ended after 2 of its steps: the L-BFGS direction does not descend'
            in capsys.readouterr().out)
