"""C source of the compiled generation loop (see fast_generation.py).

Kept as a Python string so it ships inside the package with no package-data setup; it is
compiled with the system C compiler on first use and cached.
"""

SOURCE = r"""/* Fast incremental WaveNet generation: the whole per-sample step loop in C.
 *
 * Compiled on first use by wavenet_vocoder/fast_generation.py (which also packs the weights and
 * documents the layouts). Portable C99 with GCC/Clang vector extensions: the compiler maps v8f to
 * AVX2 / SSE / NEON registers; no SIMD intrinsics (only the floating-point mode is set per
 * platform) and no threads (the caller runs one call per thread on disjoint utterances).
 *
 * Per step and layer the dilated convolution is one (rows x k*R) @ (k*R x G) product whose k input
 * blocks are read straight from a per-layer ring buffer of past inputs; the residual and skip 1x1
 * convolutions are one fused (G/2 -> R+S) product. Local conditioning arrives either as one
 * precomputed gate bias per step, or (cheaper: no per-step array streams through memory) as the
 * projections of the few mel frames around the chunk plus each step's mixing weights, which the
 * gate computation combines on the fly.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#define PW 16      /* output columns per packed weight panel (two 8-float vectors) */
/* Weight rows (of PW floats, one cache line) to prefetch ahead: the weights stream from L3 once
 * per step, and the hardware prefetcher alone left ~20% of the arithmetic waiting (measured). */
#define PREFETCH_ROWS 128
#define MAXTAPS 16
#define MAXFRAMES 64   /* mel frames in one chunk's conditioning window */

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

typedef struct {
    int32_t L, R, G, H, S, C, KT, n_in, onehot, dist, nmix;
    int32_t Gp, RSp, Sp, Cp;            /* G, R+S, S, C rounded up to PW */
    float log_scale_min, temperature, skip_scale;
    const float *w_first, *b_first;      /* (n_in, R), (R) */
    const float *w_conv;                 /* L x (Gp/PW, KT*R, PW) */
    const float *w_res, *b_res;          /* L x (RSp/PW, H, PW), L x (R+S) */
    const float *w_post1, *b_post1;      /* (Sp/PW, S, PW), (S) */
    const float *w_post2, *b_post2;      /* (Cp/PW, S, PW), (C) */
    const int32_t *dilation;             /* (L) */
    const int64_t *ring_offset;          /* (L) first ring slot of each layer */
} WNModel;

typedef struct {
    int32_t ldb;                         /* rows the buffers were allocated for */
    float *ring;                         /* (sum of spans, ldb, R) */
    float *skip, *y, *z, *o, *h1, *h2, *pr, *cur;  /* (ldb, S|Gp|H|RSp|Sp|Sp|Cp|1) */
    float *mixw;                         /* (ldb, MAXFRAMES) this step's nonzero frame weights */
    int32_t *mixf, *mixn;                /* (ldb, MAXFRAMES) their frame indices, (ldb) their count */
} WNState;

static inline v8f ld(const float *p) { v8f v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, v8f v) { memcpy(p, &v, sizeof v); }
static inline v8f bc(float x) { v8f v = {x, x, x, x, x, x, x, x}; return v; }
static inline v8f vsel(v8i m, v8f a, v8f b) { return (v8f)((m & (v8i)a) | (~m & (v8i)b)); }
static inline v8f vclamp(v8f x, float lo, float hi) {
    x = vsel(x < bc(lo), bc(lo), x);
    return vsel(x > bc(hi), bc(hi), x);
}

/* exp(x) = 2^n * e^r with n = round(x / ln 2), |r| <= ln(2) / 2, e^r by its degree-7 Taylor
 * polynomial (relative error < 1e-8 before float rounding). */
static inline v8f vexp(v8f x) {
    x = vclamp(x, -87.0f, 88.0f);
    /* +126.5 makes the argument positive, so truncation is floor(. + 0.5). */
    v8i n = __builtin_convertvector(x * bc(1.44269504088896341f) + bc(126.5f), v8i) - 126;
    v8f nf = __builtin_convertvector(n, v8f);
    v8f r = (x - nf * bc(0.693359375f)) - nf * bc(-2.12194440e-4f);
    v8f p = bc(1.0f / 5040.0f);
    p = p * r + bc(1.0f / 720.0f);
    p = p * r + bc(1.0f / 120.0f);
    p = p * r + bc(1.0f / 24.0f);
    p = p * r + bc(1.0f / 6.0f);
    p = p * r + bc(0.5f);
    p = p * r + bc(1.0f);
    p = p * r + bc(1.0f);
    return p * (v8f)((n + 127) << 23);
}
static inline v8f vtanh(v8f x) { return bc(1.0f) - bc(2.0f) / (vexp(x + x) + bc(1.0f)); }
static inline v8f vsigmoid(v8f x) { return bc(1.0f) / (bc(1.0f) + vexp(-x)); }

/* Keeps a loaded weight vector in a register: otherwise GCC re-reads it from memory as an operand
 * of every FMA, and the extra loads, not the FMAs, become the bottleneck. */
#if defined(__GNUC__) && defined(__AVX__)
#define IN_REGISTER(v) __asm__("" : "+x"(v))
#else
#define IN_REGISTER(v) ((void)0)
#endif

/* Y[r][0:PW] = sum_j sum_i X_j[r][i] * W[j*K + i][0:PW] for nr (1..6, a constant after
 * inlining) rows: 2*nr accumulators stay in registers while the panel streams by. */
static inline __attribute__((always_inline)) void tile(int nr, int ntaps, const float *const *xs, int64_t ldx,
                                                        int K, const float *w, float *y, int64_t ldy) {
    v8f a0[6], a1[6];
    for (int r = 0; r < nr; r++) { a0[r] = bc(0.0f); a1[r] = bc(0.0f); }
    for (int j = 0; j < ntaps; j++) {
        const float *x = xs[j];
        for (int i = 0; i < K; i++, w += PW) {
            __builtin_prefetch(w + PREFETCH_ROWS * PW);
            v8f w0 = ld(w), w1 = ld(w + 8);
            IN_REGISTER(w0);
            IN_REGISTER(w1);
            for (int r = 0; r < nr; r++) {
                v8f xv = bc(x[r * ldx + i]);
                a0[r] += xv * w0;
                a1[r] += xv * w1;
            }
        }
    }
    for (int r = 0; r < nr; r++) { st(y + r * ldy, a0[r]); st(y + r * ldy + 8, a1[r]); }
}

/* One row (batch 1, bound by the weight stream): four input phases give eight independent
 * accumulators, enough to hide the FMA latency. */
static inline void tile1(int ntaps, const float *const *xs, int K, const float *w, float *y) {
    v8f a[8];
    for (int q = 0; q < 8; q++) a[q] = bc(0.0f);
    for (int j = 0; j < ntaps; j++) {
        const float *x = xs[j];
        int i = 0;
        for (; i + 3 < K; i += 4, w += 4 * PW) {
            for (int q = 0; q < 4; q++) __builtin_prefetch(w + (PREFETCH_ROWS + q) * PW);
            for (int q = 0; q < 4; q++) {
                v8f xv = bc(x[i + q]);
                a[2 * q] += xv * ld(w + q * PW);
                a[2 * q + 1] += xv * ld(w + q * PW + 8);
            }
        }
        for (; i < K; i++, w += PW) {
            v8f xv = bc(x[i]);
            a[0] += xv * ld(w);
            a[1] += xv * ld(w + 8);
        }
    }
    st(y, (a[0] + a[2]) + (a[4] + a[6]));
    st(y + 8, (a[1] + a[3]) + (a[5] + a[7]));
}

/* Y (rows x npanels*PW, leading dim ldy) = [X_0 | ... | X_{ntaps-1}] (rows x ntaps*K) @ W.
 * Panels outermost so each weight panel is read from memory once and reused from cache by
 * every block of rows; blocks of 6 rows (12 accumulators) where that leaves no small remainder. */
static void gemm(int rows, int ntaps, const float *const *xs, int64_t ldx, int K, const float *w, int npanels,
                 float *y, int64_t ldy) {
    const int64_t panel = (int64_t)ntaps * K * PW;
    for (int p = 0; p < npanels; p++, w += panel, y += PW) {
        if (rows == 1) { tile1(ntaps, xs, K, w, y); continue; }
        const float *xr[MAXTAPS];
        int r = 0;
        while (r < rows) {
            int left = rows - r, nr = left >= 6 && left != 8 ? 6 : left >= 4 ? 4 : left;
            for (int j = 0; j < ntaps; j++) xr[j] = xs[j] + r * ldx;
            switch (nr) {
                case 6: tile(6, ntaps, xr, ldx, K, w, y + r * ldy, ldy); break;
                case 4: tile(4, ntaps, xr, ldx, K, w, y + r * ldy, ldy); break;
                case 3: tile(3, ntaps, xr, ldx, K, w, y + r * ldy, ldy); break;
                case 2: tile(2, ntaps, xr, ldx, K, w, y + r * ldy, ldy); break;
                default: tile(1, ntaps, xr, ldx, K, w, y + r * ldy, ldy); break;
            }
            r += nr;
        }
    }
}

/* Saturated gates produce values below FLT_MIN (e.g. sigmoid(-87) times a small tanh); every
 * later arithmetic operation on such a denormal costs a microcode assist, which measured 2x
 * slower steps on real conditioning. Flushing them to zero changes results by < 1e-37. The
 * mode is per thread and restored on exit. */
#if defined(__x86_64__) || defined(__i386__)
typedef unsigned int fpmode_t;
static fpmode_t flush_denormals(void) { fpmode_t old = _mm_getcsr(); _mm_setcsr(old | 0x8040); return old; }
static void restore_fpmode(fpmode_t old) { _mm_setcsr(old); }
#elif defined(__aarch64__) && defined(__GNUC__)
typedef uint64_t fpmode_t;
static fpmode_t flush_denormals(void) {
    fpmode_t old;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(old));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old | (1ull << 24)));
    return old;
}
static void restore_fpmode(fpmode_t old) { __asm__ __volatile__("msr fpcr, %0" : : "r"(old)); }
#else
typedef int fpmode_t;
static fpmode_t flush_denormals(void) { return 0; }
static void restore_fpmode(fpmode_t old) { (void)old; }
#endif

static inline int64_t wrap(int64_t t, int64_t p) { int64_t m = t % p; return m < 0 ? m + p : m; }

/* Draw one value from the distribution with parameters p; u is this step's noise. */
static float sample(const WNModel *m, const float *p, const float *u) {
    if (m->dist == 0) {                                   /* mixture of logistics */
        int K = m->nmix, best = 0;
        float bv = -INFINITY;
        for (int k = 0; k < K; k++) {                     /* Gumbel-max component choice */
            float v = p[k] - logf(-logf(u[k]));
            if (v > bv) { bv = v; best = k; }
        }
        float ls = fmaxf(p[2 * K + best], m->log_scale_min);
        float x = p[K + best] + m->temperature * expf(ls) * (logf(u[K]) - log1pf(-u[K]));
        return fminf(fmaxf(x, -1.0f), 1.0f);
    }
    if (m->dist == 1) {                                   /* Gaussian; u[0] is a standard normal */
        float x = p[0] + m->temperature * expf(fmaxf(p[1], m->log_scale_min)) * u[0];
        return fminf(fmaxf(x, -1.0f), 1.0f);
    }
    int C = m->C, best = 0;                               /* mu-law classes, inverse CDF */
    float mx = -INFINITY;
    if (m->temperature <= 0.0f) {
        for (int c = 0; c < C; c++) if (p[c] > mx) { mx = p[c]; best = c; }
        return (float)best;
    }
    /* the same operations, in the same order, as the PyTorch sampler */
    const float temp = m->temperature;
    float total = 0.0f, cum = 0.0f;
    for (int c = 0; c < C; c++) mx = fmaxf(mx, p[c] / temp);
    for (int c = 0; c < C; c++) total += expf(p[c] / temp - mx);
    float thr = u[0] * total;
    int cls = 0;
    for (int c = 0; c < C; c++) {
        cum += expf(p[c] / temp - mx);
        if (cum <= thr) cls++; else break;
    }
    return (float)(cls < C ? cls : C - 1);
}

/* Run n steps (global steps t0 .. t0+n-1) for the first B rows of the state.
 *   sbias    (B, L, G)       per-utterance bias of every gate: conv bias + speaker projection
 *   cond     (B, n, L, G)    local-conditioning projections of these steps, or NULL
 *   frames   (B, F, L, G)    or instead: projections of the F mel frames of the chunk's window
 *   mix      (B, n, F)       and each step's weights of those frames (mostly zero)
 *   noise    (B, n, D)       sampling noise
 *   forced   (B, n)          teacher-forcing inputs, or NULL to feed back the samples
 *   out      (B, n)          samples (mu-law: class indices)
 *   params   (B, n, C)       distribution parameters, or NULL
 * Returns 0, or -1 on unsupported sizes. */
int wn_run(const WNModel *m, WNState *s, int B, int64_t t0, int n, const float *sbias, const float *cond,
           const float *frames, const float *mix, int F, const float *noise, int D, const float *forced,
           float *out, float *params) {
    const int L = m->L, R = m->R, G = m->G, H = m->H, S = m->S, C = m->C, KT = m->KT;
    const int64_t ldb = s->ldb, slot = ldb * R, LG = (int64_t)L * G;
    const float sqrt_half = 0.70710678118654752f;
    if (KT > MAXTAPS || B > ldb || B < 1 || (frames && (F < 1 || F > MAXFRAMES || !mix))) return -1;
    const fpmode_t fpmode = flush_denormals();

    for (int t = 0; t < n; t++) {
        const int64_t tt = t0 + t;
        /* the frames this step depends on (an upsampler reaches only a few), once for all layers */
        if (frames)
            for (int r = 0; r < B; r++) {
                const float *wt = mix + (r * (int64_t)n + t) * F;
                float *fw = s->mixw + (int64_t)r * MAXFRAMES;
                int32_t *fi = s->mixf + (int64_t)r * MAXFRAMES, nf = 0;
                for (int f = 0; f < F; f++)
                    if (wt[f] != 0.0f) { fw[nf] = wt[f]; fi[nf++] = f; }
                s->mixn[r] = nf;
            }
        /* first 1x1 conv: a column of w_first for a one-hot class, a scaled one for a sample */
        {
            const int64_t span0 = (int64_t)(KT - 1) * m->dilation[0] + 1;
            float *x0 = s->ring + (m->ring_offset[0] + wrap(tt, span0)) * slot;
            for (int r = 0; r < B; r++) {
                float in = forced ? forced[r * (int64_t)n + t] : s->cur[r];
                float *dst = x0 + (int64_t)r * R;
                if (m->onehot) {
                    const float *col = m->w_first + (int64_t)(int)in * R;
                    for (int i = 0; i < R; i++) dst[i] = m->b_first[i] + col[i];
                } else {
                    for (int i = 0; i < R; i++) dst[i] = m->b_first[i] + in * m->w_first[i];
                }
            }
        }
        for (int l = 0; l < L; l++) {
            const int64_t d = m->dilation[l], span = (int64_t)(KT - 1) * d + 1;
            const float *base = s->ring + m->ring_offset[l] * slot;
            const float *xs[MAXTAPS];
            for (int j = 0; j < KT; j++) xs[j] = base + wrap(tt - (int64_t)(KT - 1 - j) * d, span) * slot;
            gemm(B, KT, xs, R, R, m->w_conv + (int64_t)l * (m->Gp / PW) * KT * R * PW, m->Gp / PW, s->y, m->Gp);

            for (int r = 0; r < B; r++) {
                const float *y = s->y + (int64_t)r * m->Gp;
                const float *sb = sbias + r * LG + (int64_t)l * G;
                const float *cd = cond ? cond + (r * (int64_t)n + t) * LG + (int64_t)l * G : NULL;
                const int nf = frames ? s->mixn[r] : 0;
                const float *fw = s->mixw + (int64_t)r * MAXFRAMES;
                const float *fp[MAXFRAMES];
                for (int f = 0; f < nf; f++)
                    fp[f] = frames + (r * (int64_t)F + s->mixf[(int64_t)r * MAXFRAMES + f]) * LG + (int64_t)l * G;
                float *z = s->z + (int64_t)r * H;
                int j = 0;
                for (; j + 8 <= H; j += 8) {
                    v8f a = ld(y + j) + ld(sb + j), b = ld(y + H + j) + ld(sb + H + j);
                    if (cd) { a += ld(cd + j); b += ld(cd + H + j); }
                    for (int f = 0; f < nf; f++) { a += bc(fw[f]) * ld(fp[f] + j); b += bc(fw[f]) * ld(fp[f] + H + j); }
                    st(z + j, vtanh(a) * vsigmoid(b));
                }
                for (; j < H; j++) {
                    float a = y[j] + sb[j] + (cd ? cd[j] : 0.0f), b = y[H + j] + sb[H + j] + (cd ? cd[H + j] : 0.0f);
                    for (int f = 0; f < nf; f++) { a += fw[f] * fp[f][j]; b += fw[f] * fp[f][H + j]; }
                    z[j] = tanhf(a) / (1.0f + expf(-b));
                }
            }
            const float *zs[1] = {s->z};
            gemm(B, 1, zs, H, H, m->w_res + (int64_t)l * (m->RSp / PW) * H * PW, m->RSp / PW, s->o, m->RSp);

            const float *bres = m->b_res + (int64_t)l * (R + S);
            const float *xcur = xs[KT - 1];
            float *xnext = NULL;
            if (l + 1 < L) {
                const int64_t span1 = (int64_t)(KT - 1) * m->dilation[l + 1] + 1;
                xnext = s->ring + (m->ring_offset[l + 1] + wrap(tt, span1)) * slot;
            }
            for (int r = 0; r < B; r++) {
                const float *o = s->o + (int64_t)r * m->RSp;
                float *sk = s->skip + (int64_t)r * S;
                if (xnext) {
                    const float *xc = xcur + (int64_t)r * R;
                    float *xn = xnext + (int64_t)r * R;
                    for (int i = 0; i < R; i++) xn[i] = (xc[i] + o[i] + bres[i]) * sqrt_half;
                }
                if (l == 0) for (int i = 0; i < S; i++) sk[i] = o[R + i] + bres[R + i];
                else for (int i = 0; i < S; i++) sk[i] += o[R + i] + bres[R + i];
            }
        }
        /* output head: ReLU, 1x1, ReLU, 1x1 */
        for (int r = 0; r < B; r++)
            for (int i = 0; i < S; i++) {
                float v = s->skip[(int64_t)r * S + i] * m->skip_scale;
                s->h1[(int64_t)r * m->Sp + i] = v > 0.0f ? v : 0.0f;
            }
        const float *h1s[1] = {s->h1};
        gemm(B, 1, h1s, m->Sp, S, m->w_post1, m->Sp / PW, s->h2, m->Sp);
        for (int r = 0; r < B; r++)
            for (int i = 0; i < S; i++) {
                float v = s->h2[(int64_t)r * m->Sp + i] + m->b_post1[i];
                s->h2[(int64_t)r * m->Sp + i] = v > 0.0f ? v : 0.0f;
            }
        const float *h2s[1] = {s->h2};
        gemm(B, 1, h2s, m->Sp, S, m->w_post2, m->Cp / PW, s->pr, m->Cp);

        for (int r = 0; r < B; r++) {
            float *p = s->pr + (int64_t)r * m->Cp;
            for (int c = 0; c < C; c++) p[c] += m->b_post2[c];
            if (params) memcpy(params + (r * (int64_t)n + t) * C, p, sizeof(float) * C);
            float v = sample(m, p, noise + (r * (int64_t)n + t) * D);
            out[r * (int64_t)n + t] = v;
            s->cur[r] = v;
        }
    }
    restore_fpmode(fpmode);
    return 0;
}
"""
