/* 2x2 max pooling with stride 2 for the CPU (pfa.fast_layers.MaxPool2d), float32.
 *
 * Maps are [images, height, width, channels] row-major: channels-last tensors as they are, contiguous NCHW ones as
 * N * C single-channel images. The maximum of a window is chosen as torch's CPU kernel chooses it: scanning its rows in
 * order, a value replaces the maximum when it is greater or NaN, so ties go to the first and NaN to the last. Backward
 * chooses again from the saved input rather than from stored indices, and writes every input gradient (0 off the
 * maximum), so it needs no zero-filled buffer. Odd trailing rows and columns are dropped (floor mode); backward
 * leaves their gradient to the caller.
 *
 * One call covers the output rows [row, row + rows), a row being one image's pooled line (image * out_height + i).
 */
#include <stdint.h>

static inline int wins(float value, float best)
{
    return (value > best) | (value != value); /* bitwise: no branch, so the loops vectorise */
}

void max_pool2x2_forward(const float *x, float *y, int64_t row, int64_t rows, int64_t out_height, int64_t height,
                         int64_t width, int64_t channels)
{
    int64_t out_width = width / 2, line = width * channels, out_line = out_width * channels;
    for (int64_t r = row; r < row + rows; r++) {
        int64_t image = r / out_height, i = r % out_height;
        const float *top = x + (image * height + 2 * i) * line, *bottom = top + line;
        float *out = y + r * out_line;
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
}

void max_pool2x2_backward(const float *restrict x, const float *restrict grad_y, float *restrict grad_x, int64_t row,
                          int64_t rows, int64_t out_height, int64_t height, int64_t width, int64_t channels)
{
    int64_t out_width = width / 2, line = width * channels, out_line = out_width * channels;
    for (int64_t r = row; r < row + rows; r++) {
        int64_t image = r / out_height, i = r % out_height;
        int64_t offset = (image * height + 2 * i) * line;
        for (int64_t j = 0; j < out_width; j++) {
            const float *t = x + offset + 2 * j * channels, *b = t + line, *g = grad_y + r * out_line + j * channels;
            float *grad_t = grad_x + offset + 2 * j * channels, *grad_b = grad_t + line;
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
}
