"""C source of the single-utterance free-running decoder step (see fast_inference.py).

Kept as a Python string so it ships inside the package with no package-data setup; it is
compiled with the system C compiler on first use and cached (tacowave/native.py).
"""

from tacotron2._decoder_math_src import MATH

SOURCE = r"""/* One free-running Tacotron-2 decoder step for one utterance, everything after the pre-net.
 *
 * Synthesising one utterance is bound by reading the decoder's weights: each step multiplies
 * ~59 MB of them (NVIDIA's sizes) by one vector. vecmat() below streams a transposed (in, out)
 * matrix eight input rows at a time, the threads splitting the output columns, and reads at
 * ~1.6x the rate of MKL's vector-matrix product on the same matrices (AMD EPYC, 2 threads);
 * the ~40 small PyTorch operators between the products (LSTM cells, attention, softmax) become
 * plain loops in the same call. The math and the weight stacks are Decoder._step's
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
    int32_t N, E, H, D, A, K, P;     /* symbols, memory, LSTMs, attention, location taps, pre-net */
    int32_t r, R;                    /* frames per step, r * n_mels + r outputs per step */
    int32_t window;                  /* > 0: attend only within this many symbols of the last peak */
    int32_t projected;               /* 1: ctx_mat is the memory already multiplied by the context stack */
    float gate_threshold;
    /* constants of the pass */
    const float *w_prenet;   /* (P, 4H)  att W_ih, pre-net part */
    const float *w_hatt;     /* (H, F1)  F1 = 4H + A + 4D: [att W_hh | query | dec W_ih h_att part] */
    const float *ctx_mat;    /* projected: (N, F2), else (E, F2); F2 = 4H + 4D + R:
                                [att W_ih ctx part | dec W_ih ctx part | mel, gate ctx part] */
    const float *memory;     /* (N, E); read only when not projected */
    const float *w_hdec;     /* (D, F3)  F3 = 4D + R: [dec W_hh | mel, gate h_dec part] */
    const float *processed;  /* (N, A)   memory through the attention's memory layer */
    const float *loc_kernel; /* (2K, A)  location conv and dense layer composed */
    const float *v;          /* (A) */
    const uint8_t *invalid;  /* (N), 1 on padding; or NULL */
    const float *att_bias;   /* (4H) */
    const float *dec_bias;   /* (4D) */
    const float *out_bias;   /* (R)  [mel bias | gate bias] */
    /* state, zero at the first step */
    float *att_c, *dec_c;    /* (H), (D) */
    float *att_rec, *dec_rec;/* (4H), (4D): next step's recurrent pre-activations */
    float *w, *wcum;         /* (N) previous and cumulative attention weights */
    /* scratch */
    float *gates, *act, *c_new;      /* (4 max(H, D)), (4 max(H, D)), (max(H, D)) */
    float *h_att, *h_dec, *y1, *y2, *y3, *ctx, *energy, *pad;
    /* (H), (D), (F1), (F2), (F3), (E), (N), (2 (N + K)) */
    const float *ones;               /* (max(H, D)): the LSTM row function's dropout multipliers */
} IS;

size_t is_struct_size(void) { return sizeof(IS); }

""" + MATH + r"""
/* y = x @ W for a row-major (K, M) W: eight rows of W per pass over the output (then four, then
 * one), so y is loaded and stored once per eight rows (eight rows read 33 GB/s, four 29, MKL 20
 * on the step's matrices, AMD EPYC, 2 threads); the threads take column ranges of whole cache
 * lines. */
static void vecmat(const float *restrict x, const float *restrict W, float *restrict y, int K, int M) {
    #pragma omp parallel if ((size_t)K * M >= 65536)
    {
        int nt = 1, t = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        t = omp_get_thread_num();
#endif
        int chunk = ((M + nt - 1) / nt + 15) & ~15;
        int lo = t * chunk, hi = lo + chunk < M ? lo + chunk : M;
        if (lo < hi) {
            float *restrict yy = y + lo;
            const int n = hi - lo;
            const size_t m = (size_t)M;
            memset(yy, 0, sizeof(float) * n);
            int i = 0;
            for (; i + 8 <= K; i += 8) {
                const float *restrict w = W + (size_t)i * m + lo;
                const float a0 = x[i], a1 = x[i + 1], a2 = x[i + 2], a3 = x[i + 3];
                const float a4 = x[i + 4], a5 = x[i + 5], a6 = x[i + 6], a7 = x[i + 7];
                for (int j = 0; j < n; j++)
                    yy[j] += a0 * w[j] + a1 * w[j + m] + a2 * w[j + 2 * m] + a3 * w[j + 3 * m]
                           + a4 * w[j + 4 * m] + a5 * w[j + 5 * m] + a6 * w[j + 6 * m] + a7 * w[j + 7 * m];
            }
            for (; i + 4 <= K; i += 4) {
                const float *restrict w = W + (size_t)i * m + lo;
                const float a0 = x[i], a1 = x[i + 1], a2 = x[i + 2], a3 = x[i + 3];
                for (int j = 0; j < n; j++) yy[j] += a0 * w[j] + a1 * w[j + m] + a2 * w[j + 2 * m] + a3 * w[j + 3 * m];
            }
            for (; i < K; i++) {
                const float *restrict w = W + (size_t)i * m + lo;
                const float a0 = x[i];
                for (int j = 0; j < n; j++) yy[j] += a0 * w[j];
            }
        }
    }
}

/* Attention energies of every symbol: v . tanh(processed + location features + query), the
 * location features from windows of the previous and cumulative weights (zero-padded). */
static void energies(const IS *p, const float *restrict query) {
    const int N = p->N, A = p->A, K = p->K;
    float *restrict pw = p->pad, *restrict pc = p->pad + N + K;
    memset(pw, 0, sizeof(float) * 2 * (N + K));
    memcpy(pw + K / 2, p->w, sizeof(float) * N);
    memcpy(pc + K / 2, p->wcum, sizeof(float) * N);
    #pragma omp parallel for schedule(static) if ((size_t)N * A * K >= 65536)
    for (int n = 0; n < N; n++) {
        float key[A];
        const float *restrict base = p->processed + (size_t)n * A;
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

/* Masked softmax of the energies into p->w (and p->wcum); the mask is padding plus, with a
 * window, every symbol farther than it from the previous weights' first maximum. Masked symbols
 * are tested, never marked with an infinity: -ffast-math assumes there are none. */
static void attend(const IS *p) {
    const int N = p->N;
    int peak = 0;
    if (p->window > 0)
        for (int n = 1; n < N; n++)
            if (p->w[n] > p->w[peak]) peak = n;
#define MASKED(n) ((p->invalid && p->invalid[n]) || (p->window > 0 && abs((n) - peak) > p->window))
    float emax = -FLT_MAX;
    for (int n = 0; n < N; n++)
        if (!MASKED(n) && p->energy[n] > emax) emax = p->energy[n];
    float sum = 0.0f;
    for (int n = 0; n < N; n++) {
        float x = MASKED(n) ? 0.0f : fexp(p->energy[n] - emax);
        p->w[n] = x;
        sum += x;
    }
#undef MASKED
    const float scale = 1.0f / sum;
    for (int n = 0; n < N; n++) {
        p->w[n] *= scale;
        p->wcum[n] += p->w[n];
    }
}

/* The LSTM cell nonlinearity in place on c (X), through the training kernels' row function. */
static void lstm(const IS *p, const float *restrict g, float *restrict c, int X, float *restrict h) {
    lstm_row_fwd(g, c, p->ones, X, p->act, p->c_new, h);
    memcpy(c, p->c_new, sizeof(float) * X);
}

/* One step. prenet: (P) the pre-net's output for the previous frame. Writes the frames and
 * stop logits (R = r * n_mels + r, biases included) to out and the new weights to align (N).
 * Returns the index of the first of the r frames whose stop probability exceeds the threshold,
 * or -1. */
int is_step(const IS *p, const float *restrict prenet, float *restrict out, float *restrict align) {
    const int H = p->H, D = p->D, A = p->A, R = p->R, N = p->N, E = p->E, r = p->r;
    const int F1 = 4 * H + A + 4 * D, F2 = 4 * H + 4 * D + R, F3 = 4 * D + R;

    vecmat(prenet, p->w_prenet, p->gates, p->P, 4 * H);
    for (int j = 0; j < 4 * H; j++) p->gates[j] += p->att_bias[j] + p->att_rec[j];
    lstm(p, p->gates, p->att_c, H, p->h_att);

    vecmat(p->h_att, p->w_hatt, p->y1, H, F1);
    energies(p, p->y1 + 4 * H);
    attend(p);
    memcpy(align, p->w, sizeof(float) * N);

    if (p->projected) {
        vecmat(p->w, p->ctx_mat, p->y2, N, F2);
    } else {
        vecmat(p->w, p->memory, p->ctx, N, E);
        vecmat(p->ctx, p->ctx_mat, p->y2, E, F2);
    }
    const float *dec_from_h = p->y1 + 4 * H + A, *dec_from_ctx = p->y2 + 4 * H;
    for (int j = 0; j < 4 * D; j++) p->gates[j] = dec_from_h[j] + dec_from_ctx[j] + p->dec_bias[j] + p->dec_rec[j];
    lstm(p, p->gates, p->dec_c, D, p->h_dec);

    vecmat(p->h_dec, p->w_hdec, p->y3, D, F3);
    for (int j = 0; j < 4 * H; j++) p->att_rec[j] = p->y1[j] + p->y2[j];
    memcpy(p->dec_rec, p->y3, sizeof(float) * 4 * D);
    for (int j = 0; j < R; j++) out[j] = p->y2[4 * H + 4 * D + j] + p->y3[4 * D + j] + p->out_bias[j];

    const int n_mel_values = R - r;
    for (int j = 0; j < r; j++)
        if (1.0f / (1.0f + expf(-out[n_mel_values + j])) > p->gate_threshold) return j;
    return -1;
}
"""
