"""What several test files share: test images, random weights, the example data's path, the
CUDA marker and the command line. Test files import from here, never from each other or from
conftest."""
import functools
import json
import os
import subprocess
import sys

import chainer_mrf  # noqa: F401  (installs the NumPy shims before chainer is imported)
import numpy
import pytest

from chainer_mrf import weights as weights_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The project's root folder."""

DATA = os.path.join(ROOT, os.pardir, 'shared', 'data', 'cnnmrf')
"""The paper's example images (never part of the project; absent in a user's clone)."""

SMALL = dict(width=64, resolution_num=1)
"""Options of a quick dsanno run on the test images below."""

GENERATE = os.path.join(ROOT, 'scripts', 'generate.py')
"""The command line's script."""


def generate(*args, **kwargs):
    """Runs ``scripts/generate.py`` with ``args``; returns the finished process (text output)."""
    return subprocess.run([sys.executable, GENERATE, *map(str, args)], capture_output=True,
                          text=True, **kwargs)


def small_args(images, out_dir, *extra):
    """generate.py's arguments for a quick run (:data:`SMALL`) of the ``cli_images`` fixture's
    (content, style) into ``out_dir``."""
    return ['-c', images[0], '-s', images[1], '-o', str(out_dir), '-w', '64',
            '--resolution_num', '1', *extra]


def assert_one_error(done, message, code=2):
    """Asserts that a finished command exited with ``code`` and wrote exactly one stderr line,
    ``error: ...`` containing ``message``."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], \
        done.stderr


def strict_json_lines(path):
    """The records of a JSON-lines file, refusing what ``json`` lets through but JSON forbids
    (NaN, Infinity)."""
    def refuse(constant):
        raise AssertionError('%s holds %s, which is not JSON' % (path, constant))
    with open(path) as f:
        return [json.loads(line, parse_constant=refuse) for line in f]


def content_card():
    """A 96 x 72 test card: a colour ramp with a dark disc, something VGG sees structure in."""
    y, x = numpy.mgrid[0:72, 0:96]
    rgb = numpy.stack([x * 2.5, y * 3.0, 255 - x * 2.0], axis=-1)
    rgb[(x - 40) ** 2 + (y - 30) ** 2 < 300] = (20, 30, 40)
    return rgb.clip(0, 255).astype(numpy.uint8)


def style_stripes():
    """Diagonal colour stripes, 80 x 80."""
    y, x = numpy.mgrid[0:80, 0:80]
    index = ((x + y) // 6) % 3
    palette = numpy.array([[200, 40, 40], [30, 160, 60], [240, 220, 90]], numpy.uint8)
    return palette[index]


def random_weights(arch, seed=0, scale=0.1, divisor=1):
    """Random float32 weights with the layers of ``arch``, in a weights file's order.

    Args:
        arch (str): ``'vgg16'`` or ``'vgg19'``.
        seed (int): seeds the ``numpy.random.RandomState`` that draws them. Default: 0.
        scale (float): the values' standard deviation (normal, mean 0). Default: 0.1.
        divisor (int): divides every channel count but the image's 3, for a small model of the
            same layout (16: 4 to 32 channels). Default: 1, the real shapes.
    """
    rng = numpy.random.RandomState(seed)
    weights = {}
    for key, shape in weights_lib.expected_shapes(arch).items():
        # (out, in, 3, 3) or (out,): only the first two are channel counts.
        channels = tuple(n if n == 3 else n // divisor for n in shape[:2])
        weights[key] = (rng.standard_normal(channels + shape[2:]) * scale).astype(numpy.float32)
    return weights


def cuda_ready():
    """Whether CuPy can use GPU 0 here: a device counted and a small kernel run on it
    (:func:`chainer_mrf.synthesis.gpu_problem`), not merely CuPy importable."""
    return cuda_problem() is None


def cuda_problem():
    """Why GPU 0 is unusable here (one line), or ``None``."""
    from chainer_mrf.synthesis import gpu_problem
    return gpu_problem(0)


def needs_cuda(test):
    """Marks a test that needs CuPy and a usable CUDA device; elsewhere it is skipped, saying
    why, or, where ``CHAINER_MRF_REQUIRE_GPU=1`` (benchmarks/device.sh on a lent GPU), it fails
    saying why: there a GPU test that cannot run is a failure, not a skip."""
    problem = cuda_problem()
    if problem is not None and os.environ.get('CHAINER_MRF_REQUIRE_GPU') == '1':
        @functools.wraps(test)
        def fail(*args, **kwargs):
            pytest.fail('GPU 0 is unusable (CHAINER_MRF_REQUIRE_GPU=1 demands it): ' + problem)
        return pytest.mark.gpu(fail)
    skip = pytest.mark.skipif(problem is not None,
                              reason='CuPy with a usable CUDA device is absent: %s' % problem)
    return skip(pytest.mark.gpu(test))


def short_run(model, content=None, style=None, iterations=8, **options):
    """A quick dsanno synthesis (:data:`SMALL`) of the test images; returns the result and
    every :class:`~chainer_mrf.synthesis.Step`."""
    from chainer_mrf.synthesis import synthesize
    steps = []
    result = synthesize(content_card() if content is None else content,
                        style_stripes() if style is None else style, iterations=iterations,
                        model=model, callback=steps.append, **{**SMALL, **options})
    return result, steps


RED, GREEN = (220, 40, 40), (40, 200, 60)
"""The colours of :func:`two_textures`' halves."""


