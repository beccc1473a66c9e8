"""Every option of generate.py arrives where it says: the preset field it names, or the argument
of the library call it is for (``load_inputs``, ``synthesize``, the output folder).

The command runs in-process with those calls replaced by recorders (each checks the call
against the real function's signature), so no synthesis runs. One table lists every option the
parser defines, each with a value no base preset has; a run with that option must differ from
the base's defaults in exactly the fields the row names, by exactly the parsed values.
"""
import collections
import contextlib
import dataclasses
import inspect
import os

import numpy
import pytest

from chainer_mrf import cli, outputs, presets

STYLE = 'style.jpg'

#: Every switch on and every optional field set, so that ``--no-X`` and ``none`` have something
#: to turn off (no real preset has). Registered as the preset ``on`` by the ``run`` fixture.
ON = dataclasses.replace(presets.PRESETS['dsanno'], name='on', keep_color=True,
                         luminance_only=True, match_color_histogram=True,
                         confidence_threshold=0.5, memory_limit=1 << 30)
BASES = {**presets.PRESETS, 'on': ON}
REAL = tuple(sorted(presets.PRESETS))
MRF = ('cnnmrf', 'doodle', 'dsanno')
PATCH = ('cnnmrf', 'dsanno', 'gram', 'on')  # the presets of the originals' normalisation

#: A content folder's files, and the images a batch takes from it (in name order).
BATCH = ('b.jpg', 'a.png', 'notes.txt', '.hidden.png')
BATCH_IMAGES = (os.path.join('batch', 'a.png'), os.path.join('batch', 'b.jpg'))

#: A content image with a map beside it, as neural-doodle names maps (the only one here).
MAPPED, MAPPED_MAP = 'mapped.png', 'mapped_sem.png'

Row = collections.namedtuple('Row', 'argv expected bases')


def row(*argv, bases=REAL, **expected):
    """``argv`` (its first flag is the option the row is for) run on each of ``bases``:
    ``expected`` maps each preset field or library argument that must change to its value."""
    return Row(argv, expected, bases)


