"""The memory estimate and the check that refuses what does not fit (chainer_mrf.memory)."""
import json
import os
import re
import subprocess
import sys
import time
import types

import chainer_mrf  # noqa: F401  (NumPy shims before chainer)
import numpy
import pytest

from chainer_mrf import inputs, matching, memory, mrf, patches, presets, vgg as vgg_lib
from helpers import content_card, needs_cuda, style_stripes

GiB = 1 << 30
CNNMRF16 = presets.CNNMRF.replace(arch='vgg16')  # the same network wherever VGG19 is converted


def _loaded(content=True, styles=1):
    return inputs.Inputs(content_card() if content else None, [style_stripes()] * styles, None,
                         [None] * styles, None)


def _configured(loaded, preset='dsanno', **options):
    return inputs.configure(presets.get_preset(preset).replace(**options), loaded)


# --- the estimate -----------------------------------------------------------------------------

@pytest.mark.parametrize('config, content, styles, extra', [
    (presets.get_preset('dsanno'), True, 1, {}),
    (CNNMRF16, True, 1, {}),
    (CNNMRF16.replace(content_layers=(), initial_image='random', size=(300, 200)), False, 1,
     {}),
    (presets.get_preset('dsanno').replace(keep_color=True), True, 1, {}),
    (presets.get_preset('dsanno').replace(optimizer='adam'), True, 1, {}),
    (CNNMRF16.replace(bank_dtype='float16'), True, 2, {}),
    (CNNMRF16, True, 1, dict(map_channels=3, gpu=True)),
    (presets.GRAM, True, 2, {})])
def test_the_parts_add_up_to_the_total(config, content, styles, extra):
    found = memory.estimate(config, (240, 320), [(300, 320)] * styles, content=content,
                            **extra)
    assert found.total == sum(found.parts.values())
    assert all(isinstance(v, int) and v >= 0 for v in found.parts.values())
    assert found.phase in ('steps', 'style banks')
    assert ('process' in found.parts) is not extra.get('gpu', False)


def test_neural_style_holds_no_bank_but_one_gram_matrix_per_style_layer():
    gram = presets.GRAM
    steps = memory.estimate(gram, (240, 320), [(300, 320)])
    assert steps.phase == 'steps' and steps.parts['style_banks'] == 0
    # The targets: the content's relu3_3 and relu4_3 maps, and a C x C matrix per style layer.
    shapes = memory._layer_maps('vgg16', (240, 320), gram.content_layers)
    maps = 4 * sum(c * h * w for c, h, w in shapes.values())
    grams = 4 * sum(c * c for c in (64, 128, 256, 512))
    assert steps.parts['targets'] == maps + grams
    # The MRF term at the same layers would need banks of every patch of the style.
    mrf = memory.estimate(gram.replace(method='mrf'), (240, 320), [(300, 320)])
    assert mrf.total > steps.total + mrf.parts['style_banks'] // 2


def test_the_estimate_grows_linearly_with_the_pixels_at_a_fixed_bank():
    config = CNNMRF16.replace(content_layers=(), initial_image='random')
    sides = (512, 1024, 1536, 2048)
    totals = [memory.estimate(config, (side, side), [(150, 192)], content=False).total
              for side in sides]
    slopes = [(b - a) / (s ** 2 - r ** 2) for a, b, r, s in zip(totals, totals[1:], sides,
                                                                 sides[1:])]
    # Equal bytes per added pixel (quadratic growth would make each slope larger than the
    # last), about 2.5 KB: the network's maps, the patches and the optimiser's history.
    assert max(slopes) / min(slopes) < 1.02
    assert 1500 < slopes[-1] < 4000


def test_a_level_s_banks_are_freed_before_the_next_level_s_are_built():
    one = memory.estimate(CNNMRF16.replace(resolution_num=1), (480, 640), [(480, 640)])
    three = memory.estimate(CNNMRF16, (480, 640), [(480, 640)])
    # The finest level's peak is the run's: the coarser levels' banks are not on top of it.
    assert (three.level, three.phase) == (2, 'steps')
    assert three.parts == one.parts


