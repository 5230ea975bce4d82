"""The "cupy" LIF backend: one CUDA kernel launch for the forward over all T steps and one for the backward.

The kernels are compiled by CuPy (NVRTC) on first use, one instantiation per storage dtype, and run on torch's current
stream. 16-bit values are converted with inline PTX and bit operations instead of cuda_fp16.h / cuda_bf16.h, so the
source compiles without any CUDA headers on the include path. The state is float32 (float64 for float64 inputs).
Only CuPy itself is imported lazily: this module imports on machines without CUDA (the tests compile the source there).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from pfa.lif.params import LIFParams
from pfa.lif.torch_backend import propagate_non_finite

STORAGE_TYPES = {torch.float32: "float", torch.float64: "double", torch.float16: "Half", torch.bfloat16: "BFloat16"}
NVRTC_OPTIONS = ("--std=c++14", "--fmad=false")  # no fused multiply-add: rounds like spikingjelly's CPU path
THREADS = 256

CUDA_SOURCE = r"""
struct Half { unsigned short bits; };
struct BFloat16 { unsigned short bits; };

template <typename S> struct State { typedef float type; };
template <> struct State<double> { typedef double type; };

__device__ __forceinline__ float load(float v) { return v; }
__device__ __forceinline__ double load(double v) { return v; }
__device__ __forceinline__ float load(Half v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
    return f;
}
__device__ __forceinline__ float load(BFloat16 v) { return __uint_as_float(((unsigned int)v.bits) << 16); }

__device__ __forceinline__ void store(float& out, float v) { out = v; }
__device__ __forceinline__ void store(double& out, double v) { out = v; }
__device__ __forceinline__ void store(Half& out, float v) {
    unsigned short bits;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(v));
    out.bits = bits;
}
__device__ __forceinline__ void store(BFloat16& out, float v) {
    unsigned int u = __float_as_uint(v);
    out.bits = (v != v) ? (unsigned short)0x7fc0 : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// x, spikes: [steps, numel]; v0, v_out: [numel]; h_seq, v_seq: [steps, numel] or null when not wanted.
template <typename S>
__global__ void lif_forward(const S* __restrict__ x, const typename State<S>::type* __restrict__ v0,
                            S* __restrict__ spikes, typename State<S>::type* __restrict__ h_seq,
                            typename State<S>::type* __restrict__ v_seq, typename State<S>::type* __restrict__ v_out,
                            long long numel, int steps, typename State<S>::type tau,
                            typename State<S>::type v_threshold, typename State<S>::type v_reset,
                            int decay_input, int soft_reset) {
    typedef typename State<S>::type A;
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= numel) return;
    A v = v0[i];
    for (int t = 0; t < steps; ++t) {
        const long long k = t * numel + i;
        const A x_t = load(x[k]);
        const A h = decay_input ? v + (x_t - (v - v_reset)) / tau : v - (v - v_reset) / tau + x_t;
        const bool fire = h >= v_threshold;
        store(spikes[k], (A)(fire ? 1 : 0));
        if (h_seq) h_seq[k] = h;
        v = fire ? (soft_reset ? h - v_threshold : v_reset) : h;
        if (v_seq) v_seq[k] = v;
    }
    v_out[i] = v;
}

