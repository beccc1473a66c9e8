import chainer
import chainer.functions as F
import numpy
import pytest
from chainer import gradient_check

from chainer_mrf import layers


def _both(function, reference, x, gy):
    """Outputs and input gradients of ``function`` and ``reference`` for the same input."""
    results = []
    for f in (function, reference):
        v = chainer.Variable(x.copy())
        y = f(v)
        y.grad = gy
        y.backward()
        results.append((y.array, v.grad))
    return results


def _convolution_case(shape, out_channels, relu, seed):
    """Random input, filters, biases and output gradient, and Chainer's convolution (and ReLU)
    with them, the reference."""
    rng = numpy.random.RandomState(seed)
    x = rng.standard_normal(shape).astype(numpy.float32)
    W = rng.standard_normal((out_channels, shape[1], 3, 3)).astype(numpy.float32)
    b = rng.standard_normal(out_channels).astype(numpy.float32)
    gy = rng.standard_normal((shape[0], out_channels) + shape[2:]).astype(numpy.float32)

    def reference(v):
        y = F.convolution_2d(v, W, b, pad=1)
        return F.relu(y) if relu else y

    return x, W, b, gy, reference


@pytest.mark.parametrize('shape,out_channels', [
    ((1, 3, 9, 11), 8),    # fewer input channels: the backward scatters with col2im
    ((1, 8, 9, 11), 4),    # more: it correlates with the flipped filters
    ((2, 5, 1, 1), 6),     # a batch, and a 1x1 map where every tap but the centre is padding
    ((1, 4, 3, 40), 4),
])
@pytest.mark.parametrize('strip_bytes', [1, 400, 8 << 20])
@pytest.mark.parametrize('relu', [False, True])
@pytest.mark.parametrize('min_depth', [1, 1000])  # three products per strip, or one stacked
@pytest.mark.parametrize('gpu_path', [False, True])
def test_convolution_matches_chainer(shape, out_channels, strip_bytes, relu, min_depth, gpu_path,
                                     monkeypatch):
    # gpu_path: the code a GPU runs without cuDNN, on NumPy (products into strided strips
    # through a copy; GPU_STRIP_BYTES in place of STRIP_BYTES).
    monkeypatch.setattr(layers, 'EMULATE_GPU', gpu_path)
    monkeypatch.setattr(layers, 'GPU_STRIP_BYTES' if gpu_path else 'STRIP_BYTES',
                        strip_bytes)  # 1: one row per strip
    monkeypatch.setattr(layers, '_MIN_DEPTH', min_depth)
    x, W, b, gy, reference = _convolution_case(shape, out_channels, relu, seed=0)
    (y, gx), (y_ref, gx_ref) = _both(lambda v: layers.convolution_3x3(v, W, b, relu=relu),
                                     reference, x, gy)
    numpy.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    numpy.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('channels,out_channels', [(2, 3), (3, 2)])
@pytest.mark.parametrize('relu', [False, True])
def test_convolution_gradients_of_both_orders(channels, out_channels, relu):
    rng = numpy.random.RandomState(1)
    x = rng.standard_normal((1, channels, 4, 5))
    W = rng.standard_normal((out_channels, channels, 3, 3))
    b = rng.standard_normal(out_channels)
    gy = rng.standard_normal((1, out_channels, 4, 5))
    ggx = rng.standard_normal(x.shape)

    def convolution(v):
        return layers.convolution_3x3(v, W, b, relu=relu)

    # A small step, so that no output crosses the ReLU's kink.
    gradient_check.check_backward(convolution, x, gy, eps=1e-6, atol=1e-6, rtol=1e-6)
    # The backward pass is itself differentiable (it is the transposed convolution).
    gradient_check.check_double_backward(convolution, x, gy, ggx, eps=1e-6, atol=1e-6,
                                         rtol=1e-6)