def test_a_short_run_touches_only_the_history_rows_it_writes():
    pixels = 3 * 480 * 640
    short = memory.estimate(CNNMRF16.replace(iterations=3), (480, 640), [(480, 640)])
    long = memory.estimate(CNNMRF16, (480, 640), [(480, 640)])
    # Two pairs after three steps, of the 25 the L-BFGS history holds after 26.
    assert long.parts['optimizer'] - short.parts['optimizer'] == 4 * pixels * 2 * (25 - 2)
    gpu = memory.estimate(CNNMRF16.replace(iterations=3), (480, 640), [(480, 640)], gpu=True)
    assert gpu.parts['optimizer'] == long.parts['optimizer']  # the device's pool holds them all


def test_a_float16_bank_takes_half_the_memory():
    full = memory.estimate(CNNMRF16, (480, 640), [(480, 640)])
    half = memory.estimate(CNNMRF16.replace(bank_dtype='float16'), (480, 640), [(480, 640)])
    assert 0.5 < half.parts['style_banks'] / full.parts['style_banks'] < 0.51


@pytest.mark.parametrize('preset, styles, map_channels', [
    ('dsanno', [(36, 44)], 0), ('dsanno', [(36, 44), (46, 38)], 0), (CNNMRF16, [(40, 52)], 0),
    (CNNMRF16, [(40, 52)], 2)])
def test_the_bank_part_is_the_real_bank_s_size(vgg, preset, styles, map_channels):
    config = presets.get_preset(preset).replace(resolution_num=1)
    shape = (48, 64)
    found = memory.estimate(config, shape, styles, map_channels=map_channels)
    assert found.phase == 'steps'
    rng = numpy.random.RandomState(0)
    images = [rng.uniform(-100, 100, (1, 3) + s).astype(numpy.float32) for s in styles]
    maps = {} if not map_channels else dict(
        style_maps=[numpy.full((1, map_channels) + s, 0.5, numpy.float32) for s in styles],
        content_map=numpy.full((1, map_channels) + shape, 0.5, numpy.float32))
    terms = mrf.mrf_terms(vgg, images, vgg.shapes(shape, config.style_layers), config, **maps)
    assert found.parts['style_banks'] == sum(
        term.bank.patches.nbytes + term.bank.inverse_norms.nbytes for term in terms)


def test_the_estimate_reads_the_sizes_prepare_makes():
    for loaded, config in [
            (_loaded(), _configured(_loaded())),
            (_loaded(), _configured(_loaded(), CNNMRF16, max_size=100)),
            (_loaded(content=False), _configured(_loaded(content=False), CNNMRF16)),
            (_loaded(content=False), _configured(_loaded(content=False), size=(70, 30)))]:
        shape, style_shapes = inputs.synthesis_shapes(loaded, config)
        prepared = inputs.prepare(loaded, config)
        assert shape == prepared.shape
        assert style_shapes == [s.shape[2:] for s in prepared.styles]


# --- a bank sharded over ranks ----------------------------------------------------------------

REPLICATED = ('process', 'weights', 'images', 'targets', 'optimizer', 'activations', 'patches')


def test_two_ranks_each_hold_half_the_banks_and_the_rest_whole():
    one = memory.estimate(CNNMRF16, (1024, 1024), [(1024, 800)])
    two = memory.estimate(CNNMRF16, (1024, 1024), [(1024, 800)], shards=2)
    assert (one.phase, one.level) == (two.phase, two.level) == ('steps', 2)
    # Whole chunks of the 64 or more of each bank: within a chunk of half.
    assert 0.5 <= two.parts['style_banks'] / one.parts['style_banks'] < 0.52
    assert {n: two.parts[n] for n in REPLICATED} == {n: one.parts[n] for n in REPLICATED}
    saved = (one.total - two.total) / (1 + memory.ALLOCATOR_SHARE)
    assert saved == pytest.approx(one.parts['style_banks'] / 2, rel=0.02)  # 0.63 GiB of 4.2


