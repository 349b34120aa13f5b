/*
 * The four-direction scan fused (cross_selective_scan in serpent_arch/ops/cross_scan.py), #included
 * by _scan_kernel.c right after _scan_kernel_body.c, once per element type, with the same macros.
 *
 * Every direction reads the one map x at its pixels and adds its output into `out` at the same
 * pixels, so no direction's copy of x, of its output or of its gradient is made: the cross-scan
 * and cross-merge become index arithmetic. Directions (as cross_scan.py): K = 4: k = 0 row-major,
 * 1 column-major, 2 and 3 the same reversed; K = 2: row-major and row-major reversed; K = 1: row-major.
 *
 * This file holds the forward; the backward is _cross_scan_bwd_body.c. Layouts (read and written through
 * the strides st, below):
 *   x, out                 : (batch, dim, H * W)    the map, pixels in row-major order
 *   delta                  : (batch, K, dim, H * W) each direction's, in pixel order
 *   B, C                   : (batch, K, N, L)       pixel order
 *   A                      : (K * dim, N)           direction k's channel c is row k * dim + c
 *   D, delta_bias          : (K * dim,)             may be NULL
 *
 * Parallel tasks own a group of channel blocks across all K directions, so the sums over directions
 * into out are plain in-place additions, with no atomics and no per-direction output planes.
 */

/* columns per stripe of the column-major directions in the forward with one channel block per task
 * (one cache line of floats), and the most channel blocks per task */
#ifndef SS_SW
#define SS_SW 16
#endif
#ifndef SS_GMAX
#define SS_GMAX 8
#endif
#ifndef SS_COLUMN_MAJOR
#define SS_COLUMN_MAJOR(k, K) ((K) == 4 && ((k) & 1))
#define SS_REVERSED(k, K) ((K) == 4 ? (k) >= 2 : (k) == 1)
#endif

#if !(defined(__GNUC__) || defined(__clang__))
#error "the fused four-direction scan is written with the GCC / clang vector extensions"
#endif
/* Vector values of the target's own width (XS_VB bytes: 64 with AVX-512, 32 with AVX, else 16), a block of
 * SS_CW channels being XS_NV of them, so that the copies below and the fused backward's walk are vector
 * code on every target. (A vector type of a whole block, 64 bytes, was lowered to two registers on AVX2
 * for plain copies, but values of it kept in variables went through the stack in pieces: the fused
 * backward ran 2x slower in the AVX2-limited build than in the native one.) */
#if defined(__AVX512F__)
#define XS_VB 64
#elif defined(__AVX__)
#define XS_VB 32
#else
#define XS_VB 16
#endif
#define XS_VL ((int)(XS_VB / sizeof(REAL))) /* lanes per vector */
#define XS_NV (SS_CW / XS_VL)               /* vectors per block */
typedef REAL FN(xs_vec) __attribute__((vector_size(XS_VB)));

/* XS_VL values as a vector value, and back. Always inlined, as every function taking or returning vector
 * values here: no call passes one, so gcc's warnings and notes that doing so changes the ABI do not apply. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
static inline SS_ALWAYS_INLINE FN(xs_vec) FN(xs_ld)(const REAL *p)
{
    FN(xs_vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline SS_ALWAYS_INLINE void FN(xs_st)(REAL *p, FN(xs_vec) v) { memcpy(p, &v, sizeof v); }

/*
 * The decay exp(dt * A) of the forward's steps and the backward's recomputation, for arguments <= 0
 * (the cases ss_expf_nonpos serves), where _scan_kernel.c sets XS_EXP_TABLE (8: float32 on AVX2 with FMA
 * and without AVX-512; 0 elsewhere, which keeps ss_expf_nonpos, or exp for float64). x = (n + i / 8) ln2
 * + r with n + i / 8 rounded, 2^(i/8) from a table held in one register (one permute per vector),
 * |r| <= ln2 / 16, and exp(r) - 1 = r (1 + r (c2 + r c3)) by a degree-3 near-minimax polynomial
 * (Lawson's iteration): 10 operations on the FMA ports against ss_expf_nonpos's 16, the rest on the
 * shuffle and integer ports. Max error 1.3 ulp against double exp (tests/test_selective_scan.py).
 * AVX-512 keeps the polynomial: there the permute competes with the second FMA unit for its port, and
 * the table was 4% slower on the training step. Arguments below XS_EXP_LO (results below 2.7e-38, -inf
 * included) give exp(XS_EXP_LO): a decay that small leaves nothing of the state. NaN gives NaN.
 */
