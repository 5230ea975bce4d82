"""The package's C loops (`csrc/lif_cpu.c`: the LIF neuron, alone or pooling its spikes; `csrc/pool_cpu.c`: 2x2 max
pooling), compiled on first use with the system's C compiler into one library.

The library is built once per source version into the user's cache (`$PFA_CACHE_DIR`, else `$XDG_CACHE_HOME/pfa` or
`~/.cache/pfa`) and loaded with ctypes, which releases the GIL during a call: the work is split over
`torch.get_num_threads()` threads. Without a working compiler the callers fall back to torch's own kernels.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import sysconfig
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCES = tuple(Path(__file__).parent / "csrc" / name for name in ("lif_cpu.c", "pool_cpu.c"))
HEADERS = (Path(__file__).parent / "csrc" / "pool_cpu.h",)
FLAGS = ("-O3", "-ffp-contract=off", "-fPIC", "-shared")  # no fused multiply-add: the same floats as torch's kernels
NATIVE = ("-march=native",)  # this CPU's vector width (fused loops 1.04-1.42x faster); dropped where refused
MIN_PER_THREAD = 1 << 15  # fewer elements per thread than this run on one thread


class BuildError(RuntimeError):
    """The C compiler is missing or failed; the message says which and how to fall back."""


def _cache_dir() -> Path:
    root = os.environ.get("PFA_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pfa"
    return Path(root)


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def _cpu() -> str:
    """What a library built with NATIVE depends on: the CPU's model and instruction sets (Linux), else the platform.
    It is part of the cache key, so a cache shared by different machines holds one build for each."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine() + platform.processor()
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags", "Features"))}))


def _build(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # built aside, then renamed: concurrent builds are safe
        partial = Path(tmp) / target.name
        for native in (NATIVE, ()):
            command = [*_compiler(), *FLAGS, *native, *map(str, SOURCES), "-o", str(partial)]
            try:
                subprocess.run(command, check=True, capture_output=True, text=True)
                break
            except (OSError, subprocess.CalledProcessError) as e:
                detail = getattr(e, "stderr", "") or str(e)
        else:
            raise BuildError(f"pfa's C loops: `{' '.join(command)}` failed ({detail.strip()[:300]}); install a C "
                             "compiler (apt-get install gcc) or use backend='torch'") from None
        os.replace(partial, target)


_POINTER, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {  # name: (argument types, result type); the LIF's constants struct is passed by its address
    "lif_forward": ([_POINTER, _I64, _POINTER, _POINTER, _POINTER, _POINTER, _I64, _I64, _I64, _POINTER], None),
    "lif_backward": ([_POINTER, _POINTER, _POINTER, _POINTER, _I64, _POINTER, _I64, _I64, _I64, _POINTER], None),
    "lif_pool_forward": ([_POINTER, _I64, _POINTER, _POINTER, _POINTER, *[_I64] * 6, _POINTER], _INT),
    "lif_pool_backward": ([_POINTER, _POINTER, _POINTER, _I64, _POINTER, *[_I64] * 6, _POINTER], _INT),
    "max_pool2x2_forward": ([_POINTER, _POINTER, *[_I64] * 6], None),
    "max_pool2x2_backward": ([_POINTER, _POINTER, _POINTER, *[_I64] * 6], None),
}


@functools.cache
def library() -> ctypes.CDLL:
    """The compiled loops, built on first use (a BuildError says why they cannot be)."""
    sources = b"".join(source.read_bytes() for source in (*SOURCES, *HEADERS))
    key = hashlib.sha256(sources + " ".join((*_compiler(), *FLAGS, *NATIVE, _cpu())).encode()).hexdigest()[:16]
    target = _cache_dir() / f"pfa_native-{key}{sysconfig.get_config_var('SHLIB_SUFFIX') or '.so'}"
    if not target.exists():
        _build(target)
    lib = ctypes.CDLL(str(target))
    for name, (argtypes, restype) in _SIGNATURES.items():
        getattr(lib, name).argtypes, getattr(lib, name).restype = argtypes, restype
    return lib


@functools.cache
def build_error() -> str | None:
    """Why the loops cannot be built or loaded here, or None when they can (tried once per process)."""
    try:
        library()
    except (BuildError, OSError) as e:
        return str(e)
    return None


def available() -> bool:
    """Whether the loops compile and load here; the first time they do not, a warning says why (the LIF's backend
    'auto' and pfa's max pooling then use torch's kernels)."""
    error = build_error()
    if error is not None and not _warned:
        _warned.append(error)
        warnings.warn(f"{error}; the LIF neurons and max pooling use the slower torch backend", RuntimeWarning,
                      stacklevel=3)
    return error is None


_warned: list[str] = []


@functools.cache
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """Worker threads of this process (keyed by its id: a forked child does not inherit its parent's threads)."""
    return ThreadPoolExecutor(workers, thread_name_prefix="pfa-native")


def parallel(call, count: int, size: int = 1) -> None:
    """call(start, stop) over [0, count) items of `size` elements each, split into one range per torch thread (at
    least MIN_PER_THREAD elements each), the first range on this thread."""
    parts = max(1, min(torch.get_num_threads(), count * size // MIN_PER_THREAD, count))
    bounds = [count * i // parts for i in range(parts + 1)]
    spans = zip(bounds[1:-1], bounds[2:], strict=True)
    futures = [_pool(parts - 1, os.getpid()).submit(call, a, b) for a, b in spans] if parts > 1 else []
    call(bounds[0], bounds[1])
    for future in futures:
        future.result()


def address(tensor: torch.Tensor | None, offset: int = 0) -> int | None:
    """The address of a float32 tensor's element `offset` (None for None)."""
    return None if tensor is None else tensor.data_ptr() + 4 * offset
