"""The CuPy LIF backend without a GPU (NVRTC compiles the source; the kernels run on the host through a small shim and
agree with the torch backend) and on a GPU (against spikingjelly and the torch backend)."""

import ctypes
import ctypes.util
import functools
import glob
import math
import os
import re
import shutil
import site
import subprocess

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, neuron, surrogate

from pfa.lif import cupy_backend as _cupy_lif
from pfa.lif.neuron import LIF, cupy_available
from pfa.lif.torch_backend import _MultiStepLIF


def _nvrtc_candidates() -> list[str]:
    roots = [*site.getsitepackages(), site.getusersitepackages(), os.path.dirname(os.path.dirname(torch.__file__))]
    patterns = [os.path.join(root, "nvidia", "**", "libnvrtc.so*") for root in roots]
    found = [path for pattern in patterns for path in glob.glob(pattern, recursive=True)]
    found += glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*")
    named = ctypes.util.find_library("nvrtc")
    return [path for path in found if "builtins" not in path and ".alt." not in path] + ([named] if named else [])


def _load_nvrtc():
    for path in _nvrtc_candidates():
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    pytest.skip("no NVRTC library found (looked in the nvidia-* pip packages, /usr/local/cuda*, the loader path)")


class _Nvrtc:
    """The few NVRTC calls needed to compile one program, through ctypes (no CUDA device needed)."""

    def __init__(self):
        self.lib = _load_nvrtc()
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def check(self, status: int, program=None):
        if status != 0:
            message = self.lib.nvrtcGetErrorString(status).decode()
            raise AssertionError(f"NVRTC error {status} ({message}){self.log(program) if program else ''}")

    def log(self, program) -> str:
        size = ctypes.c_size_t()
        self.lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        text = ctypes.create_string_buffer(size.value)
        self.lib.nvrtcGetProgramLog(program, text)
        return "\n" + text.value.decode()

    def lowest_arch(self) -> int:
        count = ctypes.c_int()
        self.check(self.lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)))
        archs = (ctypes.c_int * count.value)()
        self.check(self.lib.nvrtcGetSupportedArchs(archs))
        return min(archs)

    def compile(self, source: str, name_expressions: tuple[str, ...], options: tuple[str, ...]) -> list[str]:
        """Compiles source; returns the lowered (mangled) name of each name expression."""
        program = ctypes.c_void_p()
        self.check(self.lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"lif.cu", 0, None, None))
        try:
            for expression in name_expressions:
                self.check(self.lib.nvrtcAddNameExpression(program, expression.encode()), program)
            encoded = (ctypes.c_char_p * len(options))(*[option.encode() for option in options])
            self.check(self.lib.nvrtcCompileProgram(program, len(options), encoded), program)
            lowered = []
            for expression in name_expressions:
                name = ctypes.c_char_p()
                self.check(self.lib.nvrtcGetLoweredName(program, expression.encode(), ctypes.byref(name)), program)
                lowered.append(name.value.decode())
            return lowered
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(program))


@pytest.fixture(scope="module")
def nvrtc():
    return _Nvrtc()


@pytest.mark.parametrize("dtype", list(_cupy_lif.STORAGE_TYPES), ids=str)
def test_cuda_source_compiles_with_nvrtc(nvrtc, dtype):
    storage = _cupy_lif.STORAGE_TYPES[dtype]
    arch = f"--gpu-architecture=compute_{nvrtc.lowest_arch()}"
    lowered = nvrtc.compile(_cupy_lif.CUDA_SOURCE, _cupy_lif.kernel_names(storage), (*_cupy_lif.NVRTC_OPTIONS, arch))
    assert all(name.startswith("_Z") and "lif_" in name for name in lowered), lowered


def test_nvrtc_reports_a_broken_kernel(nvrtc):
    broken = _cupy_lif.CUDA_SOURCE.replace("const bool fire = h >= v_threshold;", "const bool fire = h >= undefined;")
    with pytest.raises(AssertionError, match="undefined"):
        nvrtc.compile(broken, _cupy_lif.kernel_names("float"), _cupy_lif.NVRTC_OPTIONS)


def _kernel_parameters(name: str) -> list[str]:
    """The kinds of a kernel's parameters, read from the CUDA source: pointer, int64, int32 or state."""
    signature = re.search(rf"__global__ void {name}\((.*?)\)", _cupy_lif.CUDA_SOURCE, re.S).group(1)
    kinds = []
    for parameter in signature.split(","):
        if "*" in parameter:
            kinds.append("pointer")
        elif "long long" in parameter:
            kinds.append("int64")
        elif re.match(r"\s*int ", parameter):
            kinds.append("int32")
        else:
            assert "State<S>::type" in parameter, parameter
            kinds.append("state")
    return kinds


