"""The MRF term E_s of CNNMRF (Li & Wand 2016; docs/algorithm.md, "MRF term"), one layer at a time.

Every k x k patch Ψ_i of the synthesised feature map is matched to the style patch with the
highest normalised cross-correlation (the originals normalise whole patches; neural-doodle each
pixel's feature vector: :data:`NORMALISATIONS`) and pulled toward it:

    E_s = Σ_i |Ψ_i(x) − Ψ_NN(i)(x_s)|²     (the preset fixes the scale and the overlap rule)

A :class:`MRFTerm` holds everything of one layer and level that does not change from step to
step: the style bank (the patches of every style image and of its rotated and scaled copies,
with the semantic map's columns and each image's weight), the grid of synthesised patches, the
overlap coverage and the content map's columns. :func:`mrf_terms` builds the terms of every
layer with one network pass per style copy. Calling a term on a feature map extracts the
patches, matches them (:class:`NearestPatches`), drops the unconfident ones, and returns
:func:`chainer_mrf.losses.mrf_loss`.
"""
import math

import chainer
import numpy
from chainer import function_node

from chainer_mrf import distributed, losses, matching, patches, semantic, style_copies

NORMALISATIONS = ('patch', 'pixel')
"""What the matching's cross-correlation normalises (:func:`matching_features`): ``'patch'``
(dsanno and the authors: the whole patch, features and map columns together) or ``'pixel'``
(neural-doodle: each pixel's feature vector to norm 1 and its map vector to norm
sqrt(semantic_weight), and no further normalisation: a patch's score is the sum over its
pixels of the features' cosine plus ``semantic_weight`` times the map's)."""

OVERLAPS = ('sum', 'average')
"""How a feature pixel's gradient combines the patches covering it: ``'sum'`` (dsanno: the mean
squared error through the extraction) or ``'average'`` (the authors: divided by the number of
patches covering the pixel)."""


class NearestPatches(function_node.FunctionNode):
    """Each query's best bank patch (:func:`chainer_mrf.matching.match`), as a graph node.

    A node of its own so that Chainer's function hooks (a profiler, ``TimerHook``) see the
    matching; no gradient flows through it: the matched patches are constants of the MRF term.

    Args:
        bank (matching.PatchBank or distributed.ShardedBank): the style patches.
        memory_budget (int): bytes of working memory for the scores. Default:
            :data:`chainer_mrf.matching.DEFAULT_MEMORY_BUDGET`.
        cosine (bool): return the cosine as the score (for a confidence threshold). Default:
            ``False``.

    Shape:
        input: queries (P, D), D = ``bank.dim``. Outputs: the matched patches (P, D) and their
        scores (P,).
    """

    def __init__(self, bank, memory_budget=matching.DEFAULT_MEMORY_BUDGET, cosine=False):
        self.bank = bank
        self.memory_budget = memory_budget
        self.cosine = cosine
        self.indices = None

    def forward(self, inputs):
        queries, = inputs
        self.indices, scores, targets = self.bank.nearest(
            queries, memory_budget=self.memory_budget, cosine=self.cosine)
        return targets, scores

    def backward(self, indexes, grad_outputs):
        return None,