// surrogate 0: atan, alpha / 2 / (1 + (atan_k * (h - v_threshold))^2), atan_k = pi / 2 * alpha;
// surrogate 1: rectangle, rect_height where |h - center| < width, rect_height = 1 / (2 * width).
template <typename S>
__global__ void lif_backward(const S* __restrict__ grad_spikes, const typename State<S>::type* __restrict__ grad_v,
                             const typename State<S>::type* __restrict__ h_seq, S* __restrict__ grad_x,
                             typename State<S>::type* __restrict__ grad_v0, long long numel, int steps,
                             typename State<S>::type tau, typename State<S>::type v_threshold,
                             typename State<S>::type v_reset, int decay_input, int soft_reset, int detach_reset,
                             int surrogate, typename State<S>::type half_alpha, typename State<S>::type atan_k,
                             typename State<S>::type center, typename State<S>::type width,
                             typename State<S>::type rect_height) {
    typedef typename State<S>::type A;
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= numel) return;
    A carry = grad_v[i];
    for (int t = steps - 1; t >= 0; --t) {
        const long long k = t * numel + i;
        const A h = h_seq[k];
        A sg;
        if (surrogate == 0) {
            const A z = (h - v_threshold) * atan_k;
            sg = half_alpha / ((A)1 + z * z);
        } else {
            const A distance = h < center ? center - h : h - center;
            sg = distance < width ? rect_height : (A)0;
        }
        A reset_grad;
        if (soft_reset) {
            reset_grad = detach_reset ? (A)1 : (A)1 - v_threshold * sg;
        } else {
            reset_grad = h >= v_threshold ? (A)0 : (A)1;
            if (!detach_reset) reset_grad += (v_reset - h) * sg;
        }
        const A grad_h = load(grad_spikes[k]) * sg + carry * reset_grad;
        store(grad_x[k], decay_input ? grad_h / tau : grad_h);
        carry = grad_h - grad_h / tau;
    }
    grad_v0[i] = carry;
}
"""


def kernel_names(storage: str) -> tuple[str, str]:
    """The template instantiations (NVRTC name expressions) of the forward and backward kernels for one dtype."""
    return f"lif_forward<{storage}>", f"lif_backward<{storage}>"


@functools.cache
def _kernels(storage: str, device_index: int):
    import cupy

    with cupy.cuda.Device(device_index):
        module = cupy.RawModule(code=CUDA_SOURCE, options=NVRTC_OPTIONS, name_expressions=kernel_names(storage))
        return tuple(module.get_function(name) for name in kernel_names(storage))


def _pointer(tensor: torch.Tensor | None) -> np.uint64:
    return np.uint64(0 if tensor is None else tensor.data_ptr())


def _launch(kernel, device: torch.device, numel: int, *args):
    import cupy

    if numel == 0:
        return
    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream)
    with cupy.cuda.Device(device.index), stream:
        kernel((math.ceil(numel / THREADS),), (THREADS,), args)


class CupyMultiStepLIF(torch.autograd.Function):
    """Same contract as pfa.lif.torch_backend._MultiStepLIF, for CUDA tensors."""

    @staticmethod
    def forward(ctx, x_seq, v0, params: LIFParams, store_v_seq: bool):
        x = x_seq.detach().contiguous()
        storage = STORAGE_TYPES.get(x.dtype)
        if storage is None:
            raise TypeError(f"LIF cupy backend: unsupported dtype {x.dtype}; use float32, float16, bfloat16 or float64")
        state_dtype = v0.dtype
        scalar = np.float64 if state_dtype == torch.float64 else np.float32
        steps, numel = x.shape[0], v0.numel()
        needs_grad = any(ctx.needs_input_grad[:2])
        spikes = torch.empty_like(x)
        h_seq = torch.empty_like(x, dtype=state_dtype) if needs_grad else None
        v_seq = torch.empty_like(x, dtype=state_dtype) if store_v_seq else None
        v0 = v0.detach().contiguous()
        v = torch.empty_like(v0)
        reset = 0.0 if params.v_reset is None else params.v_reset
        forward_kernel = _kernels(storage, x.device.index)[0]
        pointers = [_pointer(t) for t in (x, v0, spikes, h_seq, v_seq, v)]
        constants = [scalar(params.tau), scalar(params.v_threshold), scalar(reset)]
        flags = [np.int32(params.decay_input), np.int32(params.v_reset is None)]
        _launch(forward_kernel, x.device, numel, *pointers, np.int64(numel), np.int32(steps), *constants, *flags)
        propagate_non_finite(spikes, v)
        ctx.params, ctx.storage, ctx.scalar = params, storage, scalar
        if needs_grad:
            ctx.save_for_backward(h_seq)
        return spikes, v, v_seq if v_seq is not None else v.new_empty(0)

    @staticmethod
    def backward(ctx, grad_spikes, grad_v, _grad_v_seq):
        (h_seq,) = ctx.saved_tensors
        p, scalar = ctx.params, ctx.scalar
        steps, numel = h_seq.shape[0], grad_v.numel()
        grad_spikes = grad_spikes.contiguous()
        grad_v = grad_v.to(h_seq.dtype).contiguous()
        grad_x = torch.empty_like(grad_spikes)
        grad_v0 = torch.empty_like(grad_v)
        reset = 0.0 if p.v_reset is None else p.v_reset
        backward_kernel = _kernels(ctx.storage, h_seq.device.index)[1]
        pointers = [_pointer(t) for t in (grad_spikes, grad_v, h_seq, grad_x, grad_v0)]
        constants = [scalar(p.tau), scalar(p.v_threshold), scalar(reset)]
        flags = [np.int32(f) for f in (p.decay_input, p.v_reset is None, p.detach_reset, p.surrogate == "rectangle")]
        surrogate = [scalar(c) for c in (p.alpha / 2, math.pi / 2 * p.alpha, p.center, p.width, 1 / (2 * p.width))]
        args = (*pointers, np.int64(numel), np.int32(steps), *constants, *flags, *surrogate)
        _launch(backward_kernel, h_seq.device, numel, *args)
        return grad_x, grad_v0, None, None
