"""Patch matching: known answers, brute force, chunking and ties, zeros, float16, the kernels.

The CUDA kernels are checked three ways: ``nvcc --ptx`` compiles them; the same source built as
C++ with ``chainer_mrf/kernels/cpu_shim.h`` runs on the CPU (each CUDA thread a std::thread,
``__syncthreads`` a barrier) and must agree with NumPy, both kernel by kernel and driving the
whole GPU code path of ``match`` on NumPy arrays; and on a CUDA machine, CuPy results must equal
the CPU path's.
"""
import ctypes
import os
import shutil
import subprocess

import numpy
import pytest

import chainer_mrf  # noqa: F401  (NumPy shims before chainer)
import chainer
from chainer.backends import cuda

from chainer_mrf import matching
from chainer_mrf.matching import PatchBank, chunk_size_for, match
from helpers import needs_cuda

KERNELS = os.path.dirname(matching.KERNEL_PATH)


def reference(queries, bank_patches, eps=matching.NORM_EPS):
    """Float64 brute force: the full score matrix, its argmax and max."""
    s = numpy.asarray(bank_patches, numpy.float64)
    norms = numpy.maximum(numpy.sqrt((s * s).sum(1)), eps)
    scores = numpy.asarray(queries, numpy.float64) @ (s / norms[:, None]).T
    return scores.argmax(1), scores.max(1), scores


def exact_tie_data(seed=0, n_queries=30, n_patterns=5, bank_size=40, dim=64):
    """Data whose scores float32 computes exactly in any summation order, full of exact ties.

    Bank rows are +-1 on 4, 16 or 64 entries (norms 2, 4, 8) times a power of two, so the
    normalised rows are +-1/2, 1/4 or 1/8 exactly and identical for repeats; queries are small
    integers. Every product and partial sum is then a float32 without rounding.
    """
    rng = numpy.random.RandomState(seed)
    patterns = []
    for nnz in rng.choice([4, 16, 64], n_patterns):
        row = numpy.zeros(dim, numpy.float32)
        row[rng.choice(dim, nnz, replace=False)] = rng.choice([-1, 1], nnz)
        patterns.append(row)
    bank = numpy.stack([patterns[rng.randint(n_patterns)] * 2.0 ** rng.randint(-2, 3)
                        for _ in range(bank_size)]).astype(numpy.float32)
    queries = rng.randint(-2, 3, (n_queries, dim)).astype(numpy.float32)
    queries[0] = 0  # all scores 0: a tie over the whole bank
    return queries, bank


def test_exact_and_scaled_copies_match_themselves():
    rng = numpy.random.RandomState(0)
    queries = numpy.abs(rng.randn(40, 27)).astype(numpy.float32)  # post-ReLU-like
    others = numpy.abs(rng.randn(60, 27)).astype(numpy.float32)
    bank = PatchBank(numpy.concatenate([others, queries * 2.5, queries]))
    index, score = match(queries, bank)
    i = numpy.arange(40)
    assert numpy.all((index == 60 + i) | (index == 100 + i))
    _, cosine = match(queries, bank, cosine=True)
    numpy.testing.assert_allclose(cosine, 1, rtol=1e-5)
    numpy.testing.assert_allclose(score, numpy.linalg.norm(queries, axis=1), rtol=1e-5)