class MRFTerm:
    """E_s at one layer and level: ``term(feature)`` is the layer's energy.

    Args:
        bank (matching.PatchBank or distributed.ShardedBank): the style patches (with map
            columns after the features' where semantic maps are used); see :func:`style_bank`.
        feature_shape (tuple of int): (C, H, W) of the synthesised feature map.
        layer (str): the layer's name, for messages. Default: ``'relu3_2'``.
        weight (float): the layer's weight. Default: 0.2 (dsanno).
        patch_size (int): k. Default: 3.
        stride (int): grid step of the synthesised patches that are matched and receive a
            gradient (last row and column always included, :func:`patches.grid_starts`).
            Default: 1.
        overlap (str): one of :data:`OVERLAPS`. Default: ``'sum'``.
        confidence_threshold (float or None): a patch whose best cosine is below this gets no
            gradient and leaves the coverage count (the authors' rule); ``None`` keeps every
            patch. Default: ``None``.
        content_map (array or None): the content's semantic map at this layer's size as the
            matching sees it (:func:`map_columns`), (1, N, H, W) on the bank's device: its
            patches are appended to the synthesised ones for the matching. Default: ``None``.
        memory_budget (int): bytes of working memory for the matching's scores. Default:
            :data:`chainer_mrf.matching.DEFAULT_MEMORY_BUDGET`.
        pixel_norms (array or None): for a bank of the ``'pixel'`` normalisation
            (:func:`matching_features`), the norm of each pixel of each bank entry, (S, k * k),
            which turn a matched entry back into the style's features; the queries are then
            normalised likewise. ``None`` for the ``'patch'`` normalisation. Default: ``None``.

    Raises:
        ValueError: the feature map is smaller than a patch, ``overlap`` is unknown, or the
            bank's patch length does not fit the features (and map).

    Shape:
        feature (the call's argument): (1, C, H, W). Output: ().

    Examples:
        >>> bank = style_bank([style_features], patch_size=3)  # doctest: +SKIP
        >>> term = MRFTerm(bank, (256, 40, 30), weight=0.2)  # doctest: +SKIP
        >>> term(vgg(x, layers=['relu3_2'])['relu3_2']).backward()  # doctest: +SKIP
    """

    def __init__(self, bank, feature_shape, *, layer='relu3_2', weight=0.2, patch_size=3,
                 stride=1, overlap='sum', confidence_threshold=None, content_map=None,
                 memory_budget=matching.DEFAULT_MEMORY_BUDGET, pixel_norms=None):
        if overlap not in OVERLAPS:
            raise ValueError('overlap must be one of %s, got %r' % (', '.join(OVERLAPS), overlap))
        channels, height, width = feature_shape
        check_fits((height, width), patch_size, 'synthesised', layer)
        self.bank = bank
        self.weight = weight
        self.patch_size = patch_size
        self.grid = _grid((height, width), patch_size, stride)
        self.confidence_threshold = confidence_threshold
        self.memory_budget = memory_budget
        self.dim = channels * patch_size ** 2
        self.pixel_norms = pixel_norms
        xp = bank.xp
        empty = xp.zeros((1, channels, height, width), numpy.float32)
        self.coverage = self._coverage(empty) if overlap == 'average' else None
        # With a content map the queries are the synthesised patches' columns (overwritten at
        # every step) then the map's (filled once). Normalised pixels are extracted at each
        # step from a map of the normalised features (overwritten) and the map's channels.
        if content_map is not None:
            empty = xp.concatenate([empty, content_map], 1)
        self.queries = self.normalised = None
        if pixel_norms is not None:
            self.normalised = empty
        elif content_map is not None:
            self.queries = patches.extract_patches_array(empty, patch_size, **self.grid)
        queries_dim = empty.shape[1] * patch_size ** 2
        if bank.dim != queries_dim:
            raise ValueError('the style bank holds patches of length %d, but the synthesised '
                             'ones have %d' % (bank.dim, queries_dim))

    @property
    def patch_count(self):
        """int: P, the synthesised patches matched at each step."""
        return len(self.grid['rows']) * len(self.grid['cols'])

    def __call__(self, feature):
        """The layer's energy for the synthesised feature map ``feature`` (1, C, H, W)."""
        synthesised = patches.extract_patches(feature, self.patch_size, **self.grid)
        queries = synthesised.array
        if self.normalised is not None:
            features = feature.array
            channels = features.shape[1]
            xp = chainer.backend.get_array_module(features)
            xp.divide(features, _pixel_norms(features), out=self.normalised[:, :channels])
            queries = patches.extract_patches_array(self.normalised, self.patch_size,
                                                    **self.grid)
        elif self.queries is not None:
            self.queries[:, :self.dim] = synthesised.array
            queries = self.queries
        threshold = self.confidence_threshold
        nearest = NearestPatches(self.bank, self.memory_budget, cosine=threshold is not None)
        matched, scores = nearest.apply((queries,))
        # The map columns steered the matching; the energy compares the features only.
        matched = matched.array[:, :self.dim]
        if self.pixel_norms is not None:
            # The bank holds unit pixels: its entries' own norms make them features again, in
            # place, in the (D, P) layout in which the targets lie (patches.py).
            xp = chainer.backend.get_array_module(matched)
            columns = xp.ascontiguousarray(matched.T)  # a view of the bank's targets
            columns.reshape(-1, self.patch_size ** 2, len(matched))[...] *= \
                self.pixel_norms[nearest.indices].T
            matched = columns.T
        coverage = self.coverage
        if threshold is not None:
            keep = scores.array >= threshold
            if not bool(keep.all()):
                # The authors' rule: an unconfident patch's target is itself (no gradient), and
                # it leaves the coverage count.
                xp = chainer.backend.get_array_module(matched)
                matched = xp.where(keep[:, None], matched, synthesised.array)
                if coverage is not None:
                    coverage = self._coverage(feature, keep)
        return losses.mrf_loss(synthesised, matched, self.weight, coverage)

    def _coverage(self, feature, keep=None):
        return losses.patch_coverage(
            lambda f: patches.extract_patches(f, self.patch_size, **self.grid), feature, keep)