def two_textures():
    """A style whose left half is red stripes and right half green dots, and its label map."""
    y, x = numpy.mgrid[0:80, 0:80]
    style = numpy.full((80, 80, 3), 235, numpy.uint8)
    left = x < 40
    style[left & ((x + y) // 4 % 2 == 0)] = RED
    style[~left & ((x // 5 % 2 == 0) & (y // 5 % 2 == 0))] = GREEN
    labels = numpy.zeros((80, 80, 2), numpy.float32)
    labels[..., 0], labels[..., 1] = left, ~left
    return style, labels


def level_energy(vgg, content, styles, content_map=None, style_maps=None, preset='dsanno',
                 **options):
    """A level's energy as ``synthesize`` builds it (one level, on the CPU), and its inputs."""
    from chainer_mrf import inputs, presets, synthesis
    config = presets.get_preset(preset).replace(**{**SMALL, 'max_size': 64, **options})
    loaded = inputs.load_inputs(content, styles, content_map=content_map, style_map=style_maps,
                                preset=config)
    config = inputs.configure(config, loaded)
    prepared = inputs.prepare(loaded, config)
    energy = synthesis._Energy(vgg, config, prepared.content, prepared.styles, prepared.shape,
                               style_maps=prepared.style_maps, content_map=prepared.content_map)
    return energy, prepared


def matches(energy, x, monkeypatch):
    """Runs one gradient from ``x``; returns, per MRF layer, the queries and the bank indices."""
    from chainer_mrf import matching, synthesis
    found = []
    match = matching.match

    def record(queries, bank, **kwargs):
        indices, scores = match(queries, bank, **kwargs)
        found.append((queries.copy(), indices))
        return indices, scores
    monkeypatch.setattr(matching, 'match', record)
    synthesis._gradient(energy, image_link(x))
    return found


def image_link(x):
    """A link whose one parameter, ``x``, is a copy of the image ``x``, as ``synthesize``
    optimises it."""
    import chainer
    target = chainer.Link()
    with target.init_scope():
        target.x = chainer.Parameter(x.copy())
    return target


def profiled_gradient(energy, x):
    """One gradient of ``energy`` at the image ``x`` under a profiler; returns its Profile."""
    import chainer

    from chainer_mrf import synthesis
    from chainer_mrf.profiling import Profiler
    target = image_link(x)
    with Profiler(energy.vgg, chainer.get_device('@numpy')).step() as profile:
        synthesis._gradient(energy, target)
    return profile


def default_signals():
    """A child's ``preexec_fn``: SIGINT, SIGTERM and SIGHUP as a terminal gives them, whatever
    the test runner ignores (a shell's background job ignores SIGINT, ``nohup`` SIGHUP), so
    that a test sending one sees the program's own handling."""
    import signal
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