def test_brute_force_random():
    rng = numpy.random.RandomState(1)
    queries = rng.randn(300, 40).astype(numpy.float32)
    bank_patches = rng.randn(500, 40).astype(numpy.float32)
    index, score = match(queries, PatchBank(bank_patches), chunk_size=128)
    ref_index, ref_score, scores = reference(queries, bank_patches)
    numpy.testing.assert_allclose(score, ref_score, rtol=1e-5, atol=1e-5)
    top2 = numpy.sort(scores, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4
    assert clear.sum() > 290
    numpy.testing.assert_array_equal(index[clear], ref_index[clear])
    # Where a float32 rounding could flip the choice, it is still optimal to rounding.
    chosen = scores[numpy.arange(300), index]
    assert numpy.all(chosen >= ref_score - 1e-4)


@pytest.mark.parametrize('chunk_size', [1, 2, 3, 7, 16, 39, 40, 41, 1000])
def test_chunked_equals_unchunked_with_ties(chunk_size):
    queries, bank_patches = exact_tie_data()
    bank = PatchBank(bank_patches)
    ref_index, ref_score, scores = reference(queries, bank_patches)
    # The data is tie-rich: most rows' maximum is shared by several bank entries.
    assert (scores == ref_score[:, None]).sum(1).mean() > 2
    assert ref_index[0] == 0
    whole = match(queries, bank, chunk_size=bank.size)
    index, score = match(queries, bank, chunk_size=chunk_size)
    numpy.testing.assert_array_equal(index, ref_index)
    numpy.testing.assert_array_equal(index, whole[0])
    numpy.testing.assert_array_equal(score, ref_score.astype(numpy.float32))


@pytest.mark.parametrize('chunk_size', [1, 5, 64, 333])
def test_chunked_equals_unchunked_random(chunk_size):
    rng = numpy.random.RandomState(2)
    queries = rng.randn(200, 30).astype(numpy.float32)
    bank = PatchBank(rng.randn(333, 30).astype(numpy.float32))
    whole_index, whole_score = match(queries, bank, chunk_size=333)
    index, score = match(queries, bank, chunk_size=chunk_size)
    numpy.testing.assert_array_equal(index, whole_index)
    numpy.testing.assert_allclose(score, whole_score, rtol=1e-6)


def test_zero_patches_are_finite():
    rng = numpy.random.RandomState(3)
    bank_patches = numpy.abs(rng.randn(20, 12)).astype(numpy.float32)
    bank_patches[[0, 7]] = 0
    queries = numpy.abs(rng.randn(10, 12)).astype(numpy.float32)
    queries[4] = 0
    bank = PatchBank(bank_patches)
    assert numpy.all(bank.inverse_norms[[0, 7]] == numpy.float32(1 / matching.NORM_EPS))
    assert bank.inverse_norms[0] == numpy.float32(1 / matching.NORM_EPS)
    for cosine in (False, True):
        index, score = match(queries, bank, cosine=cosine)
        assert numpy.all(numpy.isfinite(score))
        assert index[4] == 0 and score[4] == 0  # a zero query ties everywhere: lowest index
        assert not numpy.isin(numpy.delete(index, 4), [0, 7]).any()


def test_float16_bank_matches_float32_on_separated_data():
    rng = numpy.random.RandomState(4)
    bank_patches = numpy.abs(rng.randn(300, 64)).astype(numpy.float32) * 50
    pick = rng.randint(0, 300, 200)
    queries = bank_patches[pick] * 1.7 + rng.randn(200, 64).astype(numpy.float32)
    bank16 = PatchBank(bank_patches, bank_dtype=numpy.float16)
    assert bank16.patches.dtype == numpy.float32 and bank16.bank_dtype == numpy.float16
    # The norms come from the float32 patches, before they are rounded to float16.
    numpy.testing.assert_array_equal(bank16.inverse_norms, PatchBank(bank_patches).inverse_norms)
    numpy.testing.assert_array_equal(bank16.patches, bank_patches.astype(numpy.float16))
    index32, score32 = match(queries, PatchBank(bank_patches), chunk_size=64)
    index16, score16 = match(queries, bank16, chunk_size=64)
    assert score16.dtype == numpy.float32
    numpy.testing.assert_array_equal(index16, index32)
    numpy.testing.assert_array_equal(index32, pick)
    numpy.testing.assert_allclose(score16, score32, rtol=2e-3)


def test_memory_budget_chunk_rule():
    mib = 2 ** 20
    assert chunk_size_for(1000, 2304, 256 * mib) == 256 * mib // 4000 == 67108
    assert chunk_size_for(1000, 2304, 256 * mib, numpy.float16) == 256 * mib // (4000 + 9216)
    assert chunk_size_for(1000, 2304, 4000) == 1
    assert chunk_size_for(1000, 2304, 1) == 1
    assert chunk_size_for(0, 8, 100) == 25
    rng = numpy.random.RandomState(5)
    queries = rng.randn(50, 10).astype(numpy.float32)
    bank = PatchBank(rng.randn(90, 10).astype(numpy.float32))
    small = match(queries, bank, memory_budget=50 * 4 * 7)  # 7 entries per chunk
    numpy.testing.assert_array_equal(small[0], match(queries, bank)[0])


def test_chunk_grid_cut_for_sharing():
    """With the bank's size, the chunk is cut to a 64th of the bank, at least 512 entries, at
    most the bank; a smaller budget chunk stays (matching.CHUNKS_PER_BANK, MIN_CHUNK)."""
    mib = 2 ** 20
    assert chunk_size_for(1000, 2304, 256 * mib, bank_size=10 ** 6) == 15625  # ceil(1e6 / 64)
    assert chunk_size_for(1000, 2304, 256 * mib, bank_size=40000) == 625
    assert chunk_size_for(1000, 2304, 256 * mib, bank_size=20000) == 512
    assert chunk_size_for(1000, 2304, 256 * mib, bank_size=100) == 100
    assert chunk_size_for(10 ** 6, 2304, 256 * mib, bank_size=10 ** 6) == 67
    # match() follows the cut grid: a bank of 2000 in chunks of 512 gives what one chunk does.
    rng = numpy.random.RandomState(7)
    queries = rng.randn(40, 12).astype(numpy.float32)
    bank = PatchBank(rng.randn(2000, 12).astype(numpy.float32))
    cut, whole = match(queries, bank), match(queries, bank, chunk_size=2000)
    numpy.testing.assert_array_equal(cut[0], whole[0])
    numpy.testing.assert_allclose(cut[1], whole[1], rtol=1e-6)  # BLAS may round per block


def test_bank_from_sequence_take_and_layout():
    rng = numpy.random.RandomState(6)
    parts = [rng.randn(5, 8).astype(numpy.float32), rng.randn(3, 8).astype(numpy.float64)]
    bank = PatchBank(parts)
    assert len(bank) == bank.size == 8 and bank.dim == 8
    numpy.testing.assert_array_equal(bank.patches, numpy.concatenate(parts).astype(numpy.float32))
    targets = bank.take(numpy.array([7, 0, 0]))
    assert targets.dtype == numpy.float32 and targets.T.flags['C_CONTIGUOUS']
    numpy.testing.assert_array_equal(targets, bank.patches[[7, 0, 0]])
    numpy.testing.assert_allclose(
        bank.inverse_norms, 1 / numpy.linalg.norm(numpy.concatenate(parts), axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match='same length'):
        PatchBank([parts[0], numpy.ones((2, 9), numpy.float32)])


def test_bad_inputs():
    bank = PatchBank(numpy.ones((4, 6), numpy.float32))
    with pytest.raises(ValueError):
        match(numpy.ones((3, 5), numpy.float32), bank)
    with pytest.raises(ValueError):
        match(numpy.ones((3, 6), numpy.float32), bank, chunk_size=0)
    with pytest.raises(ValueError):
        PatchBank(numpy.ones((4, 6), numpy.float32), bank_dtype=numpy.float64)
    with pytest.raises(ValueError):
        PatchBank(numpy.ones((0, 6), numpy.float32))
    with pytest.raises(ValueError):
        PatchBank(numpy.ones((4, 6), numpy.float32), eps=0)
    index, score = match(numpy.ones((0, 6), numpy.float32), bank)
    assert index.shape == score.shape == (0,)
    index, _ = match(chainer.Variable(numpy.ones((2, 6), numpy.float32)), bank)
    assert index.tolist() == [0, 0]


# The CUDA kernels, compiled by nvcc and run through the C++ shim.

# nvcc's defaults, and what CuPy's runtime compiler (NVRTC) is given on an H100/H200: the
# device's architecture, C++17 and flush-to-zero (so the kernels may not rely on denormals).
@pytest.mark.parametrize('options', [[], ['-arch=sm_90', '-std=c++17', '-ftz=true']])
def test_kernels_compile_with_nvcc(tmp_path, options):
    nvcc = shutil.which('nvcc')
    if nvcc is None:
        pytest.skip('nvcc is absent, so the CUDA source is not compiled: install the CUDA '
                    'toolkit (its nvcc on PATH; no GPU needed)')
    ptx = tmp_path / 'match.ptx'
    subprocess.run([nvcc, '--ptx', '-Werror', 'all-warnings', *options, '-o', str(ptx),
                    matching.KERNEL_PATH], check=True, capture_output=True, timeout=120)
    text = ptx.read_text()
    assert '.entry argmax_update' in text and '.entry inverse_norms' in text
    assert ('.target sm_90' in text) == bool(options)


DRIVER = r'''
#include "cpu_shim.h"
#include "match.cu"

extern "C" void launch_argmax_update(unsigned grid, unsigned block, const float* scores,
                                     const float* inverse_norms, int n_cols, long long offset,
                                     float* best, long long* best_index) {
    cpu_launch(grid, block, [=] {
        argmax_update(scores, inverse_norms, n_cols, offset, best, best_index);
    });
}

extern "C" void launch_inverse_norms(unsigned grid, unsigned block, const float* x, int n_cols,
                                     long long row_stride, long long col_stride, float eps,
                                     float* out) {
    cpu_launch(grid, block, [=] { inverse_norms(x, n_cols, row_stride, col_stride, eps, out); });
}
'''

_C_TYPES = {numpy.dtype(numpy.int32): ctypes.c_int, numpy.dtype(numpy.int64): ctypes.c_longlong,
            numpy.dtype(numpy.float32): ctypes.c_float}


@pytest.fixture(scope='module')
def shim_launch(tmp_path_factory):
    """``launch(name, grid, block, args)`` running the kernels' C++ build on NumPy arrays."""
    gxx = shutil.which('g++')
    if gxx is None:
        pytest.skip('g++ is absent, so the C++ shim build of the kernels is not tested: install '
                    'g++ (Debian: apt-get install g++)')
    build = tmp_path_factory.mktemp('shim')
    (build / 'driver.cpp').write_text(DRIVER)
    library = build / 'libmatch_shim.so'
    subprocess.run([gxx, '-std=c++20', '-O1', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC',
                    '-pthread', '-I', KERNELS, '-o', str(library), str(build / 'driver.cpp')],
                   check=True, capture_output=True, timeout=120)
    lib = ctypes.CDLL(str(library))

    def launch(name, grid, block, args):
        c_args = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, numpy.ndarray)
                  else _C_TYPES[a.dtype](a) for a in args]
        getattr(lib, 'launch_' + name)(ctypes.c_uint(grid), ctypes.c_uint(block), *c_args)
    return launch


