"""C helpers shared by the compiled decoder kernels (fused_decoder.py's training step and
fast_inference.py's synthesis step): a vectorisable exp and the LSTM cell's nonlinearity.

The including source must already include <math.h> and <stdint.h>.
"""

MATH = r"""/* exp with a Cephes-style range reduction and degree-6 polynomial: ~1e-7 relative error, and
 * pure arithmetic, so loops over it vectorise. */
static inline float fexp(float x) {
    x = fminf(fmaxf(x, -87.0f), 88.0f);
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f;
}

static inline float fsigmoid(float x) { return 1.0f / (1.0f + fexp(-x)); }
static inline float ftanh(float x) { return 2.0f / (1.0f + fexp(-2.0f * x)) - 1.0f; }

/* LSTM cell nonlinearity for one row: gates (4X) -> act (4X), c_new, h (times the dropout
 * multipliers mask, all ones without dropout). */
static void lstm_row_fwd(const float *restrict g, const float *restrict c_prev, const float *restrict mask,
                         int X, float *restrict act, float *restrict c_new, float *restrict h) {
    for (int j = 0; j < X; j++) {
        float i = fsigmoid(g[j]), f = fsigmoid(g[X + j]), gg = ftanh(g[2 * X + j]), o = fsigmoid(g[3 * X + j]);
        float c = f * c_prev[j] + i * gg;
        act[j] = i; act[X + j] = f; act[2 * X + j] = gg; act[3 * X + j] = o;
        c_new[j] = c;
        h[j] = o * ftanh(c) * mask[j];
    }
}

"""
