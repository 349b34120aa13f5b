/*
 * Selective-scan kernels, #included (twice) by _scan_kernel.c, never compiled on their own, with
 *   REAL      element type (float / double)
 *   FN(name)  name mangling (name_f32 / name_f64)
 *   EXP       exp used in the hot loops (vectorizable ss_expf for float, libm exp for double)
 * and expecting FN(ss_softplus), FN(ss_sigmoid) to exist.
 * No include guard on purpose: the file is included once per element type.
 *
 * Loops marked "vec: <name>" are the hot ones: tests/test_vectorization.py reads gcc's
 * vectorization report for the line of each marker (the loop's `for`, or its `#pragma omp simd`,
 * where gcc reports such loops) and fails when one is not vectorized at full width on an x86
 * family. Keep each marker on that line when editing.
 */

/* ------------------------------------------------------------------------------------------------
 * Forward.
 *
 * The channels of one group share B_t and C_t, so the forward runs SS_CW channels of a group side
 * by side: every inner loop is over those channels, a fixed trip count the compiler turns into
 * SIMD lanes, and B_t[n], C_t[n] are scalars broadcast to all lanes. No horizontal reductions,
 * and any N works at full vector width. Parallel tasks are (batch, group, channel block).
 * A block keeps its state h (N x SS_CW) and A (N x SS_CW) in the caller's workspace (no stack
 * arrays whose size depends on N); u and dt are staged SS_TB steps at a time, transposed to
 * (time, channel) so the recurrence reads them with unit stride, and y is accumulated, gated
 * and skip-connected in the same layout before being transposed back into `out`. Lanes beyond
 * the group's last channel are padded with u = 0, A = 0, which keeps their state at exactly 0.
 * ----------------------------------------------------------------------------------------------*/
/* Whether the decay exp(dt * A) may use EXPN (no upper clamp): dt >= 0 (softplus) and each of the
 * count values of A finite and <= 0 (NaN fails). */
static inline int FN(ss_nonpos_ok)(const REAL *A, int64_t count, int softplus)
{
    if (!softplus)
        return 0;
    int ok = 1;
    for (int64_t i = 0; i < count; ++i) ok &= A[i] <= 0 && A[i] > -(REAL)INFINITY;
    return ok;
}

/* tb steps of the forward recurrence for SS_CW channels (state h, N x SS_CW; the B and C rows of step j
 * at Bt0 + j * bstep, Ct0 + j * bstep), y without the skip term into yb; nonpos (a constant at each call)
 * picks the decay's exp. Also the fused four-direction scan's (_cross_scan_body.c). */
static inline SS_ALWAYS_INLINE void FN(ss_fwd_steps)(REAL (*restrict dtb)[SS_CW], REAL (*restrict ub)[SS_CW],
                                                     REAL (*restrict yb)[SS_CW], int tb, const REAL *Bt0,
                                                     const REAL *Ct0, int64_t bstep, const REAL *restrict At,
                                                     REAL *restrict h, int64_t N, const int nonpos)
{
    for (int j = 0; j < tb; ++j) {
        const REAL *Bt = Bt0 + j * bstep;
        const REAL *Ct = Ct0 + j * bstep;
        REAL y[SS_CW], dtu[SS_CW];
        for (int c = 0; c < SS_CW; ++c) {
            y[c] = 0;
            dtu[c] = dtb[j][c] * ub[j][c];
        }
        for (int64_t n = 0; n < N; ++n) {
            const REAL bn = Bt[n], cn = Ct[n];
            REAL *restrict hn = h + n * SS_CW;
            const REAL *restrict An = At + n * SS_CW;
            for (int c = 0; c < SS_CW; ++c) { /* vec: fwd-recurrence */
                const REAL x = dtb[j][c] * An[c];
                hn[c] = (nonpos ? EXPN(x) : EXP(x)) * hn[c] + dtu[c] * bn;
                y[c] += hn[c] * cn;
            }
        }
        for (int c = 0; c < SS_CW; ++c) yb[j][c] = y[c];
    }
}

int64_t FN(ss_fwd_work_per_thread)(int64_t N) { return 2 * N * SS_CW; }

