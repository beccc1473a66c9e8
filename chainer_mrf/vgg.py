"""The Caffe VGG16 and VGG19 feature extractors (convolution layers only).

The weights are persistent arrays, not parameters: synthesis optimises the image alone, so the
backward pass computes input gradients only and skips the weight gradients, a third of the work.
On the CPU, the convolutions and max pooling are :mod:`chainer_mrf.layers`' (about twice as fast
as Chainer's there, in a fraction of the memory).
"""
import os

import chainer
import chainer.functions as F

from chainer_mrf import layers as layers_lib
from chainer_mrf import weights as weights_lib

THREADED_PIXELS = 1 << 16
"""Input pixels from which a pass runs its convolutions' strips in threads
(:func:`chainer_mrf.layers.convolution_3x3`): below, the threads' hand-over and the switches
of BLAS's thread count cost more than they save (measured: the bundled demo's coarse levels,
64 x 43 and 128 x 85, ran 20 to 40 % slower with them; 256 x 330 ran 10 % faster)."""

POOLINGS = ('max', 'average')
"""The pooling kinds of :class:`VGG`."""

ARCHS = ('vgg16', 'vgg19', 'auto')
"""The architectures a configuration may name; ``'auto'`` is VGG19 where its weights were
converted, else VGG16 (:func:`weights_for`)."""


def weights_for(arch='vgg16', model=None):
    """The architecture and weights file a configuration uses.

    ``arch='auto'`` (the authors' preset) takes VGG19 where ``models/vgg19.npz`` (or the
    ``model`` file) holds it, else VGG16, as the authors' code runs with either.

    Args:
        arch (str): one of :data:`ARCHS`. Default: ``'vgg16'``.
        model (str or os.PathLike or None): a weights file; ``None`` takes
            ``models/<arch>.npz``. Default: ``None``.

    Returns:
        tuple: ``(arch, path)``, ``arch`` ``'vgg16'`` or ``'vgg19'``.

    Raises:
        FileNotFoundError, ValueError: for an explicit ``model`` that is missing or not a
            weights file (its architecture is read from its array names).
    """
    if model is not None:
        return (weights_lib.file_arch(model) if arch == 'auto' else arch), model
    if arch == 'auto':
        arch = 'vgg19' if os.path.isfile(weights_lib.default_path('vgg19')) else 'vgg16'
    return arch, weights_lib.default_path(arch)


def layer_names(arch):
    """Every layer of an architecture, in forward order: ``conv{B}_{C}`` and ``relu{B}_{C}``
    for each convolution, ``pool{B}`` after the last of block ``B``.

    Raises:
        ValueError: for an unknown architecture.

    Examples:
        >>> layer_names('vgg16')[:5]
        ['conv1_1', 'relu1_1', 'conv1_2', 'relu1_2', 'pool1']
    """
    convs = [name for name, _, _ in weights_lib.conv_layers(arch)]
    names = []
    for name, following in zip(convs, convs[1:] + [None]):
        names += [name, name.replace('conv', 'relu')]
        if following is None or following[4] != name[4]:  # the block's last
            names.append('pool' + name[4])
    return names


def check_layers(arch, layers):
    """Checks that an architecture has every layer of ``layers``.

    Raises:
        ValueError: naming the unknown layers and the valid ones.
    """
    names = layer_names(arch)
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise ValueError('unknown %s layer %s (valid: %s)' % (
            arch.upper(), ', '.join(unknown), ', '.join(names)))


