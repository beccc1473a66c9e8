"""How much memory a synthesis will need, estimated from the sizes before anything is allocated.

A synthesis that does not fit should stop at once with one line, not after minutes with a NumPy
allocation traceback. :func:`estimate` counts, from the configuration and the images' sizes
alone, what a synthesis holds at its peak; :func:`available` says what this process can still
get on a device; :func:`check` compares the two before the images are resized and refuses a
request that does not fit with :class:`MemoryRequestError`, naming a size that would fit.

The model (``docs/performance.md``, "Memory"): the process, the network's weights and the
full-size images are there throughout. Each pyramid level then holds, while it steps, its style
banks (every patch of every style copy, counted from the grids as the bank is built), the
outputs the network keeps for the backward pass, the synthesised and matched patches of each
style layer, the optimiser's state and the largest of a step's short-lived arrays (a chunk of
the matching's scores, at most ``memory_budget``; a layer's patch differences; the backward
pass's gradient maps). While a level's banks are built it holds the style copies' features and
a bank's float32 parts beside the banks already filled. A level's banks are freed before the
next level's are built, so the peak is that of the largest level and phase. What the allocator
keeps of freed memory comes on top, in proportion; that share and the process are measured
(``benchmarks/memory.py``), the rest is counted.

Over several ranks (:mod:`chainer_mrf.distributed`) the estimate is one rank's peak, the largest:
each rank holds its share of each bank (whole chunks of the matching's grid), the features of
the style copies it holds patches of and, at each step, the winners' patches gathered from the
others; everything else is replicated, and counted whole.

Examples:
    >>> from chainer_mrf import presets
    >>> needed = estimate(presets.CNNMRF.replace(arch='vgg16'), (638, 800), [(800, 625)])
    >>> round(needed.total / 2 ** 30, 1), needed.level, needed.phase
    (2.6, 2, 'steps')
"""
import collections
import dataclasses
import math
import os
import sys
import typing

import numpy

from chainer_mrf import distributed, matching, patches, pyramid, style_copies, vgg, weights
from chainer_mrf import inputs as inputs_lib

FLOAT = 4
"""Bytes of a float32, the type of every image, feature and patch (but a float16 bank)."""

PROCESS_BYTES = 90 << 20
"""The interpreter with NumPy, Chainer and Pillow and what a run adds beside its arrays
(Python objects, the libraries' buffers): 71 MiB after ``import chainer_mrf``, 88 MiB in a
64-pixel synthesis beside its arrays (``ru_maxrss``, ``benchmarks/memory.py``'s machine)."""

ALLOCATOR_SHARE = 0.12
"""What the allocator keeps of freed memory, over the arrays held at the peak: freed blocks the
C library's heap does not hand back (or CuPy's pool keeps). Measured beside the counted arrays:
up to 9.4 % (cnnmrf at 1024 pixels), 1 to 4 % in the other cases of ``benchmarks/memory.py``;
taken a little above, so that the estimate errs on the safe side."""