def style_bank(features, *, layer='relu3_2', patch_size=3, stride=1, maps=None,
               semantic_weight=1e4, weights=None, bank_dtype='float32', comm=None,
               queries=None, memory_budget=matching.DEFAULT_MEMORY_BUDGET,
               normalisation='patch'):
    """The style patches of one layer: every patch on the sample grid of every feature map.

    Args:
        features (list of array): the layer's feature map of each style image and copy, (1, C,
            H_i, W_i) each, on one device. With ``comm``, a map this rank holds none of may be
            a stand-in of its shape (its values are not read).
        layer (str): the layer's name, for messages. Default: ``'relu3_2'``.
        patch_size (int): k. Default: 3.
        stride (int): grid step of the style patches (last row and column always included).
            Default: 1.
        maps (list of array or None): the semantic map of each feature map at its size, (1, N,
            H_i, W_i), appended (scaled by ``semantic_weight``) to the features; ``None`` for
            none. Default: ``None``.
        semantic_weight (float): the maps' scale. Default: 1e4.
        normalisation (str): one of :data:`NORMALISATIONS`: the bank holds
            :func:`matching_features`. Default: ``'patch'``.
        weights (list of float or None): each feature map's factor on its matching scores
            (:class:`chainer_mrf.matching.PatchBank`); ``None``: all 1. Default: ``None``.
        bank_dtype (str): one of :data:`chainer_mrf.matching.BANK_DTYPES`. Default:
            ``'float32'``.
        comm: a ChainerMN communicator to shard the bank over
            (:class:`chainer_mrf.distributed.ShardedBank`): this rank keeps only its share of
            whole matching chunks. ``None`` (or one rank): the whole bank. Default: ``None``.
        queries (int or None): P, the synthesised patches matched at each step, which sets the
            chunk grid the shards follow; needed with ``comm``. Default: ``None``.
        memory_budget (int): the matching's working memory, likewise. Default:
            :data:`chainer_mrf.matching.DEFAULT_MEMORY_BUDGET`.

    Returns:
        matching.PatchBank or distributed.ShardedBank: the bank, in the order of ``features``.

    Raises:
        ValueError: a feature map is smaller than a patch.
    """
    grids = []
    for feature in features:
        height, width = check_fits(feature.shape[2:], patch_size, 'style', layer)
        grids.append(_grid((height, width), patch_size, stride))
    weights = [1.0] * len(features) if weights is None else list(weights)
    sharded = distributed.size(comm) > 1
    if sharded:
        counts = [len(grid['rows']) * len(grid['cols']) for grid in grids]
        dim = (features[0].shape[1] + (0 if maps is None else maps[0].shape[1])) \
            * patch_size ** 2
        start, stop, chunk = _shard(counts, dim, queries, memory_budget, bank_dtype, comm)
        held = distributed.pieces(counts, start, stop)
    parts, kept = [], []
    for i, (feature, grid) in enumerate(zip(features, grids)):
        if sharded:  # this rank's entries of this map: [low, high) of its patches
            low, high = held[i]
            if low >= high:
                continue
        feature = matching_features(feature, None if maps is None else maps[i],
                                    semantic_weight, normalisation)
        part = patches.extract_patches_array(feature, patch_size, **grid)
        if sharded and (low, high) != (0, counts[i]):
            # A copy, so the whole map's patches go now; in their layout, which sets the
            # rounding of the norms (a shard's norms must be the whole bank's, to the bit).
            part = part[low:high].copy(order='K')
        parts.append(part)
        kept.append(weights[i])
    local = (matching.PatchBank(parts, weights=kept, bank_dtype=numpy.dtype(bank_dtype),
                                normalise=normalisation == 'patch') if parts else None)
    if not sharded:
        return local
    return distributed.ShardedBank(local, start, sum(counts), dim, chunk, comm,
                                   chainer.backend.get_array_module(features[0]), bank_dtype)


