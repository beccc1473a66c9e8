"""``synthesize``: the coarse-to-fine loop that minimises the MRF (or Gram), content and regulariser
terms.

It reads top to bottom as the data flows: the inputs are loaded and prepared
(:mod:`chainer_mrf.inputs`); at each level the content's features give the content term's
targets and the style's the MRF terms (:mod:`chainer_mrf.mrf`); the optimiser steps the image;
the finest level's image is the result. The library never prints or writes files: it reports
each step through ``callback`` and returns the image; ``chainer-mrf`` (``scripts/generate.py``)
turns the steps into progress lines, saved images and a trace. Everything that differs between
the originals comes from the preset's fields (:class:`chainer_mrf.presets.Preset`).
"""
import contextlib
import dataclasses
import math
import numbers
import re
import time
import typing

import chainer
import numpy

from chainer_mrf import colour, distributed, gram, losses, memory, mrf, optimizers, presets
from chainer_mrf import pyramid
from chainer_mrf import image as image_lib
from chainer_mrf import inputs as inputs_lib
from chainer_mrf.profiling import Profiler
from chainer_mrf.vgg import VGG, weights_for


@dataclasses.dataclass(frozen=True)
class Step:
    """What ``callback`` receives after each optimiser step.

    Attributes:
        level (int): pyramid level, 0 for the coarsest.
        levels (int): number of levels in this run.
        iteration (int): steps done so far, counted across levels (dsanno's counter).
        level_iteration (int): steps done so far at this level.
        seconds (float): wall time of this step.
        losses (dict): every energy term by name (``content_4_2``, ``style_3_2``, ``tv``...),
            evaluated at the image before the step, as floats.
        x (array): the image after the step, preprocessed, (1, 3, H, W), on the device (with
            ``luminance_only``, the luminance image being optimised).
        preprocessing (image.Preprocessing): how to turn ``x`` back into an image.
        chroma (array or None): with ``luminance_only``, the content's I and Q at this level,
            (1, 2, H, W), which :meth:`image` joins with the luminance of ``x``; else ``None``.
            Default: ``None``.
        timings (dict or None): with ``profile=True``, ``seconds`` split by phase:
            ``vgg_forward``, ``matching``, ``vgg_backward`` and ``other``
            (:mod:`chainer_mrf.profiling`); else ``None``. Default: ``None``.
        flops (dict or None): with ``profile=True``, the floating-point operations of the
            step's dense products: ``vgg_forward`` and ``vgg_backward`` (the convolutions; the
            backward pass computes input gradients only, the same count; with ``keep_color``
            the network runs twice, on the image for the content and on its luminance for the
            MRF term) and ``matching`` (2 P S D per style layer, P synthesised and S style
            patches of length D, semantic map channels included; under ``comm``, S is this
            rank's shard, and the matching's seconds include waiting for the other ranks); else
            ``None``. Default: ``None``.
        stop (str or None): set on the step at which a level ended before its last step: the
            L-BFGS stopping rule that held (a key of :data:`chainer_mrf.optimizers.STOPS`:
            ``'gradient'``, ``'step'``, ``'energy'`` or ``'direction'``; the tolerances are
            the preset's ``lbfgs_tolerance_x`` and ``lbfgs_tolerance_fun``), the image not
            moved by this step; else ``None``. Default: ``None``.
    """

    level: int
    levels: int
    iteration: int
    level_iteration: int
    seconds: float
    losses: typing.Dict[str, float]
    x: typing.Any
    preprocessing: image_lib.Preprocessing
    chroma: typing.Any = None
    timings: typing.Optional[typing.Dict[str, float]] = None
    flops: typing.Optional[typing.Dict[str, int]] = None
    stop: typing.Optional[str] = None

    def image(self):
        """The current image as RGB ``uint8`` (H, W, 3) on the host."""
        return _rgb(self.x, self.chroma, self.preprocessing)