@pytest.mark.parametrize('ranks', [2, 3])
def test_a_rank_s_bank_part_is_its_largest_real_shard_s_size(vgg, ranks):
    # At relu3_1 48 queries: chunks of 50 entries, so shards of several chunks that cut style
    # copies (88 patches each) between ranks; relu4_1's bank is one chunk, the last rank's.
    config = CNNMRF16.replace(resolution_num=1, memory_budget=4 * 48 * 50)
    shape, styles = (48, 64), [(40, 52)]
    found = memory.estimate(config, shape, styles, shards=ranks)
    assert found.phase == 'steps'
    image = numpy.random.RandomState(0).uniform(-100, 100, (1, 3) + styles[0])
    held = []
    for rank in range(ranks):
        terms = mrf.mrf_terms(vgg, [image.astype(numpy.float32)],
                              vgg.shapes(shape, config.style_layers), config,
                              comm=types.SimpleNamespace(rank=rank, size=ranks))
        held.append(sum(0 if t.bank.local is None else
                        t.bank.local.patches.nbytes + t.bank.local.inverse_norms.nbytes
                        for t in terms))
    assert len(set(held)) > 1  # the ranks differ: the largest is counted
    assert found.parts['style_banks'] == max(held)


def _relu3_1(config, shape):
    """P and D at relu3_1 for an output of ``shape``."""
    *_, (_, _, channels, height, width) = vgg_lib.walk('vgg16', shape, ['relu3_1'])
    rows, cols = (patches.grid_starts(n, config.patch_size, config.synthesis_stride)
                  for n in (height, width))
    return len(rows) * len(cols), channels * config.patch_size ** 2


def _relu3_1_bank(config, shape, styles):
    """The estimate of a run with relu3_1 alone, peaking while it steps, and that layer's P, D,
    bank size S and chunk."""
    found = memory.estimate(config, shape, styles)
    assert found.phase == 'steps'
    count, dim = _relu3_1(config, shape)
    size = found.parts['style_banks'] // (4 * dim + 4)
    return found, count, dim, size, matching.chunk_size_for(count, dim, config.memory_budget,
                                                            'float32', size)


