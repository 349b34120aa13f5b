/*
 * The four-direction scan fused (cross_selective_scan in serpent_arch/ops/cross_scan.py), #included
 * by _scan_kernel.c right after _scan_kernel_body.c, once per element type, with the same macros.
 *
 * Every direction reads the one map x at its pixels and adds its output into `out` at the same
 * pixels, so no direction's copy of x, of its output or of its gradient is made: the cross-scan
 * and cross-merge become index arithmetic. Directions (as cross_scan.py): K = 4: k = 0 row-major,
 * 1 column-major, 2 and 3 the same reversed; K = 2: row-major and row-major reversed; K = 1: row-major.
 *
 * Layouts (the forward reads x, delta, B, C and writes out through the strides st, below; the
 * backward's are contiguous):
 *   x, out, gout, gx       : (batch, dim, H * W)   the map, pixels in row-major order
 *   delta, gdelta          : (batch, K, dim, H * W) each direction's, in pixel order
 *   B, C                   : forward: (batch, K, N, L) pixel order, read through strides (st below);
 *                            backward: (batch, K, L, N), rows in each direction's step order
 *   gB_part, gC_part       : (batch, parts, K, L, N), rows in step order
 *   A                      : (K * dim, N)           direction k's channel c is row k * dim + c
 *   D, delta_bias          : (K * dim,)             gA_part: (batch, K * dim, N)
 *   gD_part, gbias_part    : (batch, K * dim)
 *   pix (backward)         : (K, L) int32: step t of direction k visits pixel pix[k, t]
 * D, delta_bias and their gradients may be NULL.
 *
 * Parallel tasks own channels across all K directions (forward: a block of SS_CW channels, as the
 * plain forward; backward: a slice of channels), so the sums over directions into out and gx are
 * plain in-place additions, with no atomics and no per-direction output planes.
 */

/* columns per stripe of the column-major directions in the forward (one cache line of floats) */
#ifndef SS_SW
#define SS_SW 16
#endif
#ifndef SS_COLUMN_MAJOR
#define SS_COLUMN_MAJOR(k, K) ((K) == 4 && ((k) & 1))
#define SS_REVERSED(k, K) ((K) == 4 ? (k) >= 2 : (k) == 1)
#endif

/* One block of tb <= SS_TB steps of one direction: ub, dtb staged in (time, channel) layout (dtb =
 * delta + bias, softplus applied here), B and C rows of step j at B0 + j * bstep (bstep = +-N).
 * Writes y (with the skip term) to yb; the state h (N x SS_CW) carries over to the next block. */
static inline SS_ALWAYS_INLINE void FN(xs_fwd_block)(REAL (*restrict dtb)[SS_CW], REAL (*restrict ub)[SS_CW],
                                                     REAL (*restrict yb)[SS_CW], int tb, const REAL *B0,
                                                     const REAL *C0, int64_t bstep, const REAL *restrict At,
                                                     REAL *restrict h, const REAL *restrict Dv, int softplus,
                                                     int64_t N)
{
    if (softplus)
        for (int j = 0; j < tb; ++j)
            for (int c = 0; c < SS_CW; ++c) /* vec: xfwd-softplus */
                dtb[j][c] = FN(ss_softplus)(dtb[j][c]);
    for (int j = 0; j < tb; ++j) {
        const REAL *Bt = B0 + j * bstep, *Ct = C0 + j * bstep;
        REAL y[SS_CW], dtu[SS_CW];
        for (int c = 0; c < SS_CW; ++c) {
            y[c] = Dv[c] * ub[j][c];
            dtu[c] = dtb[j][c] * ub[j][c];
        }
        for (int64_t n = 0; n < N; ++n) {
            const REAL bn = Bt[n], cn = Ct[n];
            REAL *restrict hn = h + n * SS_CW;
            const REAL *restrict An = At + n * SS_CW;
            for (int c = 0; c < SS_CW; ++c) { /* vec: xfwd-recurrence */
                hn[c] = EXP(dtb[j][c] * An[c]) * hn[c] + dtu[c] * bn;
                y[c] += hn[c] * cn;
            }
        }
        for (int c = 0; c < SS_CW; ++c) yb[j][c] = y[c];
    }
}

/* A, h, then the stripe buffers of the column-major directions: x, dt and y (SS_SW columns x H rows x
 * SS_CW channels each), B and C (SS_SW columns x H rows x N each) */