def _argument_kind(argument) -> str:
    kinds = {np.uint64: "pointer", np.int64: "int64", np.int32: "int32", np.float32: "state", np.float64: "state"}
    return kinds[type(argument)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=str)
def test_launch_arguments_match_the_kernel_signatures(monkeypatch, dtype):
    """Runs the autograd wrapper with the launches recorded instead of executed (no GPU needed)."""
    launches = []
    monkeypatch.setattr(_cupy_lif, "_kernels", lambda storage, device: ("lif_forward", "lif_backward"))
    monkeypatch.setattr(_cupy_lif, "_launch", lambda kernel, device, numel, *args: launches.append((kernel, args)))
    x = torch.randn(3, 2, 5, dtype=dtype, requires_grad=True)
    v0 = torch.zeros(2, 5, dtype=torch.promote_types(dtype, torch.float32))
    params = LIF(surrogate="rectangle").params
    spikes, v, _ = _cupy_lif.CupyMultiStepLIF.apply(x, v0, params, False)
    (spikes.sum() + v.sum()).backward()
    assert [kernel for kernel, _ in launches] == ["lif_forward", "lif_backward"]
    state = np.float64 if dtype == torch.float64 else np.float32
    for kernel, args in launches:
        assert [_argument_kind(a) for a in args] == _kernel_parameters(kernel)
        assert all(type(a) is state for a in args if _argument_kind(a) == "state")
    forward_args = launches[0][1]
    assert forward_args[0] == x.data_ptr() and forward_args[4] == 0  # x, and no v_seq requested
    assert (forward_args[6], forward_args[7]) == (10, 3)  # numel, steps


HOST_SHIM = r"""
#include <cstring>
#include <utility>
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define asm(...)  // the 16-bit float conversions (PTX) cannot run on the host; only Half uses them
struct Dim3 { unsigned int x; };
static Dim3 blockIdx, blockDim, threadIdx;
static inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
"""