@pytest.mark.parametrize('block', [1, 2, 8, 64])
def test_shim_argmax_update_over_chunks(shim_launch, block):
    rng = numpy.random.RandomState(7)
    scores = rng.randint(-3, 4, (9, 50)).astype(numpy.float32)  # many ties
    scores[2] = -numpy.inf  # all -inf: stays at index 0, as numpy.argmax
    scores[3] = 5
    # Powers of two: the scaled scores are exact, and keep their ties.
    inverse_norms = (2.0 ** rng.randint(-1, 2, 50)).astype(numpy.float32)
    best = numpy.full(9, -numpy.inf, numpy.float32)
    best_index = numpy.zeros(9, numpy.int64)
    for start, stop in [(0, 7), (7, 8), (8, 40), (40, 50)]:
        chunk = numpy.ascontiguousarray(scores[:, start:stop])
        shim_launch('argmax_update', 9, block, (chunk, inverse_norms[start:stop],
                                                numpy.int32(stop - start), numpy.int64(start),
                                                best, best_index))
    scaled = scores * inverse_norms
    numpy.testing.assert_array_equal(best_index, scaled.argmax(1))
    numpy.testing.assert_array_equal(best, scaled.max(1))


@pytest.mark.parametrize('block', [1, 4, 32])
def test_shim_inverse_norms_strided(shim_launch, block):
    rng = numpy.random.RandomState(8)
    x = numpy.ascontiguousarray(rng.randn(20, 11).astype(numpy.float32)).T  # (11, 20) view
    x[3] = 0
    ops = matching._CudaOps(shim_launch, threads=block)
    numpy.testing.assert_allclose(ops.inverse_norms(x, 1e-8),
                                  matching._NumpyOps.inverse_norms(x, 1e-8), rtol=1e-6)


