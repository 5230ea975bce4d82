"""Freed memory kept for reuse on CPU runs.

A training step allocates the same large tensors at every step. glibc's malloc maps each block of more than 32 MiB
afresh from the OS and returns it when freed (and trims smaller ones off its heap), so every step pays page faults on
hundreds of MiB: on the FMNIST network that costs about as much as all its neurons' arithmetic. Keeping freed memory
in the process lets the next step reuse it; the price is that the process holds on to its peak memory.
"""

import ctypes
import functools
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes: free memory at the heap's top is given back only above 2 GiB


@functools.cache
def reuse_freed_memory() -> bool:
    """Ask glibc to serve large blocks from its heap and not to trim it; False (nothing changed) elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
