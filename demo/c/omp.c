/* OpenMP versions of parview-demo's workloads, for side-by-side runs in the same process as
 * parview and rayon (see src/omp.rs). Each loop is compiled in once per schedule kind
 * (static, static with chunk, dynamic, guided), with the chunk size a run-time value, so
 * that libgomp takes the same path as a hand-written `#pragma omp for schedule(kind, c)`.
 * The loops read the chunk size from a variable named `chunk` in scope (a pragma's text is not
 * macro-expanded). `sched`: 0 = static (no chunk), 1 = static,c, 2 = dynamic,c, 3 = guided,c. */
#include <omp.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <math.h>
#include <time.h>

#define LOOP(sched, n, i, ...)                                                           \
    do {                                                                                     \
        switch (sched) {                                                                     \
        case 0:                                                                              \
            _Pragma("omp for schedule(static)") for (long i = 0; i < (long)(n); i++) __VA_ARGS__;   \
            break;                                                                           \
        case 1:                                                                              \
            _Pragma("omp for schedule(static, chunk)") for (long i = 0; i < (long)(n); i++)  \
                __VA_ARGS__;                                                                        \
            break;                                                                           \
        case 2:                                                                              \
            _Pragma("omp for schedule(dynamic, chunk)") for (long i = 0; i < (long)(n); i++) \
                __VA_ARGS__;                                                                        \
            break;                                                                           \
        default:                                                                             \
            _Pragma("omp for schedule(guided, chunk)") for (long i = 0; i < (long)(n); i++)  \
                __VA_ARGS__;                                                                        \
            break;                                                                           \
        }                                                                                    \
    } while (0)

void pv_omp_set_threads(int n) { omp_set_num_threads(n); }
int pv_omp_max_threads(void) { return omp_get_max_threads(); }

/* ---- 1. Monte-Carlo pi: Xoshiro256++ seeded through SplitMix64, as rand_xoshiro does. */

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t pi_hits(uint64_t chunk, uint64_t samples) {
    uint64_t s[4], z, seed = chunk + 1;
    for (int k = 0; k < 4; k++) {
        seed += 0x9E3779B97F4A7C15ull;
        z = seed;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        s[k] = z ^ (z >> 31);
    }
    uint64_t hits = 0;
    for (uint64_t j = 0; j < samples; j++) {
        double xy[2];
        for (int k = 0; k < 2; k++) {
            uint64_t r = rotl(s[0] + s[3], 23) + s[0];
            uint64_t t = s[1] << 17;
            s[2] ^= s[0];
            s[3] ^= s[1];
            s[1] ^= s[2];
            s[0] ^= s[3];
            s[2] ^= t;
            s[3] = rotl(s[3], 45);
            xy[k] = (double)(r >> 11) * (1.0 / 9007199254740992.0);
        }
        hits += xy[0] * xy[0] + xy[1] * xy[1] <= 1.0;
    }
    return hits;
}

uint64_t pv_omp_pi(uint64_t n, uint64_t chunk_len, int sched, long chunk) {
    uint64_t chunks = (n + chunk_len - 1) / chunk_len, hits = 0;
#pragma omp parallel reduction(+ : hits)
    LOOP(sched, chunks, c, {
        uint64_t start = (uint64_t)c * chunk_len;
        uint64_t len = n - start < chunk_len ? n - start : chunk_len;
        hits += pi_hits((uint64_t)c, len);
    });
    return hits;
}

/* ---- 2. Gaussian kernel into a buffer. */

void pv_omp_gauss_into(const double *x, const double *y, double *z, size_t n, double gamma,
                       int sched, long chunk) {
#pragma omp parallel
    LOOP(sched, n, i, {
        double d = x[i] - y[i];
        z[i] = exp(-gamma * d * d);
    });
}

/* ---- 3. 5x5 inversions: Gauss-Jordan with partial pivoting on [A | I]. */

static int invert5(const double *a, double *out) {
    double g[5][10], scale = 0.0;
    int finite = 1;
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 10; j++) {
            g[i][j] = j < 5 ? a[5 * i + j] : (j - 5 == i ? 1.0 : 0.0);
            if (j < 5) {
                double v = fabs(a[5 * i + j]);
                scale = v > scale ? v : scale;
                finite &= isfinite(a[5 * i + j]) != 0;
            }
        }
    double tol = 5.0 * 2.220446049250313e-16 * scale;
    for (int c = 0; finite && c < 5; c++) {
        int p = c;
        double best = fabs(g[c][c]);
        for (int r = c + 1; r < 5; r++)
            if (fabs(g[r][c]) > best) {
                best = fabs(g[r][c]);
                p = r;
            }
        if (!(best > tol)) {
            finite = 0;
            break;
        }
        for (int j = 0; j < 10; j++) {
            double t = g[p][j];
            g[p][j] = g[c][j];
            g[c][j] = t;
        }
        double s = 1.0 / g[c][c];
        for (int j = 0; j < 10; j++) g[c][j] *= s;
        for (int r = 0; r < 5; r++)
            if (r != c) {
                double f = g[r][c];
                for (int j = 0; j < 10; j++) g[r][j] -= f * g[c][j];
            }
    }
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) out[5 * i + j] = finite ? g[i][j + 5] : NAN;
    return finite;
}

void pv_omp_inv(const double *mats, double *out, size_t n, int sched, long chunk) {
#pragma omp parallel
    LOOP(sched, n, m, { invert5(mats + 25 * m, out + 25 * m); });
}

/* ---- 4. Uneven primes by trial division. */

static int is_prime(uint64_t n) {
    if (n < 2) return 0;
    if (n < 4) return 1;
    if (n % 2 == 0) return 0;
    for (uint64_t d = 3; d <= n / d; d += 2)
        if (n % d == 0) return 0;
    return 1;
}

size_t pv_omp_primes(const uint64_t *nums, size_t n, int sched, long chunk) {
    size_t count = 0;
#pragma omp parallel reduction(+ : count)
    LOOP(sched, n, i, { count += is_prime(nums[i]); });
    return count;
}

/* ---- 5. Fixed costs: a trivial map, and items that busy-wait. */

void pv_omp_affine_into(const uint64_t *in, uint64_t *out, size_t n, int sched, long chunk) {
#pragma omp parallel
    LOOP(sched, n, i, { out[i] = in[i] * 2 + 1; });
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

void pv_omp_busy(size_t n, double ns_per_item, int sched, long chunk) {
#pragma omp parallel
    LOOP(sched, n, i, {
        double t0 = now_ns();
        while (now_ns() - t0 < ns_per_item) {
        }
    });
}

/* The same, each item then writing its input to `out` (a map that returns results). */
void pv_omp_busy_into(const uint64_t *in, uint64_t *out, size_t n, double ns_per_item, int sched,
                      long chunk) {
#pragma omp parallel
    LOOP(sched, n, i, {
        double t0 = now_ns();
        while (now_ns() - t0 < ns_per_item) {
        }
        out[i] = in[i];
    });
}
