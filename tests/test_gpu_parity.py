"""The GPU path against the CPU path, on the real weights: layers, VGG, whole syntheses.

Every test here needs CuPy and a CUDA device and is skipped elsewhere (``-m gpu`` selects them;
benchmarks/device.sh runs them on a lent GPU machine). The CPU path runs this project's strip
convolution and pooling (chainer_mrf.layers) and NumPy matching; the GPU path runs the same
strip code on CuPy with cuBLAS products (or Chainer's cuDNN functions, where CuPy has cuDNN and
Chainer enables it), and the CUDA kernels of chainer_mrf/kernels/match.cu.
"""
import chainer
import numpy
import pytest
from chainer.backends import cuda

import chainer_mrf
from chainer_mrf import layers
from chainer_mrf.vgg import VGG16
from helpers import needs_cuda


def _input_gradient(function, x, gy):
    v = chainer.Variable(x)
    y = function(v)
    y.grad = gy
    y.backward()
    return y.array, v.grad


@needs_cuda
@pytest.mark.parametrize('use_cudnn', ['never', 'auto'])  # the strip code; cuDNN where present
@pytest.mark.parametrize('channels,out_channels', [(3, 64), (64, 64), (128, 64)])
def test_convolution_and_pooling_match_the_cpu(channels, out_channels, use_cudnn):
    cp = cuda.cupy
    rng = numpy.random.RandomState(0)
    x = rng.standard_normal((1, channels, 37, 29)).astype(numpy.float32)
    W = (rng.standard_normal((out_channels, channels, 3, 3)) * 0.1).astype(numpy.float32)
    b = rng.standard_normal(out_channels).astype(numpy.float32)
    gy = rng.standard_normal((1, out_channels, 19, 15)).astype(numpy.float32)

    def net(weights, bias):
        return lambda v: layers.max_pooling_2x2(layers.convolution_3x3(v, weights, bias,
                                                                        relu=True))

    cpu_y, cpu_gx = _input_gradient(net(W, b), x, gy)
    with chainer.using_config('use_cudnn', use_cudnn):
        gpu_y, gpu_gx = _input_gradient(net(cp.asarray(W), cp.asarray(b)), cp.asarray(x),
                                        cp.asarray(gy))
    numpy.testing.assert_allclose(cp.asnumpy(gpu_y), cpu_y, rtol=1e-4, atol=1e-4)
    numpy.testing.assert_allclose(cp.asnumpy(gpu_gx), cpu_gx, rtol=1e-4, atol=1e-4)


@needs_cuda
def test_real_weights_features_and_gradient_match(vgg16_path):
    rng = numpy.random.RandomState(1)
    x = rng.uniform(-120, 130, (1, 3, 93, 70)).astype(numpy.float32)
    names = ['relu3_1', 'relu4_1', 'relu4_2']
    results = []
    for device in ('@numpy', '@cupy:0'):
        vgg = VGG16(vgg16_path)
        vgg.to_device(device)
        v = chainer.Variable(chainer.get_device(device).send(x))
        out = vgg(v, layers=names)
        sum(chainer.functions.sum(out[n] * out[n]) for n in names).backward()
        results.append(([cuda.to_cpu(out[n].array) for n in names], cuda.to_cpu(v.grad)))
    (cpu_features, cpu_grad), (gpu_features, gpu_grad) = results
    for cpu, gpu in zip(cpu_features, gpu_features):
        numpy.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-4 * float(cpu.max()))
    scale = float(numpy.abs(cpu_grad).max())
    numpy.testing.assert_allclose(gpu_grad, cpu_grad, rtol=1e-3, atol=1e-4 * scale)


@needs_cuda
@pytest.mark.parametrize('preset', ['dsanno', 'cnnmrf'])
def test_synthesis_matches_cpu(vgg16_path, preset):
    """The first step's energy terms agree closely; after a few steps (argmax flips may
    differ by rounding) the images stay close."""
    rng = numpy.random.RandomState(2)
    content = rng.randint(0, 256, (60, 72, 3)).astype(numpy.uint8)
    style = rng.randint(0, 256, (66, 70, 3)).astype(numpy.uint8)
    size = {'width': 72} if preset == 'dsanno' else {'max_size': 72}
    options = dict(size, iterations=3, resolution_num=1, seed=0, model=vgg16_path, profile=True)
    runs = []
    for device in (-1, 0):
        steps = []
        image = chainer_mrf.synthesize(content, style, preset=preset, device=device,
                                       callback=steps.append, **options)
        runs.append((image, steps))
    (cpu_image, cpu_steps), (gpu_image, gpu_steps) = runs
    for name, value in cpu_steps[0].losses.items():
        assert gpu_steps[0].losses[name] == pytest.approx(value, rel=1e-3), name
    assert gpu_steps[0].flops == cpu_steps[0].flops
    difference = numpy.abs(gpu_image.astype(numpy.int16) - cpu_image.astype(numpy.int16))
    assert difference.mean() < 2.0