TABLE = [
    # preset fields
    row('--method', 'gram', bases=MRF, method='gram'),
    row('--method', 'mrf', bases=('gram',), method='mrf'),
    row('-t', 'vgg19', arch='vgg19'),
    row('--type', 'vgg19', arch='vgg19'),
    row('-m', 'a.npz', model='a.npz'),
    row('--model', 'models/b.npz', model='models/b.npz'),
    row('--iter', '7', iterations=7),
    row('--num_iter', '3,4', '--num_res', '2', iterations=(3, 4), resolution_num=2),
    row('--save_iter', '3', save_iter=3, save_every=3),
    row('--lr', '0.5', lr=0.5),
    row('--optimizer', 'adam', optimizer='adam'),
    row('--content_weight', '3.5', content_weight=3.5),
    row('--style_weight', '0.37', style_weight=0.37),
    row('--mrf_weight', '0.5,0.25', '--style_layers', '2_1,3_1', style_weight=(0.5, 0.25),
        style_layers=('relu2_1', 'relu3_1')),
    row('--tv_weight', '0.02', tv_weight=0.02),
    row('-w', '96', width=96),
    row('--width', '128', width=128),
    row('--max_size', '200', max_size=200),
    row('--size', '40x56', size=(40, 56)),
    row('--content_layers', '3_1,relu5_2', content_layers=('relu3_1', 'relu5_2')),
    row('--style_layers', '1_1', style_layers=('relu1_1',)),
    row('--mrf_layers', '2_1,conv5_1', style_layers=('relu2_1', 'conv5_1')),
    row('--patch_size', '5', patch_size=5),
    row('--num_rotation', '2', num_rotation=2),
    row('--num_scale', '2', num_scale=2),
    row('--sample_stride', '3', sample_stride=3),
    row('--synthesis_stride', '4', synthesis_stride=4),
    row('--confidence_threshold', '0.25', confidence_threshold=0.25),
    row('--confidence_threshold', 'none', bases=('cnnmrf', 'on'), confidence_threshold=None),
    row('--initial_image', 'start.png', initial_image='start.png'),
    row('--resolution_num', '2', resolution_num=2),
    row('--num_res', '1', bases=MRF, resolution_num=1),
    row('--memory_budget', '300M', memory_budget=300 << 20),
    row('--memory_budget', '1.5GiB', memory_budget=3 << 29),
    row('--memory_limit', '8G', memory_limit=8 << 30),
    row('--memory_limit', 'none', bases=('on',), memory_limit=None),
    row('--bank_dtype', 'float16', bases=PATCH, bank_dtype='float16'),
    row('--bank_dtype', 'float32', bases=('doodle',), bank_dtype='float32'),
    row('--match_normalisation', 'pixel', bases=PATCH, match_normalisation='pixel'),
    row('--match_normalisation', 'patch', bases=('doodle',), match_normalisation='patch'),
    row('--seed', '7', seed=7),
    row('--keep_color', keep_color=True),
    row('--no-keep_color', bases=('on',), keep_color=False),
    row('--luminance_only', luminance_only=True),
    row('--no-luminance_only', bases=('on',), luminance_only=False),
    row('--match_color_histogram', match_color_histogram=True),
    row('--no-match_color_histogram', bases=('on',), match_color_histogram=False),
    row('--semantic_weight', '2e4', semantic_weight=2e4),
    row('--style_image_weights', '0.5', style_image_weights=(0.5,)),
    row('--style_image_weights', '1,0.5', style_image_weights=(1.0, 0.5)),
    row('--preset', 'gram', bases=MRF, name='gram'),  # and every other field gram's
    # library arguments
    row('-c', 'photo.png', contents=('photo.png',)),
    row('-c', 'batch', contents=BATCH_IMAGES,
        out_dirs=(os.path.join('output', 'a'), os.path.join('output', 'b'))),
    row('--content', 'x.png', '--content', 'y.png', contents=('x.png', 'y.png'),
        out_dirs=(os.path.join('output', 'x'), os.path.join('output', 'y'))),
    # a batch passes the other library arguments to each image's calls
    row('--content', 'batch', '-s', 'second.jpg', '--style_map', 'sem.png', '-g', '1', '--force',
        '-o', 'elsewhere', contents=BATCH_IMAGES, style=[STYLE, 'second.jpg'],
        style_map=['sem.png'], device=1, force=True,
        out_dirs=(os.path.join('elsewhere', 'a'), os.path.join('elsewhere', 'b'))),
    row('-s', 'second.jpg', style=[STYLE, 'second.jpg']),
    row('--style', 'second.jpg', style=[STYLE, 'second.jpg']),
    row('--content_map', 'doodle.png', content_map='doodle.png'),
    row('--style_map', 'sem.png', style_map=['sem.png']),
    # the map beside the content is taken where the style side has one (not by gram's method)
    row('-c', MAPPED, '--style_map', 'sem.png', bases=MRF, contents=(MAPPED,),
        content_map=MAPPED_MAP, style_map=['sem.png']),
    row('--no_auto_maps', '-c', MAPPED, '--style_map', 'sem.png', contents=(MAPPED,),
        style_map=['sem.png']),
    row('-o', 'elsewhere', out_dirs=('elsewhere',)),
    row('--out_dir', os.path.join('a', 'b'), out_dirs=(os.path.join('a', 'b'),)),
    row('-g', '1', device=1),
    row('--gpu', '0', device=0),
    row('--force', force=True),
]


def defaults(name):
    """What a run on preset ``name`` with no option but ``-s STYLE`` gives."""
    preset = BASES[name]
    return {**dataclasses.asdict(preset), 'contents': (None,), 'style': [STYLE],
            'content_map': None, 'style_map': None, 'device': -1, 'comm': None,
            'save_every': preset.save_iter, 'out_dirs': ('output',), 'force': False}


class _Folder(contextlib.nullcontext):
    """An output folder that writes nothing."""

    def begin(self, settings):
        pass

    record = begin

    def save(self, name, image):
        pass