#define XS_EXP_LO -86.5f
#if XS_EXP_TABLE == 8
static inline SS_ALWAYS_INLINE FN(xs_vec) FN(xs_expn)(FN(xs_vec) xv)
{
    const __m256 tab = _mm256_setr_ps(0x1p+0f, 0x1.172b84p+0f, 0x1.306fep+0f, 0x1.4bfdaep+0f, 0x1.6a09e6p+0f,
                                      0x1.8ace54p+0f, 0x1.ae89fap+0f, 0x1.d5818ep+0f); /* 2^(i/8) */
    const __m256 x = _mm256_max_ps(_mm256_set1_ps(XS_EXP_LO), (__m256)xv); /* NaN (the second operand) stays */
    /* k = 8 n + i = round(8 x / ln2), also kb's low mantissa bits (1.5 * 2^23 added: spacing 1) */
    const __m256 kb = _mm256_fmadd_ps(x, _mm256_set1_ps(11.5415602f), _mm256_set1_ps(12582912.0f));
    const __m256 k = _mm256_sub_ps(kb, _mm256_set1_ps(12582912.0f));
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.086669921875f), x); /* ln2 / 8 split: exact high part */
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.65243052e-05f), r);
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(0.166651025f), r, _mm256_set1_ps(0.500078201f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
    const __m256i kbits = _mm256_castps_si256(kb);
    const __m256 t = _mm256_permutevar8x32_ps(tab, kbits); /* the low 3 bits (i) pick the entry */
    const __m256 v = _mm256_fmadd_ps(t, _mm256_mul_ps(r, q), t);
    /* n into the exponent bits: v = 2^(i/8) exp(r) lies in [0.95, 2) and n >= -125 above XS_EXP_LO */
    const __m256i e = _mm256_and_si256(_mm256_slli_epi32(kbits, 20), _mm256_set1_epi32((int)0xff800000u));
    return (FN(xs_vec))_mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(v), e));
}

/* log1p(t) for t in [0, 1]: t q(t), q of degree 9 (near-minimax by Lawson's iteration; 1.8 ulp) */
static inline SS_ALWAYS_INLINE __m256 FN(xs_log1p01)(__m256 t)
{
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(-0.00324401143f), t, _mm256_set1_ps(0.0198513996f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-0.0569594167f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0.106036425f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-0.153055847f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0.196759358f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-0.249541327f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0.333299637f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-0.499999017f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(1.0f));
    return _mm256_mul_ps(t, q);
}

/* torch's softplus (threshold 20) as max(v, 0) + log1p(e), e = exp(-|v|) by the table: no division, and
 * above 20 the sum rounds to v itself; with sg, also its derivative sigmoid(v) = 1 / (1 + e) (v >= 0) or
 * e / (1 + e), exactly 1 above 20 as torch's. NaN stays NaN, infinities give torch's values (-inf:
 * 2.7e-38 instead of 0, and sigmoid 2.7e-38). */