def _shard(counts, dim, queries, memory_budget, bank_dtype, comm):
    """``(start, stop, chunk)``: this rank's entries of a bank whose maps hold ``counts``
    patches, on the matching's chunk grid."""
    size = sum(counts)
    chunk = matching.chunk_size_for(queries, dim, memory_budget, bank_dtype, size)
    return distributed.shard(size, chunk, comm.rank, comm.size) + (chunk,)


def mrf_terms(vgg, styles, feature_shapes, config, *, style_maps=None, content_map=None,
              comm=None):
    """The MRF term of every style layer at one level.

    The network runs once on each style image and each of its copies (rotated and scaled,
    :func:`chainer_mrf.style_copies.style_copies`); a layer's bank is built as soon as its
    features are in, and its parts let go. With a communicator of several ranks, each rank keeps
    only its shard of each bank, and runs the network only on the copies, and to the layers,
    whose patches it holds.

    Args:
        vgg (chainer_mrf.vgg.VGG): the network, on the styles' device.
        styles (list of array): the level's style images, (1, 3, H_i, W_i) each, preprocessed.
        feature_shapes (dict): (C, H, W) of the synthesised features at each style layer
            (:meth:`chainer_mrf.vgg.VGG.shapes`).
        config (chainer_mrf.presets.Preset): the options; the fields read are
            ``style_layers``, ``style_weight``, ``patch_size``, ``sample_stride``,
            ``synthesis_stride``, ``overlap``, ``confidence_threshold``, ``num_rotation``,
            ``num_scale``, ``rotation_step``, ``scale_step``, ``semantic_weight``,
            ``match_normalisation``, ``style_image_weights``, ``bank_dtype`` and
            ``memory_budget``.
        style_maps (list or None): the full-size semantic map of each style image, (1, N, h,
            w) on the device, or ``None``. Default: ``None``.
        content_map (array or None): the full-size content map, on the device (it is
            area-averaged to each layer's size). Default: ``None``.
        comm: a ChainerMN communicator whose ranks share the banks (:func:`style_bank`), or
            ``None``. Default: ``None``.

    Returns:
        list of MRFTerm: one per style layer, in ``config.style_layers`` order.

    Raises:
        ValueError: a style or synthesised feature map is smaller than a patch, or the
            ``'pixel'`` normalisation under a communicator of several ranks.
    """
    layers = config.style_layers
    pixel = config.match_normalisation == 'pixel'
    if pixel and distributed.size(comm) > 1:
        raise ValueError(PIXEL_SHARDS)
    for name in layers:  # before the style's features are computed, which takes longer
        check_fits(feature_shapes[name][1:], config.patch_size, 'synthesised', name)
    queries = {name: patches.grid_count(feature_shapes[name][1:], config.patch_size,
                                        config.synthesis_stride) for name in layers}
    channels = 0 if style_maps is None else style_maps[0].shape[1]
    shapes, needed = _copy_layers(vgg, styles, config, queries, channels, comm)
    xp = chainer.backend.get_array_module(styles[0])
    features = {name: [] for name in layers}
    maps = {name: [] for name in layers} if style_maps is not None else None
    weights = []
    for index, style in enumerate(styles):
        copies = _copies(style[0], config)
        map_copies = None if style_maps is None else _map_copies(style_maps[index],
                                                                 style.shape[2:], config)
        for i, copy in enumerate(copies):
            wanted = needed[len(weights)]
            outputs = {}
            if wanted:
                with chainer.no_backprop_mode(), chainer.using_config('train', False):
                    outputs = {name: v.array for name, v in vgg(copy[None], layers=wanted)
                               .items()}
            for name in layers:
                # A copy whose patches this rank holds none of at a layer stands in by its
                # shape (no memory): the bank skips it.
                shape = shapes[len(weights)][name]
                features[name].append(outputs[name] if name in outputs
                                      else _stand_in(xp, (1,) + shape))
                if maps is not None:
                    maps[name].append(semantic.downsample_map(map_copies[i], shape[1:])
                                      if name in outputs
                                      else _stand_in(xp, (1, channels) + shape[1:]))
            weights.append(1.0 if config.style_image_weights is None
                           else config.style_image_weights[index])
    terms = []
    for name, weight in zip(layers, config.per_layer_weights()):
        layer_features = features.pop(name)
        pixel_norms = None
        if pixel:
            pixel_norms = xp.concatenate([patches.extract_patches_array(
                _pixel_norms(f), config.patch_size, **_grid(f.shape[2:], config.patch_size,
                                                            config.sample_stride))
                for f in layer_features])
        bank = style_bank(layer_features, layer=name, patch_size=config.patch_size,
                          stride=config.sample_stride,
                          maps=None if maps is None else maps.pop(name),
                          semantic_weight=config.semantic_weight, weights=weights,
                          bank_dtype=config.bank_dtype, comm=comm, queries=queries[name],
                          memory_budget=config.memory_budget,
                          normalisation=config.match_normalisation)
        del layer_features
        layer_map = None
        if content_map is not None:
            layer_map = map_columns(
                semantic.downsample_map(content_map, feature_shapes[name][1:]),
                config.semantic_weight, config.match_normalisation)
        terms.append(MRFTerm(bank, feature_shapes[name], layer=name, weight=weight,
                             patch_size=config.patch_size, stride=config.synthesis_stride,
                             overlap=config.overlap,
                             confidence_threshold=config.confidence_threshold,
                             content_map=layer_map, memory_budget=config.memory_budget,
                             pixel_norms=pixel_norms))
    return terms