HOST_LAUNCHER = r"""
template <typename... P, std::size_t... I>
static void call(void (*kernel)(P...), void** args, std::index_sequence<I...>) { kernel(*static_cast<P*>(args[I])...); }

// Runs every thread of a 1-D launch in turn; args holds one pointer per kernel argument, as cuLaunchKernel takes them.
template <typename... P>
static void emulate(void (*kernel)(P...), unsigned int blocks, unsigned int threads, void** args) {
    blockDim.x = threads;
    for (blockIdx.x = 0; blockIdx.x < blocks; ++blockIdx.x)
        for (threadIdx.x = 0; threadIdx.x < threads; ++threadIdx.x) call(kernel, args, std::index_sequence_for<P...>{});
}
#define EXPORT(name, S) extern "C" void name##_##S(unsigned b, unsigned t, void** a) { emulate(&name<S>, b, t, a); }
EXPORT(lif_forward, float) EXPORT(lif_backward, float) EXPORT(lif_forward, double) EXPORT(lif_backward, double)
EXPORT(lif_forward, BFloat16) EXPORT(lif_backward, BFloat16)
"""


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """The CUDA source compiled for the host with a small shim, so that its arithmetic can run without a GPU."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the host emulation of the CUDA kernels")
    folder = tmp_path_factory.mktemp("host_kernels")
    (folder / "lif.cpp").write_text(HOST_SHIM + _cupy_lif.CUDA_SOURCE + HOST_LAUNCHER)
    command = [compiler, "-std=c++17", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", "lif.so", "lif.cpp"]
    subprocess.run(command, cwd=folder, check=True, capture_output=True)
    return ctypes.CDLL(str(folder / "lif.so"))


def _launch_on_host(library, kernel, device, numel, *args):
    if numel == 0:
        return
    slots = [ctypes.create_string_buffer(np.asarray(a).tobytes()) for a in args]
    pointers = (ctypes.c_void_p * len(slots))(*[ctypes.addressof(slot) for slot in slots])
    blocks = math.ceil(numel / _cupy_lif.THREADS)
    exported = getattr(library, kernel.replace("<", "_").rstrip(">"))  # lif_forward<float> -> lif_forward_float
    exported(ctypes.c_uint(blocks), ctypes.c_uint(_cupy_lif.THREADS), pointers)


HOST_CONFIGS = [
    {},
    {"decay_input": False},
    {"v_reset": None},
    {"v_reset": -0.2, "detach_reset": False},
    {"v_reset": None, "detach_reset": False, "decay_input": False},
    {"surrogate": "rectangle", "width": 0.3},
    {"tau": 4 / 3, "v_threshold": 0.2, "decay_input": False, "detach_reset": False, "surrogate": "rectangle",
     "surrogate_center": 0.0},
]  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("config", HOST_CONFIGS, ids=str)
def test_kernels_run_on_the_host_agree_with_the_torch_backend(monkeypatch, host_kernels, dtype, config):
    """The autograd wrapper and the kernels' arithmetic, with each launch emulated thread by thread on the CPU."""
    monkeypatch.setattr(_cupy_lif, "_kernels", lambda storage, device: _cupy_lif.kernel_names(storage))
    monkeypatch.setattr(_cupy_lif, "_launch", functools.partial(_launch_on_host, host_kernels))
    torch.manual_seed(0)
    x = (torch.randn(5, 3, 7, 31) * 0.8 + 0.4).to(dtype)  # 651 neurons: three blocks, the last one partly idle
    grad = torch.randn(x.shape).to(dtype)
    params = LIF(**config).params
    state_dtype = torch.promote_types(dtype, torch.float32)
    results = []
    for function in (_MultiStepLIF, _cupy_lif.CupyMultiStepLIF):
        x_in = x.clone().requires_grad_()
        v0 = torch.zeros(x.shape[1:], dtype=state_dtype)
        first, v, v_seq = function.apply(x_in, v0, params, True)
        second, v, _ = function.apply(x_in.flip(0), v, params, False)
        ((first.float() + second.float()) * grad.float()).sum().add(v.sum()).backward()
        results.append((first, second, v, v_seq, x_in.grad))
    (*spikes_ref, v_ref, v_seq_ref, g_ref), (*spikes, v, v_seq, g) = results
    assert all(torch.equal(a, b) for a, b in zip(spikes, spikes_ref, strict=True)) and spikes[0].dtype == dtype
    assert 0 < spikes[0].float().mean() < 1
    torch.testing.assert_close(v, v_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(v_seq, v_seq_ref, rtol=1e-6, atol=1e-6)
    atol = 2 * torch.finfo(dtype).eps * g_ref.float().abs().max().item()
    torch.testing.assert_close(g.float(), g_ref.float(), rtol=max(torch.finfo(dtype).eps, 1e-6), atol=max(atol, 1e-7))
    assert g.abs().sum() > 0
    if dtype == torch.bfloat16:  # both round (nearly) the same float32 gradient to the nearest bfloat16
        assert (g == g_ref).float().mean() > 0.99


needs_cupy = pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")

CONFIGS = [
    dict(),
    dict(decay_input=False),
    dict(v_reset=None),
    dict(v_reset=-0.2, detach_reset=False),
    dict(v_reset=None, detach_reset=False, decay_input=False),
]


@pytest.mark.gpu
@needs_cupy
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_cupy_matches_spikingjelly(dtype, config):
    """16-bit inputs are compared with spikingjelly on the same values in float32: ours keeps a float32 state."""
    torch.manual_seed(0)
    x = (torch.randn(6, 32, 3, 17, 19, device="cuda") + 0.8).to(dtype)
    grad = torch.randn_like(x).to(dtype)
    config = {"detach_reset": True, **config}
    reference = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m", **config).cuda()
    results = []
    for module, x_run in ((reference, x.float()), (LIF(tau=2.0, backend="cupy", **config), x)):
        x_in = x_run.clone().requires_grad_()
        spikes = torch.cat([module(x_in), module(x_in.flip(0))])
        (spikes.float() * torch.cat([grad, grad]).float()).sum().add(module.v.sum()).backward()
        results.append((spikes, module.v, x_in.grad))
        functional.reset_net(module)
    (s_ref, v_ref, g_ref), (s, v, g) = results
    assert s.dtype == dtype and g.dtype == dtype and torch.equal(s.float(), s_ref)
    torch.testing.assert_close(v, v_ref, rtol=1e-6, atol=1e-6)
    atol = 2 * torch.finfo(dtype).eps * g_ref.abs().max().item()
    torch.testing.assert_close(g.float(), g_ref, rtol=torch.finfo(dtype).eps, atol=atol)


@pytest.mark.gpu
@needs_cupy
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_cupy_matches_torch_backend_for_fsvae_neuron_on_a_side_stream(dtype):
    torch.manual_seed(0)
    x = torch.randn(16, 8, 32, 4, 4, device="cuda", dtype=dtype) * 0.4
    fsvae = dict(tau=4 / 3, v_threshold=0.2, decay_input=False, detach_reset=False, surrogate="rectangle")
    results = []
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    for backend in ("torch", "cupy"):
        x_in = x.clone().requires_grad_()
        module = LIF(backend=backend, surrogate_center=0.0, store_v_seq=True, **fsvae)
        with torch.cuda.stream(stream):
            spikes = module(x_in[:, :, :, 1:, :])  # a non-contiguous input
            spikes.sum().backward()
        torch.cuda.current_stream().wait_stream(stream)
        results.append((spikes, module.v_seq, x_in.grad))
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
