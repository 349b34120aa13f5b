/*
 * The fused four-direction scan's backward (CpuCrossScanFn.backward in _cpu_cross_scan.py), #included
 * by _scan_kernel.c after _cross_scan_body.c, once per element type, with the same macros.
 *
 * As in the forward, a task owns G blocks of SS_CW channels in every direction and runs them with the
 * channels as vector lanes: each step reads a pixel's channels where they lie (one contiguous run of a
 * channels-last map), every sum over the state index n is a vertical add, and the sums into gx over
 * directions are plain in-place additions. The sums over channels (the gradients of B, C and of the
 * low-rank step sizes' dts, shared by all channels of a pixel) are deferred: each block adds its lanes'
 * terms into a chunk's (step, row, lane) buffer, and one transposed sum per chunk (ss_rowsums16) folds
 * the lanes of all G blocks at once.
 *
 * Time runs in chunks of XS_BT steps (_cross_scan_body.c). The forward keeps each direction's state at
 * every chunk start (ckpt, one N x SS_CW tile per block: K N / XS_BT values per map value); the backward
 * walks the chunks in reverse, recomputes a chunk's states and decays from its start state into a buffer
 * that stays in cache, and runs the reverse walk on them. Nothing of size (L, N) per channel is made,
 * and nothing of size (batch, K, dim, L).
 *
 * Layouts: x, gout, gx (batch, dim, L) and delta, gdelta (batch, K, dim, L), B and C (batch, K, N, L),
 * dts (batch, K, R, L), all read or written through strides (st, below); A (K * dim, N); D, delta_bias
 * (K * dim,); Wt (K, R, dim rounded up to whole blocks, zero-padded). Outputs the caller sums: gB_part,
 * gC_part (batch, parts, K, L, N), gdts_part (batch, parts, K, L, R), rows in pixel order, parts =
 * channel groups of G blocks; gW_part (batch, K, R, Wt's row length); gA_part (batch, K * dim, N);
 * gD_part, gbias_part (batch, K * dim). D, delta_bias and their gradients may be NULL; with delta NULL
 * the step sizes are Wt's projection of dts (as the forward) and the gradients go to gdts_part and
 * gW_part instead of gdelta; with delta given, R must be 0. Every output element is written (no zeroing needed).
 */

/* steps per chunk (XS_BT), for the caller's checkpoint tensor */
int64_t FN(xs_chunk_steps)(void) { return XS_BT; }

/* the pixel direction k visits at its step s (the orders of cross_scan.py) */
static inline int64_t FN(xs_step_pixel)(int64_t k, int64_t K, int64_t s, int64_t H, int64_t W)
{
    if (SS_REVERSED(k, K))
        s = H * W - 1 - s;
    return SS_COLUMN_MAJOR(k, K) ? (s % H) * W + s / H : s;
}


/* rows of the deferred sums per step: gC (N), gB (N), gdts (R), rounded up to whole groups of 16 */
static inline int64_t FN(xs_bwd_rows)(int64_t N, int64_t R) { return (2 * N + R + 15) / 16 * 16; }

/* A, ghc, gA (G x N x SS_CW each), gW (G x R x SS_CW), the chunk's u, dt, sg, gy (G x XS_BT x SS_CW each),
 * B, C rows (XS_BT x N each), dts rows (XS_BT x R), states and decays (XS_BT x N x SS_CW each), the
 * deferred sums and their results (XS_BT x rows x SS_CW, XS_BT x rows) */
int64_t FN(xs_bwd_work_per_thread)(int64_t N, int64_t R, int64_t G)
{
    const int64_t cw = G * SS_CW, rows = FN(xs_bwd_rows)(N, R);
    return 3 * N * cw + R * cw + 4 * XS_BT * cw + 2 * XS_BT * N + XS_BT * R + 2 * XS_BT * N * SS_CW +
           XS_BT * rows * (SS_CW + 1);
}

/* what the staging reads, and the sizes it needs */
struct FN(xs_bwd_args) {
    const REAL *x, *delta, *dts, *Wt, *B, *C, *gout;
    const int64_t *st;
    int64_t H, W, N, R, K, wrow, softplus;
};

