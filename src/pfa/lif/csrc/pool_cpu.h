/* 2x2 max pooling of one pair of lines, float32, shared by the pooling loops (pool_cpu.c) and the LIF loops that pool
 * their spikes (lif_cpu.c).
 *
 * A line is one row of a [height, width, channels] map: width * channels floats, channels innermost. The maximum of a
 * window is chosen as torch's CPU kernel chooses it: scanning its rows in order, a value replaces the maximum when it
 * is greater or NaN, so ties go to the first and NaN to the last. An odd last column is left out (floor mode).
 */
#include <stdint.h>

static inline int wins(float value, float best)
{
    return (value > best) | (value != value); /* bitwise: no branch, so the loops vectorise */
}

static inline void pool_lines(const float *restrict top, const float *restrict bottom, float *restrict out,
                              int64_t out_width, int64_t channels)
{
    for (int64_t j = 0; j < out_width; j++) {
        const float *t = top + 2 * j * channels, *b = bottom + 2 * j * channels;
        float *o = out + j * channels;
        for (int64_t c = 0; c < channels; c++) {
            float best = t[c];
            best = wins(t[channels + c], best) ? t[channels + c] : best;
            best = wins(b[c], best) ? b[c] : best;
            best = wins(b[channels + c], best) ? b[channels + c] : best;
            o[c] = best;
        }
    }
}

/* Each window's gradient goes to the position of its maximum, found again in the input; the other three get 0, so
 * every gradient of the two lines is written (but an odd last column's). */
static inline void unpool_lines(const float *restrict top, const float *restrict bottom, const float *restrict grad_out,
                                float *restrict grad_top, float *restrict grad_bottom, int64_t out_width,
                                int64_t channels)
{
    for (int64_t j = 0; j < out_width; j++) {
        int64_t at = 2 * j * channels;
        const float *t = top + at, *b = bottom + at, *g = grad_out + j * channels;
        float *grad_t = grad_top + at, *grad_b = grad_bottom + at;
        for (int64_t c = 0; c < channels; c++) {
            float best = t[c];
            float g0 = g[c], g1 = 0.0f, g2 = 0.0f, g3 = 0.0f; /* the gradient follows the maximum so far */
            int w = wins(t[channels + c], best);
            best = w ? t[channels + c] : best;
            g1 = w ? g0 : g1;
            g0 = w ? 0.0f : g0;
            w = wins(b[c], best);
            best = w ? b[c] : best;
            g2 = w ? g[c] : g2;
            g1 = w ? 0.0f : g1;
            g0 = w ? 0.0f : g0;
            w = wins(b[channels + c], best);
            g3 = w ? g[c] : g3;
            g2 = w ? 0.0f : g2;
            g1 = w ? 0.0f : g1;
            g0 = w ? 0.0f : g0;
            grad_t[c] = g0;
            grad_t[channels + c] = g1;
            grad_b[c] = g2;
            grad_b[channels + c] = g3;
        }
    }
}
