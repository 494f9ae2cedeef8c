"""C source of the free-running decoder step on a CPU (see fast_inference.py).

Kept as a Python string so it ships inside the package with no package-data setup; it is
compiled with the system C compiler on first use and cached (tacowave/native.py).
"""

from tacotron2._decoder_math_src import MATH

SOURCE = r"""/* One free-running Tacotron-2 decoder step for B utterances, everything after the pre-net.
 *
 * Synthesising one utterance is bound by reading the decoder's weights: each step multiplies
 * ~59 MB of them (NVIDIA's sizes) by one vector. vecmat() below streams a transposed (in, out)
 * matrix eight input rows at a time, the threads splitting the output columns, and reads at
 * ~1.6x the rate of MKL's vector-matrix product on the same matrices (AMD EPYC, 2 threads);
 * the ~40 small PyTorch operators between the products (LSTM cells, attention, softmax) become
 * plain loops in the same call. A batch reads each block of the weights once for all its
 * utterances; the attention runs utterance by utterance. The math and the weight stacks are Decoder._step's
 * (model.py); the transcendental functions are the polynomial ones of the training kernels.
 * Built with -fopenmp in a process that holds PyTorch's libgomp, the parallel regions run on
 * PyTorch's own thread pool (compiled_kernels.joins_torch_openmp).
 */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    int32_t B, N, E, H, D, A, K, P;  /* utterances, symbols, memory, LSTMs, attention, location taps, pre-net */
    int32_t r, R;                    /* frames per step, r * n_mels + r outputs per step */
    int32_t window;                  /* > 0: attend only within this many symbols of the last peak */
    int32_t projected;               /* 1: ctx_mat is the memory already multiplied by the context stack */
    float gate_threshold;
    /* constants of the pass */
    const float *w_prenet;   /* (P, 4H)  att W_ih, pre-net part */
    const float *w_hatt;     /* (H, F1)  F1 = 4H + A + 4D: [att W_hh | query | dec W_ih h_att part] */
    const float *ctx_mat;    /* projected: (B, N, F2), else (E, F2); F2 = 4H + 4D + R:
                                [att W_ih ctx part | dec W_ih ctx part | mel, gate ctx part] */
    const float *memory;     /* (B, N, E); read only when not projected */
    const float *w_hdec;     /* (D, F3)  F3 = 4D + R: [dec W_hh | mel, gate h_dec part] */
    const float *processed;  /* (B, N, A) memory through the attention's memory layer */
    const float *loc_kernel; /* (2K, A)  location conv and dense layer composed */
    const float *v;          /* (A) */
    const uint8_t *invalid;  /* (B, N), 1 on padding; or NULL */
    const float *att_bias;   /* (4H) */
    const float *dec_bias;   /* (4D) */
    const float *out_bias;   /* (R)  [mel bias | gate bias] */
    /* state, zero at the first step */
    float *att_c, *dec_c;    /* (B, H), (B, D) */
    float *att_rec, *dec_rec;/* (B, 4H), (B, 4D): next step's recurrent pre-activations */
    float *w, *wcum;         /* (B, N) previous and cumulative attention weights */
    /* scratch */
    float *att_gates, *dec_gates;    /* (B, 4H), (B, 4D) */
    float *act, *c_new;              /* (4 max(H, D)), (max(H, D)) */
    float *h_att, *h_dec, *y1, *y2, *y3, *ctx, *energy, *pad;
    /* (B, H), (B, D), (B, F1), (B, F2), (B, F3), (B, E), (N), (2 (N + K)) */
    const float *ones;               /* (max(H, D)): the LSTM row function's dropout multipliers */
} IS;

size_t is_struct_size(void) { return sizeof(IS); }

""" + MATH + r"""
/* Y = X @ W for B rows X (B, K) and a row-major (K, M) W, Y (B, M): eight rows of W per pass
 * over the outputs (then four, then one), so each output is loaded and stored once per eight
 * rows (eight rows read 33 GB/s, four 29, MKL's vector-matrix product 20 on the step's matrices,
 * AMD EPYC, 2 threads, batch 1). W is read from memory once for all B rows: each 8 x TILE block
 * of it, 8 KB, serves every row from the L1 cache (batch 4: 3.2 ms for the step's matrices with
 * 256-column tiles, 3.5 with 128, 3.8 untiled; batch 1 untiled is fastest). The threads take
 * column ranges of whole cache lines. */
#define TILE 256
static void vecmat(const float *restrict X, const float *restrict W, float *restrict Y, int B, int K, int M) {
    #pragma omp parallel if ((size_t)B * K * M >= 65536)
    {
        int nt = 1, t = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        t = omp_get_thread_num();
#endif
        int chunk = ((M + nt - 1) / nt + 15) & ~15;
        int lo = t * chunk, hi = lo + chunk < M ? lo + chunk : M;
        const size_t m = (size_t)M;
        const int tile = B == 1 ? hi - lo : TILE;  /* one row: one pass over the range streams best */
        for (int b = 0; b < B && lo < hi; b++) memset(Y + (size_t)b * m + lo, 0, sizeof(float) * (hi - lo));
        for (int i = 0; i < K && lo < hi;) {
            const int rows = K - i >= 8 ? 8 : K - i >= 4 ? 4 : 1;
            for (int j0 = lo; j0 < hi; j0 += tile) {
                const int j1 = j0 + tile < hi ? j0 + tile : hi;
                const float *restrict w = W + (size_t)i * m;
                for (int b = 0; b < B; b++) {
                    const float *x = X + (size_t)b * K + i;
                    float *restrict yy = Y + (size_t)b * m;
                    if (rows == 8) {
                        const float a0 = x[0], a1 = x[1], a2 = x[2], a3 = x[3], a4 = x[4], a5 = x[5], a6 = x[6], a7 = x[7];
                        for (int j = j0; j < j1; j++)
                            yy[j] += a0 * w[j] + a1 * w[j + m] + a2 * w[j + 2 * m] + a3 * w[j + 3 * m]
                                   + a4 * w[j + 4 * m] + a5 * w[j + 5 * m] + a6 * w[j + 6 * m] + a7 * w[j + 7 * m];
                    } else if (rows == 4) {
                        const float a0 = x[0], a1 = x[1], a2 = x[2], a3 = x[3];
                        for (int j = j0; j < j1; j++) yy[j] += a0 * w[j] + a1 * w[j + m] + a2 * w[j + 2 * m] + a3 * w[j + 3 * m];
                    } else {
                        const float a0 = x[0];
                        for (int j = j0; j < j1; j++) yy[j] += a0 * w[j];
                    }
                }
            }
            i += rows;
        }
    }
}

/* Utterance b's attention energies: v . tanh(processed + location features + query), the
 * location features from windows of its previous and cumulative weights (zero-padded). */
static void energies(const IS *p, int b, const float *restrict query) {
    const int N = p->N, A = p->A, K = p->K;
    const float *w = p->w + (size_t)b * N, *wcum = p->wcum + (size_t)b * N;
    const float *processed = p->processed + (size_t)b * N * A;
    float *restrict pw = p->pad, *restrict pc = p->pad + N + K;
    memset(pw, 0, sizeof(float) * 2 * (N + K));
    memcpy(pw + K / 2, w, sizeof(float) * N);
    memcpy(pc + K / 2, wcum, sizeof(float) * N);
    #pragma omp parallel for schedule(static) if ((size_t)N * A * K >= 65536)
    for (int n = 0; n < N; n++) {
        float key[A];
        const float *restrict base = processed + (size_t)n * A;
        for (int a = 0; a < A; a++) key[a] = base[a] + query[a];
        for (int c = 0; c < 2; c++) {
            const float *restrict src = (c ? pc : pw) + n;
            for (int t = 0; t < K; t++) {
                const float x = src[t];
                if (x == 0.0f) continue;  /* most of a window is zero: attention is peaked */
                const float *restrict row = p->loc_kernel + (size_t)(c * K + t) * A;
                for (int a = 0; a < A; a++) key[a] += x * row[a];
            }
        }
        float e = 0.0f;
        for (int a = 0; a < A; a++) e += ftanh(key[a]) * p->v[a];
        p->energy[n] = e;
    }
}

/* Masked softmax of the energies into utterance b's weights (and cumulative weights); the mask
 * is padding plus, with a window, every symbol farther than it from the previous weights' first
 * maximum. Masked symbols are tested, never marked with an infinity: -ffast-math assumes there
 * are none. */
static void attend(const IS *p, int b) {
    const int N = p->N;
    float *w = p->w + (size_t)b * N, *wcum = p->wcum + (size_t)b * N;
    const uint8_t *invalid = p->invalid ? p->invalid + (size_t)b * N : NULL;
    int peak = 0;
    if (p->window > 0)
        for (int n = 1; n < N; n++)
            if (w[n] > w[peak]) peak = n;
#define MASKED(n) ((invalid && invalid[n]) || (p->window > 0 && abs((n) - peak) > p->window))
    float emax = -FLT_MAX;
    for (int n = 0; n < N; n++)
        if (!MASKED(n) && p->energy[n] > emax) emax = p->energy[n];
    float sum = 0.0f;
    for (int n = 0; n < N; n++) {
        float x = MASKED(n) ? 0.0f : fexp(p->energy[n] - emax);
        w[n] = x;
        sum += x;
    }
#undef MASKED
    const float scale = 1.0f / sum;
    for (int n = 0; n < N; n++) {
        w[n] *= scale;
        wcum[n] += w[n];
    }
}

/* The LSTM cell nonlinearity in place on c (X), through the training kernels' row function. */
static void lstm(const IS *p, const float *restrict g, float *restrict c, int X, float *restrict h) {
    lstm_row_fwd(g, c, p->ones, X, p->act, p->c_new, h);
    memcpy(c, p->c_new, sizeof(float) * X);
}

/* One step of all B utterances. prenet: (B, P) the pre-net's outputs for the previous frames.
 * Writes the frames and stop logits (R = r * n_mels + r each, biases included) to out (B, R),
 * the new weights to align (B, N), and to fired[b] the index of the first of utterance b's r
 * frames whose stop probability exceeds the threshold, or -1. */
void is_step(const IS *p, const float *restrict prenet, float *restrict out, float *restrict align,
             int32_t *restrict fired) {
    const int B = p->B, H = p->H, D = p->D, A = p->A, R = p->R, N = p->N, E = p->E, r = p->r;
    const int F1 = 4 * H + A + 4 * D, F2 = 4 * H + 4 * D + R, F3 = 4 * D + R;

    vecmat(prenet, p->w_prenet, p->att_gates, B, p->P, 4 * H);
    for (int b = 0; b < B; b++) {
        float *g = p->att_gates + (size_t)b * 4 * H;
        const float *rec = p->att_rec + (size_t)b * 4 * H;
        for (int j = 0; j < 4 * H; j++) g[j] += p->att_bias[j] + rec[j];
        lstm(p, g, p->att_c + (size_t)b * H, H, p->h_att + (size_t)b * H);
    }

    vecmat(p->h_att, p->w_hatt, p->y1, B, H, F1);
    for (int b = 0; b < B; b++) {
        energies(p, b, p->y1 + (size_t)b * F1 + 4 * H);
        attend(p, b);
    }
    memcpy(align, p->w, sizeof(float) * B * N);

    if (p->projected) {
        for (int b = 0; b < B; b++)
            vecmat(p->w + (size_t)b * N, p->ctx_mat + (size_t)b * N * F2, p->y2 + (size_t)b * F2, 1, N, F2);
    } else {
        for (int b = 0; b < B; b++)
            vecmat(p->w + (size_t)b * N, p->memory + (size_t)b * N * E, p->ctx + (size_t)b * E, 1, N, E);
        vecmat(p->ctx, p->ctx_mat, p->y2, B, E, F2);
    }
    for (int b = 0; b < B; b++) {
        const float *dec_from_h = p->y1 + (size_t)b * F1 + 4 * H + A, *dec_from_ctx = p->y2 + (size_t)b * F2 + 4 * H;
        const float *rec = p->dec_rec + (size_t)b * 4 * D;
        float *g = p->dec_gates + (size_t)b * 4 * D;
        for (int j = 0; j < 4 * D; j++) g[j] = dec_from_h[j] + dec_from_ctx[j] + p->dec_bias[j] + rec[j];
        lstm(p, g, p->dec_c + (size_t)b * D, D, p->h_dec + (size_t)b * D);
    }

    vecmat(p->h_dec, p->w_hdec, p->y3, B, D, F3);
    const int n_mel_values = R - r;
    for (int b = 0; b < B; b++) {
        const float *y1 = p->y1 + (size_t)b * F1, *y2 = p->y2 + (size_t)b * F2, *y3 = p->y3 + (size_t)b * F3;
        float *att_rec = p->att_rec + (size_t)b * 4 * H, *o = out + (size_t)b * R;
        for (int j = 0; j < 4 * H; j++) att_rec[j] = y1[j] + y2[j];
        memcpy(p->dec_rec + (size_t)b * 4 * D, y3, sizeof(float) * 4 * D);
        for (int j = 0; j < R; j++) o[j] = y2[4 * H + 4 * D + j] + y3[4 * D + j] + p->out_bias[j];
        fired[b] = -1;
        for (int j = 0; j < r; j++)
            if (1.0f / (1.0f + expf(-o[n_mel_values + j])) > p->gate_threshold) { fired[b] = j; break; }
    }
}
"""