@pytest.fixture
def run(tmp_path, monkeypatch):
    """``run(*argv)`` runs generate.py with ``-s STYLE`` and ``argv`` in ``tmp_path``; returns
    what arrived: the synthesised preset's fields and the library calls' arguments."""
    monkeypatch.setitem(presets.PRESETS, 'on', ON)
    calls = collections.defaultdict(list)

    def recorder(name, real, result):
        signature = inspect.signature(real)

        def record(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)  # a call the real function takes
            bound.apply_defaults()
            calls[name].append(bound.arguments)
            return result(bound.arguments)
        return record
    inputs = object()
    monkeypatch.setattr(cli, 'load_inputs', recorder('load', cli.load_inputs, lambda a: inputs))
    monkeypatch.setattr(cli, 'weights_for', recorder('weights', cli.weights_for,
                                                     lambda a: ('vgg16', 'weights.npz')))
    monkeypatch.setattr(cli, 'synthesize', recorder(
        'synthesize', cli.synthesize, lambda a: numpy.zeros((2, 2, 3), numpy.uint8)))
    monkeypatch.setattr(outputs, 'RunFolder', recorder('folder', outputs.RunFolder,
                                                       lambda a: _Folder()))
    (tmp_path / 'batch').mkdir()
    for name in BATCH:
        (tmp_path / 'batch' / name).write_bytes(b'')
    (tmp_path / MAPPED_MAP).write_bytes(b'')
    monkeypatch.chdir(tmp_path)

    def run(*argv):
        calls.clear()
        assert cli.main(['-s', STYLE, *argv]) == 0
        load, synthesized, folders = calls['load'], calls['synthesize'], calls['folder']
        config = synthesized[0]['preset']
        assert len(synthesized) == len(load) == len(folders)
        for s, loaded in zip(synthesized, load):
            assert s['inputs'] is inputs and s['preset'] is config is loaded['preset']
            assert (s['content'], s['style'], s['profile'], s['options']) == (None, None,
                                                                              False, {})
            assert s['callback'].save_iter == synthesized[0]['callback'].save_iter
            assert s['device'] == synthesized[0]['device'] and s['comm'] is None
        assert [(a['arch'], a['model']) for a in calls['weights']] == [(config.arch,
                                                                        config.model)]
        once = {key: {repr(call[key]) for call in load} for key in ('style', 'content_map',
                                                                   'style_map')}
        assert all(len(values) == 1 for values in once.values()), once
        assert len({f['force'] for f in folders}) == 1
        return {**dataclasses.asdict(config), 'contents': tuple(a['content'] for a in load),
                'style': load[0]['style'], 'content_map': load[0]['content_map'],
                'style_map': load[0]['style_map'], 'device': synthesized[0]['device'],
                'comm': synthesized[0]['comm'],
                'save_every': synthesized[0]['callback'].save_iter,
                'out_dirs': tuple(f['path'] for f in folders), 'force': folders[0]['force']}
    return run


def test_the_table_has_a_row_for_every_option_of_the_parser():
    for name in REAL:
        parser = cli._parser(presets.PRESETS[name], 'generate.py')
        options = {flag for action in parser._actions for flag in action.option_strings}
        assert {r.argv[0] for r in TABLE} == options - {'-h', '--help'}


def test_each_row_sets_a_value_its_bases_do_not_have():
    for r in TABLE:
        assert r.expected and r.bases
        for base in r.bases:
            for key, value in r.expected.items():
                assert value != defaults(base)[key], (r.argv, base, key)


@pytest.mark.parametrize('base', REAL + (None,))
def test_without_options_every_field_is_the_presets_default(run, base):
    argv = () if base is None else ('--preset', base)
    assert run(*argv) == defaults(base or 'dsanno')


def _typed(values):
    return {key: (type(value), value) for key, value in values.items()}


@pytest.mark.parametrize('argv,expected,base', [
    pytest.param(r.argv, r.expected, base, id='%s@%s' % (' '.join(r.argv), base))
    for r in TABLE for base in r.bases])
def test_each_option_arrives_where_it_names(run, argv, expected, base):
    # --preset changes every default to the chosen preset's
    final = argv[1] if argv[0] == '--preset' else base
    arrived = run('--preset', base, *argv)
    assert arrived == {**defaults(final), **expected}
    assert _typed({key: arrived[key] for key in expected}) == _typed(expected)