/* Stages the chunk's steps [s0, s0 + tb) of direction k for the task's nsub blocks (first channel c0, nc
 * channels): u, dt = softplus(delta + bias), its derivative sg and the output gradient gy in (block, step,
 * channel) layout; the B, C and dts rows in (step, n) / (step, r) layout. */
static inline SS_ALWAYS_INLINE void FN(xs_bwd_stage)(const struct FN(xs_bwd_args) *a, int64_t b, int64_t k,
                                                     int64_t c0, int64_t nc, int64_t nsub, int64_t s0, int tb,
                                                     const REAL *bias, REAL *restrict ub, REAL *restrict dtb,
                                                     REAL *restrict sgb, REAL *restrict gyb, REAL *restrict bs,
                                                     REAL *restrict cs, REAL *restrict ds)
{
    const int64_t *st = a->st, N = a->N, R = a->R;
    const REAL *xb = a->x + b * st[0] + c0 * st[1];
    const REAL *gob = a->gout + b * st[13] + c0 * st[14];
    const REAL *dk = a->delta ? a->delta + b * st[3] + k * st[4] + c0 * st[5] : NULL;
    const REAL *tk = a->dts ? a->dts + b * st[10] + k * st[11] : NULL;
    const REAL *Wk = a->Wt ? a->Wt + k * R * a->wrow + c0 : NULL;
    const REAL *Bk = a->B + b * st[7] + k * st[8], *Ck = a->C + b * st[7] + k * st[8];
    for (int j = 0; j < tb; ++j) {
        const int64_t p = FN(xs_step_pixel)(k, a->K, s0 + j, a->H, a->W);
        for (int64_t g = 0; g < nsub; ++g) {
            const int64_t cg = g * SS_CW, nb = nc - cg < SS_CW ? nc - cg : SS_CW, row = g * XS_BT + j;
            FN(xs_stage)(ub + row * SS_CW, xb + p * st[2] + cg * st[1], st[1], nb, NULL);
            if (dk)
                FN(xs_stage)(dtb + row * SS_CW, dk + p * st[6] + cg * st[5], st[5], nb, bias + cg);
            else
                FN(xs_stage_lowrank)(dtb + row * SS_CW, tk + p * st[12], Wk + cg, a->wrow, R, bias + cg);
            FN(xs_stage)(gyb + row * SS_CW, gob + p * st[15] + cg * st[14], st[14], nb, NULL);
        }
        for (int64_t n = 0; n < N; ++n) {
            bs[j * N + n] = Bk[p * st[9] + n];
            cs[j * N + n] = Ck[p * st[9] + n];
        }
        if (tk)
            for (int64_t r = 0; r < R; ++r) ds[j * R + r] = tk[p * st[12] + r];
    }
    for (int64_t g = 0; g < nsub; ++g)
        for (int j = 0; j < tb; ++j) {
            REAL *restrict dt = dtb + (g * XS_BT + j) * SS_CW;
            REAL *restrict sg = sgb + (g * XS_BT + j) * SS_CW;
            if (!a->softplus) {
                for (int c = 0; c < SS_CW; ++c) sg[c] = 1;
                continue;
            }
#if XS_EXP_TABLE
            for (int v = 0; v < XS_NV; ++v) {
                FN(xs_vec) sgv;
                FN(xs_st)(dt + v * XS_VL, FN(xs_softplus)(FN(xs_ld)(dt + v * XS_VL), &sgv));
                FN(xs_st)(sg + v * XS_VL, sgv);
            }
#else
            for (int c = 0; c < SS_CW; ++c) { /* vec: xbwd-softplus */
                const REAL v = dt[c];
                dt[c] = FN(ss_softplus)(v);
                /* torch's softplus backward, as a blend (ss_bwd) */
                const REAL m = (REAL)(v > (REAL)20);
                sg[c] = m + ((REAL)1 - m) * FN(ss_sigmoid)(v);
            }
#endif
        }
}

/* The recomputation for one block: the chunk's states hs and decays das ((step, n, channel)) from
 * its start state h0 */
