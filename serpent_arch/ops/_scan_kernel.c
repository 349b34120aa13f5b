/*
 * CPU kernels for the selective scan (see serpent_arch/ops/selective_scan.py for the contract).
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

/* forward: channels processed side by side (SIMD lanes; 16 floats = one AVX-512 register) and
 * time steps staged per block */
#define SS_CW 16
#define SS_TB 64

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
 * is exact); scaling by 2^(k-1) built in the exponent bits. Max error 1.05 ulp (checked against
 * double exp on a fine grid). Results below 2e-38 (x < -86.9) are flushed to 0; x > 88.72
 * overflows to inf through the final product; NaN propagates.
 */
static inline float ss_expf(float x)
{
    const float lo = -86.9f, hi = 89.0f;
    /* this order maps NaN to lo (handled at the end), so the int conversion below stays defined;
     * both compile to vmaxps / vminps */
    float xc = x > lo ? x : lo;
    xc = xc < hi ? xc : hi;
    /* round to nearest with the 1.5 * 2^23 trick: vectorizes without SSE4.1 roundps */
    const float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - k * 0.693145751953125f;   /* ln2 split: exact high part ... */
    r = r - k * 1.42860682030941723e-06f;    /* ... and the low remainder */
    float p = 2 * 0.0013836845755577087f;
    p = p * r + 2 * 0.008374815806746483f;
    p = p * r + 2 * 0.04166822507977486f;
    p = p * r + 2 * 0.16666419804096222f;
    p = p * r + 2 * 0.49999991059303284f;
    p = p * r + 2.0f;
    p = p * r + 2.0f;
    const int32_t bits = ((int32_t)k + 126) << 23; /* k in [-125, 128]: biased exponent in [1, 254] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float res = p * scale;
    res = x < lo ? 0.0f : res;
    return x != x ? x : res;
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
    const float xc = x < 20.0f ? x : 20.0f;
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

#define REAL float
#define FN(name) name##_f32
#define EXP ss_expf
#include "_scan_kernel_body.c"
#undef REAL
#undef FN
#undef EXP

#define REAL double
#define FN(name) name##_f64
#define EXP exp
#include "_scan_kernel_body.c"
#undef REAL
#undef FN
#undef EXP

/* Lets Python check that the loaded library matches the calling convention it expects. */
int ss_abi_version(void) { return 2; }

int ss_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
