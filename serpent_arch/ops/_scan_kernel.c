/*
 * CPU kernels for the selective scan (see serpent_arch/ops/selective_scan.py for the contract) and
 * for the fused four-direction scan (_cross_scan_body.c, serpent_arch/ops/cross_scan.py).
 *
 * Compiled on first use by serpent_arch/ops/_cpu_kernel.py with the system C compiler and loaded
 * with ctypes. The kernels are written once in _scan_kernel_body.c and instantiated here for
 * float (suffix _f32) and double (suffix _f64). (The body is a .c file only so that the
 * package data pattern "*.c" ships it; it is never compiled on its own.)
 *
 * Layouts (all contiguous, row-major):
 *   u, delta, z, out, gout, gu, gdelta, gz : (batch, dim, L)
 *   A, gA_part                             : (dim, N), (batch, dim, N)
 *   B, C                                   : (batch, groups, L, N)   -- time-major, unlike the API
 *   gB_part, gC_part                       : (batch, groups, parts, L, N)
 *   D, delta_bias                          : (dim,)     gD_part, gbias_part : (batch, dim)
 *   last_state                             : (batch, dim, N)
 *   work                                   : (nthreads, ss_{fwd,bwd}_work_per_thread_*)
 * Optional pointers (D, z, delta_bias, last_state and their gradients) may be NULL.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

/* forward: channels processed side by side (SIMD lanes; 16 floats = one AVX-512 register) and
 * time steps staged per block */
#define SS_CW 16
#define SS_TB 64

#if defined(__GNUC__) || defined(__clang__)
#define SS_ALWAYS_INLINE __attribute__((always_inline))
#else
#define SS_ALWAYS_INLINE
#endif

#ifdef _OPENMP
#include <omp.h>
#define SS_THREAD_ID() omp_get_thread_num()
#else
#define SS_THREAD_ID() 0
#endif

/*
 * exp for float written with plain arithmetic so that gcc can vectorize the loops that call it
 * (a libm call blocks vectorization, and the N exponentials per step dominate the run time).
 * Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2; 2 exp(r) by a degree-6 near-minimax
 * polynomial (relative error 2e-9, coefficients fitted by Lawson's iteration and doubled, which
 * is exact); scaling by 2^(k-1) built in the exponent bits. Max error 1.05 ulp with FMA, 1.3 ulp
 * without (x86-64-v2); tests check both against double exp. Special values come out of the
 * arithmetic itself, with no select after the polynomial (each would cost a compare and a blend
 * per lane on AVX2):
 *   x below about -87.0 (results below 1.7e-38): k = -126 (x is clamped to lo first) gives the
 *     exponent field 0, so the scale and the result are exactly 0 (-inf included);
 *   x > 88.72: overflows to inf through the final product (+inf included);
 *   NaN: passes both clamps (a false compare keeps x) and propagates through the polynomial.
 */
static inline SS_ALWAYS_INLINE float ss_expf_clamped(float xc);
static inline float ss_expf(float x)
{
    const float lo = -87.3f, hi = 89.0f;
    /* NaN compares false and stays */
    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    return ss_expf_clamped(xc);
}

/*
 * ss_expf for the scan's decay exp(dt * A) where dt >= 0 (after softplus) and every A is finite and
 * <= 0 (the kernels check A; SS2D's A = -exp(A_log) always is), so the argument is <= 0 or NaN: only
 * the lower clamp, written so that it is one max instruction. The upper clamp's compare and blend
 * cost a third of the recurrence's time on AVX2 (a quarter on AVX-512). Equal to ss_expf for every
 * argument <= 0; a NaN argument gives 0 instead of NaN, which changes no output: it arises only from
 * a NaN or infinite dt, and then dt * u, and through it the state, is already NaN or infinite.
 */
static inline float ss_expf_nonpos(float x)
{
    const float lo = -87.3f;
    return ss_expf_clamped(x > lo ? x : lo);
}