static inline SS_ALWAYS_INLINE void FN(xs_bwd_recompute)(const REAL *restrict dtb, const REAL *restrict ub,
                                                         const REAL *restrict bs, const REAL *restrict At,
                                                         const REAL *restrict h0, REAL *restrict hs,
                                                         REAL *restrict das, int tb, int64_t N, const int nonpos)
{
    for (int j = 0; j < tb; ++j) {
        const REAL *dt = dtb + j * SS_CW, *u = ub + j * SS_CW;
        for (int64_t n = 0; n < N; ++n) {
            const REAL bn = bs[j * N + n];
            const REAL *restrict hp = j ? hs + ((j - 1) * N + n) * SS_CW : h0 + n * SS_CW;
            REAL *restrict hn = hs + (j * N + n) * SS_CW;
            REAL *restrict dAn = das + (j * N + n) * SS_CW;
            const REAL *restrict An = At + n * SS_CW;
#pragma omp simd /* vec: xbwd-recompute */
            for (int c = 0; c < SS_CW; ++c) {
                const REAL x = dt[c] * An[c];
                const REAL dA = nonpos ? EXPN(x) : EXP(x);
                dAn[c] = dA;
                hn[c] = dA * hp[c] + dt[c] * u[c] * bn;
            }
        }
    }
}

#if XS_EXP_TABLE
/* xs_bwd_recompute with the table exp (arguments <= 0), one vector's lanes through all N states at a time */
static inline SS_ALWAYS_INLINE void FN(xs_bwd_recompute_t)(const REAL *restrict dtb, const REAL *restrict ub,
                                                           const REAL *restrict bs, const REAL *restrict At,
                                                           const REAL *restrict h0, REAL *restrict hs,
                                                           REAL *restrict das, int tb, int64_t N)
{
    typedef FN(xs_vec) V;
    for (int j = 0; j < tb; ++j)
        for (int v = 0; v < XS_NV; ++v) {
            const int o = v * XS_VL;
            const V dt = FN(xs_ld)(dtb + j * SS_CW + o), dtu = dt * FN(xs_ld)(ub + j * SS_CW + o);
            for (int64_t n = 0; n < N; ++n) {
                const REAL *restrict hp = (j ? hs + ((j - 1) * N + n) * SS_CW : h0 + n * SS_CW) + o;
                const int64_t i = (j * N + n) * SS_CW + o;
                const V dA = FN(xs_expn)(dt * FN(xs_ld)(At + n * SS_CW + o));
                FN(xs_st)(das + i, dA);
                FN(xs_st)(hs + i, dA * FN(xs_ld)(hp) + dtu * bs[j * N + n]);
            }
        }
}
#endif

/* One state index n of the reverse walk's step j (xs_bwd_reverse), for the XS_VL lanes from lane o: the
 * carry and gA updated in place, the gC and gB terms into the deferred sums accj, the step's sums over n
 * into *P and *Q */
static inline SS_ALWAYS_INLINE void FN(xs_bwd_n)(int64_t n, int j, int64_t N, int o, FN(xs_vec) gy, FN(xs_vec) dt,
                                                 FN(xs_vec) dtu, REAL bn, REAL cn, const REAL *restrict hs,
                                                 const REAL *restrict h0, const REAL *restrict das,
                                                 const REAL *restrict At, REAL *restrict ghc, REAL *restrict gA,
                                                 REAL *restrict accj, FN(xs_vec) *P, FN(xs_vec) *Q, const int first)
{
    typedef FN(xs_vec) V;
    const V hp = FN(xs_ld)((j ? hs + ((j - 1) * N + n) * SS_CW : h0 + n * SS_CW) + o);
    const V dA = FN(xs_ld)(das + (j * N + n) * SS_CW + o);
    const V gh = gy * cn + FN(xs_ld)(ghc + n * SS_CW + o);
    const V t = gh * (dA * hp);
    V gc = gy * FN(xs_ld)(hs + (j * N + n) * SS_CW + o), gb = gh * dtu;
    if (!first) {
        gc += FN(xs_ld)(accj + n * SS_CW + o);
        gb += FN(xs_ld)(accj + (N + n) * SS_CW + o);
    }
    FN(xs_st)(accj + n * SS_CW + o, gc);
    FN(xs_st)(accj + (N + n) * SS_CW + o, gb);
    FN(xs_st)(gA + n * SS_CW + o, FN(xs_ld)(gA + n * SS_CW + o) + t * dt);
    *P += t * FN(xs_ld)(At + n * SS_CW + o);
    *Q += gh * bn;
    FN(xs_st)(ghc + n * SS_CW + o, gh * dA);
}