class MemoryRequestError(ValueError):
    """A synthesis that would need more memory than there is (or than ``memory_limit``).

    Raised by :func:`check` before anything large is allocated; its message is one line that
    names the estimate, the memory available and a size that would fit.
    """


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A synthesis's estimated peak memory.

    Attributes:
        total (int): bytes at the peak, the sum of ``parts``.
        parts (dict): bytes of each part at the peak, by name. Throughout: ``process`` (the
            interpreter and libraries; not on a GPU), ``weights`` (the network's), ``images``
            (on the CPU the full-size inputs, resized, and the start; the level's images),
            ``style_banks`` (over several ranks, one rank's shares), ``targets`` (the content
            term's features) and ``allocator`` (freed memory not handed back,
            :data:`ALLOCATOR_SHARE` of the arrays). While a level steps: ``optimizer`` (its
            state, with L-BFGS's history), ``activations`` (the network's outputs kept for the
            backward pass), ``patches`` (the synthesised and matched patches, the coverage and
            the content map's columns) and ``working`` (the largest short-lived arrays: a chunk
            of scores, at most ``memory_budget``; the matched patches before they are widened
            or, over several ranks, gathered; a layer's patch differences; the backward pass's
            gradient maps). While its banks are built: ``style_features`` (the style copies'
            features, the float32 parts of the bank being filled, or those a rank cuts its
            share from, the network's working maps) and ``previous_level`` (the last level's
            optimiser state, not yet freed).
        level (int): the pyramid level (0 the coarsest kept) where the peak falls.
        phase (str): ``'steps'`` or ``'style banks'`` (while the level's banks are built).
    """

    total: int
    parts: typing.Dict[str, int]
    level: int
    phase: str


def estimate(config, output_shape, style_shapes, *, content=True, map_channels=0, gpu=False,
             shards=1):
    """The peak memory of a synthesis, counted from its sizes; nothing large is allocated.

    Args:
        config (chainer_mrf.presets.Preset): the configuration, after
            :func:`chainer_mrf.inputs.configure` (no content layers without a content image).
        output_shape (tuple of int): the output's (H, W) (:func:`chainer_mrf.inputs.
            synthesis_shapes`).
        style_shapes (sequence of tuple of int): each style image's (H, W) after resizing.
        content (bool): whether there is a content image (its full-size copy is held).
            Default: ``True``.
        map_channels (int): the semantic maps' channel count, 0 without maps. Default: 0.
        gpu (bool): the device's memory on a GPU: what lives on the host (the process, the
            full-size images) is left out. Default: ``False``.
        shards (int): the ranks each style bank is sharded over
            (:func:`chainer_mrf.distributed.shard`); above 1 the estimate is the peak of the
            rank that needs the most. Default: 1, one process.

    Returns:
        Estimate: the peak and its parts (one rank's over several).

    Raises:
        ValueError: the output is too narrow for any pyramid level
            (:meth:`chainer_mrf.pyramid.SubsamplePyramid.factors`), or a layer is not the
            network's.

    Examples:
        >>> from chainer_mrf import presets
        >>> small = estimate(presets.get_preset('dsanno'), (170, 256), [(256, 256)])
        >>> small.total == sum(small.parts.values()), small.phase
        (True, 'steps')
    """
    arch, _ = vgg.weights_for(config.arch, config.model)
    levels = pyramid.PYRAMIDS[config.pyramid](config.resolution_num)
    fixed = {} if gpu else {'process': PROCESS_BYTES}
    fixed['weights'] = FLOAT * sum(cout * (cin * 9 + 1)
                                   for _, cin, cout in weights.conv_layers(arch))
    if not gpu:
        # The prepared full-size images (the start is the content, or one more of its size),
        # and the maps resized to them; the loaded files are already resident.
        height, width = output_shape
        planes = 3 * (content + (config.initial_image not in ('content', 'random')))
        planes += 2 * config.luminance_only + map_channels
        fixed['images'] = FLOAT * (planes * height * width + sum(
            (3 + map_channels) * h * w for h, w in style_shapes))
    best = None
    previous = 0
    factors = levels.factors(output_shape[1])
    for index, (factor, steps) in enumerate(zip(factors, config.per_level(len(factors)))):
        shape = levels.level_shape(output_shape, factor)
        styles = [levels.level_shape(s, factor) for s in style_shapes]
        for phase, parts in _level(config, arch, shape, styles, steps, content, map_channels,
                                   gpu, previous, shards):
            parts = dict(fixed, **{name: fixed.get(name, 0) + value
                                   for name, value in parts.items()})
            if best is None or sum(parts.values()) > best.total:
                best = Estimate(sum(parts.values()), parts, index, phase)
        previous = _optimizer_bytes(config, 3 * shape[0] * shape[1], steps, gpu)
    arrays = best.total - best.parts.get('process', 0)
    parts = dict(best.parts, allocator=int(ALLOCATOR_SHARE * arrays))
    return dataclasses.replace(best, total=sum(parts.values()), parts=parts)


def available(device=-1):
    """Bytes this process can still allocate on a device, or ``None`` where that is unknown.

    On the CPU: the kernel's ``MemAvailable`` (``/proc/meminfo``), capped by the memory limit of
    the process's cgroup where one is set (cgroup v2 ``memory.max`` - ``memory.current``, v1
    ``memory.limit_in_bytes`` - ``memory.usage_in_bytes``, the tightest of its ancestors), else
    the free pages (``os.sysconf``). On a GPU: the device's free memory plus what CuPy's pool
    holds free for reuse.

    Args:
        device (chainer.backend.Device or int): a Chainer device, or dsanno's GPU id (negative
            for the CPU). Default: -1.

    Returns:
        int or None: bytes; ``None`` where nothing can be read (then nothing is refused).

    Examples:
        >>> available() > 0  # doctest: +SKIP
        True
    """
    gpu = _gpu_id(device)
    if gpu is not None:
        import cupy
        current = cupy.cuda.Device(gpu)
        with current:
            # Chainer allocates through CuPy's default pool, whose free blocks it reuses.
            return int(current.mem_info[0] + cupy.get_default_memory_pool().free_bytes())
    found = _meminfo_available()
    headroom = _cgroup_headroom()
    if found is None or (headroom is not None and headroom < found):
        found = headroom
    return found


def peak_resident():
    """This process's peak resident memory since it started (its ``exec``), in bytes.

    ``VmHWM`` of ``/proc/self/status``; where there is none, ``ru_maxrss``, which in a child
    process can begin at its parent's peak (the child starts as a copy of it).

    Examples:
        >>> peak_resident() > 0
        True
    """
    found = _proc_bytes('/proc/self/status', 'VmHWM:')
    if found is not None:
        return found
    import resource  # not on Windows, where neither is /proc
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (
        1 if sys.platform == 'darwin' else 1024)  # bytes there, kibibytes elsewhere


def check(config, inputs, device=-1, limit=None, *, shards=1, sharing=1):
    """Refuses a synthesis that would not fit in memory, before anything large is allocated.

    To be called once the inputs are loaded and configured, before
    :func:`chainer_mrf.inputs.prepare` resizes them: it reads their sizes only.

    Args:
        config (chainer_mrf.presets.Preset): the configuration, after
            :func:`chainer_mrf.inputs.configure`.
        inputs (chainer_mrf.inputs.Inputs): the loaded inputs.
        device (chainer.backend.Device or int): where the synthesis runs, as
            :func:`available`. Default: -1, the CPU.
        limit (int or None): bytes the synthesis (each rank's part of it) may take at its
            peak, on purpose above what is available if need be; ``None`` takes
            :func:`available` (what the process holds already, the interpreter, counts as
            available there). Default: ``None``.
        shards (int): the ranks each style bank is sharded over, as :func:`estimate`.
            Default: 1.
        sharing (int): the ranks on this node, which share its memory: with ``limit``
            ``None`` on the CPU each rank may take :func:`available` divided by them (a GPU
            is one rank's). Default: 1.

    Returns:
        Estimate: the estimate, for a request that fits (or when nothing is known of the
        memory available).

    Raises:
        MemoryRequestError: the estimate exceeds the limit; one line naming the estimate, the
            memory available and the size option's value that would fit (or that none does).
        ValueError: the output is too narrow for any pyramid level, or a layer is not the
            network's.

    Examples:
        >>> loaded = inputs_lib.load_inputs(None, 'gravel.png')  # doctest: +SKIP
        >>> config = presets.CNNMRF.replace(size=(100000, 100000))  # doctest: +SKIP
        >>> check(inputs_lib.configure(config, loaded), loaded, limit=8 << 30)  # doctest: +SKIP
        Traceback (most recent call last):
        MemoryRequestError: this synthesis needs about 28.9 TiB at its peak (estimate), but
        memory_limit is 8.0 GiB; size 1620x1620 would fit (or raise memory_limit)
    """
    gpu = _gpu_id(device) is not None
    room = int(limit) if limit is not None else available(device)
    divided = limit is None and not gpu and sharing > 1
    if divided and room is not None:
        room //= sharing

    def needed(found):
        # A limit bounds the whole peak; what is available comes on top of what the process
        # holds already, the interpreter and its libraries.
        return found.total - (found.parts.get('process', 0) if limit is None else 0)

    def estimated(candidate):
        return estimate_inputs(candidate, inputs, gpu=gpu, shards=shards)

    found = estimated(config)
    if room is None or needed(found) <= room:
        return found
    where = 'GPU memory' if gpu else 'memory'
    if limit is None:
        against = 'but %s of %s is available%s' % (
            _format_bytes(room), where,
            ' to each of the %d ranks on this node' % sharing if divided else '')
        advice = 'or set memory_limit to run anyway'
    else:
        against = 'but memory_limit is %s' % _format_bytes(room)
        advice = 'or raise memory_limit'
    smaller = _fitting_size(config, inputs, lambda candidate: needed(estimated(candidate))
                            <= room)
    raise MemoryRequestError('this synthesis needs about %s%s at its peak%s (estimate), %s; %s '
                             '(%s)' % (_format_bytes(found.total),
                                       ' of GPU memory' if gpu else '',
                                       ' on each of its %d ranks' % shards if shards > 1 else '',
                                       against, smaller or 'no size fits', advice))


def estimate_inputs(config, inputs, *, gpu=False, shards=1):
    """:func:`estimate` for loaded inputs: their sizes under ``config``'s size rule.

    Args:
        config (chainer_mrf.presets.Preset): the configuration, after
            :func:`chainer_mrf.inputs.configure`.
        inputs (chainer_mrf.inputs.Inputs): the loaded inputs (only their shapes are read).
        gpu (bool): the device's memory on a GPU, as :func:`estimate`. Default: ``False``.
        shards (int): the ranks each style bank is sharded over, as :func:`estimate`.
            Default: 1.

    Returns:
        Estimate: the peak and its parts.

    Raises:
        ValueError: the output is too narrow for any pyramid level, or a layer is not the
            network's.

    Examples:
        >>> loaded = inputs_lib.load_inputs(None, 'gravel.png')  # 192 x 192  # doctest: +SKIP
        >>> config = inputs_lib.configure(presets.CNNMRF, loaded)  # doctest: +SKIP
        >>> estimate_inputs(config, loaded).total >> 20  # MiB at 384 x 384  # doctest: +SKIP
        665
    """
    shape, style_shapes = inputs_lib.synthesis_shapes(inputs, config)
    map_channels = 0 if inputs.style_maps[0] is None else inputs.style_maps[0].shape[1]
    return estimate(config, shape, style_shapes, content=inputs.content is not None,
                    map_channels=map_channels, gpu=gpu, shards=shards)


_Bank = collections.namedtuple('_Bank', 'size counts dim feature_dim count features chunk')
"""One style layer's bank at a level: S patches (the counts of each style copy's) of length D
(features and map columns), the feature part's length, the synthesised patches P matched at each
step, the bytes of each style copy's feature map it is built from and the entries of a chunk of
the matching (:func:`chainer_mrf.matching.chunk_size_for`, 0 without entries)."""


def _level(config, arch, shape, styles, steps, content, map_channels, gpu, previous, shards):
    """The parts of one level of ``steps`` steps while its banks are built and while it
    steps, as ``(phase, parts)`` pairs, for each way one of ``shards`` ranks holds the banks;
    ``previous`` is the last level's optimiser state."""
    pixels = shape[0] * shape[1]
    images = FLOAT * 3 * pixels * (1 + content + len(styles))  # x, content, styles at the level
    targets = FLOAT * sum(c * h * w for c, h, w in
                          _layer_maps(arch, shape, config.content_layers).values())
    if config.method == 'gram':
        # No banks: each style image's pass leaves one C x C target per style layer.
        banks, passing = [], max(_pass_bytes(arch, style, config.style_layers, kept=True)
                                 for style in styles)
        targets += FLOAT * sum(c * c for c, _, _ in
                               _layer_maps(arch, shape, config.style_layers).values())
    else:
        banks, passing = _banks(config, arch, shape, styles, map_channels)
    itemsize = numpy.dtype(config.bank_dtype).itemsize
    image_size = 3 * pixels
    coverage = config.overlap == 'average'
    # The 'pixel' normalisation: the queries' columns, and each bank entry's pixel norms.
    pixel = config.match_normalisation == 'pixel'
    patch_bytes = working = 0
    for bank in banks:
        # The synthesised patches and their matched targets, kept for the backward pass; the
        # coverage of the authors' overlap rule and the content map's columns, kept for the
        # level.
        patch_bytes += FLOAT * bank.count * ((2 + coverage) * bank.feature_dim
                                             + (bank.dim if map_channels or pixel else 0))
        # The energy's difference (and its quotient by the coverage), or its gradient.
        working = max(working, FLOAT * bank.count * bank.feature_dim * (1 + coverage))
    if config.keep_color:
        # The network runs twice: on the image for the content, on its luminance for the MRF.
        kept, largest = (sum(pair) for pair in zip(
            _activations(arch, shape, config.content_layers, gpu),
            _activations(arch, shape, config.style_layers, gpu)))
    else:
        kept, largest = _activations(arch, shape, config.content_layers + config.style_layers,
                                     gpu)
    # The backward pass turns the largest map's gradient into its input's, beside the image's.
    working = max(working, 2 * largest + FLOAT * image_size)
    optimizer = _optimizer_bytes(config, image_size, steps, gpu)
    for shares in _shares(banks, shards):
        held = [stop - start for start, stop in shares]
        bank_bytes = [n * (bank.dim * itemsize + FLOAT * (1 + pixel * config.patch_size ** 2))
                      for n, bank in zip(held, banks)]
        # Building the banks: first the network's passes over the style copies, whose features
        # are kept where the rank holds some of their patches (mrf.mrf_terms), then bank i is
        # filled beside its float32 parts (before that, a rank cuts its share out of the
        # copies' patches), from its features and with those of the later banks still held.
        kept_features = [_features_held(bank, *share) for bank, share in zip(banks, shares)]
        building = [(0, sum(kept_features) + passing)]
        for i, (bank, (start, stop)) in enumerate(zip(banks, shares)):
            features = sum(kept_features[i:])
            building += [(sum(bank_bytes[:i]),
                          features + FLOAT * bank.dim * _cutting(bank.counts, start, stop)),
                         (sum(bank_bytes[:i + 1]), features + FLOAT * bank.dim * held[i])]
        built, features = max(building, key=sum)
        yield 'style banks', {'images': images, 'style_banks': built,
                              'style_features': features, 'targets': targets,
                              'previous_level': previous}
        yield 'steps', {
            'images': images, 'style_banks': sum(bank_bytes), 'targets': targets,
            'optimizer': optimizer, 'activations': kept, 'patches': patch_bytes,
            'working': max([working] + [_matching_bytes(bank, n, itemsize, shards)
                                        for bank, n in zip(banks, held)])}


def _shares(banks, shards):
    """Each way one of ``shards`` ranks holds the banks, once: the entries ``[start, stop)`` of
    each bank (:func:`chainer_mrf.distributed.shard`, on the matching's chunk grid)."""
    # A layer smaller than a patch has no entries (and no chunk); the run refuses it.
    return sorted({tuple(distributed.shard(bank.size, bank.chunk, rank, shards) if bank.size
                         else (0, 0) for bank in banks) for rank in range(shards)})


def _features_held(bank, start, stop):
    """The bytes of the style copies' feature maps at a layer that a rank holding its entries
    ``[start, stop)`` keeps: those of the copies it holds some patches of."""
    return sum(size for size, (low, high) in
               zip(bank.features, distributed.pieces(bank.counts, start, stop)) if low < high)


def _cutting(counts, start, stop):
    """The most float32 patches held while a rank cuts the entries ``[start, stop)`` of a bank
    out of its style copies' patches, ``counts`` of each (:func:`chainer_mrf.mrf.style_bank`):
    the parts so far beside a cut copy's whole patches; 0 where no copy is cut."""
    most = kept = 0
    for count, (low, high) in zip(counts, distributed.pieces(counts, start, stop)):
        if low < high:
            kept += high - low
            if high - low < count:
                most = max(most, kept + count)
    return most


def _matching_bytes(bank, held, itemsize, shards):
    """The largest of a step's matching arrays of a layer on a rank holding ``held`` of its
    entries: a chunk of scores, with a float16 bank's entries widened to float32
    (:func:`chainer_mrf.matching.match`); or the matched patches in the bank's type, a float16
    bank's before they are widened and, over several ranks, the winners this rank sends and
    those gathered from all (:class:`chainer_mrf.distributed.ShardedBank`; beside them the P
    keys of its reduction are small)."""
    widened = itemsize != FLOAT
    chunk = FLOAT * min(bank.chunk, held) * (bank.count + widened * bank.dim)
    matched = widened * bank.count
    if shards > 1:
        matched += min(bank.count, held) + min(bank.count, bank.size)
    return max(chunk, itemsize * bank.dim * matched)


def _banks(config, arch, shape, styles, map_channels):
    """The :data:`_Bank` of each style layer the network has, for a level's output ``shape``
    and style shapes, and the bytes of the largest pair of maps a pass over a copy holds."""
    k = config.patch_size
    maps = {name: [] for name in config.style_layers}
    passing = 0
    for style in styles:
        for copy in _copy_shapes(style, config):
            walked = _layer_maps(arch, copy, config.style_layers, every=True)
            for name in maps:
                maps[name].append(walked[name])
            passing = max(passing, _pass_bytes(arch, copy, config.style_layers))
    synthesised = _layer_maps(arch, shape, config.style_layers)
    banks = []
    for name in config.style_layers:
        channels, height, width = synthesised[name]
        counts = [patches.grid_count((h, w), k, config.sample_stride) for _, h, w in maps[name]]
        dim = (channels + map_channels) * k * k
        count = patches.grid_count((height, width), k, config.synthesis_stride)
        banks.append(_Bank(
            size=sum(counts), counts=counts, dim=dim, feature_dim=channels * k * k,
            count=count, features=[FLOAT * c * h * w for c, h, w in maps[name]],
            chunk=matching.chunk_size_for(count, dim, config.memory_budget, config.bank_dtype,
                                          sum(counts))))
    return banks, passing


def _optimizer_bytes(config, size, steps, gpu):
    """Bytes of the optimiser's state for an image of ``size`` floats and ``steps`` steps."""
    if config.optimizer == 'adam':
        return FLOAT * size * 2  # the two moments
    pairs = config.lbfgs_history
    if config.optimizer == 'lbfgsb':
        # SciPy's float64 work arrays (2 m n + 5 n), its iterate, gradient and bounds, the
        # last accepted iterate, and the float32 exchange copies.
        return 8 * size * (2 * pairs + 5 + 6) + FLOAT * size * 2
    if not gpu:
        # The history's rows are zeros until a pair is written, and n steps write n - 1 pairs
        # at most: on the CPU, zero pages never written take no memory.
        pairs = min(pairs, steps - 1)
    return FLOAT * size * (2 * pairs + 2)  # and the previous iterate and gradient


def _activations(arch, shape, layers, gpu):
    """Bytes one pass with a graph keeps up to the last of ``layers`` for the backward pass,
    every convolution's output (its ReLU's) and each pooling's winners (one byte per output
    on the CPU; on a GPU its float32 output, the next convolution's kept input), and the bytes
    of the largest of those maps, as a pair."""
    maps = _layer_maps(arch, shape, layers, every=True)
    kept = sum((FLOAT if name.startswith('conv') or gpu else 1) * c * h * w
               for name, (c, h, w) in maps.items() if not name.startswith('relu'))
    return kept, FLOAT * max((c * h * w for c, h, w in maps.values()), default=0)


def _pass_bytes(arch, shape, layers, kept=False):
    """The most bytes a no-backprop pass over an input of ``shape`` (H, W) up to ``layers``
    holds: a convolution's input and output (a ReLU is done in place of its output), and with
    ``kept`` the maps of ``layers`` returned beside them."""
    walked = _layer_maps(arch, shape, layers, every=True)
    sizes = [c * h * w for name, (c, h, w) in walked.items() if not name.startswith('relu')]
    returned = sum(c * h * w for name, (c, h, w) in walked.items() if name in layers)
    return FLOAT * (max([0] + [a + b for a, b in zip(sizes, sizes[1:])]) + kept * returned)


def _layer_maps(arch, shape, layers, every=False):
    """``{name: (C, H, W)}`` of the network's layers for an input of ``shape`` (H, W)
    (:func:`chainer_mrf.vgg.walk`, no weights loaded): the requested ``layers``, or with
    ``every`` every layer up to the last of them."""
    return {name: (channels, height, width)
            for name, _, channels, height, width in vgg.walk(arch, shape, layers)
            if every or name in layers}


def _copy_shapes(shape, config):
    """(H, W) of each style copy :func:`chainer_mrf.style_copies.style_copies` makes of a
    level's style of ``shape``: rotated and cropped to the authors' box, then scaled."""
    height, width = shape
    return [size[::-1] for *_, size in style_copies.copy_sizes(
        width, height, config.num_rotation, config.num_scale, config.rotation_step,
        config.scale_step)]


def _fitting_size(config, inputs, fits):
    """The largest value of the option that sets the output's size for which ``fits`` holds,
    as the user would write it (``'width 1800 would fit'``), or ``None`` if none does."""
    if inputs.content is None and config.size is not None:
        width, height = config.size
        longer = max(width, height)

        def option(side):
            return config.replace(size=(max(1, round(width * side / longer)),
                                        max(1, round(height * side / longer))))
        start, name = longer, 'size'
    elif config.size_rule == 'original':
        return None  # the images' own sizes: no option to shrink them by
    else:
        name = 'width' if config.size_rule == 'width' else 'max_size'
        start = getattr(config, name)

        def option(side):
            return config.replace(**{name: side})

    def holds(side):
        try:
            return fits(option(side))
        except ValueError:  # too small for a level: it would need next to nothing
            return True

    low, high = 0, start  # holds(low) by convention, not holds(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if holds(middle) else (low, middle)
    try:
        if low == 0 or not fits(option(low)):
            return None
    except ValueError:
        return None
    value = option(low)
    shown = '%dx%d' % value.size if name == 'size' else str(getattr(value, name))
    return '%s %s would fit' % (name, shown)


def _format_bytes(count):
    """``'7.4 GiB'``, ``'310 MiB'``."""
    for unit, shift in (('TiB', 40), ('GiB', 30)):
        if count >= 1 << shift:
            return '%.1f %s' % (count / (1 << shift), unit)
    return '%d MiB' % math.ceil(count / (1 << 20))


def _gpu_id(device):
    """The GPU id of a Chainer device or dsanno's device number, ``None`` for the CPU."""
    if isinstance(device, int):
        return device if device >= 0 else None
    return device.device.id if device.xp.__name__ == 'cupy' else None


def _meminfo_available():
    """``MemAvailable`` of ``/proc/meminfo`` in bytes, else the free pages, else ``None``."""
    found = _proc_bytes('/proc/meminfo', 'MemAvailable:')
    if found is not None:
        return found
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, AttributeError):
        return None


def _proc_bytes(path, key):
    """The ``key: N kB`` line of a ``/proc`` file, in bytes, or ``None``."""
    try:
        with open(path, encoding='ascii') as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


_CGROUP = '/sys/fs/cgroup'
_SELF_CGROUP = '/proc/self/cgroup'
_CGROUP_FILES = {'v2': ('memory.max', 'memory.current'),
                 'v1': ('memory.limit_in_bytes', 'memory.usage_in_bytes')}


def _cgroup_headroom():
    """Bytes left under the tightest memory limit of this process's cgroup and its ancestors,
    or ``None`` where none is set (a v1 "no limit" is a huge number, v2's is ``max``)."""
    try:
        with open(_SELF_CGROUP, encoding='ascii') as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    headroom = None
    for line in lines:
        _, controllers, path = line.split(':', 2)
        if controllers == '':
            root, names = _CGROUP, _CGROUP_FILES['v2']
        elif 'memory' in controllers.split(','):
            root, names = os.path.join(_CGROUP, 'memory'), _CGROUP_FILES['v1']
        else:
            continue
        parts = [p for p in path.split('/') if p]
        for depth in range(len(parts), -1, -1):
            left = _limit_left(os.path.join(root, *parts[:depth]), names)
            if left is not None and (headroom is None or left < headroom):
                headroom = left
    return headroom


def _limit_left(folder, names):
    """``limit - usage`` read from ``folder``'s two files, ``None`` without a limit there."""
    try:
        with open(os.path.join(folder, names[0]), encoding='ascii') as f:
            limit = f.read().strip()
        with open(os.path.join(folder, names[1]), encoding='ascii') as f:
            usage = int(f.read().strip())
    except (OSError, ValueError):
        return None
    if limit == 'max' or int(limit) >= 1 << 60:
        return None
    return max(0, int(limit) - usage)