static inline SS_ALWAYS_INLINE FN(xs_vec) FN(xs_softplus)(FN(xs_vec) vv, FN(xs_vec) *sg)
{
    const __m256 v = (__m256)vv, sign = _mm256_set1_ps(-0.0f);
    const __m256 e = (__m256)FN(xs_expn)((FN(xs_vec))_mm256_or_ps(v, sign)); /* exp(-|v|) */
    if (sg) {
        const __m256 r = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        /* v < 0 (a NaN compares false and keeps r, which is NaN) */
        const __m256 neg = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ);
        *sg = (FN(xs_vec))_mm256_blendv_ps(r, _mm256_mul_ps(e, r), neg);
    }
    return (FN(xs_vec))_mm256_add_ps(_mm256_max_ps(_mm256_setzero_ps(), v), FN(xs_log1p01)(e));
}
#endif

#if XS_EXP_TABLE
/* xs_expn over an array (which 0), or xs_softplus and its sigmoid (which 1, 2): ss_pointwise_f32's
 * entries for the fused scan, so that the tests check them in the very build that runs it */
#define XS_POINTWISE xs_pointwise_f32 /* only the float32 instantiation has a table */
static void FN(xs_pointwise)(int which, const REAL *x, REAL *out, int64_t n)
{
    REAL buf[XS_VL];
    for (int64_t i = 0; i < n; i += XS_VL) {
        const int64_t m = n - i < XS_VL ? n - i : XS_VL;
        memset(buf, 0, sizeof buf);
        memcpy(buf, x + i, (size_t)m * sizeof(REAL));
        FN(xs_vec) v = FN(xs_ld)(buf), sg;
        v = which == 0 ? FN(xs_expn)(v) : FN(xs_softplus)(v, &sg);
        FN(xs_st)(buf, which == 2 ? sg : v);
        memcpy(out + i, buf, (size_t)m * sizeof(REAL));
    }
}

/* ss_fwd_steps with the table exp (arguments <= 0): tb steps of the recurrence for one block's XS_NV
 * vectors, one vector's lanes through all N states at a time */
static inline SS_ALWAYS_INLINE void FN(xs_fwd_steps)(REAL (*restrict dtb)[SS_CW], REAL (*restrict ub)[SS_CW],
                                                     REAL (*restrict yb)[SS_CW], int tb, const REAL *Bt0,
                                                     const REAL *Ct0, int64_t bstep, const REAL *restrict At,
                                                     REAL *restrict h, int64_t N)
{
    typedef FN(xs_vec) V;
    for (int j = 0; j < tb; ++j) {
        const REAL *Bt = Bt0 + j * bstep, *Ct = Ct0 + j * bstep;
        for (int v = 0; v < XS_NV; ++v) {
            const int o = v * XS_VL;
            const V dt = FN(xs_ld)(dtb[j] + o), dtu = dt * FN(xs_ld)(ub[j] + o);
            V y = {0};
            for (int64_t n = 0; n < N; ++n) {
                REAL *restrict hn = h + n * SS_CW + o;
                const V hv = FN(xs_expn)(dt * FN(xs_ld)(At + n * SS_CW + o)) * FN(xs_ld)(hn) + dtu * Bt[n];
                FN(xs_st)(hn, hv);
                y += hv * Ct[n];
            }
            FN(xs_st)(yb[j] + o, y);
        }
    }
}
#endif

/* One block of tb <= SS_TB steps of one direction: ub, dtb staged in (time, channel) layout (dtb =
 * delta + bias, softplus applied here), B and C rows of step j at B0 + j * bstep (bstep = +-N), run by the
 * plain forward's recurrence (ss_fwd_steps), or with the AVX2 table exp by xs_fwd_steps. Writes y (with the
 * skip term) to yb; the state h (N x SS_CW) carries over to the next block. */