/* The reverse walk over one block's tb steps: the carry ghc and the gradient sums gA (N x SS_CW),
 * gD, gbias (SS_CW) go on across chunks; the terms of gC, gB (and gdts) go into the deferred sums acc
 * (step, row, lane), written by the first block (first) and added by the others; gu and gdelta come out
 * per step into gub, gdb ((step, channel)). With Wr (the block's (R, wrow) weight rows), gd's projection
 * back to dts goes into acc's rows 2N.. and gW (R x SS_CW) gets gd dts. Written with vector values of the
 * target's width (XS_NV per block), so that it is vector code on every target with the step's values and
 * sums in registers. */
static inline SS_ALWAYS_INLINE void FN(xs_bwd_reverse)(
    const REAL *restrict dtb, const REAL *restrict ub, const REAL *restrict sgb, const REAL *restrict gyb,
    const REAL *restrict bs, const REAL *restrict cs, const REAL *restrict ds, const REAL *restrict At,
    const REAL *restrict h0, const REAL *restrict hs, const REAL *restrict das, const REAL *restrict Dv,
    const REAL *restrict Wr, int64_t wrow, int64_t R, REAL *restrict ghc, REAL *restrict gA, REAL *restrict gD,
    REAL *restrict gbias, REAL *restrict gW, REAL *restrict acc, int64_t rows, REAL *restrict gub,
    REAL *restrict gdb, int tb, int64_t N, const int first)
{
    typedef FN(xs_vec) V;
#define LD(p) FN(xs_ld)(p)
#define ST(p, v) FN(xs_st)((p), (v))
    for (int j = tb - 1; j >= 0; --j) {
        REAL *restrict accj = acc + j * rows * SS_CW;
        V dt[XS_NV], u[XS_NV], gy[XS_NV], dtu[XS_NV], P[XS_NV], Q[XS_NV];
        for (int v = 0; v < XS_NV; ++v) {
            const int o = j * SS_CW + v * XS_VL;
            dt[v] = LD(dtb + o);
            u[v] = LD(ub + o);
            gy[v] = LD(gyb + o);
            dtu[v] = dt[v] * u[v];
            P[v] = Q[v] = (V){0};
        }
        for (int64_t n = 0; n < N; ++n)
            for (int v = 0; v < XS_NV; ++v)
                FN(xs_bwd_n)(n, j, N, v * XS_VL, gy[v], dt[v], dtu[v], bs[j * N + n], cs[j * N + n], hs, h0, das, At,
                             ghc, gA, accj, &P[v], &Q[v], first);
        for (int v = 0; v < XS_NV; ++v) {
            const int o = v * XS_VL, oj = j * SS_CW + o;
            const V gd = (P[v] + u[v] * Q[v]) * LD(sgb + oj);
            ST(gub + oj, gy[v] * LD(Dv + o) + Q[v] * dt[v]);
            ST(gdb + oj, gd);
            ST(gD + o, LD(gD + o) + gy[v] * u[v]);
            ST(gbias + o, LD(gbias + o) + gd);
            if (Wr)
                for (int64_t r = 0; r < R; ++r) {
                    REAL *restrict gr = accj + (2 * N + r) * SS_CW + o;
                    const V gw = LD(Wr + r * wrow + o) * gd;
                    ST(gr, first ? gw : LD(gr) + gw);
                    ST(gW + r * SS_CW + o, LD(gW + r * SS_CW + o) + gd * ds[j * R + r]);
                }
        }
    }
#undef LD
#undef ST
}

/* Tasks (batch, group of G blocks of SS_CW channels) own their channels in every direction (as the
 * forward, G from the caller). st = {x: batch, channel, pixel; delta: batch, direction, channel, pixel;
 * B and C: batch, direction, pixel; dts: batch, direction, pixel; gout: batch, channel, pixel; gx: the
 * same; gdelta: as delta}. */