@pytest.mark.parametrize('shape', [(1, 3, 7, 9), (2, 4, 8, 6), (1, 2, 1, 1), (1, 5, 33, 2)])
@pytest.mark.parametrize('gpu_path', [False, True])
def test_max_pooling_matches_chainer(shape, gpu_path, monkeypatch):
    monkeypatch.setattr(layers, 'EMULATE_GPU', gpu_path)
    rng = numpy.random.RandomState(2)
    x = rng.standard_normal(shape).astype(numpy.float32)
    x[..., :2, :2] = 1.5  # ties: the first maximum in window order takes the gradient
    gy = rng.standard_normal(shape[:2] + (-(-shape[2] // 2), -(-shape[3] // 2))).astype(
        numpy.float32)
    (y, gx), (y_ref, gx_ref) = _both(
        layers.max_pooling_2x2, lambda v: F.max_pooling_2d(v, 2, 2, cover_all=True), x, gy)
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_array_equal(gx, gx_ref)


@pytest.mark.parametrize('shape,out_channels', [((1, 3, 9, 11), 40), ((2, 16, 9, 11), 8),
                                                ((1, 12, 1, 2), 12), ((1, 11, 5, 40), 16),
                                                ((1, 8, 6, 7), 16)])
@pytest.mark.parametrize('strip_bytes', [1, 4000, 8 << 20])
@pytest.mark.parametrize('relu', [False, True])
def test_convolution_strips_in_threads(shape, out_channels, strip_bytes, relu, monkeypatch,
                                      two_blas_threads):
    # The CPU path runs every THREADS-th strip in each of THREADS threads, BLAS on one thread
    # meanwhile; the strip count is a multiple of THREADS, so their widths depend on it.
    monkeypatch.setattr(layers, 'STRIP_BYTES', strip_bytes)
    x, W, b, gy, reference = _convolution_case(shape, out_channels, relu, seed=3)
    results = {}
    for threads in (1, 2, 3):
        monkeypatch.setattr(layers, 'THREADS', threads)
        (y, gx), (y_ref, gx_ref) = _both(
            lambda v: layers.convolution_3x3(v, W, b, relu=relu), reference, x, gy)
        numpy.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
        numpy.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-5)
        results[threads] = y, gx
    # The same strips (THREADS = 2) in two threads with one BLAS thread each, and in this
    # thread alone with BLAS's own threads (as where NumPy's BLAS cannot be told its thread
    # count): equal exactly.
    monkeypatch.setattr(layers, 'THREADS', 2)
    monkeypatch.setattr(layers, '_blas_threads', lambda: None)  # no thread control: serial
    serial = _both(lambda v: layers.convolution_3x3(v, W, b, relu=relu), reference, x, gy)[0]
    for a, b_ in zip(results[2], serial):
        numpy.testing.assert_array_equal(a, b_)


@pytest.fixture
def two_blas_threads():
    """NumPy's BLAS on two threads for the test (the layers use threads of their own only where
    BLAS may use several: a run under OPENBLAS_NUM_THREADS=1 would test the serial path)."""
    blas = layers._blas_threads()
    if blas is None:
        pytest.skip("NumPy's BLAS is not a bundled OpenBLAS: install NumPy's wheel")
    previous = blas[0]()
    blas[1](2)
    yield blas
    blas[1](previous)


def test_no_threads_of_ours_where_blas_was_set_to_one(monkeypatch, two_blas_threads):
    x, W, b, gy, _ = _convolution_case((1, 8, 6, 7), 16, True, seed=4)
    monkeypatch.setattr(layers, 'STRIP_BYTES', 1)
    run = lambda: layers.convolution_3x3(x, W, b, relu=True, threads=2).array  # noqa: E731
    threaded = run()
    two_blas_threads[1](1)
    monkeypatch.setattr(layers, '_executor', lambda: pytest.fail('a thread was started'))
    numpy.testing.assert_array_equal(run(), threaded)  # the same strips, in this thread


def test_blas_thread_count_is_restored():
    blas = layers._blas_threads()
    if blas is None:
        pytest.skip("NumPy's BLAS is not a bundled OpenBLAS")
    threads = blas[0]()
    with layers._single_threaded_blas(blas):
        assert blas[0]() == 1
    assert blas[0]() == threads
    with pytest.raises(RuntimeError):
        with layers._single_threaded_blas(blas):
            raise RuntimeError
    assert blas[0]() == threads


def test_max_pooling_refuses_second_derivatives():
    x = chainer.Variable(numpy.arange(16, dtype=numpy.float32).reshape(1, 1, 4, 4))
    y = layers.max_pooling_2x2(x)
    gx, = chainer.grad([F.sum(y * y)], [x], enable_double_backprop=True)
    with pytest.raises(NotImplementedError, match='second derivatives'):
        F.sum(gx * gx).backward()


def test_layers_use_cudnn_only_on_cupy_with_cudnn(monkeypatch):
    """NumPy arrays never take Chainer's cuDNN functions, even with cuDNN reported present; a
    GPU without cuDNN (CuPy 14) takes this module's own path."""
    from chainer.backends import cuda
    monkeypatch.setattr(cuda, 'cudnn_enabled', True)
    # Chainer's own check also asks cuDNN's version, which this machine has not.
    monkeypatch.setattr(chainer, 'should_use_cudnn',
                        lambda level: chainer.config.use_cudnn != 'never')
    assert not layers.uses_cudnn(numpy.zeros(1, numpy.float32))
    monkeypatch.setattr(chainer.backend, 'get_array_module', lambda *a: object())
    assert layers.uses_cudnn(None)
    with chainer.using_config('use_cudnn', 'never'):
        assert not layers.uses_cudnn(None)
    monkeypatch.setattr(cuda, 'cudnn_enabled', False)
    assert not layers.uses_cudnn(None)
