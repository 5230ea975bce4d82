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
            const float *xt = x + t * x_step + a;
            float *st = spikes + t * stride + a;
            float *ht = h_seq ? h_seq + t * stride + a : scratch;
            for (int64_t i = 0; i < m; i++) {
                float h = charge(xt[i], vb[i], c);
                float s = h >= c->v_threshold ? 1.0f : 0.0f;
                ht[i] = h;
                st[i] = s;
                vb[i] = reset(h, s, c);
            }
            if (v_seq)
                for (int64_t i = 0; i < m; i++)
                    v_seq[t * stride + a + i] = vb[i];
        }
    }
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

/* grad_c holds dL/dV_T * g and receives c_0 = dL/dV_0 * g. grad_x receives dL/dX: [T, stride] when grad_x_step is
 * stride; with grad_x_step 0 (an input repeated over T) it holds zeros [stride] and receives the sum over T. */
void lif_backward(const float *h_seq, const float *spikes, const float *grad_spikes, float *grad_x, int64_t grad_x_step,
                  float *grad_c, int64_t stride, int64_t count, int64_t steps, const lif_constants *constants)
{
    const lif_constants k = *constants, *c = &k;
    int variant = c->hard_reset << 3 | c->detach_reset << 2 | c->rectangle << 1 | (grad_x_step == 0);
    for (int64_t a = 0; a < count; a += BLOCK) {
        int64_t m = count - a < BLOCK ? count - a : BLOCK;
        for (int64_t t = steps - 1; t >= 0; t--) {
            int64_t o = t * stride + a;
            float *gx_t = grad_x + t * grad_x_step + a;
#define STEP(v) \
    case v: backward_step(h_seq + o, spikes + o, grad_spikes + o, gx_t, grad_c + a, m, c, v >> 3, v >> 2 & 1, v >> 1 & 1, \
                          v & 1); break;
            switch (variant) {
                STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
                STEP(8) STEP(9) STEP(10) STEP(11) STEP(12) STEP(13) STEP(14) STEP(15)
            }
#undef STEP
        }
    }
}