PIXEL_SHARDS = ("match_normalisation 'pixel' (the doodle preset) does not shard its banks over "
                "MPI ranks: run it in one process, or use match_normalisation 'patch'")


def matching_features(features, semantic_map=None, semantic_weight=1e4, normalisation='patch'):
    """A feature map as the matching compares it: the features, then the map's columns.

    With ``'patch'`` the features as they are and ``semantic_weight`` x the map
    (:func:`chainer_mrf.semantic.append_map`); the matching then normalises whole patches. With
    ``'pixel'`` (neural-doodle's ``normalize_components``) each pixel's feature vector divided
    by its norm and the map as :func:`map_columns` gives it; the bank of these scores plain
    dot products (:class:`chainer_mrf.matching.PatchBank` with ``normalise=False``), a sum of
    per-pixel cosines. A pixel whose features are all zero (common after a ReLU) stays zero and
    adds nothing to a score, where neural-doodle divides 0 by 0 and the NaN spoils the patch's
    scores.

    Args:
        features (chainer.Variable or array): the feature map, NumPy or CuPy.
        semantic_map (array or None): its map at its size, or ``None``. Default: ``None``.
        semantic_weight (float): the map's weight, > 0. Default: 1e4.
        normalisation (str): one of :data:`NORMALISATIONS`. Default: ``'patch'``.

    Returns:
        array: float32, the features' array itself with ``'patch'`` and no map.

    Shape:
        features: (1, C, H, W). semantic_map: (1, N, H, W). Output: (1, C + N, H, W).

    Examples:
        >>> pixel = numpy.array([[[[3.]], [[4.]]]], numpy.float32)
        >>> matching_features(pixel, normalisation='pixel').ravel().tolist()
        [0.6000000238418579, 0.800000011920929]
    """
    features = chainer.as_array(features)
    if normalisation == 'pixel':
        features = features / _pixel_norms(features)
    if semantic_map is None:
        return features
    if normalisation == 'pixel':
        return semantic.append_map(features, map_columns(semantic_map, semantic_weight,
                                                         normalisation), 1.0)
    return semantic.append_map(features, semantic_map, semantic_weight)