/* the rest of ss_expf, for an argument clamped to [-87.3, 89] (or NaN) */
static inline SS_ALWAYS_INLINE float ss_expf_clamped(float xc)
{
    /* round to nearest with the 1.5 * 2^23 trick (vectorizes without SSE4.1 roundps); kb lies in
     * [2^23, 2^24) where the spacing is 1, so its low mantissa bits are k itself: reading them
     * avoids a float-to-int conversion, which is undefined for NaN in C */
#ifndef __FAST_MATH__
    const float kb = xc * 1.44269504088896341f + 12582912.0f;
    const float k = kb - 12582912.0f;
#else
    /* -ffast-math (only the benchmark's yardstick build) would fold (a + c) - c into a and break
     * the rounding; rintf is a vroundps there, and then NaN cannot reach the conversion */
    const float k = __builtin_rintf(xc * 1.44269504088896341f);
    const float kb = (float)((int32_t)k + 0x400000) + 8388608.0f; /* same bits as above */
#endif
    float r = xc - k * 0.693145751953125f;   /* ln2 split: exact high part ... */
    r = r - k * 1.42860682030941723e-06f;    /* ... and the low remainder */
    float p = 2 * 0.0013836845755577087f;
    p = p * r + 2 * 0.008374815806746483f;
    p = p * r + 2 * 0.04166822507977486f;
    p = p * r + 2 * 0.16666419804096222f;
    p = p * r + 2 * 0.49999991059303284f;
    p = p * r + 2.0f;
    p = p * r + 2.0f;
    uint32_t kbits;
    memcpy(&kbits, &kb, sizeof kbits);
    /* k in [-126, 128]: biased exponent of 2^(k-1) in [0, 254]; 0 makes scale = +0 */
    const uint32_t bits = (kbits - 0x4B400000u + 126u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/*
 * log1p for float, vectorizable like ss_expf; only used for e = exp(x) >= 0 (softplus).
 * 1 + e = 2^k m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s) with s = (m-1)/(m+1),
 * |s| <= 0.172, odd series to s^9; the rounding error of 1 + e is added back to first order.
 * Max error about 2.5 ulp.
 */
static inline float ss_log1pf(float e)
{
    float u = 1.0f + e;
    int32_t iu;
    memcpy(&iu, &u, sizeof iu);
    int32_t t = iu - 0x3f3504f3; /* bit pattern of sqrt(1/2) */
    int32_t k = t >> 23;
    int32_t im = (t & 0x007fffff) + 0x3f3504f3;
    float m;
    memcpy(&m, &im, sizeof m);
    float c = (e - (u - 1.0f)) / u;
    float f = m - 1.0f;
    float s = f / (2.0f + f);
    float s2 = s * s;
    float R = s2 * (2.0f / 3 + s2 * (2.0f / 5 + s2 * (2.0f / 7 + s2 * (2.0f / 9))));
    float kf = (float)k;
    return kf * 0.693145751953125f + ((2.0f * s + s * R) + (c + kf * 1.42860682030941723e-06f));
}

/* torch.nn.functional.softplus (beta=1, threshold=20) and sigmoid, vectorizable versions */
static inline float ss_softplus_f32(float x)
{
    const float xc = x > 20.0f ? 20.0f : x; /* NaN stays NaN (torch: softplus(NaN) = NaN) */
    const float sp = ss_log1pf(ss_expf(xc));
    /* `x > 20 ? x : sp` written as a blend: gcc turns the plain select into a branch around the
     * expensive arm and then gives up vectorizing. xs keeps 0 * x from making NaN for x = -inf. */
    const float xs = x > 20.0f ? x : 0.0f;
    const float m = (float)(x > 20.0f);
    return m * xs + (1.0f - m) * sp;
}
static inline float ss_sigmoid_f32(float x) { return 1.0f / (1.0f + ss_expf(-x)); }
/* float64 exists for gradcheck and tests, where accuracy matters and speed does not: libm */
static inline double ss_softplus_f64(double x) { return x > 20.0 ? x : log1p(exp(x)); }
static inline double ss_sigmoid_f64(double x) { return 1.0 / (1.0 + exp(-x)); }

/*
 * Sixteen horizontal sums at once, for the backward's deferred reductions (float32, N = 16, AVX-512).
 * ss_rowsums(rows)[j] = sum over n < 16 of rows[16 j + n], for j < 16. Summing one 16-float vector
 * at a time takes 4 shuffles and 4 adds whose result lands in one lane; this tree halves the width
 * of all 16 rows together (each level adds the two halves of every row's partial sums, two rows per
 * vector), so 16 sums cost 30 two-source shuffles (one vpermt2ps each) and 15 adds (timings:
 * docs/scan_backends.md, "Deferred sums"; `benchmark scan --per-step-sums`). AVX2 builds keep the per-step sums:
 * there a 16-float vector is two registers, one per-step sum costs about half as much, and the
 * same tree on 8-float vectors was not faster in haswell and znver1 builds. __builtin_shufflevector exists in clang and in gcc >= 12; older
 * compilers keep the per-step sums, and so does -DSS_NO_DEFERRED_SUMS (the tests check that build).
 */
#if defined(__AVX512F__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)) && \
    !defined(SS_NO_DEFERRED_SUMS)
#define SS_DEFERRED_SUMS 1
#define SS_SUM_ROWS 16
typedef float ss_vec __attribute__((vector_size(64)));

static inline ss_vec ss_load(const float *p)
{
    ss_vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline ss_vec ss_rowsums(const float *rows)
{
    ss_vec l1[8], l2[4], l3[2];
    for (int i = 0; i < 8; ++i) { /* rows 2i, 2i+1: 8 partial sums each */
        const ss_vec a = ss_load(rows + 32 * i), b = ss_load(rows + 32 * i + 16);
        l1[i] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    }
    for (int i = 0; i < 4; ++i) { /* rows 4i .. 4i+3: 4 partial sums each */
        const ss_vec a = l1[2 * i], b = l1[2 * i + 1];
        l2[i] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
                __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    }
    for (int i = 0; i < 2; ++i) { /* rows 8i .. 8i+7: 2 partial sums each */
        const ss_vec a = l2[2 * i], b = l2[2 * i + 1];
        l3[i] = __builtin_shufflevector(a, b, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
                __builtin_shufflevector(a, b, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
    }
    return __builtin_shufflevector(l3[0], l3[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
           __builtin_shufflevector(l3[0], l3[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}
#else
#define SS_DEFERRED_SUMS 0
#endif

/* out[j] = sum of the 16 values of rows[16 j ..], j < 16: the fused backward's deferred sums over
 * channels (_cross_scan_bwd_body.c), once per chunk step for all of a task's channel blocks. AVX-512:
 * ss_rowsums. Other targets, where gcc >= 12 or clang has __builtin_shufflevector: the two 8-float
 * halves of each row are added, then three levels of in-lane pair sums (the shuffles of vshufps and
 * vperm2f128 on AVX2, so no lane crossing per level but the last) fold 8 rows into one vector of 8
 * sums: 14 shuffles and 15 adds per 8 sums, against 120 scalar adds. Elsewhere a plain loop. */
#if !SS_DEFERRED_SUMS && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12))
typedef float ss_vec8 __attribute__((vector_size(32)));
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* inlined: no call passes an 8-float vector, below AVX too */
#endif

static inline SS_ALWAYS_INLINE ss_vec8 ss_pairsums8(ss_vec8 a, ss_vec8 b)
{
    /* [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, a6+a7, b4+b5, b6+b7] */
    return __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14) +
           __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
}

static inline void ss_rowsums16_f32(const float *rows, float *out)
{
    for (int half = 0; half < 2; ++half) {
        ss_vec8 v[8];
        for (int i = 0; i < 8; ++i) {
            ss_vec8 lo, hi;
            memcpy(&lo, rows + 16 * (8 * half + i), sizeof lo);
            memcpy(&hi, rows + 16 * (8 * half + i) + 8, sizeof hi);
            v[i] = lo + hi;
        }
        const ss_vec8 p0 = ss_pairsums8(ss_pairsums8(v[0], v[1]), ss_pairsums8(v[2], v[3]));
        const ss_vec8 p1 = ss_pairsums8(ss_pairsums8(v[4], v[5]), ss_pairsums8(v[6], v[7]));
        /* p0: rows 0..3 summed over lanes 0..3 | the same over lanes 4..7 (p1: rows 4..7) */
        const ss_vec8 s = __builtin_shufflevector(p0, p1, 0, 1, 2, 3, 8, 9, 10, 11) +
                          __builtin_shufflevector(p0, p1, 4, 5, 6, 7, 12, 13, 14, 15);
        memcpy(out + 8 * half, &s, sizeof s);
    }
}
#elif SS_DEFERRED_SUMS
static inline void ss_rowsums16_f32(const float *rows, float *out)
{
    const ss_vec s = ss_rowsums(rows);
    memcpy(out, &s, sizeof s);
}
#else
static inline void ss_rowsums16_f32(const float *rows, float *out)
{
    for (int j = 0; j < 16; ++j) {
        float s = 0;
        for (int c = 0; c < 16; ++c) s += rows[16 * j + c];
        out[j] = s;
    }
}
#endif

static inline void ss_rowsums16_f64(const double *rows, double *out)
{
    for (int j = 0; j < 16; ++j) {
        double s = 0;
        for (int c = 0; c < 16; ++c) s += rows[16 * j + c];
        out[j] = s;
    }
}

/* the float32 kernels use the deferred sums where the compiler has them; float64 never does */
#define REAL float
#define FN(name) name##_f32
#define EXP ss_expf
#define EXPN ss_expf_nonpos
#define SS_DEFERRED SS_DEFERRED_SUMS
/* the fused scan's decay exp by table (xs_expn in _cross_scan_body.c): entries per table, 0 for none */
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#define XS_EXP_TABLE 8
#else
#define XS_EXP_TABLE 0
#endif
#ifdef XS_NO_EXP_TABLE /* the polynomial everywhere: for comparisons (benchmarks, tests) */
#undef XS_EXP_TABLE
#define XS_EXP_TABLE 0
#endif
#include "_scan_kernel_body.c"
#include "_cross_scan_body.c"
#include "_cross_scan_bwd_body.c"
#undef REAL
#undef FN
#undef EXP
#undef EXPN
#undef SS_DEFERRED
#undef XS_EXP_TABLE

/* tests/test_vectorization.py compiles with -DSS_NO_F64: the float64 loops call libm and are not
 * meant to vectorize, and they share line numbers with the float32 ones in gcc's report */
#ifndef SS_NO_F64
#define REAL double
#define FN(name) name##_f64
#define EXP exp
#define EXPN exp
#define SS_DEFERRED 0
#define XS_EXP_TABLE 0
#include "_scan_kernel_body.c"
#include "_cross_scan_body.c"
#include "_cross_scan_bwd_body.c"
#undef REAL
#undef FN
#undef EXP
#undef EXPN
#undef SS_DEFERRED
#undef XS_EXP_TABLE
#endif

/* The float32 exp / softplus / sigmoid of the hot loops over an array, so that tests check their
 * accuracy and their NaN / infinity behaviour in the very build that runs the scan. */
void ss_pointwise_f32(int which, const float *restrict x, float *restrict out, int64_t n)
{
    /* one loop per function, so that they run vectorized as in the kernels */
    if (which == 0)
        for (int64_t i = 0; i < n; ++i) out[i] = ss_expf(x[i]);
    else if (which == 3)
        for (int64_t i = 0; i < n; ++i) out[i] = ss_expf_nonpos(x[i]);
    else if (which >= 4) /* the fused scan's decay exp, softplus and sigmoid: the table where the build has one */
#ifdef XS_POINTWISE
        XS_POINTWISE(which - 4, x, out, n);
#else
        for (int64_t i = 0; i < n; ++i)
            out[i] = which == 4 ? ss_expf_nonpos(x[i]) : which == 5 ? ss_softplus_f32(x[i]) : ss_sigmoid_f32(x[i]);
#endif
    else if (which == 1)
        for (int64_t i = 0; i < n; ++i) out[i] = ss_softplus_f32(x[i]);
    else
        for (int64_t i = 0; i < n; ++i) out[i] = ss_sigmoid_f32(x[i]);
}

/* Lets Python check that the loaded library matches the calling convention it expects. */
int ss_abi_version(void) { return 6; }

int ss_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
