// Compiles the CUDA kernels of this folder as plain C++20 (g++ -std=c++20 -pthread), so the
// tests can run the exact kernel source on a CPU: include this header, then the .cu file, and
// launch a kernel with cpu_launch(grid, block, [=] { kernel(args...); }).
//
// Every CUDA thread of a block is a std::thread, and __syncthreads() is a std::barrier over them,
// so the phases of a shared-memory reduction run as on a GPU. Blocks run one after another (the
// same threads loop over them, with a barrier in between), which lets a function-local `static`
// array stand in for __shared__ memory.
#pragma once

#include <barrier>
#include <cstring>
#include <math.h>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __shared__ static

struct cpu_dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline thread_local cpu_dim3 threadIdx;
inline thread_local cpu_dim3 blockIdx;
inline cpu_dim3 blockDim;
inline cpu_dim3 gridDim;
inline std::barrier<>* cpu_block_barrier = nullptr;

inline void __syncthreads() { cpu_block_barrier->arrive_and_wait(); }

inline float __int_as_float(int bits) {
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

// Runs `kernel` on a 1-D grid of `grid` blocks of `block` threads.
template <class Kernel>
void cpu_launch(unsigned grid, unsigned block, Kernel kernel) {
    gridDim.x = grid;
    blockDim.x = block;
    std::barrier<> barrier(block);
    cpu_block_barrier = &barrier;
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < block; ++t) {
        threads.emplace_back([&barrier, &kernel, grid, t] {
            threadIdx.x = t;
            for (unsigned b = 0; b < grid; ++b) {
                blockIdx.x = b;
                kernel();
                barrier.arrive_and_wait();  // the next block reuses the shared arrays
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
}
