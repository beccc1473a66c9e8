"""Where a synthesis step's time goes: an optional profiler around the step.

``synthesize(..., profile=True)`` wraps each step in :meth:`Profiler.step`; the energy and the
optimiser know nothing of it. It listens to Chainer's hooks:

- a link hook on the network times each of its calls (``vgg_forward``) and counts the call's
  convolutions (:meth:`chainer_mrf.vgg.VGG.flops`; the input gradient of the backward pass costs
  the same again, ``vgg_backward``);
- a function hook remembers the nodes each network call creates and times their backward pass
  (``vgg_backward``), and times the MRF term's matching node
  (:class:`chainer_mrf.mrf.NearestPatches`, ``matching``) and counts its products, 2 P S D
  (S: the style entries this process holds, its shard under MPI);
- ``other`` is the rest of the step: patch extraction, the loss terms and their gradients, the
  accumulation of gradients, the optimiser's update.

On a GPU every phase starts and ends with a synchronisation, so that it counts its own kernels
(which slows the step a little; leave profiling off for production runs).
"""
import contextlib
import inspect
import time
import weakref

import chainer

from chainer_mrf.mrf import NearestPatches

PHASES = ('vgg_forward', 'matching', 'vgg_backward', 'other')
"""The phases a step's seconds are split into."""


class Profile:
    """One step's measurements.

    Attributes:
        seconds (dict): wall time by phase (:data:`PHASES`); they add up to the step's.
        flops (dict): floating-point operations of the dense products by phase
            (``vgg_forward``, ``matching``, ``vgg_backward``), counted from the network calls
            and matchings that ran; ``vgg_backward`` is the input gradient of every network
            call (as much again as its forward), counted when the call returns.
    """

    def __init__(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.flops = dict.fromkeys(PHASES[:3], 0)


class Profiler:
    """Times steps by phase and counts their FLOPs (see the module docstring).

    Args:
        network (chainer_mrf.vgg.VGG): the network whose calls are the ``vgg_*`` phases.
        device (chainer.backend.Device): where the step runs (a GPU is synchronised).

    Examples:
        >>> profiler = Profiler(vgg, chainer.get_device('@numpy'))  # doctest: +SKIP
        >>> with profiler.step() as profile:  # doctest: +SKIP
        ...     energy(x).backward()
        >>> profile.seconds['matching']  # doctest: +SKIP
    """

    def __init__(self, network, device):
        self.network = network
        self._sync = (device.device.synchronize if isinstance(device, chainer.backend.GpuDevice)
                      else lambda: None)
        self._signature = inspect.signature(network.forward)
        self._profile = None
        self._inside = False
        self._nodes = weakref.WeakSet()
        self._started = None

    @contextlib.contextmanager
    def step(self):
        """Measures the block as one step; yields its :class:`Profile`, complete on exit."""
        profile = self._profile = Profile()
        self._sync()
        start = time.perf_counter()
        try:
            with _NetworkHook(self), _NodeHook(self):
                yield profile
            self._sync()
            profile.seconds['other'] = (time.perf_counter() - start
                                        - sum(profile.seconds.values()))
        finally:
            # Also after an error inside the network, whose call then never returned.
            self._profile = None
            self._inside = False
            self._nodes = weakref.WeakSet()

    def _start(self):
        self._sync()
        self._started = time.perf_counter()

    def _stop(self, phase, flops=0):
        self._sync()
        self._profile.seconds[phase] += time.perf_counter() - self._started
        if flops:
            self._profile.flops[phase] += flops

    def _network_called(self):
        self._inside = True
        self._start()

    def _network_returned(self, args, kwargs):
        """Charges the call's time and counts its convolutions, once the network has checked
        its arguments (and returned)."""
        self._inside = False
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        x = bound.arguments['x']
        convolutions = x.shape[0] * self.network.flops(x.shape[2:], bound.arguments['layers'])
        self._stop('vgg_forward', convolutions)
        self._profile.flops['vgg_backward'] += convolutions


class _NetworkHook(chainer.LinkHook):
    """Marks the network's calls for :class:`Profiler`."""

    name = 'chainer_mrf_profiler'

    def __init__(self, profiler):
        self.profiler = profiler

    def forward_preprocess(self, args):
        if args.link is self.profiler.network:
            self.profiler._network_called()

    def forward_postprocess(self, args):
        if args.link is self.profiler.network:
            self.profiler._network_returned(args.args, args.kwargs)


class _NodeHook(chainer.FunctionHook):
    """Times the network's nodes' backward and the matching for :class:`Profiler`.

    Only the outermost events are timed: a node's backward may apply other nodes (a
    convolution's backward is a transposed convolution), which its own time already holds.
    """

    name = 'chainer_mrf_profiler'

    def __init__(self, profiler):
        self.profiler = profiler

    def forward_preprocess(self, function, in_data):
        if self.profiler._inside:
            self.profiler._nodes.add(function)
        elif isinstance(function, NearestPatches):
            self.profiler._start()

    def forward_postprocess(self, function, in_data):
        if not self.profiler._inside and isinstance(function, NearestPatches):
            queries, = in_data
            self.profiler._stop('matching', 2 * queries.shape[0] * function.bank.held
                                * function.bank.dim)

    def backward_preprocess(self, function, in_data, out_grad):
        if function in self.profiler._nodes:
            self.profiler._start()

    def backward_postprocess(self, function, in_data, out_grad):
        if function in self.profiler._nodes:
            self.profiler._stop('vgg_backward')