void FN(xs_bwd)(const REAL *x, const REAL *delta, const REAL *dts, const REAL *Wt, int64_t R, const REAL *A,
                const REAL *B, const REAL *C, const REAL *D, const REAL *delta_bias, const REAL *ckpt,
                const int64_t *st, int softplus, int64_t batch, int64_t dim, int64_t H, int64_t W, int64_t N,
                int64_t K, int64_t G, const REAL *gout, REAL *gx, REAL *gdelta, REAL *gdts_part, REAL *gW_part,
                REAL *gA_part, REAL *gB_part, REAL *gC_part, REAL *gD_part, REAL *gbias_part, REAL *work,
                int nthreads)
{
    const int64_t L = H * W, cw = G * SS_CW, ngrp = (dim + cw - 1) / cw, ntasks = batch * ngrp;
    const int64_t nch = (L + XS_BT - 1) / XS_BT, rows = FN(xs_bwd_rows)(N, R);
    const int64_t wrow = (dim + SS_CW - 1) / SS_CW * SS_CW;
    const struct FN(xs_bwd_args) a = {x, delta, dts, Wt, B, C, gout, st, H, W, N, R, K, wrow, softplus};
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t task = 0; task < ntasks; ++task) {
        const int64_t b = task / ngrp, part = task % ngrp;
        const int64_t c0 = part * cw, nc = dim - c0 < cw ? dim - c0 : cw;
        const int64_t nsub = (nc + SS_CW - 1) / SS_CW;
        REAL *restrict At = work + (int64_t)SS_THREAD_ID() * FN(xs_bwd_work_per_thread)(N, R, G);
        REAL *restrict ghc = At + N * cw;
        REAL *restrict gA = ghc + N * cw;
        REAL *restrict gW = gA + N * cw;
        REAL *restrict ub = gW + R * cw; /* (block, step, channel) */
        REAL *restrict dtb = ub + XS_BT * cw;
        REAL *restrict sgb = dtb + XS_BT * cw;
        REAL *restrict gyb = sgb + XS_BT * cw;
        REAL *restrict bs = gyb + XS_BT * cw; /* (step, n) */
        REAL *restrict cs = bs + XS_BT * N;
        REAL *restrict ds = cs + XS_BT * N; /* (step, r) */
        REAL *restrict hs = ds + XS_BT * R; /* (step, n, channel) */
        REAL *restrict das = hs + XS_BT * N * SS_CW;
        REAL *restrict acc = das + XS_BT * N * SS_CW; /* (step, row, lane) */
        REAL *restrict sums = acc + XS_BT * rows * SS_CW; /* (step, row) */
        REAL bias[SS_GMAX * SS_CW], Dv[SS_GMAX * SS_CW], gD[SS_GMAX * SS_CW], gb[SS_GMAX * SS_CW];
        REAL gub[XS_BT * SS_CW], gdb[XS_BT * SS_CW];
        /* the padding rows of the deferred sums are summed but never written: zeros */
        memset(acc, 0, (size_t)(XS_BT * rows * SS_CW) * sizeof(REAL));

        for (int64_t k = 0; k < K; ++k) {
            const int64_t r0 = k * dim + c0; /* row of A, D, delta_bias of the task's first channel */
            for (int64_t g = 0; g < nsub; ++g)
                for (int64_t n = 0; n < N; ++n)
                    for (int c = 0; c < SS_CW; ++c) {
                        const int64_t cc = g * SS_CW + c, i = (g * N + n) * SS_CW + c;
                        At[i] = cc < nc ? A[(r0 + cc) * N + n] : (REAL)0;
                        ghc[i] = gA[i] = 0;
                    }
            for (int64_t cc = 0; cc < cw; ++cc) {
                bias[cc] = (delta_bias && cc < nc) ? delta_bias[r0 + cc] : (REAL)0;
                Dv[cc] = (D && cc < nc) ? D[r0 + cc] : (REAL)0;
                gD[cc] = gb[cc] = 0;
            }
            for (int64_t i = 0; i < R * cw; ++i) gW[i] = 0;
            const int nonpos = FN(ss_nonpos_ok)(A + r0 * N, nc * N, softplus);

            /* the chunks in reverse, each from the state the forward kept at its start (ckpt) */
            for (int64_t ci = nch - 1; ci >= 0; --ci) {
                const int64_t s0 = ci * XS_BT;
                const int tb = L - s0 < XS_BT ? (int)(L - s0) : XS_BT;
                FN(xs_bwd_stage)(&a, b, k, c0, nc, nsub, s0, tb, bias, ub, dtb, sgb, gyb, bs, cs, ds);
                for (int64_t g = 0; g < nsub; ++g) {
                    const int64_t o = g * XS_BT * SS_CW, on = g * N * SS_CW, cg = g * SS_CW;
                    const int64_t nb = nc - cg < SS_CW ? nc - cg : SS_CW;
                    const REAL *h0 = ckpt + FN(xs_ckpt_tile)(b, k, ci, c0 / SS_CW + g, K, L, dim, N);
                    if (nonpos)
#if XS_EXP_TABLE
                        FN(xs_bwd_recompute_t)(dtb + o, ub + o, bs, At + on, h0, hs, das, tb, N);
#else
                        FN(xs_bwd_recompute)(dtb + o, ub + o, bs, At + on, h0, hs, das, tb, N, 1);
#endif
                    else
                        FN(xs_bwd_recompute)(dtb + o, ub + o, bs, At + on, h0, hs, das, tb, N, 0);
#define XS_REVERSE(first)                                                                                  \
    FN(xs_bwd_reverse)(dtb + o, ub + o, sgb + o, gyb + o, bs, cs, ds, At + on, h0, hs, das, Dv + cg,               \
                       delta ? NULL : Wt + k * R * wrow + c0 + cg, wrow, R, ghc + on, gA + on, gD + cg, gb + cg,     \
                       gW + g * R * SS_CW, acc, rows, gub, gdb, tb, N, first)
                    if (g == 0) /* the first block writes the deferred sums, the others add */
                        XS_REVERSE(1);
                    else
                        XS_REVERSE(0);
#undef XS_REVERSE
                    /* gu into gx (the first direction writes, the others add), gdelta out */
                    for (int j = 0; j < tb; ++j) {
                        const int64_t p = FN(xs_step_pixel)(k, K, s0 + j, H, W);
                        FN(xs_put)(gx + b * st[16] + (c0 + cg) * st[17] + p * st[18], st[17], gub + j * SS_CW, nb,
                                   k != 0);
                        if (delta)
                            FN(xs_put)(gdelta + b * st[19] + k * st[20] + (c0 + cg) * st[21] + p * st[22], st[21],
                                       gdb + j * SS_CW, nb, 0);
                    }
                }
                /* the deferred sums over the lanes of every block: gC, gB, gdts rows of each step */
                for (int j = 0; j < tb; ++j)
                    for (int64_t i = 0; i < rows; i += 16)
                        FN(ss_rowsums16)(acc + (j * rows + i) * SS_CW, sums + j * rows + i);
                const int64_t pk = ((b * ngrp + part) * K + k) * L;
                for (int j = 0; j < tb; ++j) {
                    const int64_t p = FN(xs_step_pixel)(k, K, s0 + j, H, W);
                    const REAL *sj = sums + j * rows;
                    for (int64_t n = 0; n < N; ++n) {
                        gC_part[(pk + p) * N + n] = sj[n];
                        gB_part[(pk + p) * N + n] = sj[N + n];
                    }
                    for (int64_t r = 0; r < R; ++r) gdts_part[(pk + p) * R + r] = sj[2 * N + r];
                }
            }

            /* the per-channel sums: gA (transposed to (channel, n)), gD, gbias, the weight's gradient */
            for (int64_t cc = 0; cc < nc; ++cc) {
                const int64_t g = cc / SS_CW, c = cc % SS_CW;
                for (int64_t n = 0; n < N; ++n) gA_part[(b * K * dim + r0 + cc) * N + n] = gA[(g * N + n) * SS_CW + c];
                if (gD_part)
                    gD_part[b * K * dim + r0 + cc] = gD[cc];
                if (gbias_part)
                    gbias_part[b * K * dim + r0 + cc] = gb[cc];
                for (int64_t r = 0; r < R; ++r)
                    gW_part[((b * K + k) * R + r) * wrow + c0 + cc] = gW[(g * R + r) * SS_CW + c];
            }
        }
    }
}
