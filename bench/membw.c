// Read bandwidth of this machine: the floor under memory-bound decoding (BENCHMARKS.md,
// "Decoding roofline"). Sums a float array (1 GiB, or MIB MiB) with 1 and 2 threads, 5 times
// over; prints the best GB/s. A working set near the size of the last-level cache reads faster
// than DRAM alone, as a decoding step's weights do.
//   gcc -O3 -march=native -ffast-math -fopenmp bench/membw.c -o /tmp/membw && /tmp/membw [MIB]
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
    const size_t n = mib << 18; // MiB of f32
    float *a = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);
    for (int threads = 1; threads <= 2; threads++) {
        double best = 1e9, sink = 0; // -ffast-math lets the sum vectorize: memory, not the add chain, bounds it
        for (int rep = 0; rep < 5; rep++) {
            double t = omp_get_wtime(), s = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : s)
            for (size_t i = 0; i < n; i++) s += a[i];
            t = omp_get_wtime() - t;
            sink += s;
            if (t < best) best = t;
        }
        printf("%d thread(s): %.1f GB/s (checksum %.0f)\n", threads, n * sizeof(float) / best / 1e9, sink);
    }
    free(a);
    return 0;
}