static inline SS_ALWAYS_INLINE void FN(xs_fwd_block)(REAL (*restrict dtb)[SS_CW], REAL (*restrict ub)[SS_CW],
                                                     REAL (*restrict yb)[SS_CW], int tb, const REAL *B0,
                                                     const REAL *C0, int64_t bstep, const REAL *restrict At,
                                                     REAL *restrict h, const REAL *restrict Dv, int softplus,
                                                     int64_t N, const int nonpos)
{
    if (softplus)
        for (int j = 0; j < tb; ++j)
#if XS_EXP_TABLE
            for (int v = 0; v < XS_NV; ++v)
                FN(xs_st)(dtb[j] + v * XS_VL, FN(xs_softplus)(FN(xs_ld)(dtb[j] + v * XS_VL), NULL));
#else
            for (int c = 0; c < SS_CW; ++c) /* vec: xfwd-softplus */
                dtb[j][c] = FN(ss_softplus)(dtb[j][c]);
#endif
#if XS_EXP_TABLE
    if (nonpos)
        FN(xs_fwd_steps)(dtb, ub, yb, tb, B0, C0, bstep, At, h, N);
    else
#endif
        FN(ss_fwd_steps)(dtb, ub, yb, tb, B0, C0, bstep, At, h, N, nonpos);
    for (int j = 0; j < tb; ++j)
        for (int c = 0; c < SS_CW; ++c) yb[j][c] += Dv[c] * ub[j][c];
}

/* The time block for the task's nsub blocks of SS_CW channels (dtb, ub, yb: (block, step, channel),
 * TB steps per block; A and h: (block, n, channel)); nonpos picks the decay's exp (EXPN) */
static inline SS_ALWAYS_INLINE void FN(xs_fwd_blocks)(REAL *dtb, REAL *ub, REAL *yb, int64_t TB, int64_t nsub,
                                                      int tb, const REAL *B0, const REAL *C0, int64_t bstep,
                                                      const REAL *At, REAL *h, const REAL *Dv, int softplus,
                                                      int64_t N, int nonpos)
{
    for (int64_t g = 0; g < nsub; ++g) {
        REAL(*dg)[SS_CW] = (REAL(*)[SS_CW])(dtb + g * TB * SS_CW);
        REAL(*ug)[SS_CW] = (REAL(*)[SS_CW])(ub + g * TB * SS_CW);
        REAL(*yg)[SS_CW] = (REAL(*)[SS_CW])(yb + g * TB * SS_CW);
        if (nonpos)
            FN(xs_fwd_block)(dg, ug, yg, tb, B0, C0, bstep, At + g * N * SS_CW, h + g * N * SS_CW, Dv + g * SS_CW,
                             softplus, N, 1);
        else
            FN(xs_fwd_block)(dg, ug, yg, tb, B0, C0, bstep, At + g * N * SS_CW, h + g * N * SS_CW, Dv + g * SS_CW,
                             softplus, N, 0);
    }
}

/* Channel blocks per forward task and the sizes that follow from it. A task runs G blocks of SS_CW
 * channels side by side: it stages the G * SS_CW channels of a pixel in one pass (one contiguous run
 * of a channels-last map, where one block alone would read a single cache line per pixel, a new
 * 4 KiB page every few steps) and reads B and C once for the G blocks. The time blocks and stripes
 * narrow as G grows, so that the staged values stay in the first-level cache; they stay multiples of 8
 * steps, so that the checkpoints below (every XS_BT steps) fall on block boundaries. */
static inline int64_t FN(xs_tb)(int64_t G) { return SS_TB / G < 8 ? 8 : SS_TB / G / 8 * 8; }
static inline int64_t FN(xs_sw)(int64_t G) { return SS_SW / G < 2 ? 2 : SS_SW / G; }

/* A, h (N x G * SS_CW each), the time block's dt, u and y (G x tb x SS_CW each), then the stripe
 * buffers of the column-major directions: x, dt and y (sw columns x H rows x G * SS_CW channels
 * each), B and C (sw columns x H rows x N each) */
int64_t FN(xs_fwd_work_per_thread)(int64_t N, int64_t H, int64_t G)
{
    const int64_t cw = G * SS_CW, sw = FN(xs_sw)(G);
    return 2 * N * cw + 3 * FN(xs_tb)(G) * cw + 3 * sw * H * cw + 2 * sw * H * N;
}

