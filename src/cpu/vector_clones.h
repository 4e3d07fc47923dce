// MLP_VECTOR_CLONES: a loop compiled for AVX-512, AVX2 and baseline x86-64,
// the widest the CPU has picked once at load time (GCC's and Clang's
// target_clones). Without it the portable build runs SSE2, four floats at a
// time. Only for loops whose every element is one exactly rounded operation
// or a fixed sequence of them (a compare and select, an add in row order, a
// multiply): those give the same bits at every width, so the result never
// depends on the machine's vector width (tests/test_cpu_ops.cpp checks each
// op bit for bit against a plain loop, at the width the test machine picks).
#pragma once

#if defined(__x86_64__) && defined(__GNUC__)
#define MLP_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MLP_VECTOR_CLONES
#endif