class DivergenceError(ValueError):
    """The energy or its gradient stopped being finite, so the optimisation cannot go on.

    Raised at the first step whose energy terms or gradient hold an infinity or a NaN, before
    the optimiser takes that step: usually the step size (``lr``) or a weight is too large for
    float32. It carries what the run had made so far.

    Attributes:
        image (numpy.ndarray): the last image whose energy and gradient were finite, RGB
            ``uint8`` (H, W, 3) at its level's size (the start image if the very first step
            already failed).
        level (int): the pyramid level of the failing step, 0 for the coarsest.
        levels (int): the number of levels in the run.
        iteration (int): the failing step, counted across levels from 1.
        level_iteration (int): the failing step, counted within its level from 1.
        losses (dict): the energy terms at the failing step, as floats (some not finite).
    """

    def __init__(self, message, *, image, level, levels, iteration, level_iteration, losses):
        super().__init__(message)
        self.image = image
        self.level = level
        self.levels = levels
        self.iteration = iteration
        self.level_iteration = level_iteration
        self.losses = losses


def synthesize(content=None, style=None, *, inputs=None, content_map=None, style_map=None,
               preset='dsanno', device=-1, callback=None, profile=False, comm=None,
               **options):
    """Synthesises an image with the MRF of ``style`` (Li & Wand 2016), coarse to fine.

    With a ``content`` image this is style transfer; with ``content=None`` it is texture
    synthesis: no content term, a random start, the output ``size`` option. Semantic maps steer
    the matching (:mod:`chainer_mrf.semantic`): a patch of the result takes style patches of its
    own region; ``content=None`` with a ``content_map`` is a neural doodle, the result taking the
    map's shape (resized as a content image would be, or to ``size``).

    Args:
        content (str or PIL.Image.Image or numpy.ndarray or None): the content image (a path,
            a Pillow image or an RGB array; see :func:`chainer_mrf.image.load_image`), or
            ``None`` for texture synthesis or a doodle.
        style (image or sequence of images): the style image, likewise, or a list of them:
            each level's style bank holds the patches of all (weighted by the
            ``style_image_weights`` option). Needed unless ``inputs`` is given.
        inputs (inputs.Inputs or None): the images and maps already loaded by
            :func:`chainer_mrf.inputs.load_inputs`, instead of ``content``, ``style`` and the
            maps (a command line loads and checks them before it creates any file, and nothing
            is read twice). Default: ``None``.
        content_map (image or array or None): the content's semantic map, of the content
            image's size (:func:`chainer_mrf.semantic.load_map`: a colour image, or an (H, W, N)
            array of values in [0, 1]); without a content image, the doodle to synthesise.
            Default: ``None``.
        style_map (map or sequence of maps or None): the style's map, of its size, or one per
            style image. Maps come on both sides or on neither. Default: ``None``.
        preset (str or presets.Preset): whose defaults to use, ``'dsanno'``, ``'cnnmrf'``
            (the two MRF originals) or ``'gram'`` (dsanno's neural style, the method MRF is
            compared with). Default: ``'dsanno'``.
        device (int or str or chainer.backend.Device): ``-1``, ``'cpu'`` or ``'@numpy'`` for
            the CPU; a GPU id (``0``, ``'0'``), ``'gpu'``, ``'cuda:1'`` or a Chainer device
            specifier (``'@cupy:0'``). Default: ``-1``.
        callback (callable or None): called with a :class:`Step` after every optimiser step.
            Default: ``None``.
        profile (bool): split each step's time by phase and count its FLOPs
            (:attr:`Step.timings`, :attr:`Step.flops`; :mod:`chainer_mrf.profiling`). On a
            GPU this synchronises between phases. Default: ``False``.
        comm: a ChainerMN communicator (:func:`chainer_mrf.distributed.create_communicator`)
            whose ranks share this synthesis: every rank calls ``synthesize`` with the same
            arguments, holds a shard of each style bank and computes the same image
            (:mod:`chainer_mrf.distributed`); the callback runs on every rank (write files from
            ``comm.rank == 0``). ``None``: this process alone. Default: ``None``.
        **options: any field of :class:`chainer_mrf.presets.Preset` (``iterations``,
            ``width``, ``style_weight``, ``keep_color``, ``semantic_weight``, ``seed`` ...),
            overriding the preset's value.

    Returns:
        numpy.ndarray: the result, RGB ``uint8`` of shape (H, W, 3): the resized content's
        size, or in texture synthesis ``size``, else the resized content map's or first style's.

    Raises:
        ValueError: for an unknown option, an impossible value, an unknown layer, an image
            too small for any level or a patch, a GPU asked for without CuPy and CUDA, a colour
            option without a content image, ``inputs`` given with images, or maps that do not
            fit (see :func:`chainer_mrf.inputs.load_inputs`).
        FileNotFoundError: for a missing image, map or weights file.
        chainer_mrf.memory.MemoryRequestError: when the synthesis would need more memory
            than is available (or than the ``memory_limit`` option), before it allocates.
        DivergenceError: when an energy term or the gradient stops being finite; it carries
            the last finite image.
        TypeError: for a ``callback`` that is not callable, or a ``comm`` that is not a
            ChainerMN communicator.
        chainer_mrf.distributed.RankError: under ``comm``, on the ranks that did not fail when
            another rank failed while checking or loading (a device, the memory available).

    Examples:
        >>> result = synthesize('photo.jpg', 'painting.jpg', iterations=50)  # doctest: +SKIP
        >>> texture = synthesize(None, 'gravel.png', preset='cnnmrf')  # doctest: +SKIP
        >>> doodle = synthesize(None, 'monet.jpg', content_map='doodle.png',
        ...                     style_map='monet_sem.png')  # doctest: +SKIP
    """
    config = presets.get_preset(preset).replace(**options)
    if callback is not None and not callable(callback):
        raise TypeError('callback must be callable (it receives each Step), got %r'
                        % (callback,))
    communicator = ('mpi_comm', 'rank', 'size', 'intra_size')
    if comm is not None and not all(hasattr(comm, name) for name in communicator):
        raise TypeError('comm must be a ChainerMN communicator (chainer_mrf.distributed.'
                        'create_communicator()), got %r' % (comm,))
    if config.match_normalisation == 'pixel' and distributed.size(comm) > 1:
        raise ValueError(mrf.PIXEL_SHARDS)  # before any work
    if inputs is None:
        if style is None:
            raise ValueError('a style image is needed (or loaded inputs)')
        inputs = inputs_lib.load_inputs(content, style, content_map=content_map,
                                        style_map=style_map, preset=config)
    elif not (content is style is content_map is style_map is None):
        raise ValueError('give either inputs or the images and maps, not both')
    else:
        inputs_lib.check_inputs(inputs, config)
    config = inputs_lib.configure(config, inputs)
    # Ranks may differ in devices, memory and files: all go on, or all stop with one error.
    with distributed.agreement(comm):
        dev = _device(device)
        # From the sizes alone, before prepare resizes anything: an oversize request is one
        # error.
        memory.check(config, inputs, dev, limit=config.memory_limit,
                     shards=distributed.size(comm), sharing=distributed.local_size(comm))
        prepared = inputs_lib.prepare(inputs, config)
        vgg = _network(config, dev)
    # CuPy allocates on its current device: with -g 1 on a machine of several GPUs, every
    # array of the run (and every kernel) must be on GPU 1, not on the default GPU 0.
    with chainer.using_device(dev):
        profiler = Profiler(vgg, dev) if profile else None
        levels = pyramid.PYRAMIDS[config.pyramid](config.resolution_num)
        factors = levels.factors(prepared.shape[1])
        rng = numpy.random.RandomState(config.seed)
        pixels = prepared.preprocessing
        # L-BFGS-B's bounds: every pixel in [0, 255]
        lower, upper = (tuple(pixels.from_pixels(numpy.full((1, 3), p))[0]) for p in (0, 255))
        optimizer = optimizers.create(config.optimizer, lr=config.lr,
                                      history_size=config.lbfgs_history,
                                      ys_floor=config.lbfgs_ys_floor,
                                      scale_first_step=config.lbfgs_scale_first_step,
                                      pair=config.lbfgs_pair, tolerance_x=config.lbfgs_tolerance_x,
                                      tolerance_fun=config.lbfgs_tolerance_fun,
                                      lower=lower, upper=upper)
        # The maps are full-size at every level: each layer's map is area-averaged from them.
        content_map = None if prepared.content_map is None else dev.send(prepared.content_map)
        style_maps = (None if prepared.style_maps is None
                      else [dev.send(m) for m in prepared.style_maps])
        x = energy = chroma = None
        finite = None  # (x, chroma) at the last step whose energy and gradient were finite
        iteration = 0
        for level, (factor, steps) in enumerate(zip(factors, config.per_level(len(factors)))):
            shape = levels.level_shape(prepared.shape, factor)
            if x is not None:
                x = levels.upsample(x, shape)
            elif prepared.start is not None:
                # A copy: the optimiser updates x in place, and a level may be a view of the start.
                x = dev.send(levels.level(prepared.start, factor)).copy()
            else:
                x = dev.send(inputs_lib.noise(shape, config.noise, rng, pixels))
            content_x = (None if prepared.content is None
                         else dev.send(levels.level(prepared.content, factor)))
            styles = [dev.send(levels.level(s, factor)) for s in prepared.styles]
            if config.keep_color:
                # dsanno: each level's style becomes its luminance, standardised to the content's.
                styles = [colour.match_luminance(s, content_x) for s in styles]
            if prepared.chroma is not None:
                # Y, I and Q are linear, so the level of the chroma is the chroma of the level.
                chroma = dev.send(levels.level(prepared.chroma, factor))
            energy = None  # the last level's banks go before this level's are built
            energy = _Energy(vgg, config, content_x, styles, shape, style_maps=style_maps,
                             content_map=content_map, comm=comm)
            target = chainer.Link()
            with target.init_scope():
                target.x = chainer.Parameter(x)
            optimizer.setup(target)  # a fresh L-BFGS history at each level, as both originals
            for level_iteration in range(1, steps + 1):
                start = time.perf_counter()
                with profiler.step() if profiler else contextlib.nullcontext() as profiled:
                    values = _gradient(energy, target)  # its graph is freed before the update
                    if not _finite(values, target.x.grad):
                        raise _diverged(values, config, finite or (target.x.array, chroma),
                                        prepared.preprocessing, level, len(factors), iteration + 1,
                                        level_iteration, started=finite is not None)
                    # The image before the update: what a divergence error hands back.
                    finite = target.x.array.copy(), chroma
                    if isinstance(optimizer, (optimizers.LBFGS, optimizers.LBFGSB)):
                        optimizer.update(energy=sum(values.values()))
                    else:
                        optimizer.update()
                # An L-BFGS stopping rule (the authors' preset) ends the level here, unmoved.
                stop = getattr(optimizer, 'stopped', None)
                iteration += 1
                if callback is not None:
                    # A copy, so that a Step kept by the caller is not changed by later steps.
                    callback(Step(level, len(factors), iteration, level_iteration,
                                  time.perf_counter() - start, values, target.x.array.copy(),
                                  prepared.preprocessing, chroma,
                                  profiled and profiled.seconds, profiled and profiled.flops,
                                  stop))
                if stop:
                    break
            if isinstance(optimizer, optimizers.LBFGSB):
                optimizer.finish()  # its last accepted iterate, not an untried point
            x = target.x.array
        return _rgb(x, chroma, prepared.preprocessing)