def test_ranks_past_the_last_chunk_hold_no_bank_but_all_the_rest():
    config = CNNMRF16.replace(style_layers=('relu3_1',), style_weight=1e-4, resolution_num=1)
    shape, styles = (512, 512), [(400, 600)]
    whole, count, dim, size, chunk = _relu3_1_bank(config, shape, styles)
    chunks = -(-size // chunk)
    assert 1 < chunks < 1000
    # One chunk each on some ranks, none on the others, which have the rest all the same.
    spread = [memory.estimate(config, shape, styles, shards=n) for n in (chunks, 1000)]
    assert spread[0] == spread[1]
    assert spread[1].parts['style_banks'] == chunk * (4 * dim + 4)
    assert {n: spread[1].parts[n] for n in REPLICATED} == {n: whole.parts[n]
                                                          for n in REPLICATED}


def test_the_chunk_of_scores_is_the_matching_s(monkeypatch):
    # No budget to cut it: the chunk is the 64th of the bank that ranks share alike, and its
    # scores (1.2 GiB for 64,516 queries) the largest short-lived array.
    config = CNNMRF16.replace(style_layers=('relu3_1',), style_weight=1e-4, resolution_num=1,
                              synthesis_stride=1, overlap='sum', memory_budget=1 << 40)
    shape, styles = (1024, 1024), [(1600, 1600)]
    found, count, dim, size, chunk = _relu3_1_bank(config, shape, styles)
    assert chunk == -(-size // matching.CHUNKS_PER_BANK)
    assert found.parts['working'] == 4 * count * chunk
    monkeypatch.setattr(matching, 'chunk_size_for', lambda *args: 2 * chunk)
    assert memory.estimate(config, shape, styles).parts['working'] == 4 * count * 2 * chunk


# --- the check --------------------------------------------------------------------------------

def _refused(config, loaded, **options):
    with pytest.raises(memory.MemoryRequestError) as raised:
        memory.check(config, loaded, **options)
    message = str(raised.value)
    assert '\n' not in message
    return message


def _fitting(message, name):
    found = re.search(r'; %s (\S+) would fit' % name, message)
    assert found, message
    return found.group(1)


def test_a_20000_pixel_wide_request_is_refused_naming_a_width_that_fits(monkeypatch):
    loaded = _loaded()
    config = _configured(loaded, width=20000)
    message = _refused(config, loaded)  # 1.5 TiB: more than any machine here
    assert re.match(r'this synthesis needs about [\d.]+ [GT]iB at its peak \(estimate\), but '
                    r'[\d.]+ [GMT]i?B of memory is available; width \d+ would fit \(or set '
                    r'memory_limit to run anyway\)$', message), message
    monkeypatch.setattr(memory, 'available', lambda device=-1: 2 * GiB)
    message = _refused(config, loaded)
    assert 'but 2.0 GiB of memory is available' in message
    width = int(_fitting(message, 'width'))
    assert 256 < width < 20000
    assert memory.check(config.replace(width=width), loaded).total <= 2 * GiB + \
        memory.PROCESS_BYTES
    _refused(config.replace(width=int(width * 1.1)), loaded)


#: Run in a fresh process (argv[1]: the tests' folder): the peak of the memory Python allocates
#: while ``memory.check`` refuses a 100000 x 100000 texture a second time, above what was
#: allocated before, and the refusal. Measured there because tracemalloc's peak is the
#: process's: tracing started earlier (PYTHONTRACEMALLOC, -X tracemalloc, another test) would
#: count earlier allocations, and stopping it would end another's tracing.
TRACED_REFUSAL = r"""
import json, sys, tracemalloc
sys.path.insert(0, sys.argv[1])
import chainer_mrf
from chainer_mrf import inputs, memory, presets
from helpers import style_stripes
loaded = inputs.Inputs(None, [style_stripes()], None, [None], None)
config = inputs.configure(presets.CNNMRF.replace(arch='vgg16', size=(100000, 100000)), loaded)
def refusal():
    try:
        memory.check(config, loaded, limit=8 << 30)
    except memory.MemoryRequestError as error:
        return str(error)
first = refusal()  # imports and caches, not traced
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
tracemalloc.reset_peak()
second = refusal()
print(json.dumps([tracemalloc.get_traced_memory()[1] - before, first, second]))
"""


def test_a_texture_of_100000_squared_is_refused_at_once_and_without_allocating():
    loaded = _loaded(content=False)
    config = _configured(loaded, CNNMRF16, size=(100000, 100000))
    start = time.perf_counter()
    message = _refused(config, loaded, limit=8 * GiB)
    assert time.perf_counter() - start < 1  # 0.06 s on the 2-core machine, idle
    done = subprocess.run([sys.executable, '-c', TRACED_REFUSAL, os.path.dirname(__file__)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    peak, *refusals = json.loads(done.stdout)
    assert refusals == [message, message]
    assert peak < 4 << 20  # the whole search, where one layer's patches would take terabytes
    assert message.startswith('this synthesis needs about ') and 'TiB at its peak' in message
    assert 'but memory_limit is 8.0 GiB' in message and message.endswith(
        '(or raise memory_limit)')
    width, height = map(int, _fitting(message, 'size').split('x'))
    assert width == height and 1000 < width < 100000
    assert memory.check(config.replace(size=(width, height)), loaded, limit=8 * GiB).total \
        <= 8 * GiB
    # Against the memory this machine has (28.9 TiB are more than any has).
    assert re.search(r'GiB of memory is available; size \d+x\d+ would fit \(or set '
                     r'memory_limit to run anyway\)$', _refused(config, loaded))


def test_an_explicit_limit_above_what_is_available_runs_anyway(monkeypatch):
    monkeypatch.setattr(memory, 'available', lambda device=-1: 1 << 20)
    loaded = _loaded()
    config = _configured(loaded, width=2000)
    _refused(config, loaded)
    found = memory.check(config, loaded, limit=1 << 40)
    assert found.total > 1 << 20


def test_nothing_is_refused_when_the_memory_available_is_unknown(monkeypatch):
    monkeypatch.setattr(memory, 'available', lambda device=-1: None)
    loaded = _loaded()
    assert memory.check(_configured(loaded, width=20000), loaded).total > 100 * GiB


def test_no_size_fits_when_the_network_alone_does_not():
    loaded = _loaded()
    message = _refused(_configured(loaded), loaded, limit=1 << 20)
    assert '; no size fits (or raise memory_limit)' in message


def test_a_sharded_request_is_checked_per_rank(monkeypatch):
    loaded = _loaded()
    config = _configured(loaded, CNNMRF16, max_size=1000)
    need = [memory.estimate_inputs(config, loaded, shards=n).total - memory.PROCESS_BYTES
            for n in (1, 2)]
    monkeypatch.setattr(memory, 'available', lambda device=-1: sum(need) // 2)
    assert memory.check(config, loaded, shards=2).total == need[1] + memory.PROCESS_BYTES
    _refused(config, loaded)
    message = _refused(config, loaded, shards=4, limit=need[1] // 2)
    assert 'at its peak on each of its 4 ranks (estimate), but memory_limit is' in message
    width = int(_fitting(message, 'max_size'))
    assert memory.check(config.replace(max_size=width), loaded, shards=4,
                        limit=need[1] // 2).total <= need[1] // 2


def test_ranks_on_one_node_share_its_memory(monkeypatch):
    loaded = _loaded()
    config = _configured(loaded, width=1000)
    need = memory.estimate_inputs(config, loaded).total - memory.PROCESS_BYTES
    monkeypatch.setattr(memory, 'available', lambda device=-1: need * 5 // 2)
    memory.check(config, loaded, sharing=2)
    message = _refused(config, loaded, sharing=3)
    room = re.search(r'but ([\d.]+) GiB of memory is available to each of the 3 ranks on this '
                     r'node; width \d+ would fit', message)
    assert room, message
    assert float(room.group(1)) == round(need * 5 / 6 / GiB, 1)
    width = int(_fitting(message, 'width'))
    fitting = memory.estimate_inputs(config.replace(width=width), loaded)
    assert fitting.total - memory.PROCESS_BYTES <= need * 5 // 6
    _refused(config.replace(width=int(width * 1.1)), loaded, sharing=3)
    # A limit is each rank's, and a GPU is one rank's: neither is divided.
    memory.check(config, loaded, limit=need + memory.PROCESS_BYTES, sharing=3)
    gpu = types.SimpleNamespace(xp=types.SimpleNamespace(__name__='cupy'),
                                device=types.SimpleNamespace(id=0))
    memory.check(config, loaded, device=gpu, sharing=3)


def test_the_memory_available_on_this_machine_is_a_positive_count():
    room = memory.available()
    assert isinstance(room, int) and room > 0


@needs_cuda
def test_a_gpu_request_is_checked_against_the_gpu_s_memory():
    loaded = _loaded()
    room = memory.available(0)
    assert isinstance(room, int) and room > 0
    message = _refused(_configured(loaded, width=100000), loaded, device=0)
    assert 'of GPU memory at its peak' in message and 'of GPU memory is available' in message


def _write(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace('_', '.', 1)).write_text(text)


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_a_cgroup_limit_caps_the_memory_available(tmp_path, monkeypatch, version):
    root = tmp_path / 'sys'
    if version == 'v2':
        line = '0::/user.slice/app\n'
        _write(root / 'user.slice', memory_max='max', memory_current='123')
        _write(root / 'user.slice' / 'app', memory_max=str(3 * GiB), memory_current=str(GiB))
    else:  # the tightest limit is an ancestor's; "no limit" is a huge number in v1
        line = '7:pids:/\n4:memory:/jobs/one\n'
        _write(root / 'memory' / 'jobs', memory_limit_in_bytes=str(4 * GiB),
               memory_usage_in_bytes=str(2 * GiB))
        _write(root / 'memory' / 'jobs' / 'one', memory_limit_in_bytes='9223372036854771712',
               memory_usage_in_bytes=str(GiB))
    (tmp_path / 'cgroup').write_text(line)
    monkeypatch.setattr(memory, '_CGROUP', str(root))
    monkeypatch.setattr(memory, '_SELF_CGROUP', str(tmp_path / 'cgroup'))
    assert memory.available() == 2 * GiB  # far below this machine's free memory
    (tmp_path / 'cgroup').write_text('0::/elsewhere\n')
    assert memory.available() > 2 * GiB  # no limit set there: the kernel's figure


def test_a_gpu_request_names_the_gpu_s_memory(monkeypatch):
    monkeypatch.setattr(memory, 'available', lambda device=-1: GiB)
    gpu = types.SimpleNamespace(xp=types.SimpleNamespace(__name__='cupy'),
                                device=types.SimpleNamespace(id=0))
    loaded = _loaded()
    message = _refused(_configured(loaded, width=4000), loaded, device=gpu)
    assert 'of GPU memory at its peak' in message and '1.0 GiB of GPU memory is available' \
        in message
    width = int(_fitting(message, 'width'))
    # On the GPU the interpreter is not counted.
    assert memory.check(_configured(loaded, width=width), loaded, device=gpu).total <= GiB
