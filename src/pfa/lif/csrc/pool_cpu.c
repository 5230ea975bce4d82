/* 2x2 max pooling with stride 2 for the CPU (pfa.fast_layers.MaxPool2d), float32.
 *
 * Maps are [images, height, width, channels] row-major (channels-last tensors). Backward chooses each window's maximum
 * again from the saved input rather than from stored indices and writes every input gradient (0 off the maximum), so
 * it needs no zero-filled buffer; the gradient of an odd last row or column is left to the caller.
 *
 * One call covers the output rows [row, row + rows), a row being one image's pooled line (image * out_height + i).
 */
#include "pool_cpu.h"

void max_pool2x2_forward(const float *x, float *y, int64_t row, int64_t rows, int64_t out_height, int64_t height,
                         int64_t width, int64_t channels)
{
    int64_t line = width * channels, out_line = width / 2 * channels;
    for (int64_t r = row; r < row + rows; r++) {
        const float *top = x + (r / out_height * height + 2 * (r % out_height)) * line;
        pool_lines(top, top + line, y + r * out_line, width / 2, channels);
    }
}

void max_pool2x2_backward(const float *x, const float *grad_y, float *grad_x, int64_t row, int64_t rows,
                          int64_t out_height, int64_t height, int64_t width, int64_t channels)
{
    int64_t line = width * channels, out_line = width / 2 * channels;
    for (int64_t r = row; r < row + rows; r++) {
        int64_t offset = (r / out_height * height + 2 * (r % out_height)) * line;
        unpool_lines(x + offset, x + offset + line, grad_y + r * out_line, grad_x + offset, grad_x + offset + line,
                     width / 2, channels);
    }
}