class _Energy:
    """E(x) of one level, term by term (docs/algorithm.md): the content term at each content
    layer, the style term at each style layer (the MRF term, :func:`chainer_mrf.mrf.mrf_terms`,
    or neural style's, :func:`chainer_mrf.gram.gram_terms`), the regulariser.

    Args:
        vgg (VGG): the network, on the images' device.
        config (presets.Preset): the options.
        content (array or None): the level's content image; its features are the content
            term's targets.
        styles (list of array): the level's style images, after the colour options.
        shape (tuple of int): the level's (H, W).
        style_maps (list or None): the full-size map of each style image. Default: ``None``.
        content_map (array or None): the full-size content map. Default: ``None``.
        comm: the communicator whose ranks share the style banks, or ``None``. Default:
            ``None``.
    """

    def __init__(self, vgg, config, content, styles, shape, *, style_maps=None,
                 content_map=None, comm=None):
        self.vgg = vgg
        self.config = config
        self.content = {}
        if content is not None:
            with chainer.no_backprop_mode(), chainer.using_config('train', False):
                self.content = {name: v.array for name, v in
                                vgg(content, layers=config.content_layers).items()}
        if config.method == 'gram':
            # Nothing to shard: every rank holds the few C x C targets.
            self.style_terms = gram.gram_terms(vgg, styles, config)
        else:
            self.style_terms = mrf.mrf_terms(vgg, styles, vgg.shapes(shape, config.style_layers),
                                             config, style_maps=style_maps,
                                             content_map=content_map, comm=comm)

    def __call__(self, x):
        """The terms at the image ``x`` (a Variable), by name, as scalar Variables."""
        config = self.config
        if config.keep_color:
            # dsanno: the style term sees the luminance of x, the content term x itself.
            features = self.vgg(x, layers=self.content) if self.content else {}
            style_features = self.vgg(colour.luminance(x), layers=config.style_layers)
        else:
            features = self.vgg(x, layers=set(self.content) | set(config.style_layers))
            style_features = features
        terms = {}
        for name, reference in self.content.items():
            terms['content_' + presets.short_name(name)] = losses.content_loss(
                features[name], reference, config.content_weight)
        for name, term in zip(config.style_layers, self.style_terms):
            terms['style_' + presets.short_name(name)] = term(style_features[name])
        terms['tv'] = losses.total_variation(x, config.tv_weight, config.tv_variant)
        return terms