void FN(ss_fwd)(const REAL *u, const REAL *delta, const REAL *A, const REAL *B, const REAL *C,
                const REAL *D, const REAL *z, const REAL *delta_bias, int softplus,
                int64_t batch, int64_t dim, int64_t L, int64_t N, int64_t groups,
                REAL *out, REAL *last_state, REAL *work, int nthreads)
{
    const int64_t dpg = dim / groups;
    const int64_t nblk = (dpg + SS_CW - 1) / SS_CW;
    const int64_t ntasks = batch * groups * nblk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t task = 0; task < ntasks; ++task) {
        const int64_t blk = task % nblk;
        const int64_t g = (task / nblk) % groups;
        const int64_t b = task / (nblk * groups);
        const int64_t c0 = g * dpg + blk * SS_CW; /* first channel of the block */
        const int64_t nc = dpg - blk * SS_CW < SS_CW ? dpg - blk * SS_CW : SS_CW;
        const REAL *Bg = B + (b * groups + g) * L * N;
        const REAL *Cg = C + (b * groups + g) * L * N;
        REAL *restrict At = work + (int64_t)SS_THREAD_ID() * FN(ss_fwd_work_per_thread)(N);
        REAL *restrict h = At + N * SS_CW;
        REAL dtb[SS_TB][SS_CW], ub[SS_TB][SS_CW], yb[SS_TB][SS_CW];
        REAL bias[SS_CW], Dv[SS_CW];

        for (int64_t n = 0; n < N; ++n)
            for (int c = 0; c < SS_CW; ++c) {
                At[n * SS_CW + c] = c < nc ? A[(c0 + c) * N + n] : (REAL)0;
                h[n * SS_CW + c] = 0;
            }
        for (int c = 0; c < SS_CW; ++c) {
            bias[c] = (delta_bias && c < nc) ? delta_bias[c0 + c] : (REAL)0;
            Dv[c] = (D && c < nc) ? D[c0 + c] : (REAL)0;
        }
        const int nonpos = FN(ss_nonpos_ok)(A + c0 * N, nc * N, softplus);

        for (int64_t t0 = 0; t0 < L; t0 += SS_TB) {
            const int tb = L - t0 < SS_TB ? (int)(L - t0) : SS_TB;
            for (int c = 0; c < SS_CW; ++c) {
                const int64_t off = (b * dim + c0 + c) * L + t0;
                if (c < nc) {
                    for (int j = 0; j < tb; ++j) {
                        ub[j][c] = u[off + j];
                        dtb[j][c] = delta[off + j] + bias[c];
                    }
                } else {
                    for (int j = 0; j < tb; ++j) ub[j][c] = dtb[j][c] = 0;
                }
            }
            /* a separate loop without branches, so that it vectorizes */
            if (softplus)
                for (int j = 0; j < tb; ++j)
                    for (int c = 0; c < SS_CW; ++c) /* vec: fwd-softplus */
                        dtb[j][c] = FN(ss_softplus)(dtb[j][c]);

            if (nonpos)
                FN(ss_fwd_steps)(dtb, ub, yb, tb, Bg + t0 * N, Cg + t0 * N, N, At, h, N, 1);
            else
                FN(ss_fwd_steps)(dtb, ub, yb, tb, Bg + t0 * N, Cg + t0 * N, N, At, h, N, 0);

            /* skip connection and gate in (time, channel) layout: unit stride, no shuffles */
            for (int j = 0; j < tb; ++j)
                for (int c = 0; c < SS_CW; ++c) yb[j][c] += Dv[c] * ub[j][c];
            if (z) {
                /* ub is no longer needed for this block: reuse it to stage z */
                for (int c = 0; c < nc; ++c) {
                    const int64_t off = (b * dim + c0 + c) * L + t0;
                    for (int j = 0; j < tb; ++j) ub[j][c] = z[off + j];
                }
                for (int j = 0; j < tb; ++j)
                    for (int c = 0; c < SS_CW; ++c) /* vec: fwd-gate */
                        yb[j][c] *= ub[j][c] * FN(ss_sigmoid)(ub[j][c]);
            }
            for (int c = 0; c < nc; ++c) {
                const int64_t off = (b * dim + c0 + c) * L + t0;
                for (int j = 0; j < tb; ++j) out[off + j] = yb[j][c];
            }
        }
        if (last_state)
            for (int c = 0; c < nc; ++c)
                for (int64_t n = 0; n < N; ++n) last_state[(b * dim + c0 + c) * N + n] = h[n * SS_CW + c];
    }
}

