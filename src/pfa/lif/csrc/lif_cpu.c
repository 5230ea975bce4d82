/* Fused multi-step LIF loops for the CPU (pfa.neuron, backend "cpu"), float32.
 *
 * One call runs all T steps of `count` neurons in blocks that stay in the L1 cache: per block, the membrane (forward) or
 * the carried gradient (backward) never leaves the cache, and every input is read and every output written once. The
 * arithmetic is written operation by operation in the order of the torch backend (pfa/_lif_torch.py) so that both give
 * the same floats; build with -ffp-contract=off so that no product and sum are fused where torch does not fuse them.
 *
 * Tensors are [T, stride] row-major; the pointers given are already offset to the first neuron of this call.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "pool_cpu.h"

#define BLOCK 1024

typedef struct {
    int32_t decay_input;  /* charge H = V + (X - leak) / tau, else H = V - leak / tau + X */
    int32_t hard_reset;   /* V = H * (1 - S) + v_reset * S, else V = H - S * v_threshold */
    int32_t detach_reset; /* no gradient through the reset */
    int32_t rectangle;    /* rectangle surrogate, else atan */
    float tau, v_threshold, v_reset, minus_threshold;
    float k2;             /* atan: (pi / 2 * alpha)^2 */
    float center, width;  /* rectangle */
    float through;        /* soft reset, not detached: -v_threshold * scale */
    float minus_scale;    /* hard reset, not detached: -scale */
    float input_scale;    /* scale * g, the surrogate's scale times dX/dH's factor */
    float decay;          /* 1 - 1 / tau */
} lif_constants;

static inline float charge(float x, float v, const lif_constants *c)
{
    float leak = v - c->v_reset; /* v_reset is 0 for a soft reset; subtracting 0 changes no value */
    return c->decay_input ? v + (x - leak) / c->tau : (v - leak / c->tau) + x;
}

static inline float reset(float h, float spike, const lif_constants *c)
{
    if (!c->hard_reset)
        return h + c->minus_threshold * spike;
    return (h + (-1.0f * h) * spike) + c->v_reset * spike;
}

/* One step of the forward recurrence over m neurons: charge, fire, reset. */
static inline void forward_step(const float *restrict xt, float *restrict vb, float *restrict st, float *restrict ht,
                                int64_t m, const lif_constants *c)
{
    for (int64_t i = 0; i < m; i++) {
        float h = charge(xt[i], vb[i], c);
        float s = h >= c->v_threshold ? 1.0f : 0.0f;
        ht[i] = h;
        st[i] = s;
        vb[i] = reset(h, s, c);
    }
}

/* x_step is the distance between time steps in x: stride, or 0 for an input repeated over T. h_seq and v_seq may be
 * NULL. v holds the initial membrane and receives the final one. */
void lif_forward(const float *x, int64_t x_step, float *v, float *spikes, float *h_seq, float *v_seq, int64_t stride,
                 int64_t count, int64_t steps, const lif_constants *constants)
{
    const lif_constants k = *constants, *c = &k; /* a local copy: no output can alias it, so the loops vectorise */
    float scratch[BLOCK];
    for (int64_t a = 0; a < count; a += BLOCK) {
        int64_t m = count - a < BLOCK ? count - a : BLOCK;
        float *vb = v + a;
        for (int64_t t = 0; t < steps; t++) {
            forward_step(x + t * x_step + a, vb, spikes + t * stride + a, h_seq ? h_seq + t * stride + a : scratch, m, c);
            if (v_seq)
                for (int64_t i = 0; i < m; i++)
                    v_seq[t * stride + a + i] = vb[i];
        }
    }
}

/* The LIF over maps [N, height, width, channels] (channels-last) whose spikes are max-pooled 2x2 at once: `pairs`
 * pairs of lines (2 * width * channels neurons each, height even) are run through all T steps one after the other,
 * and only the pooled spikes are written ([T, pooled_stride], a pair giving one pooled line) besides H (h_seq, NULL
 * when no gradient is needed). The last step's spikes carry a non-finite final membrane (s + 0 * v), as the unfused
 * forward's do. Returns -1 when its scratch memory cannot be allocated, else 0. */
int lif_pool_forward(const float *x, int64_t x_step, float *v, float *pooled, float *h_seq, int64_t stride,
                      int64_t pooled_stride, int64_t pairs, int64_t width, int64_t channels, int64_t steps,
                      const lif_constants *constants)
{
    const lif_constants k = *constants, *c = &k;
    int64_t line = width * channels, m = 2 * line, out_line = width / 2 * channels;
    float *spikes = malloc(2 * m * sizeof(float)), *scratch = spikes + m;
    if (!spikes)
        return -1;
    for (int64_t p = 0; p < pairs; p++) {
        int64_t a = p * m;
        for (int64_t t = 0; t < steps; t++) {
            forward_step(x + t * x_step + a, v + a, spikes, h_seq ? h_seq + t * stride + a : scratch, m, c);
            if (t == steps - 1)
                for (int64_t i = 0; i < m; i++)
                    spikes[i] += 0.0f * v[a + i];
            pool_lines(spikes, spikes + line, pooled + t * pooled_stride + p * out_line, width / 2, channels);
        }
    }
    free(spikes);
    return 0;
}

