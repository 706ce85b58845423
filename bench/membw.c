// Read bandwidth of this machine: the floor under memory-bound decoding (BENCHMARKS.md,
// "Decoding roofline"). Sums a 1 GiB float array with 1 and 2 threads; prints GB/s.
//   gcc -O3 -march=native -ffast-math -fopenmp bench/membw.c -o /tmp/membw && /tmp/membw
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const size_t n = (size_t)1 << 28; // 1 GiB of f32
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