/* ------------------------------------------------------------------------------------------------
 * Backward.
 *
 * B and C are shared by the dpg channels of a group, so their gradients would race if channels
 * were processed in parallel naively. Tasks are (b, g, part): the channels of group g are divided
 * into `parts` contiguous slices and each task accumulates gB/gC into its own slice
 * gB_part[b, g, part] (the caller sums over parts). Everything else (gu, gdelta, gz, and the
 * per-batch partials of gA, gD, gbias) belongs to exactly one row and thus one task.
 *
 * Per row (one channel at a time, loops over n vectorized):
 *   1. dt_t (and sigmoid(delta_t + bias) for the softplus derivative) for all t,
 *   2. forward recomputation, keeping every state h_t and every exp(dt_t A) (2 L*N values: the
 *      exponentials are a third of the work, so they are computed once),
 *   3. gy_t = gout_t * silu(z_t) and gz_t, which needs y_t, recomputed from h_t,
 *   4. reverse walk over t carrying ghc[n] = exp(dt_{t+1} A[n]) gh_{t+1}[n].
 * All scratch lives in the calling thread's slice of `work`. gB_part, gC_part must be zeroed.
 * ----------------------------------------------------------------------------------------------*/
/* Backward pieces for one channel row, always inlined so that the caller's N == 16, 8 and 4
 * branches get copies with a constant trip count. */
static inline SS_ALWAYS_INLINE void FN(ss_bwd_recompute)(const REAL *restrict dtr, const REAL *restrict ur,
                                                         const REAL *restrict Bg, const REAL *restrict Ad,
                                                         REAL *restrict hs, REAL *restrict das,
                                                         REAL *restrict h, int64_t L, const int64_t N,
                                                         const int nonpos)
{
    for (int64_t n = 0; n < N; ++n) h[n] = 0;
    for (int64_t t = 0; t < L; ++t) {
        const REAL dt = dtr[t], dtu = dt * ur[t];
        const REAL *restrict Bt = Bg + t * N;
        REAL *restrict ht = hs + t * N;
        REAL *restrict dat = das + t * N;
        for (int64_t n = 0; n < N; ++n) { /* vec: bwd-recompute */
            const REAL dA = nonpos ? EXPN(dt * Ad[n]) : EXP(dt * Ad[n]);
            h[n] = dA * h[n] + dtu * Bt[n];
            ht[n] = h[n];
            dat[n] = dA;
        }
    }
}

static inline SS_ALWAYS_INLINE void FN(ss_bwd_reverse)(
    const REAL *restrict dtr, const REAL *restrict sgr, const REAL *restrict ur, const REAL *restrict gyr,
    const REAL *restrict Bg, const REAL *restrict Cg, const REAL *restrict Ad, const REAL *restrict hs,
    const REAL *restrict das, REAL *restrict gBp, REAL *restrict gCp, REAL *restrict ghc, REAL *restrict gAl,
    REAL Dd, REAL *restrict gur, REAL *restrict gdr, REAL *gD_out, REAL *gbias_out, int64_t L, const int64_t N)
{
    for (int64_t n = 0; n < N; ++n) {
        ghc[n] = 0;
        gAl[n] = 0;
    }
    REAL gD_acc = 0, gbias_acc = 0;
    for (int64_t t = L - 1; t >= 0; --t) {
        const REAL dt = dtr[t], ut = ur[t], gy = gyr[t], dtu = dt * ut;
        const REAL *restrict Bt = Bg + t * N;
        const REAL *restrict Ct = Cg + t * N;
        const REAL *restrict ht = hs + t * N;
        REAL *restrict gBt = gBp + t * N;
        REAL *restrict gCt = gCp + t * N;
        REAL g_dt = 0, gBsum = 0;
        if (t > 0) {
            const REAL *restrict hp = hs + (t - 1) * N;
            const REAL *restrict dat = das + t * N;
#pragma omp simd reduction(+ : g_dt, gBsum) /* vec: bwd-step */
            for (int64_t n = 0; n < N; ++n) {
                const REAL gh = gy * Ct[n] + ghc[n];
                const REAL dA = dat[n];
                const REAL dAh = dA * hp[n];
                gCt[n] += gy * ht[n];
                gBt[n] += gh * dtu;
                g_dt += gh * (dAh * Ad[n] + Bt[n] * ut);
                gAl[n] += gh * dAh * dt;
                gBsum += gh * Bt[n];
                ghc[n] = gh * dA;
            }
        } else {
            /* t = 0: h_{-1} = 0, so the dA terms vanish and no carry is needed */
#pragma omp simd reduction(+ : g_dt, gBsum)
            for (int64_t n = 0; n < N; ++n) {
                const REAL gh = gy * Ct[n] + ghc[n];
                gCt[n] += gy * ht[n];
                gBt[n] += gh * dtu;
                g_dt += gh * Bt[n] * ut;
                gBsum += gh * Bt[n];
            }
        }
        gD_acc += gy * ut;
        gur[t] = gy * Dd + gBsum * dt;
        const REAL gd = g_dt * sgr[t];
        gdr[t] = gd;
        gbias_acc += gd;
    }
    *gD_out = gD_acc;
    *gbias_out = gbias_acc;
}