@pytest.mark.parametrize('block', [4, 32])
def test_shim_drives_the_gpu_path_of_match(shim_launch, monkeypatch, block):
    """The whole GPU code path (chunks, offsets, buffers, cosine) with the shim as the device."""
    queries, bank_patches = exact_tie_data(seed=9)
    rng = numpy.random.RandomState(10)
    random_queries = rng.randn(25, 64).astype(numpy.float32)
    cpu = [match(q, PatchBank(bank_patches), chunk_size=c, cosine=cos)
           for q in (queries, random_queries) for c in (1, 7, 40) for cos in (False, True)]
    monkeypatch.setattr(matching, '_ops_for', lambda xp: matching._CudaOps(shim_launch, block))
    bank = PatchBank(bank_patches)
    gpu = [match(q, bank, chunk_size=c, cosine=cos)
           for q in (queries, random_queries) for c in (1, 7, 40) for cos in (False, True)]
    for (cpu_index, cpu_score), (gpu_index, gpu_score) in zip(cpu, gpu):
        numpy.testing.assert_array_equal(gpu_index, cpu_index)
        numpy.testing.assert_allclose(gpu_score, cpu_score, rtol=1e-6)


@pytest.mark.parametrize('preset,size', [('dsanno', dict(width=256, iterations=(1, 1, 1))),
                                         ('cnnmrf', dict(max_size=128, iterations=(2, 2, 2))),
                                         ('doodle', dict(iterations=(2, 2, 3)))])