def map_columns(semantic_map, semantic_weight, normalisation='patch'):
    """A semantic map as the matching appends it to the features: ``semantic_weight`` x the map
    (``'patch'``), or each pixel's map vector scaled to norm sqrt(``semantic_weight``)
    (``'pixel'``, where a pixel's features have norm 1: neural-doodle's weighting).

    Shape:
        semantic_map: (1, N, H, W). Output: (1, N, H, W), float32.
    """
    if normalisation == 'pixel':
        return semantic_map * (numpy.float32(math.sqrt(semantic_weight))
                               / _pixel_norms(semantic_map))
    return semantic_map * numpy.float32(semantic_weight)


def _pixel_norms(array):
    """Each pixel's norm over the channels, (1, 1, H, W), raised to the matching's epsilon."""
    xp = chainer.backend.get_array_module(array)
    norms = xp.sqrt((array * array).sum(axis=1, keepdims=True, dtype=numpy.float32))
    return xp.maximum(norms, numpy.float32(matching.NORM_EPS))


def _grid(shape, patch_size, stride):
    """The patch grid of a feature map of (H, W) ``shape``, as ``extract_patches`` takes it."""
    height, width = shape
    return dict(rows=patches.grid_starts(height, patch_size, stride),
                cols=patches.grid_starts(width, patch_size, stride))


def _copy_layers(vgg, styles, config, queries, channels, comm):
    """The feature shapes of every style copy, in bank order (``{layer: (C, H, W)}`` each,
    from the sizes alone), and the layers at which this rank holds some of its patches: all of
    them for one process; under ``comm``, those whose shard (:func:`style_bank`) reaches it, so
    that a rank runs the network only on the copies it needs."""
    layers = config.style_layers
    shapes = [vgg.shapes((height, width), layers) for style in styles
              for *_, (width, height) in style_copies.copy_sizes(
                  style.shape[3], style.shape[2], config.num_rotation, config.num_scale,
                  config.rotation_step, config.scale_step)]
    if distributed.size(comm) == 1:
        return shapes, [list(layers)] * len(shapes)
    needed = [[] for _ in shapes]
    for name in layers:
        counts = [patches.grid_count(shape[name][1:], config.patch_size, config.sample_stride)
                  for shape in shapes]
        dim = (shapes[0][name][0] + channels) * config.patch_size ** 2
        start, stop, _ = _shard(counts, dim, queries[name], config.memory_budget,
                                config.bank_dtype, comm)
        for wanted, (low, high) in zip(needed, distributed.pieces(counts, start, stop)):
            if low < high:
                wanted.append(name)
    return shapes, needed


def _stand_in(xp, shape):
    """A read-only zero array of ``shape`` that takes no memory."""
    return xp.broadcast_to(xp.zeros((), numpy.float32), shape)


def _copies(array, config):
    return style_copies.style_copies(array, config.num_rotation, config.num_scale,
                                     config.rotation_step, config.scale_step)


def _map_copies(style_map, level_shape, config):
    """The map of each style copy, (1, N, h, w) each."""
    if config.num_rotation == config.num_scale == 0:
        # One copy, the style itself: each layer's map is area-averaged straight from the
        # full-size map, as the content's is.
        return [style_map]
    # The copies are rotated and scaled from the level's style image: the map goes through the
    # same steps from the map at the level's size.
    level_map = semantic.downsample_map(style_map, level_shape)
    return [copy[None] for copy in _copies(level_map[0], config)]


def check_fits(shape, patch_size, which, layer):
    """(height, width) of a feature map, after checking that a patch fits in it.

    Raises:
        ValueError: naming ``which`` image (``'style'`` or ``'synthesised'``) as too small at
            ``layer``.
    """
    height, width = shape
    if min(height, width) < patch_size:
        raise ValueError('the %s image is too small: %s is %dx%d, smaller than a %d-pixel '
                         'patch' % (which, layer, width, height, patch_size))
    return height, width