#if SS_DEFERRED
/* The reverse walk for N = 16 without a horizontal sum per step. g_dt and gBsum of step t are sums
 * over n of P_t[n] = gh dA h_{t-1} A[n] and Q_t[n] = gh B_t[n] (g_dt = sum P + u_t sum Q). The walk
 * writes P_t over h_t and Q_t over exp(dt_t A) (neither is read again: step t - 1 reads h_{t-1},
 * h_{t-2} and its own exponentials), then a second pass sums SS_SUM_ROWS steps at a time with ss_rowsums
 * and finishes gu, gdelta and the bias gradient. */
static inline SS_ALWAYS_INLINE void FN(ss_bwd_reverse16)(
    const REAL *restrict dtr, const REAL *restrict sgr, const REAL *restrict ur, const REAL *restrict gyr,
    const REAL *restrict Bg, const REAL *restrict Cg, const REAL *restrict Ad, REAL *restrict hs,
    REAL *restrict das, REAL *restrict gBp, REAL *restrict gCp, REAL *restrict ghc, REAL *restrict gAl,
    REAL Dd, REAL *restrict gur, REAL *restrict gdr, REAL *gD_out, REAL *gbias_out, int64_t L)
{
    enum { N = 16 };
    for (int64_t n = 0; n < N; ++n) {
        ghc[n] = 0;
        gAl[n] = 0;
    }
    REAL gD_acc = 0, gbias_acc = 0;
    for (int64_t t = L - 1; t >= 0; --t) {
        const REAL dt = dtr[t], ut = ur[t], gy = gyr[t], dtu = dt * ut;
        const REAL *restrict Bt = Bg + t * N;
        const REAL *restrict Ct = Cg + t * N;
        REAL *restrict ht = hs + t * N;   /* h_t, then P_t */
        REAL *restrict dat = das + t * N; /* exp(dt_t A), then Q_t */
        REAL *restrict gBt = gBp + t * N;
        REAL *restrict gCt = gCp + t * N;
        if (t > 0) {
            const REAL *restrict hp = hs + (t - 1) * N;
            for (int64_t n = 0; n < N; ++n) { /* vec: bwd-step16 */
                const REAL gh = gy * Ct[n] + ghc[n];
                const REAL dA = dat[n];
                const REAL dAh = dA * hp[n];
                gCt[n] += gy * ht[n];
                gBt[n] += gh * dtu;
                gAl[n] += gh * dAh * dt;
                ghc[n] = gh * dA;
                ht[n] = gh * dAh * Ad[n];
                dat[n] = gh * Bt[n];
            }
        } else {
            /* t = 0: h_{-1} = 0, so the dA terms vanish */
            for (int64_t n = 0; n < N; ++n) {
                const REAL gh = gy * Ct[n] + ghc[n];
                gCt[n] += gy * ht[n];
                gBt[n] += gh * dtu;
                ht[n] = 0;
                dat[n] = gh * Bt[n];
            }
        }
        gD_acc += gy * ut;
    }
    int64_t t0 = 0;
    for (; t0 + SS_SUM_ROWS <= L; t0 += SS_SUM_ROWS) {
        REAL P[SS_SUM_ROWS], Q[SS_SUM_ROWS];
        const ss_vec p = ss_rowsums(hs + t0 * N), q = ss_rowsums(das + t0 * N);
        memcpy(P, &p, sizeof P);
        memcpy(Q, &q, sizeof Q);
        for (int j = 0; j < SS_SUM_ROWS; ++j) {
            const int64_t t = t0 + j;
            gur[t] = gyr[t] * Dd + Q[j] * dtr[t];
            const REAL gd = (P[j] + ur[t] * Q[j]) * sgr[t];
            gdr[t] = gd;
            gbias_acc += gd;
        }
    }
    for (; t0 < L; ++t0) { /* the last L mod SS_SUM_ROWS steps, one sum at a time */
        REAL Ps = 0, Qs = 0;
        for (int64_t n = 0; n < N; ++n) {
            Ps += hs[t0 * N + n];
            Qs += das[t0 * N + n];
        }
        gur[t0] = gyr[t0] * Dd + Qs * dtr[t0];
        const REAL gd = (Ps + ur[t0] * Qs) * sgr[t0];
        gdr[t0] = gd;
        gbias_acc += gd;
    }
    *gD_out = gD_acc;
    *gbias_out = gbias_acc;
}
#endif