def test_whole_synthesis_on_the_gpu_path_equals_the_cpu_path(shim_launch, monkeypatch,
                                                             vgg16_path, preset, size):
    """A synthesis taking the choices a GPU run takes, on NumPy arrays: the layers' GPU path
    (products into strided strips through a copy; layers.EMULATE_GPU) and the matching through
    match.cu's kernels (the C++ shim build), over 3 levels with semantic maps, keep_color and a
    float16 bank, equals the CPU path exactly, step by step. Exactly, because none of those
    choices changes a rounding: a product computed whole and copied is the same BLAS call on the
    same operands, and the kernels' inverse norms and argmax round as NumPy's (test_shim_*
    above). The one choice that does change roundings, whole-map strips (BLAS blocks a wider
    product otherwise), is set to the CPU's strip size here; it is checked layer by layer at the
    same inputs in test_layers.py, and cuBLAS's own summation order by the parity tests on a
    real GPU (test_gpu_parity.py). (Comparing two free-running syntheses within a tolerance
    would not do: the fixed-step L-BFGS amplifies a rounding difference until they part.)"""
    from chainer_mrf import layers
    from chainer_mrf.synthesis import synthesize
    from helpers import content_card, two_textures
    style, style_map = two_textures()
    content_map = numpy.zeros((72, 96, 2), numpy.float32)
    content_map[:, :40, 0] = content_map[:, 40:, 1] = 1
    options = dict(size, preset=preset, resolution_num=3, seed=0, model=vgg16_path,
                   content_map=content_map, style_map=style_map, keep_color=True,
                   bank_dtype='float16')
    runs = []
    for gpu_path in (False, True):
        if gpu_path:
            monkeypatch.setattr(layers, 'EMULATE_GPU', True)
            monkeypatch.setattr(layers, 'GPU_STRIP_BYTES', layers.STRIP_BYTES)
            monkeypatch.setattr(matching, '_ops_for',
                                lambda xp: matching._CudaOps(shim_launch, 1))
        steps = []
        image = synthesize(content_card(), style, callback=steps.append, **options)
        runs.append((image, steps))
    (cpu_image, cpu_steps), (gpu_image, gpu_steps) = runs
    assert len({s.level for s in gpu_steps}) == 3
    for cpu, gpu in zip(cpu_steps, gpu_steps, strict=True):
        assert gpu.losses == cpu.losses
        numpy.testing.assert_array_equal(gpu.x, cpu.x)
    numpy.testing.assert_array_equal(gpu_image, cpu_image)


