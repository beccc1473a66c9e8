// CUDA kernels of chainer_mrf.matching (see _CudaOps there for the launches).
//
// One source for three compilers: NVRTC through cupy.RawModule, `nvcc --ptx`, and g++ with
// cpu_shim.h, which the tests use to run this exact code on a CPU. Hence no #include (NVRTC has
// no system headers), extern "C" names, and only what the shim emulates: blockIdx.x,
// threadIdx.x, blockDim.x, static __shared__ arrays, __syncthreads(), __int_as_float, sqrtf and
// fmaxf.
//
// Both kernels give one block to one matrix row: the block's threads stride over the row's
// columns, then halve a shared-memory array in log2(blockDim.x) synchronised steps.
// blockDim.x must be a power of two, at most MRF_MAX_THREADS.

#define MRF_MAX_THREADS 256

// Keeps the better of (best_value, best_index) and (value, index): the larger value, and the
// lower index on a tie, which is numpy.argmax's rule.
__device__ inline void mrf_keep_max(float value, int index, float& best_value, int& best_index) {
    if (value > best_value || (value == best_value && index < best_index)) {
        best_value = value;
        best_index = index;
    }
}

// Folds one chunk of scores into the running maximum and argmax of each row.
// scores: (gridDim.x, n_cols) row-major, the products of every query with bank entries
// offset ... offset + n_cols - 1; each is multiplied by its entry's inverse_norms[j] (n_cols,)
// before the comparison. best, best_index: (gridDim.x,) running results, updated in place;
// start them at -inf and 0. Chunks must come in increasing offset order: a running best then
// holds a lower index than any entry of the chunk, so only a strictly larger score replaces it.
extern "C" __global__ void argmax_update(const float* scores, const float* inverse_norms,
                                         int n_cols, long long offset, float* best,
                                         long long* best_index) {
    __shared__ float shared_value[MRF_MAX_THREADS];
    __shared__ int shared_index[MRF_MAX_THREADS];
    const int tid = threadIdx.x;
    const long long row = blockIdx.x;
    const float* row_scores = scores + row * n_cols;

    // A thread without columns holds (-inf, INT_MAX), which loses every comparison.
    float value = -__int_as_float(0x7f800000);
    int index = 0x7fffffff;
    for (int j = tid; j < n_cols; j += blockDim.x) {
        mrf_keep_max(row_scores[j] * inverse_norms[j], j, value, index);
    }
    shared_value[tid] = value;
    shared_index[tid] = index;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (tid < half) {
            mrf_keep_max(shared_value[tid + half], shared_index[tid + half],
                         shared_value[tid], shared_index[tid]);
        }
        __syncthreads();
    }
    if (tid == 0 && shared_value[0] > best[row]) {
        best[row] = shared_value[0];
        best_index[row] = offset + shared_index[0];
    }
}

// out[row] = 1 / max(|x[row, :]|, eps), the Euclidean norm of each row of a strided matrix
// (strides in elements, so a transposed view needs no copy).
extern "C" __global__ void inverse_norms(const float* x, int n_cols, long long row_stride,
                                         long long col_stride, float eps, float* out) {
    __shared__ float shared_sum[MRF_MAX_THREADS];
    const int tid = threadIdx.x;
    const long long row = blockIdx.x;

    float sum = 0.0f;
    for (int j = tid; j < n_cols; j += blockDim.x) {
        const float v = x[row * row_stride + j * col_stride];
        sum += v * v;
    }
    shared_sum[tid] = sum;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (tid < half) {
            shared_sum[tid] += shared_sum[tid + half];
        }
        __syncthreads();
    }
    if (tid == 0) {
        out[row] = 1.0f / fmaxf(sqrtf(shared_sum[0]), eps);
    }
}