/* One step of the backward recurrence over m neurons; the flags are constants after inlining, so each of the sixteen
 * variants has a branch-free loop that vectorises. `sum` adds dL/dX into gx_t (an input repeated over T). */
static inline __attribute__((always_inline)) void backward_step(const float *h_t, const float *s_t, const float *gs_t,
                                                                float *gx_t, float *cb, int64_t m,
                                                                const lif_constants *c, int hard, int detach, int rect,
                                                                int sum)
{
    for (int64_t i = 0; i < m; i++) {
        float h = h_t[i], f = rect ? fabsf(h - c->center) < c->width ? 1.0f : 0.0f
                                   : (float)((double)(c->k2 * (h - c->v_threshold)) * (h - c->v_threshold) + 1.0);
        float g = cb[i];
        if (!hard) {
            if (!detach)
                g = rect ? g + (c->through * g) * f : g + (c->through * g) / f;
        } else {
            float through_spike = (h - c->v_reset) * g;
            g = g + (-1.0f * g) * s_t[i];
            if (!detach)
                g = rect ? g + (c->minus_scale * through_spike) * f : g + (c->minus_scale * through_spike) / f;
        }
        float out = rect ? g + (c->input_scale * gs_t[i]) * f : g + (c->input_scale * gs_t[i]) / f;
        gx_t[i] = sum ? gx_t[i] + out : out;
        cb[i] = out * c->decay;
    }
}

/* One backward step of the variant (hard reset, detached reset, rectangle, summed input gradient) as 4 bits. */
static inline void backward_variant(int variant, const float *h_t, const float *s_t, const float *gs_t, float *gx_t,
                                    float *cb, int64_t m, const lif_constants *c)
{
#define STEP(v) \
    case v: backward_step(h_t, s_t, gs_t, gx_t, cb, m, c, v >> 3, v >> 2 & 1, v >> 1 & 1, v & 1); break;
    switch (variant) {
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
        STEP(8) STEP(9) STEP(10) STEP(11) STEP(12) STEP(13) STEP(14) STEP(15)
    }
#undef STEP
}

static inline int variant_of(const lif_constants *c, int64_t grad_x_step)
{
    return c->hard_reset << 3 | c->detach_reset << 2 | c->rectangle << 1 | (grad_x_step == 0);
}

/* grad_c holds dL/dV_T * g and receives c_0 = dL/dV_0 * g. grad_x receives dL/dX: [T, stride] when grad_x_step is
 * stride; with grad_x_step 0 (an input repeated over T) it holds zeros [stride] and receives the sum over T. */
void lif_backward(const float *h_seq, const float *spikes, const float *grad_spikes, float *grad_x, int64_t grad_x_step,
                  float *grad_c, int64_t stride, int64_t count, int64_t steps, const lif_constants *constants)
{
    const lif_constants k = *constants, *c = &k;
    int variant = variant_of(c, grad_x_step);
    for (int64_t a = 0; a < count; a += BLOCK) {
        int64_t m = count - a < BLOCK ? count - a : BLOCK;
        for (int64_t t = steps - 1; t >= 0; t--) {
            int64_t o = t * stride + a;
            backward_variant(variant, h_seq + o, spikes + o, grad_spikes + o, grad_x + t * grad_x_step + a,
                             grad_c + a, m, c);
        }
    }
}

/* Backward of lif_pool_forward, pair by pair: the spikes are found again from H, each pooled gradient goes to its
 * window's first spike (or first neuron), and the LIF's backward step follows; grad_x and grad_c as in lif_backward.
 * Returns -1 when its scratch memory cannot be allocated, else 0. */
int lif_pool_backward(const float *h_seq, const float *grad_pooled, float *grad_x, int64_t grad_x_step,
                       float *grad_c, int64_t stride, int64_t pooled_stride, int64_t pairs, int64_t width,
                       int64_t channels, int64_t steps, const lif_constants *constants)
{
    const lif_constants k = *constants, *c = &k;
    int variant = variant_of(c, grad_x_step);
    int64_t line = width * channels, m = 2 * line, out_line = width / 2 * channels;
    float *spikes = malloc(2 * m * sizeof(float)), *grad_spikes = spikes + m;
    if (!spikes)
        return -1;
    if (width % 2) /* an odd last column is not pooled */
        for (int64_t i = (width - 1) * channels; i < line; i++)
            grad_spikes[i] = grad_spikes[line + i] = 0.0f;
    for (int64_t p = 0; p < pairs; p++) {
        int64_t a = p * m;
        for (int64_t t = steps - 1; t >= 0; t--) {
            const float *h_t = h_seq + t * stride + a;
            for (int64_t i = 0; i < m; i++)
                spikes[i] = h_t[i] >= c->v_threshold ? 1.0f : 0.0f;
            unpool_lines(spikes, spikes + line, grad_pooled + t * pooled_stride + p * out_line, grad_spikes,
                         grad_spikes + line, width / 2, channels);
            backward_variant(variant, h_t, spikes, grad_spikes, grad_x + t * grad_x_step + a, grad_c + a, m, c);
        }
    }
    free(spikes);
    return 0;
}
