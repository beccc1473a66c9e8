"""GPU detection that a CuPy without a usable GPU cannot fool, on a simulated CuPy.

``chainer.backends.cuda.available`` is True wherever CuPy imports: with the CUDA toolkit's
wheels (``cupy-cuda12x[ctk]``) on a machine with no GPU, too. A GPU run (``device``, ``-g N``)
and the GPU tests (``helpers.cuda_ready``) must instead find device N counted by the driver and
a kernel run there; otherwise one ``cannot use device`` line.
"""
import types

import chainer
import pytest
from chainer.backends import cuda

from chainer_mrf import synthesis
from helpers import content_card, cuda_ready, style_stripes


class _CudaError(RuntimeError):
    """Stands for cupy.cuda.runtime.CUDARuntimeError."""


def _fake_cupy(count=1, fails=None, result=6.0):
    """A CuPy module that imports: ``count`` devices, and a kernel that raises ``fails`` (an
    exception) or returns ``result``."""
    def get_count():
        if isinstance(count, Exception):
            raise count
        return count

    class Array:
        def sum(self):
            if fails is not None:
                raise fails
            return result

    class Device:
        def __init__(self, n):
            self.id = n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    runtime = types.SimpleNamespace(getDeviceCount=get_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime, Device=Device),
                                 arange=lambda *args, **kwargs: Array())


@pytest.mark.parametrize('fake,device,message', [
    (dict(count=_CudaError('cudaErrorNoDevice: no CUDA-capable device is detected')), 0,
     'CUDA failed on it: cudaErrorNoDevice: no CUDA-capable device is detected'),
    (dict(count=_CudaError('cudaErrorInsufficientDriver:\n  driver too old')), 0,
     'CUDA failed on it: cudaErrorInsufficientDriver: driver too old'),
    (dict(count=0), 0, 'CUDA sees 0 GPUs here'),
    (dict(count=1), 1, 'CUDA sees 1 GPU here'),
    (dict(count=2, fails=_CudaError('nvrtc: libnvrtc.so.12 not found')), 1,
     'CUDA failed on it: nvrtc: libnvrtc.so.12 not found'),
    (dict(count=1, result=0.0), 0, 'a test kernel on it returned 0.0 instead of 6'),
])
def test_cuda_available_without_a_usable_gpu_is_refused(monkeypatch, fake, device, message):
    monkeypatch.setattr(cuda, 'available', True)
    monkeypatch.setattr(cuda, 'cupy', _fake_cupy(**fake))
    assert synthesis.gpu_problem(device) == message
    expected = 'cannot use device @cupy:%d: %s' % (device, message)
    for spec in (device, 'cuda:%d' % device, '@cupy:%d' % device):
        with pytest.raises(ValueError) as info:
            synthesis._device(spec)
        assert str(info.value) == expected and '\n' not in str(info.value)
    # The run stops before anything is loaded, with the same line.
    with pytest.raises(ValueError, match='cannot use device @cupy:%d' % device):
        synthesis.synthesize(content_card(), style_stripes(), device=device, iterations=1)
    if device == 0:
        assert not cuda_ready()  # so the GPU tests skip (or fail under REQUIRE_GPU)


def test_a_working_fake_gpu_passes_detection(monkeypatch):
    monkeypatch.setattr(cuda, 'available', True)
    monkeypatch.setattr(cuda, 'cupy', _fake_cupy(count=2))
    assert synthesis.gpu_problem(1) is None
    assert cuda_ready()


def test_no_cupy_says_what_to_install(monkeypatch):
    monkeypatch.setattr(cuda, 'available', False)
    with pytest.raises(ValueError, match=r'cannot use device @cupy:0: CuPy .*chainer-mrf\[gpu\]'):
        synthesis._device(0)


@pytest.mark.parametrize('spec', ['@cupy', '@cupy:x'])
def test_malformed_cupy_specifiers(spec):
    with pytest.raises(ValueError, match='unknown device'):
        synthesis._device(spec)


def test_cpu_needs_no_cuda(monkeypatch):
    monkeypatch.setattr(cuda, 'available', True)
    monkeypatch.setattr(cuda, 'cupy', _fake_cupy(count=_CudaError('no driver')))
    assert synthesis._device(-1) == chainer.get_device('@numpy')
