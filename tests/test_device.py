import random

import numpy as np
import pytest
import torch

import lrlab
from lrlab.device import pick_device, seed_everything, setup


def test_auto_picks_cpu_without_cuda_and_cuda_with_it():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device("CPU").type == "cpu"
    assert pick_device(torch.device("cpu")).type == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "", "cuda:x", 3, None])
def test_unknown_device_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="device must be one of"):
        pick_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_an_error_not_a_silent_fallback():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        pick_device("cuda")


def test_seed_everything_makes_python_numpy_and_torch_repeat():
    seed_everything(7)
    a = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(7)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    seed_everything(8)
    assert not torch.equal(torch.rand(3), a[2])


@pytest.mark.parametrize("bad", [1.5, "0", -1, 2**32, True])
def test_bad_seed_is_rejected(bad):
    with pytest.raises(ValueError, match="seed must be"):
        seed_everything(bad)


def test_setup_returns_device_and_sets_threads():
    before = torch.get_num_threads()
    try:
        dev = setup(3, "cpu", threads=1)
        assert dev.type == "cpu" and torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads"):
            setup(0, "cpu", threads=0)
    finally:
        torch.set_num_threads(before)


def test_package_exports_setup():
    assert lrlab.setup is setup