/* The recomputation and the reverse walk for any N. N = 16 (every Serpent and Mamba default), 8 and 4
 * get their own copies with a constant trip count: the n loops become straight vector code and the
 * carries stay in registers (with a variable N, N = 8 ran slower than N = 16). Also used by the
 * fused four-direction scan (_cross_scan_body.c). */
static inline SS_ALWAYS_INLINE void FN(ss_bwd_recompute_n)(const REAL *restrict dtr, const REAL *restrict ur,
                                                           const REAL *restrict Bg, const REAL *restrict Ad,
                                                           REAL *restrict hs, REAL *restrict das, REAL *restrict h,
                                                           int64_t L, int64_t N, int nonpos)
{
#define SS_RECOMPUTE(n_)                                                        \
    do {                                                                        \
        if (nonpos)                                                             \
            FN(ss_bwd_recompute)(dtr, ur, Bg, Ad, hs, das, h, L, (n_), 1);      \
        else                                                                    \
            FN(ss_bwd_recompute)(dtr, ur, Bg, Ad, hs, das, h, L, (n_), 0);      \
    } while (0)
    if (N == 16)
        SS_RECOMPUTE(16);
    else if (N == 8)
        SS_RECOMPUTE(8);
    else if (N == 4)
        SS_RECOMPUTE(4);
    else
        SS_RECOMPUTE(N);
#undef SS_RECOMPUTE
}

static inline SS_ALWAYS_INLINE void FN(ss_bwd_reverse_n)(
    const REAL *restrict dtr, const REAL *restrict sgr, const REAL *restrict ur, const REAL *restrict gyr,
    const REAL *restrict Bg, const REAL *restrict Cg, const REAL *restrict Ad, REAL *restrict hs,
    REAL *restrict das, REAL *restrict gBp, REAL *restrict gCp, REAL *restrict ghc, REAL *restrict gAl,
    REAL Dd, REAL *restrict gur, REAL *restrict gdr, REAL *gD_out, REAL *gbias_out, int64_t L, int64_t N)
{
    if (N == 16)
#if SS_DEFERRED
        FN(ss_bwd_reverse16)(dtr, sgr, ur, gyr, Bg, Cg, Ad, hs, das, gBp, gCp, ghc, gAl, Dd, gur, gdr, gD_out,
                             gbias_out, L);
#else
        FN(ss_bwd_reverse)(dtr, sgr, ur, gyr, Bg, Cg, Ad, hs, das, gBp, gCp, ghc, gAl, Dd, gur, gdr, gD_out,
                           gbias_out, L, 16);
#endif
    else if (N == 8)
        FN(ss_bwd_reverse)(dtr, sgr, ur, gyr, Bg, Cg, Ad, hs, das, gBp, gCp, ghc, gAl, Dd, gur, gdr, gD_out,
                           gbias_out, L, 8);
    else if (N == 4)
        FN(ss_bwd_reverse)(dtr, sgr, ur, gyr, Bg, Cg, Ad, hs, das, gBp, gCp, ghc, gAl, Dd, gur, gdr, gD_out,
                           gbias_out, L, 4);
    else
        FN(ss_bwd_reverse)(dtr, sgr, ur, gyr, Bg, Cg, Ad, hs, das, gBp, gCp, ghc, gAl, Dd, gur, gdr, gD_out,
                           gbias_out, L, N);
}

int64_t FN(ss_bwd_work_per_thread)(int64_t L, int64_t N) { return 2 * L * N + 3 * L + 3 * N; }