# CuPy on a CUDA machine: the real GPU path against the CPU path.



@needs_cuda
@pytest.mark.parametrize('bank_dtype', [numpy.float32, numpy.float16])
def test_gpu_matches_cpu(bank_dtype):
    cp = cuda.cupy
    rng = numpy.random.RandomState(11)
    bank_patches = numpy.abs(rng.randn(700, 96)).astype(numpy.float32) * 20
    bank_patches[5] = 0
    queries = bank_patches[rng.randint(0, 700, 500)] * 1.3 + rng.randn(500, 96).astype(
        numpy.float32)
    queries = numpy.asfortranarray(queries)  # the layout of extracted patches
    cpu_bank = PatchBank(bank_patches, bank_dtype=bank_dtype)
    gpu_bank = PatchBank(cp.asarray(bank_patches), bank_dtype=bank_dtype)
    numpy.testing.assert_allclose(cp.asnumpy(gpu_bank.inverse_norms), cpu_bank.inverse_norms,
                                  rtol=1e-5)
    for chunk_size in (None, 1, 64, 333):
        for cosine in (False, True):
            cpu_index, cpu_score = match(queries, cpu_bank, chunk_size=chunk_size, cosine=cosine)
            gpu_index, gpu_score = match(cp.asarray(queries), gpu_bank, chunk_size=chunk_size,
                                         cosine=cosine)
            assert isinstance(gpu_index, cp.ndarray) and gpu_index.dtype == numpy.int64
            numpy.testing.assert_array_equal(cp.asnumpy(gpu_index), cpu_index)
            numpy.testing.assert_allclose(cp.asnumpy(gpu_score), cpu_score, rtol=1e-4)


@needs_cuda
@pytest.mark.parametrize('chunk_size', [1, 7, 40])
def test_gpu_ties_match_cpu(chunk_size):
    cp = cuda.cupy
    queries, bank_patches = exact_tie_data(seed=12)
    cpu_index, cpu_score = match(queries, PatchBank(bank_patches), chunk_size=chunk_size)
    gpu_index, gpu_score = match(cp.asarray(queries), PatchBank(cp.asarray(bank_patches)),
                                 chunk_size=chunk_size)
    numpy.testing.assert_array_equal(cp.asnumpy(gpu_index), cpu_index)
    numpy.testing.assert_array_equal(cp.asnumpy(gpu_score), cpu_score)
    targets = PatchBank(cp.asarray(bank_patches)).take(gpu_index)
    numpy.testing.assert_array_equal(cp.asnumpy(targets), bank_patches[cpu_index])