int64_t FN(xs_fwd_work_per_thread)(int64_t N, int64_t H)
{
    return 2 * N * SS_CW + 3 * SS_SW * H * SS_CW + 2 * SS_SW * H * N;
}

/* The forward reads its tensors through strides (in elements), st = {x: batch, channel, pixel;
 * delta: batch, direction, channel, pixel; B and C: batch, direction, pixel (their N is unit-stride);
 * out: batch, channel, pixel}, so that SS2D can hand it channels-last maps and per-pixel projections
 * as they come out of its matrix products, and take a channels-last output for its LayerNorm. */
void FN(xs_fwd)(const REAL *x, const REAL *delta, const REAL *A, const REAL *B, const REAL *C,
                const REAL *D, const REAL *delta_bias, const int64_t *st, int softplus,
                int64_t batch, int64_t dim, int64_t H, int64_t W, int64_t N, int64_t K,
                REAL *out, REAL *work, int nthreads)
{
    const int64_t L = H * W;
    const int64_t xb_s = st[0], xc_s = st[1], xp_s = st[2];
    const int64_t db_s = st[3], dk_s = st[4], dc_s = st[5], dp_s = st[6];
    const int64_t bb_s = st[7], bk_s = st[8], bp_s = st[9];
    const int64_t ob_s = st[10], oc_s = st[11], op_s = st[12];
    const int64_t nblk = (dim + SS_CW - 1) / SS_CW;
    const int64_t ntasks = batch * nblk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t task = 0; task < ntasks; ++task) {
        const int64_t b = task / nblk;
        const int64_t c0 = (task % nblk) * SS_CW; /* first channel of the block */
        const int64_t nc = dim - c0 < SS_CW ? dim - c0 : SS_CW;
        const REAL *xb = x + b * xb_s + c0 * xc_s;
        REAL *ob = out + b * ob_s + c0 * oc_s;
        REAL *restrict At = work + (int64_t)SS_THREAD_ID() * FN(xs_fwd_work_per_thread)(N, H);
        REAL *restrict h = At + N * SS_CW;
        REAL *restrict xs = h + N * SS_CW; /* stripe buffers, (step in the stripe, channel) */
        REAL *restrict ds = xs + SS_SW * H * SS_CW;
        REAL *restrict ys = ds + SS_SW * H * SS_CW;
        REAL *restrict bs = ys + SS_SW * H * SS_CW; /* (step in the stripe, n) */
        REAL *restrict cs = bs + SS_SW * H * N;
        REAL dtb[SS_TB][SS_CW], ub[SS_TB][SS_CW], yb[SS_TB][SS_CW];
        REAL bias[SS_CW], Dv[SS_CW];

        for (int64_t k = 0; k < K; ++k) {
            const int column = SS_COLUMN_MAJOR(k, K), rev = SS_REVERSED(k, K);
            const int64_t r0 = k * dim + c0; /* row of A, D, delta_bias of the block's first channel */
            const REAL *Bk = B + b * bb_s + k * bk_s;
            const REAL *Ck = C + b * bb_s + k * bk_s;
            const REAL *dk = delta + b * db_s + k * dk_s + c0 * dc_s;
            for (int64_t n = 0; n < N; ++n)
                for (int c = 0; c < SS_CW; ++c) {
                    At[n * SS_CW + c] = c < nc ? A[(r0 + c) * N + n] : (REAL)0;
                    h[n * SS_CW + c] = 0;
                }
            for (int c = 0; c < SS_CW; ++c) {
                bias[c] = (delta_bias && c < nc) ? delta_bias[r0 + c] : (REAL)0;
                Dv[c] = (D && c < nc) ? D[r0 + c] : (REAL)0;
            }

            if (!column) {
                /* row-major, forward or reversed: pixel p = t or L - 1 - t */
                for (int64_t t0 = 0; t0 < L; t0 += SS_TB) {
                    const int tb = L - t0 < SS_TB ? (int)(L - t0) : SS_TB;
                    const int64_t p0 = rev ? L - 1 - t0 : t0, ps = rev ? -1 : 1;
                    for (int j = 0; j < tb; ++j) {
                        const REAL *xp = xb + (p0 + j * ps) * xp_s, *dp = dk + (p0 + j * ps) * dp_s;
                        for (int c = 0; c < SS_CW; ++c) {
                            ub[j][c] = c < nc ? xp[c * xc_s] : (REAL)0;
                            dtb[j][c] = c < nc ? dp[c * dc_s] + bias[c] : (REAL)0;
                        }
                    }
                    FN(xs_fwd_block)(dtb, ub, yb, tb, Bk + p0 * bp_s, Ck + p0 * bp_s, ps * bp_s, At, h, Dv,
                                     softplus, N);
                    /* the merge: direction 0 writes every pixel first, the others add */
                    for (int j = 0; j < tb; ++j) {
                        REAL *op = ob + (p0 + j * ps) * op_s;
                        if (k == 0)
                            for (int c = 0; c < nc; ++c) op[c * oc_s] = yb[j][c];
                        else
                            for (int c = 0; c < nc; ++c) op[c * oc_s] += yb[j][c];
                    }
                }
                continue;
            }

            /* column-major, forward or reversed, SS_SW columns (a stripe) at a time: the stripe's x,
             * delta, B and C are copied into (step, channel) / (step, n) buffers reading whole rows of
             * the stripe, and its outputs added back the same way, so the walk down the columns never
             * strides through the maps (a new page every step or two at 512 columns). */
            const int64_t nstripes = (W + SS_SW - 1) / SS_SW;
            for (int64_t si = 0; si < nstripes; ++si) {
                const int64_t col0 = (rev ? nstripes - 1 - si : si) * SS_SW;
                const int64_t ncol = W - col0 < SS_SW ? W - col0 : SS_SW;
                const int64_t T = ncol * H; /* steps in the stripe; local step q = col * H + row */
                for (int64_t row = 0; row < H; ++row)
                    for (int64_t col = 0; col < ncol; ++col) {
                        const int64_t p = row * W + col0 + col, q = col * H + row;
                        const REAL *xp = xb + p * xp_s, *dp = dk + p * dp_s;
                        const REAL *Bp = Bk + p * bp_s, *Cp = Ck + p * bp_s;
                        for (int c = 0; c < SS_CW; ++c) {
                            xs[q * SS_CW + c] = c < nc ? xp[c * xc_s] : (REAL)0;
                            ds[q * SS_CW + c] = c < nc ? dp[c * dc_s] + bias[c] : (REAL)0;
                        }
                        for (int64_t n = 0; n < N; ++n) {
                            bs[q * N + n] = Bp[n];
                            cs[q * N + n] = Cp[n];
                        }
                    }
                for (int64_t q0 = 0; q0 < T; q0 += SS_TB) {
                    const int tb = T - q0 < SS_TB ? (int)(T - q0) : SS_TB;
                    const int64_t qf = rev ? T - 1 - q0 : q0, qs = rev ? -1 : 1;
                    for (int j = 0; j < tb; ++j)
                        for (int c = 0; c < SS_CW; ++c) {
                            ub[j][c] = xs[(qf + j * qs) * SS_CW + c];
                            dtb[j][c] = ds[(qf + j * qs) * SS_CW + c];
                        }
                    FN(xs_fwd_block)(dtb, ub, yb, tb, bs + qf * N, cs + qf * N, qs * N, At, h, Dv, softplus, N);
                    for (int j = 0; j < tb; ++j)
                        for (int c = 0; c < SS_CW; ++c) ys[(qf + j * qs) * SS_CW + c] = yb[j][c];
                }
                for (int64_t row = 0; row < H; ++row)
                    for (int64_t col = 0; col < ncol; ++col) {
                        REAL *op = ob + (row * W + col0 + col) * op_s;
                        const REAL *yq = ys + (col * H + row) * SS_CW;
                        for (int c = 0; c < nc; ++c) op[c * oc_s] += yq[c];
                    }
            }
        }
    }
}