def _gradient(energy, target):
    """Sets ``target.x.grad`` to the energy's gradient; returns the terms as floats."""
    target.cleargrads()
    # An overflow is no warning's business: the caller's guard stops at a non-finite term.
    with numpy.errstate(over='ignore', invalid='ignore', divide='ignore'):
        terms = energy(target.x)
        sum(terms.values()).backward()
    return {name: float(value.array) for name, value in terms.items()}


def _finite(values, grad):
    """Whether every energy term and the whole gradient are finite."""
    xp = chainer.backend.get_array_module(grad)
    return all(math.isfinite(v) for v in values.values()) and bool(xp.isfinite(grad).all())


def _diverged(values, config, finite, preprocessing, level, levels, iteration,
              level_iteration, started):
    """The :class:`DivergenceError` of a step whose terms or gradient are not finite."""
    bad = ['%s %s' % (name, value) for name, value in values.items()
           if not math.isfinite(value)]
    what = ('the energy is not finite (%s)' % ', '.join(bad) if bad
            else 'the gradient is not finite')
    if started:
        cause = ('the step size (lr %g) is probably too large, or a weight' % config.lr)
    else:  # no step taken yet: the step size played no part
        cause = ('a weight (content_weight, style_weight, tv_weight) is probably too large '
                 'for float32')
    return DivergenceError(
        '%s at level %d/%d, step %d (iteration %d): %s' % (
            what, level + 1, levels, level_iteration, iteration, cause),
        image=_rgb(*finite, preprocessing), level=level, levels=levels, iteration=iteration,
        level_iteration=level_iteration, losses=values)