def walk(arch, shape, layers):
    """The layers a forward pass runs for ``layers``, from the architecture's table alone (no
    weights are loaded): what :meth:`VGG.shapes`, :meth:`VGG.flops` and the memory estimate
    (:mod:`chainer_mrf.memory`) count.

    Args:
        arch (str): ``'vgg16'`` or ``'vgg19'``.
        shape (tuple of int): the input's (H, W).
        layers (iterable of str): the requested layers.

    Returns:
        iterator: ``(name, C_in, C_out, H, W)`` of every layer up to the last of ``layers``,
        where H and W are the layer's output size (a convolution keeps its input's).

    Raises:
        ValueError: for an unknown layer.
    """
    layers = list(layers)
    check_layers(arch, layers)
    names = layer_names(arch)
    out_channels = {name: out for name, _, out in weights_lib.conv_layers(arch)}
    height, width = shape
    last = max((names.index(name) for name in layers), default=-1)
    channels = 3
    for name in names[:last + 1]:
        previous = channels
        if name.startswith('conv'):
            channels = out_channels[name]
        elif name.startswith('pool'):
            height, width = -(-height // 2), -(-width // 2)
        yield name, previous, channels, height, width


class VGG(chainer.Chain):
    """A VGG network's convolution layers, returning any of their activations.

    Layer names follow Caffe: ``conv{B}_{C}``, ``relu{B}_{C}`` and ``pool{B}`` for block ``B``.
    Pooling is 2x2 with stride 2 and rounds the output size up (Caffe's and Torch's ceil mode,
    Chainer's ``cover_all=True``), so a 301-pixel side pools to 151.

    Args:
        path (str or None): an ``.npz`` from :mod:`chainer_mrf.weights`. ``None`` loads
            ``weights.default_path(arch)``. Default: ``None``.
        arch (str or None): ``'vgg16'`` or ``'vgg19'``; ``None`` takes the file's. If given,
            the file must hold that architecture. Default: ``None``.
        pooling (str): ``'max'``, or ``'average'`` (the mean of the pixels each window
            covers, as Caffe's ceil-mode average). Default: ``'max'``.

    Raises:
        FileNotFoundError: if the weights file is missing (the message says how to make it).
        ValueError: if it is not a VGG weights file, holds another architecture, or
            ``pooling`` is unknown.

    Shape:
        input: (N, 3, H, W) float32, Caffe-preprocessed (BGR, mean subtracted), H, W >= 1.
        ``conv{B}_*``/``relu{B}_*``: (N, C_B, ceil(H / 2**(B-1)), ceil(W / 2**(B-1))) with
        C = 64, 128, 256, 512, 512; ``pool{B}``: the same at B + 1.

    Examples:
        >>> vgg = VGG16()  # doctest: +SKIP
        >>> out = vgg(x, layers=['relu3_1', 'relu4_1'])  # doctest: +SKIP
        >>> out['relu4_1'].shape  # doctest: +SKIP
        (1, 512, 30, 38)
    """

    def __init__(self, path=None, *, arch=None, pooling='max'):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError('unknown pooling %r (expected one of: %s)'
                             % (pooling, ', '.join(POOLINGS)))
        path = weights_lib.default_path(arch or 'vgg16') if path is None else path
        found, arrays = weights_lib.load_weights(path)
        if arch is not None and found != arch:
            raise ValueError('%s holds %s weights, not %s' % (path, found.upper(), arch.upper()))
        self.arch = found
        self.pooling = pooling
        for name, _, _ in weights_lib.conv_layers(found):
            self.add_persistent(name + '_W', arrays[name + '/W'])
            self.add_persistent(name + '_b', arrays[name + '/b'])
        self.layer_names = layer_names(found)

    def forward(self, x, layers=('relu4_2',)):
        """Runs the network up to the last requested layer.

        Args:
            x (array or chainer.Variable): the preprocessed image batch, (N, 3, H, W).
            layers (sequence of str): names of the activations to return. Default:
                ``('relu4_2',)``.

        Returns:
            dict: ``{name: chainer.Variable}`` for every requested layer.

        Raises:
            ValueError: for an unknown layer name or an input of the wrong shape.
        """
        layers = list(layers)
        self.check_layers(layers)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError('expected an image batch of shape (N, 3, H, W), got %s'
                             % (tuple(x.shape),))
        wanted = set(layers)
        last = max(self.layer_names.index(name) for name in layers) if layers else -1
        out = {}
        h = x
        fused = False
        # The convolutions' strips in threads for a large image only (all layers alike).
        threads = (layers_lib.THREADS if x.shape[2] * x.shape[3] >= THREADED_PIXELS else 1)
        for name in self.layer_names[:last + 1]:
            if name.startswith('conv'):
                # The ReLU is applied inside the convolution unless its input is asked for.
                fused = name not in wanted
                h = layers_lib.convolution_3x3(h, getattr(self, name + '_W'),
                                               getattr(self, name + '_b'), relu=fused,
                                               threads=threads)
            elif name.startswith('relu'):
                h = h if fused else F.relu(h)
            else:
                h = self._pool(h)
            if name in wanted:
                out[name] = h
        return out

    def check_layers(self, layers):
        """Checks that the network has every layer of ``layers``.

        Raises:
            ValueError: naming the unknown layers and the valid ones.
        """
        check_layers(self.arch, layers)

    def flops(self, shape, layers=('relu4_2',)):
        """The floating-point operations of the convolutions ``forward`` runs for ``layers``.

        Each convolution costs 2 * 9 * C_in * C_out * H * W (a multiply and an add per weight
        and output pixel); the backward pass to the input costs the same again.

        Args:
            shape (tuple of int): the input's (H, W).
            layers (iterable of str): the requested layers. Default: ``('relu4_2',)``.

        Returns:
            int: the count for one image.

        Raises:
            ValueError: for an unknown layer.

        Examples:
            >>> VGG16().flops((224, 224), ['relu1_1'])  # doctest: +SKIP
            173408256
        """
        return sum(2 * 9 * channels * out_channels * height * width
                   for name, channels, out_channels, height, width in walk(self.arch, shape,
                                                                           layers)
                   if name.startswith('conv'))

    def shapes(self, shape, layers=('relu4_2',)):
        """The shapes of the activations ``forward`` returns, without running the network.

        Args:
            shape (tuple of int): the input's (H, W).
            layers (iterable of str): the requested layers. Default: ``('relu4_2',)``.

        Returns:
            dict: ``{name: (C, H, W)}`` for every requested layer.

        Raises:
            ValueError: for an unknown layer.

        Examples:
            >>> VGG16().shapes((301, 200), ['relu3_1'])  # doctest: +SKIP
            {'relu3_1': (256, 76, 50)}
        """
        wanted = set(layers)
        return {name: (channels, height, width)
                for name, _, channels, height, width in walk(self.arch, shape, layers)
                if name in wanted}

    def _pool(self, h):
        if self.pooling == 'max':
            return layers_lib.max_pooling_2x2(h)
        # Ceil-mode average: pad odd sides with zeros, then rescale the edge windows so each
        # output is the mean of the pixels it covers (as Caffe does), not of the padding too.
        height, width = h.shape[2:]
        pad_h, pad_w = height % 2, width % 2
        if not (pad_h or pad_w):
            return F.average_pooling_2d(h, 2, 2)
        h = F.pad(h, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), 'constant')
        xp = chainer.backend.get_array_module(h)
        rows = xp.full(h.shape[2] // 2, 2.0, dtype=h.dtype)
        cols = xp.full(h.shape[3] // 2, 2.0, dtype=h.dtype)
        rows[-1] -= pad_h
        cols[-1] -= pad_w
        return F.average_pooling_2d(h, 2, 2) * (4.0 / (rows[:, None] * cols[None, :]))


class VGG16(VGG):
    """The 13 convolution layers of Caffe's VGG16 (Simonyan & Zisserman 2015); see :class:`VGG`.

    Args:
        path (str or None): weights file; ``None`` loads ``models/vgg16.npz``. Default: ``None``.
        pooling (str): ``'max'`` or ``'average'``. Default: ``'max'``.
    """

    def __init__(self, path=None, *, pooling='max'):
        super().__init__(path, arch='vgg16', pooling=pooling)


class VGG19(VGG):
    """The 16 convolution layers of Caffe's VGG19 (Simonyan & Zisserman 2015); see :class:`VGG`.

    Args:
        path (str or None): weights file; ``None`` loads ``models/vgg19.npz``. Default: ``None``.
        pooling (str): ``'max'`` or ``'average'``. Default: ``'max'``.
    """

    def __init__(self, path=None, *, pooling='max'):
        super().__init__(path, arch='vgg19', pooling=pooling)