void FN(ss_bwd)(const REAL *u, const REAL *delta, const REAL *A, const REAL *B, const REAL *C,
                const REAL *D, const REAL *z, const REAL *delta_bias, int softplus,
                int64_t batch, int64_t dim, int64_t L, int64_t N, int64_t groups, int64_t parts,
                const REAL *gout, REAL *gu, REAL *gdelta, REAL *gA_part, REAL *gB_part,
                REAL *gC_part, REAL *gD_part, REAL *gz, REAL *gbias_part, REAL *work, int nthreads)
{
    const int64_t dpg = dim / groups;
    const int64_t ntasks = batch * groups * parts;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t task = 0; task < ntasks; ++task) {
        const int64_t p = task % parts;
        const int64_t g = (task / parts) % groups;
        const int64_t b = task / (parts * groups);
        const int64_t c_lo = g * dpg + p * dpg / parts;
        const int64_t c_hi = g * dpg + (p + 1) * dpg / parts;
        const REAL *Bg = B + (b * groups + g) * L * N;
        const REAL *Cg = C + (b * groups + g) * L * N;
        REAL *gBp = gB_part + ((b * groups + g) * parts + p) * L * N;
        REAL *gCp = gC_part + ((b * groups + g) * parts + p) * L * N;
        REAL *restrict hs = work + (int64_t)SS_THREAD_ID() * FN(ss_bwd_work_per_thread)(L, N);
        REAL *restrict das = hs + L * N;  /* exp(dt_t A[n]), kept from the recomputation */
        REAL *restrict dtr = das + L * N; /* dt_t */
        REAL *restrict sgr = dtr + L;     /* d softplus / d(delta + bias) */
        REAL *restrict gyr = sgr + L;     /* y_t, then gy_t */
        REAL *restrict h = gyr + L;
        REAL *restrict ghc = h + N;
        REAL *restrict gAl = ghc + N;

        for (int64_t d = c_lo; d < c_hi; ++d) {
            const int64_t row = b * dim + d;
            const REAL *ur = u + row * L;
            const REAL *dr = delta + row * L;
            const REAL *gor = gout + row * L;
            const REAL *Ad = A + d * N;
            const REAL bias = delta_bias ? delta_bias[d] : (REAL)0;
            const REAL Dd = D ? D[d] : (REAL)0;

            if (softplus) {
                for (int64_t t = 0; t < L; ++t) { /* vec: bwd-softplus */
                    const REAL x = dr[t] + bias;
                    dtr[t] = FN(ss_softplus)(x);
                    /* torch's softplus backward: identity above the threshold, sigmoid below;
                     * a blend rather than a select, which gcc would turn into a branch */
                    const REAL m = (REAL)(x > (REAL)20);
                    sgr[t] = m + ((REAL)1 - m) * FN(ss_sigmoid)(x);
                }
            } else {
                for (int64_t t = 0; t < L; ++t) {
                    dtr[t] = dr[t] + bias;
                    sgr[t] = 1;
                }
            }

            FN(ss_bwd_recompute_n)(dtr, ur, Bg, Ad, hs, das, h, L, N, FN(ss_nonpos_ok)(Ad, N, softplus));

            if (z) {
                const REAL *zr = z + row * L;
                REAL *gzr = gz + row * L;
                for (int64_t t = 0; t < L; ++t) {
                    const REAL *restrict ht = hs + t * N;
                    const REAL *restrict Ct = Cg + t * N;
                    REAL y = 0;
#pragma omp simd reduction(+ : y) /* vec: bwd-output */
                    for (int64_t n = 0; n < N; ++n) y += ht[n] * Ct[n];
                    gyr[t] = y + Dd * ur[t];
                }
                for (int64_t t = 0; t < L; ++t) { /* vec: bwd-gate */
                    const REAL sig = FN(ss_sigmoid)(zr[t]);
                    gzr[t] = gor[t] * gyr[t] * sig * ((REAL)1 + zr[t] * ((REAL)1 - sig));
                    gyr[t] = gor[t] * zr[t] * sig;
                }
            } else {
                memcpy(gyr, gor, (size_t)L * sizeof(REAL));
            }

            REAL gD_acc, gbias_acc;
            FN(ss_bwd_reverse_n)(dtr, sgr, ur, gyr, Bg, Cg, Ad, hs, das, gBp, gCp, ghc, gAl, Dd, gu + row * L,
                                 gdelta + row * L, &gD_acc, &gbias_acc, L, N);
            memcpy(gA_part + row * N, gAl, (size_t)N * sizeof(REAL));
            if (gD_part) gD_part[row] = gD_acc;
            if (gbias_part) gbias_part[row] = gbias_acc;
        }
    }
}
