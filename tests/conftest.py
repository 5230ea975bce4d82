import pytest
import torch

import pfa.lif.native as native


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: on a busy 2-core machine, two OpenMP threads per process run far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """An empty cache folder for pfa's C loops and no build tried yet in this process."""
    monkeypatch.setenv("PFA_CACHE_DIR", str(tmp_path))
    for cached in (native.library, native.build_error):
        cached.cache_clear()
    monkeypatch.setattr(native, "_warned", [])
    yield tmp_path
    for cached in (native.library, native.build_error):
        cached.cache_clear()
