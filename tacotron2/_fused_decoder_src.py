"""C source of the fused teacher-forced decoder step kernels (see fused_decoder.py).

Kept as a Python string so it ships inside the package with no package-data setup; it is
compiled with the system C compiler on first use and cached (tacowave/native.py).
"""

from tacotron2._decoder_math_src import MATH

SOURCE = r"""/* The pointwise and attention halves of one Tacotron-2 decoder step, forward and backward.
 *
 * The matrix products stay in PyTorch (MKL); everything between them is one call here per block
 * (attention LSTM cell, attention, decoder LSTM cell), so a decoder step costs ~7 calls forward
 * and ~9 backward instead of ~60 operators plus their autograd bookkeeping. Layouts are set by
 * fused_decoder.py: per-step arrays are (S, ...) row-major; the products' outputs arrive
 * feature-major, (features, B), because that is the layout in which MKL computes small-batch
 * products fastest. Scalar C that the compiler vectorises (the exp below is a polynomial so
 * that it vectorises at all). Every kernel's utterances are independent, so the batch loop is
 * split across OpenMP threads when built with -fopenmp: in a process that has loaded PyTorch,
 * libgomp.so.1 is PyTorch's own, so these regions run on the same pool as its matrix products
 * (no second set of spinning threads). Per-utterance scratch rows keep the threads apart.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    int32_t S, B, N, E, H, D, A, K, F1, F2;
    /* constants of the pass */
    const float *memory;    /* (B, N, E) */
    const float *v;         /* (A) */
    const uint8_t *invalid; /* (B, N), 1 on padding; or NULL */
    const float *dec_bias;  /* (4D) */
    const float *att_in;    /* (S, B, 4H): pre-net part of the attention-LSTM input, biases included */
    const float *mask_att;  /* (S, B, H) dropout multipliers (0 or 1 / (1 - p)) or NULL */
    const float *mask_dec;  /* (S, B, D) or NULL */
    /* forward activations, kept for the backward pass */
    float *att_act, *att_c, *h_att;  /* (S, B, 4H) [i f g o after nonlinearity], (S + 1, B, H), (S, B, H) */
    float *dec_act, *dec_c, *h_dec;  /* (S, B, 4D), (S + 1, B, D), (S, B, D) */
    float *win;                      /* (S, B * N, 2K) location windows [previous | cumulative] */
    float *hid;                      /* (S, B * N, A) tanh of the attention keys + query */
    float *w, *wcum, *ctx;           /* (S, B, N), (B, N), (S, B, E) */
    /* forward scratch */
    float *y1T, *y2T, *y3T, *keys, *gates;  /* (F1, B), (F2, B), (4D, B), (B * N, A), (B, 4 max(H, D)) */
    /* backward */
    const float *g_hdec, *g_ctx, *g_w;      /* (S, B, D), (S, B, E), (S, B, N) */
    float *dhdecT, *dctxT, *dhattT, *dwin;  /* (D, B), (E, B), (H, B), (B * N, 2K) */
    float *dg_att, *dg_dec;                 /* (S, B, 4H), (S, B, 4D) */
    float *dy1, *dy2;                       /* (S, B, F1), (S, B, F2) */
    float *dz;                              /* (S, B * N, A) */
    float *dc_att, *dc_dec, *dw_prev, *gcum;/* (B, H), (B, D), (B, N), (B, N) */
    float *dmem, *scratch;                  /* (B, N, E), (B, SCRATCH) with SCRATCH = max(E, N, H, D, A) */
    const float *ones;                      /* (max(H, D)): the multipliers without dropout */
    float *pad;                             /* (B, 2 (N + K)): zero-padded window sources */
    double *dv;                             /* (B, A): summed over S * N terms per utterance, so in double */
} FD;

/* Lets the loader check that its ctypes mirror of FD has the same layout. */
size_t fd_struct_size(void) { return sizeof(FD); }

/* One utterance's scratch row and zero-padded window row. */
static inline float *scratch_row(const FD *p, int b) {
    int n = p->E;
    if (p->N > n) n = p->N;
    if (p->H > n) n = p->H;
    if (p->D > n) n = p->D;
    if (p->A > n) n = p->A;
    return p->scratch + (size_t)b * n;
}
static inline float *pad_row(const FD *p, int b) { return p->pad + (size_t)b * 2 * (p->N + p->K); }

#define BATCH_LOOP _Pragma("omp parallel for schedule(static) if (B > 1)")

""" + MATH + r"""
/* Its backward: dh (X, already including every consumer's gradient), the cell-gradient carry
 * dc (X, in: from the next step, out: to the previous) -> gate pre-activation gradient dg (4X). */
static void lstm_row_bwd(const float *restrict dh, const float *restrict mask, const float *restrict act,
                         const float *restrict c_prev, const float *restrict c_new, int X,
                         float *restrict dc, float *restrict dg) {
    for (int j = 0; j < X; j++) {
        float i = act[j], f = act[X + j], gg = act[2 * X + j], o = act[3 * X + j];
        float d = dh[j] * mask[j];
        float tc = ftanh(c_new[j]);
        float dcj = dc[j] + d * o * (1.0f - tc * tc);
        dg[j] = dcj * gg * i * (1.0f - i);
        dg[X + j] = dcj * c_prev[j] * f * (1.0f - f);
        dg[2 * X + j] = dcj * i * (1.0f - gg * gg);
        dg[3 * X + j] = d * tc * o * (1.0f - o);
        dc[j] = dcj * f;
    }
}

void fd_att_cell_fwd(const FD *p, int s) {
    const int B = p->B, H = p->H, F = 4 * H;
    BATCH_LOOP
    for (int b = 0; b < B; b++) {
        float *g = p->gates + (size_t)b * F;
        const float *in = p->att_in + ((size_t)s * B + b) * F;
        if (s == 0) {
            memcpy(g, in, sizeof(float) * F);
        } else {  /* recurrent part: h_att W_hh^T (stack 1) + context W_ih_ctx^T (stack 2) */
            for (int f = 0; f < F; f++) g[f] = in[f] + p->y1T[(size_t)f * B + b] + p->y2T[(size_t)f * B + b];
        }
        size_t row = (size_t)s * B + b;
        lstm_row_fwd(g, p->att_c + row * H, p->mask_att ? p->mask_att + row * H : p->ones, H,
                     p->att_act + row * F, p->att_c + (row + B) * H, p->h_att + row * H);
    }
}

void fd_attention_fwd(const FD *p, int s) {
    const int B = p->B, N = p->N, E = p->E, A = p->A, K = p->K, H = p->H;
    BATCH_LOOP
    for (int b = 0; b < B; b++) {
        float *q = scratch_row(p, b);
        for (int a = 0; a < A; a++) q[a] = p->y1T[(size_t)(4 * H + a) * B + b];
        float *w = p->w + ((size_t)s * B + b) * N;
        const uint8_t *inv = p->invalid ? p->invalid + (size_t)b * N : NULL;
        float emax = -FLT_MAX;
        const float *restrict v = p->v;
        for (int n = 0; n < N; n++) {
            const float *restrict key = p->keys + ((size_t)b * N + n) * A;
            float *restrict h = p->hid + (((size_t)s * B + b) * N + n) * A;
            float e = 0.0f;
            for (int a = 0; a < A; a++) {
                float t = ftanh(key[a] + q[a]);
                h[a] = t;
                e += t * v[a];
            }
            w[n] = e;
            if (!(inv && inv[n]) && e > emax) emax = e;
        }
        float sum = 0.0f;
        for (int n = 0; n < N; n++) {
            float x = (inv && inv[n]) ? 0.0f : fexp(w[n] - emax);
            w[n] = x;
            sum += x;
        }
        float scale = 1.0f / sum;
        float *cum = p->wcum + (size_t)b * N;
        float *c = p->ctx + ((size_t)s * B + b) * E;
        memset(c, 0, sizeof(float) * E);
        for (int n = 0; n < N; n++) {
            w[n] *= scale;
            cum[n] += w[n];
            const float *restrict m = p->memory + ((size_t)b * N + n) * E;
            float *restrict cc = c;
            float wn = w[n];
            for (int e = 0; e < E; e++) cc[e] += wn * m[e];
        }
        if (s + 1 < p->S) {  /* the next step's location windows, copied from zero-padded rows */
            float *restrict pw = pad_row(p, b), *restrict pc = pw + N + K;
            memset(pw, 0, sizeof(float) * 2 * (N + K));
            memcpy(pw + K / 2, w, sizeof(float) * N);
            memcpy(pc + K / 2, cum, sizeof(float) * N);
            float *win = p->win + (((size_t)(s + 1) * B + b) * N) * 2 * K;
            for (int n = 0; n < N; n++) {
                memcpy(win + (size_t)n * 2 * K, pw + n, sizeof(float) * K);
                memcpy(win + (size_t)n * 2 * K + K, pc + n, sizeof(float) * K);
            }
        }
    }
}

void fd_dec_cell_fwd(const FD *p, int s) {
    const int B = p->B, H = p->H, D = p->D, A = p->A, F = 4 * D;
    BATCH_LOOP
    for (int b = 0; b < B; b++) {
        float *g = p->gates + (size_t)b * F;
        for (int f = 0; f < F; f++)
            g[f] = p->y1T[(size_t)(4 * H + A + f) * B + b] + p->y2T[(size_t)(4 * H + f) * B + b] + p->dec_bias[f]
                   + (s > 0 ? p->y3T[(size_t)f * B + b] : 0.0f);
        size_t row = (size_t)s * B + b;
        lstm_row_fwd(g, p->dec_c + row * D, p->mask_dec ? p->mask_dec + row * D : p->ones, D,
                     p->dec_act + row * F, p->dec_c + (row + B) * D, p->h_dec + row * D);
    }
}

void fd_dec_cell_bwd(const FD *p, int s) {
    const int B = p->B, H = p->H, D = p->D, A = p->A, F = 4 * D;
    BATCH_LOOP
    for (int b = 0; b < B; b++) {
        float *dh = scratch_row(p, b);
        size_t row = (size_t)s * B + b;
        for (int j = 0; j < D; j++)
            dh[j] = p->g_hdec[row * D + j] + (s + 1 < p->S ? p->dhdecT[(size_t)j * B + b] : 0.0f);
        float *dg = p->dg_dec + row * F;
        lstm_row_bwd(dh, p->mask_dec ? p->mask_dec + row * D : p->ones, p->dec_act + row * F,
                     p->dec_c + row * D, p->dec_c + (row + B) * D, D, p->dc_dec + (size_t)b * D, dg);
        memcpy(p->dy1 + row * p->F1 + 4 * H + A, dg, sizeof(float) * F);
        memcpy(p->dy2 + row * p->F2 + 4 * H, dg, sizeof(float) * F);
    }
}

void fd_attention_bwd(const FD *p, int s) {
    const int B = p->B, N = p->N, E = p->E, A = p->A, H = p->H;
    BATCH_LOOP
    for (int b = 0; b < B; b++) {
        float *dctx = scratch_row(p, b);
        size_t row = (size_t)s * B + b;
        for (int e = 0; e < E; e++) dctx[e] = p->g_ctx[row * E + e] + p->dctxT[(size_t)e * B + b];
        const float *w = p->w + row * N;
        float *dw = p->dw_prev + (size_t)b * N;  /* in: gradient of w via the next step's windows */
        const float *gc = p->gcum + (size_t)b * N;
        float wdw = 0.0f;
        for (int n = 0; n < N; n++) {
            const float *restrict m = p->memory + ((size_t)b * N + n) * E;
            float *restrict dm = p->dmem + ((size_t)b * N + n) * E;
            const float *restrict dcx = dctx;
            float wn = w[n], dot = 0.0f;
            for (int e = 0; e < E; e++) { dot += m[e] * dcx[e]; dm[e] += wn * dcx[e]; }
            dw[n] += p->g_w[row * N + n] + dot + gc[n];
            wdw += wn * dw[n];
        }
        float *dq = p->dy1 + row * p->F1 + 4 * H;
        memset(dq, 0, sizeof(float) * A);
        const float *restrict v = p->v;
        double *restrict dv = p->dv + (size_t)b * A;
        for (int n = 0; n < N; n++) {
            float de = w[n] * (dw[n] - wdw);
            const float *restrict h = p->hid + (row * N + n) * A;
            float *restrict dz = p->dz + (row * N + n) * A;
            float *restrict dqq = dq;
            for (int a = 0; a < A; a++) {
                float d = de * v[a] * (1.0f - h[a] * h[a]);
                dz[a] = d;
                dqq[a] += d;
                dv[a] += (double)(de * h[a]);
            }
        }
    }
}

/* dwin = dz[s] @ kernel^T (B * N, 2K) back onto the window sources: the previous step's weights
 * (dw_prev, replaced) and its cumulative weights (gcum, accumulated: the cumulative sum carries
 * every later window's gradient down to every earlier step). */
void fd_fold_bwd(const FD *p, int s) {
    (void)s;
    const int B = p->B, N = p->N, K = p->K;
    BATCH_LOOP
    for (int b = 0; b < B; b++) {
        /* accumulate into zero-padded rows (no bounds test in the inner loop), keep the middle */
        float *restrict pw = pad_row(p, b), *restrict pc = pw + N + K;
        memset(pw, 0, sizeof(float) * 2 * (N + K));
        for (int n = 0; n < N; n++) {
            const float *restrict row = p->dwin + ((size_t)b * N + n) * 2 * K;
            float *restrict tw = pw + n, *restrict tc = pc + n;
            for (int j = 0; j < K; j++) { tw[j] += row[j]; tc[j] += row[K + j]; }
        }
        float *dw = p->dw_prev + (size_t)b * N, *gc = p->gcum + (size_t)b * N;
        for (int m = 0; m < N; m++) { dw[m] = pw[m + K / 2]; gc[m] += pc[m + K / 2]; }
    }
}

void fd_att_cell_bwd(const FD *p, int s) {
    const int B = p->B, H = p->H, F = 4 * H;
    BATCH_LOOP
    for (int b = 0; b < B; b++) {
        float *dh = scratch_row(p, b);
        size_t row = (size_t)s * B + b;
        for (int j = 0; j < H; j++) dh[j] = p->dhattT[(size_t)j * B + b];
        float *dg = p->dg_att + row * F;
        lstm_row_bwd(dh, p->mask_att ? p->mask_att + row * H : p->ones, p->att_act + row * F,
                     p->att_c + row * H, p->att_c + (row + B) * H, H, p->dc_att + (size_t)b * H, dg);
        if (s > 0) {  /* the previous step's recurrent products fed this gate */
            memcpy(p->dy1 + (row - B) * p->F1, dg, sizeof(float) * F);
            memcpy(p->dy2 + (row - B) * p->F2, dg, sizeof(float) * F);
        }
    }
}
"""