/* n <= SS_CW values from src (stride s) to dst, plus add[c] when add is not NULL; zeros up to SS_CW.
 * The common case (a whole block of a channels-last map) is vector loads. */
static inline SS_ALWAYS_INLINE void FN(xs_stage)(REAL *restrict dst, const REAL *restrict src, int64_t s,
                                                 int64_t n, const REAL *restrict add)
{
    if (s == 1 && n == SS_CW) {
        for (int v = 0; v < XS_NV; ++v) {
            FN(xs_vec) x = FN(xs_ld)(src + v * XS_VL);
            if (add)
                x += FN(xs_ld)(add + v * XS_VL);
            FN(xs_st)(dst + v * XS_VL, x);
        }
        return;
    }
    for (int c = 0; c < SS_CW; ++c) dst[c] = c < n ? src[c * s] + (add ? add[c] : (REAL)0) : (REAL)0;
}

/* One block's step sizes from the low-rank projection: dst[c] = add[c] + sum_r w[r * ws + c] * d[r]
 * (w: the direction's (R, channels) weight rows from the block's first channel, zero-padded to whole
 * blocks, so no lane needs a bound) */
static inline SS_ALWAYS_INLINE void FN(xs_stage_lowrank)(REAL *restrict dst, const REAL *restrict d,
                                                         const REAL *restrict w, int64_t ws, int64_t R,
                                                         const REAL *restrict add)
{
    for (int v = 0; v < XS_NV; ++v) {
        FN(xs_vec) acc = FN(xs_ld)(add + v * XS_VL);
        for (int64_t r = 0; r < R; ++r) acc += FN(xs_ld)(w + r * ws + v * XS_VL) * d[r];
        FN(xs_st)(dst + v * XS_VL, acc);
    }
}

/* n <= SS_CW values of src into dst (stride s), written (first direction) or added */
static inline SS_ALWAYS_INLINE void FN(xs_put)(REAL *restrict dst, int64_t s, const REAL *restrict src,
                                               int64_t n, int add)
{
    if (s == 1 && n == SS_CW) {
        for (int v = 0; v < XS_NV; ++v) {
            FN(xs_vec) x = FN(xs_ld)(src + v * XS_VL);
            if (add)
                x += FN(xs_ld)(dst + v * XS_VL);
            FN(xs_st)(dst + v * XS_VL, x);
        }
        return;
    }
    if (add)
        for (int64_t c = 0; c < n; ++c) dst[c * s] += src[c];
    else
        for (int64_t c = 0; c < n; ++c) dst[c * s] = src[c];
}

/* Steps between the states the forward keeps for the backward (ckpt below) and per chunk of the backward
 * (_cross_scan_bwd_body.c), which recomputes a chunk's states and decays from the kept state in a buffer
 * that stays in cache. A power of two >= 8: every forward time block then lies inside one chunk. */
#ifndef XS_BT
#define XS_BT 32
#endif

/* ckpt (batch, K, chunks, blocks of SS_CW channels, N, SS_CW): the state before direction k's step ci *
 * XS_BT, one N x SS_CW tile per block; the tile of (b, k, chunk ci, block blk) */
static inline int64_t FN(xs_ckpt_tile)(int64_t b, int64_t k, int64_t ci, int64_t blk, int64_t K, int64_t L,
                                       int64_t dim, int64_t N)
{
    const int64_t nch = (L + XS_BT - 1) / XS_BT, nblk = (dim + SS_CW - 1) / SS_CW;
    return (((b * K + k) * nch + ci) * nblk + blk) * N * SS_CW;
}

/* The forward's next time block from step s (in the direction's step order) with at most `left` steps to
 * go: TB steps, cut at the next chunk start when states are kept; at a chunk start the state (nsub
 * blocks of N x SS_CW from h) is copied to its tiles first. */