/* hs, das (L x N each), then dt, d softplus, gy, u, gu, gdelta (L each), then h, ghc, gA (N each) */
int64_t FN(xs_bwd_work_per_thread)(int64_t L, int64_t N) { return 2 * L * N + 6 * L + 3 * N; }

/* Backward: tasks (b, part) own the channels [part * dim / parts, (part + 1) * dim / parts) in every
 * direction. Per direction and channel, the steps are gathered into time order (u, dt, gy at pix[t])
 * and the plain backward's recomputation and reverse walk run on them, with B, C and gB, gC in step
 * order (gB, gC into the task's own partial buffers, summed over parts by the caller); gu is added
 * into gx and gdelta written at pixel pix[t]. gB_part, gC_part must be zeroed. */
void FN(xs_bwd)(const REAL *x, const REAL *delta, const REAL *A, const REAL *B, const REAL *C,
                const REAL *D, const REAL *delta_bias, const int32_t *pix, int softplus,
                int64_t batch, int64_t dim, int64_t L, int64_t N, int64_t K, int64_t parts,
                const REAL *gout, REAL *gx, REAL *gdelta, REAL *gA_part, REAL *gB_part, REAL *gC_part,
                REAL *gD_part, REAL *gbias_part, REAL *work, int nthreads)
{
    const int64_t ntasks = batch * parts;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t task = 0; task < ntasks; ++task) {
        const int64_t part = task % parts;
        const int64_t b = task / parts;
        const int64_t c_lo = part * dim / parts, c_hi = (part + 1) * dim / parts;
        REAL *restrict hs = work + (int64_t)SS_THREAD_ID() * FN(xs_bwd_work_per_thread)(L, N);
        REAL *restrict das = hs + L * N;
        REAL *restrict dtr = das + L * N;
        REAL *restrict sgr = dtr + L;
        REAL *restrict gyr = sgr + L;
        REAL *restrict ur = gyr + L;
        REAL *restrict gur = ur + L;
        REAL *restrict gdr = gur + L;
        REAL *restrict h = gdr + L;
        REAL *restrict ghc = h + N;
        REAL *restrict gAl = ghc + N;

        for (int64_t k = 0; k < K; ++k) {
            const REAL *Bk = B + (b * K + k) * L * N;
            const REAL *Ck = C + (b * K + k) * L * N;
            REAL *gBp = gB_part + ((b * parts + part) * K + k) * L * N;
            REAL *gCp = gC_part + ((b * parts + part) * K + k) * L * N;
            const int32_t *restrict pk = pix + k * L;
            for (int64_t c = c_lo; c < c_hi; ++c) {
                const int64_t row = k * dim + c; /* of A, D, delta_bias */
                const REAL *xr = x + (b * dim + c) * L;
                const REAL *dr = delta + ((b * K + k) * dim + c) * L;
                const REAL *gor = gout + (b * dim + c) * L;
                REAL *gxr = gx + (b * dim + c) * L;
                REAL *gdo = gdelta + ((b * K + k) * dim + c) * L;
                const REAL bias = delta_bias ? delta_bias[row] : (REAL)0;
                const REAL Dd = D ? D[row] : (REAL)0;

                for (int64_t t = 0; t < L; ++t) {
                    const int64_t p = pk[t];
                    ur[t] = xr[p];
                    dtr[t] = dr[p] + bias;
                    gyr[t] = gor[p];
                }
                if (softplus) {
                    for (int64_t t = 0; t < L; ++t) { /* vec: xbwd-softplus */
                        const REAL v = dtr[t];
                        dtr[t] = FN(ss_softplus)(v);
                        const REAL m = (REAL)(v > (REAL)20); /* as in ss_bwd: a blend, not a select */
                        sgr[t] = m + ((REAL)1 - m) * FN(ss_sigmoid)(v);
                    }
                } else {
                    for (int64_t t = 0; t < L; ++t) sgr[t] = 1;
                }

                FN(ss_bwd_recompute_n)(dtr, ur, Bk, A + row * N, hs, das, h, L, N);
                REAL gD_acc, gbias_acc;
                FN(ss_bwd_reverse_n)(dtr, sgr, ur, gyr, Bk, Ck, A + row * N, hs, das, gBp, gCp, ghc, gAl, Dd, gur,
                                     gdr, &gD_acc, &gbias_acc, L, N);

                if (k == 0)
                    for (int64_t t = 0; t < L; ++t) gxr[pk[t]] = gur[t];
                else
                    for (int64_t t = 0; t < L; ++t) gxr[pk[t]] += gur[t];
                for (int64_t t = 0; t < L; ++t) gdo[pk[t]] = gdr[t];
                memcpy(gA_part + (b * K * dim + row) * N, gAl, (size_t)N * sizeof(REAL));
                if (gD_part) gD_part[b * K * dim + row] = gD_acc;
                if (gbias_part) gbias_part[b * K * dim + row] = gbias_acc;
            }
        }
    }
}