def _rgb(x, chroma, preprocessing):
    """An optimised image as RGB ``uint8`` on the host, joined with ``chroma`` if given."""
    cpu = chainer.backend.CpuDevice()
    x = cpu.send(x)
    if chroma is not None:
        x = colour.join_yiq(x, cpu.send(chroma))
    return image_lib.deprocess(x, preprocessing)


#: Device names besides Chainer's specifiers: the CPU, and a GPU by CUDA's or PyTorch's name.
_DEVICE_NAMES = re.compile(r'(?P<cpu>cpu|numpy)|(?:gpu|cuda)(?::(?P<id>\d+))?|(?P<int>-?\d+)')


_UNKNOWN_DEVICE = ('unknown device %r: use -1 or "cpu" for the CPU, a GPU id such as 0, or a '
                   'Chainer specifier such as "@cupy:0"')


def _device(spec):
    """A Chainer device from dsanno's GPU id (negative: the CPU), a name (``'cpu'``,
    ``'cuda:1'``) or a Chainer device specifier, after running something on it."""
    if isinstance(spec, str):
        name = _DEVICE_NAMES.fullmatch(spec.strip().lower())
        if name and name['cpu']:
            spec = '@numpy'
        elif name:
            spec = int(name['int'] if name['int'] else name['id'] or 0)
        elif not spec.startswith('@'):
            raise ValueError(_UNKNOWN_DEVICE % (spec,))
    elif isinstance(spec, bool) or not isinstance(spec, (numbers.Integral,
                                                         chainer.backend.Device)):
        raise ValueError(_UNKNOWN_DEVICE % (spec,))
    if isinstance(spec, numbers.Integral):
        spec = '@cupy:%d' % spec if spec >= 0 else '@numpy'
    gpu = re.fullmatch(r'@cupy:(\d+)', str(spec))
    if str(spec).startswith('@cupy') and gpu is None:
        raise ValueError(_UNKNOWN_DEVICE % (spec,))
    problem = gpu and gpu_problem(int(gpu[1]))
    if problem:
        raise ValueError('cannot use device %s: %s' % (spec, problem))
    try:
        device = chainer.get_device(spec)
        if gpu is None:  # a GPU has run gpu_problem's kernel already: other devices run one here
            with chainer.using_device(device):
                device.xp.zeros(1, 'f').sum()
        return device
    except Exception as e:  # Chainer and CUDA raise several types for a bad specifier or device
        raise ValueError('cannot use device %s: %s' % (spec, ' '.join(str(e).split()))) from None