static inline int FN(xs_fwd_next)(int64_t s, int64_t left, int64_t TB, REAL *ckpt, const REAL *h, int64_t nsub,
                                  int64_t b, int64_t k, int64_t blk0, int64_t K, int64_t L, int64_t dim, int64_t N)
{
    int64_t tb = left < TB ? left : TB;
    if (ckpt) {
        const int64_t in = s % XS_BT;
        if (in == 0)
            memcpy(ckpt + FN(xs_ckpt_tile)(b, k, s / XS_BT, blk0, K, L, dim, N), h,
                   (size_t)(nsub * N * SS_CW) * sizeof(REAL));
        tb = tb < XS_BT - in ? tb : XS_BT - in;
    }
    return (int)tb;
}

/* The forward reads its tensors through strides (in elements), st = {x: batch, channel, pixel;
 * delta: batch, direction, channel, pixel; B and C: batch, direction, pixel (their N is unit-stride);
 * out: batch, channel, pixel; dts: batch, direction, pixel (its r is unit-stride)}, so that SS2D can
 * hand it channels-last maps and per-pixel projections as they come out of its matrix products, and
 * take a channels-last output for its LayerNorm. With delta NULL, the step sizes are the low-rank
 * projection delta[b, k, c, p] = sum_r Wt[k, r, c] dts[b, k, r, p] (Wt: (K, R, dim rounded up to whole
 * blocks, zero-padded)), computed as each pixel is staged: (batch, K, dim, L) of step sizes never
 * exists (at 2048x2048 the first stage's is 512 MiB). Tasks: (batch, G blocks of SS_CW channels), G from the caller
 * (xs_fwd_group). With ckpt not NULL (training), the states the backward starts its chunks from are kept in it. */