def gpu_problem(gpu):
    """Why CuPy cannot use the GPU ``gpu`` here, in one line, or ``None`` where it can.

    ``chainer.backends.cuda.available`` only says that CuPy imports: with the CUDA toolkit's
    wheels (``cupy-cuda12x[ctk]``) it does on a machine with no GPU or no driver. So the driver
    must count more than ``gpu`` devices, and a small kernel (compiled by CuPy's runtime
    compiler, as the matching kernels are) must run on that device and its result come back
    (which waits for it, so that an asynchronous launch failure is seen here).
    """
    cuda = chainer.backends.cuda
    if not cuda.available:
        return 'CuPy with a working CUDA is not available (pip install "chainer-mrf[gpu]")'
    try:
        count = cuda.cupy.cuda.runtime.getDeviceCount()
        if gpu >= count:
            return 'CUDA sees %d GPU%s here' % (count, '' if count == 1 else 's')
        with cuda.cupy.cuda.Device(gpu):
            value = float(cuda.cupy.arange(4, dtype=numpy.float32).sum())
    except Exception as e:  # CUDA's driver, runtime and compiler errors have several types
        return 'CUDA failed on it: %s' % (' '.join(str(e).split()) or type(e).__name__)
    if value != 6:
        return 'a test kernel on it returned %r instead of 6' % (value,)
    return None


def _network(config, dev):
    """The configuration's VGG on ``dev``, after checking that it has every layer asked for."""
    arch, path = weights_for(config.arch, config.model)
    vgg = VGG(path, arch=arch, pooling=config.pooling)
    vgg.check_layers(config.content_layers + config.style_layers)
    vgg.to_device(dev)
    return vgg