void FN(xs_fwd)(const REAL *x, const REAL *delta, const REAL *dts, const REAL *Wt, int64_t R,
                const REAL *A, const REAL *B, const REAL *C, const REAL *D, const REAL *delta_bias,
                const int64_t *st, int softplus, int64_t batch, int64_t dim, int64_t H, int64_t W, int64_t N,
                int64_t K, int64_t G, REAL *out, REAL *ckpt, REAL *work, int nthreads)
{
    const int64_t L = H * W;
    const int64_t xb_s = st[0], xc_s = st[1], xp_s = st[2];
    const int64_t db_s = st[3], dk_s = st[4], dc_s = st[5], dp_s = st[6];
    const int64_t bb_s = st[7], bk_s = st[8], bp_s = st[9];
    const int64_t ob_s = st[10], oc_s = st[11], op_s = st[12];
    const int64_t tb_s = st[13], tk_s = st[14], tp_s = st[15];
    const int64_t wrow = (dim + SS_CW - 1) / SS_CW * SS_CW; /* Wt's row length: whole blocks */
    const int64_t cw = G * SS_CW, TB = FN(xs_tb)(G), SW = FN(xs_sw)(G);
    const int64_t ngrp = (dim + cw - 1) / cw;
    const int64_t ntasks = batch * ngrp;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t task = 0; task < ntasks; ++task) {
        const int64_t b = task / ngrp;
        const int64_t c0 = (task % ngrp) * cw; /* first channel of the task */
        const int64_t nc = dim - c0 < cw ? dim - c0 : cw;
        const int64_t nsub = (nc + SS_CW - 1) / SS_CW; /* blocks with channels */
        const REAL *xb = x + b * xb_s + c0 * xc_s;
        REAL *ob = out + b * ob_s + c0 * oc_s;
        REAL *restrict At = work + (int64_t)SS_THREAD_ID() * FN(xs_fwd_work_per_thread)(N, H, G);
        REAL *restrict h = At + N * cw;
        REAL *restrict dtb = h + N * cw; /* (block, step, channel) */
        REAL *restrict ub = dtb + TB * cw;
        REAL *restrict yb = ub + TB * cw;
        REAL *restrict xs = yb + TB * cw; /* stripe buffers, (step in the stripe, channel) */
        REAL *restrict ds = xs + SW * H * cw;
        REAL *restrict ys = ds + SW * H * cw;
        REAL *restrict bs = ys + SW * H * cw; /* (step in the stripe, n) */
        REAL *restrict cs = bs + SW * H * N;
        REAL bias[SS_GMAX * SS_CW], Dv[SS_GMAX * SS_CW];
#define XS_NB(g) (nc - (g) * SS_CW < SS_CW ? nc - (g) * SS_CW : SS_CW) /* channels of block g */
#define XS_ROWS(buf, g) ((REAL(*)[SS_CW])((buf) + (g) * TB * SS_CW))

        for (int64_t k = 0; k < K; ++k) {
            const int column = SS_COLUMN_MAJOR(k, K), rev = SS_REVERSED(k, K);
            const int64_t r0 = k * dim + c0; /* row of A, D, delta_bias of the task's first channel */
            const REAL *Bk = B + b * bb_s + k * bk_s;
            const REAL *Ck = C + b * bb_s + k * bk_s;
            /* step sizes: delta's values, or the low-rank projection of dts (delta NULL) */
            const REAL *dk = delta ? delta + b * db_s + k * dk_s + c0 * dc_s : NULL;
            const REAL *tk = dts ? dts + b * tb_s + k * tk_s : NULL;
            const REAL *Wk = Wt ? Wt + k * R * wrow + c0 : NULL;
            for (int64_t g = 0; g < nsub; ++g)
                for (int64_t n = 0; n < N; ++n)
                    for (int c = 0; c < SS_CW; ++c) {
                        const int64_t cc = g * SS_CW + c;
                        At[(g * N + n) * SS_CW + c] = cc < nc ? A[(r0 + cc) * N + n] : (REAL)0;
                        h[(g * N + n) * SS_CW + c] = 0;
                    }
            for (int64_t cc = 0; cc < cw; ++cc) {
                bias[cc] = (delta_bias && cc < nc) ? delta_bias[r0 + cc] : (REAL)0;
                Dv[cc] = (D && cc < nc) ? D[r0 + cc] : (REAL)0;
            }
            const int nonpos = FN(ss_nonpos_ok)(A + r0 * N, nc * N, softplus);

            if (!column) {
                /* row-major, forward or reversed: pixel p = t or L - 1 - t */
                for (int64_t t0 = 0, tb; t0 < L; t0 += tb) {
                    tb = FN(xs_fwd_next)(t0, L - t0, TB, ckpt, h, nsub, b, k, c0 / SS_CW, K, L, dim, N);
                    const int64_t p0 = rev ? L - 1 - t0 : t0, ps = rev ? -1 : 1;
                    for (int j = 0; j < tb; ++j) {
                        const int64_t p = p0 + j * ps;
                        const REAL *xp = xb + p * xp_s;
                        for (int64_t g = 0; g < nsub; ++g) {
                            const int64_t cg = g * SS_CW;
                            FN(xs_stage)(XS_ROWS(ub, g)[j], xp + cg * xc_s, xc_s, XS_NB(g), NULL);
                            if (dk)
                                FN(xs_stage)(XS_ROWS(dtb, g)[j], dk + p * dp_s + cg * dc_s, dc_s, XS_NB(g), bias + cg);
                            else
                                FN(xs_stage_lowrank)(XS_ROWS(dtb, g)[j], tk + p * tp_s, Wk + cg, wrow, R, bias + cg);
                        }
                    }
                    FN(xs_fwd_blocks)(dtb, ub, yb, TB, nsub, tb, Bk + p0 * bp_s, Ck + p0 * bp_s, ps * bp_s, At, h,
                                      Dv, softplus, N, nonpos);
                    /* the merge: direction 0 writes every pixel first, the others add */
                    for (int j = 0; j < tb; ++j) {
                        REAL *op = ob + (p0 + j * ps) * op_s;
                        for (int64_t g = 0; g < nsub; ++g)
                            FN(xs_put)(op + g * SS_CW * oc_s, oc_s, XS_ROWS(yb, g)[j], XS_NB(g), k != 0);
                    }
                }
                continue;
            }

            /* column-major, forward or reversed, SW columns (a stripe) at a time: the stripe's x,
             * delta, B and C are copied into (step, channel) / (step, n) buffers reading whole rows of
             * the stripe, and its outputs added back the same way, so the walk down the columns never
             * strides through the maps (a new page every step or two at 512 columns). */
            const int64_t nstripes = (W + SW - 1) / SW;
            for (int64_t si = 0; si < nstripes; ++si) {
                const int64_t col0 = (rev ? nstripes - 1 - si : si) * SW;
                const int64_t ncol = W - col0 < SW ? W - col0 : SW;
                const int64_t T = ncol * H; /* steps in the stripe; local step q = col * H + row */
                for (int64_t row = 0; row < H; ++row)
                    for (int64_t col = 0; col < ncol; ++col) {
                        const int64_t p = row * W + col0 + col, q = col * H + row;
                        const REAL *xp = xb + p * xp_s;
                        const REAL *Bp = Bk + p * bp_s, *Cp = Ck + p * bp_s;
                        for (int64_t g = 0; g < nsub; ++g) {
                            const int64_t cg = g * SS_CW;
                            FN(xs_stage)(xs + q * cw + cg, xp + cg * xc_s, xc_s, XS_NB(g), NULL);
                            if (dk)
                                FN(xs_stage)(ds + q * cw + cg, dk + p * dp_s + cg * dc_s, dc_s, XS_NB(g), bias + cg);
                            else
                                FN(xs_stage_lowrank)(ds + q * cw + cg, tk + p * tp_s, Wk + cg, wrow, R, bias + cg);
                        }
                        for (int64_t n = 0; n < N; ++n) {
                            bs[q * N + n] = Bp[n];
                            cs[q * N + n] = Cp[n];
                        }
                    }
                /* the stripe's first step in the direction's step order */
                const int64_t sstart = (rev ? W - col0 - ncol : col0) * H;
                for (int64_t q0 = 0, tb; q0 < T; q0 += tb) {
                    tb = FN(xs_fwd_next)(sstart + q0, T - q0, TB, ckpt, h, nsub, b, k, c0 / SS_CW, K, L, dim, N);
                    const int64_t qf = rev ? T - 1 - q0 : q0, qs = rev ? -1 : 1;
                    for (int j = 0; j < tb; ++j)
                        for (int64_t g = 0; g < nsub; ++g)
                            for (int c = 0; c < SS_CW; ++c) {
                                XS_ROWS(ub, g)[j][c] = xs[(qf + j * qs) * cw + g * SS_CW + c];
                                XS_ROWS(dtb, g)[j][c] = ds[(qf + j * qs) * cw + g * SS_CW + c];
                            }
                    FN(xs_fwd_blocks)(dtb, ub, yb, TB, nsub, tb, bs + qf * N, cs + qf * N, qs * N, At, h, Dv,
                                      softplus, N, nonpos);
                    for (int j = 0; j < tb; ++j)
                        for (int64_t g = 0; g < nsub; ++g)
                            for (int c = 0; c < SS_CW; ++c)
                                ys[(qf + j * qs) * cw + g * SS_CW + c] = XS_ROWS(yb, g)[j][c];
                }
                for (int64_t row = 0; row < H; ++row)
                    for (int64_t col = 0; col < ncol; ++col) {
                        REAL *op = ob + (row * W + col0 + col) * op_s;
                        const REAL *yq = ys + (col * H + row) * cw;
                        for (int64_t g = 0; g < nsub; ++g)
                            FN(xs_put)(op + g * SS_CW * oc_s, oc_s, yq + g * SS_CW, XS_NB(g), 1);
                    }
            }
        }
#undef XS_NB
#undef XS_ROWS
    }
}
