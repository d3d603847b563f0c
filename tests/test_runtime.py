"""Process settings: the number of torch threads a command picks from the machine's state (injected here, not
read from the machine the tests run on)."""

import pytest
import torch

from pixelwave import runtime
from pixelwave.data.base import ImageDataset
from pixelwave.models import GatedPixelCNN, PixelVAE
from pixelwave.models.wavenet import WaveNet
from pixelwave.training.evaluation import evaluate


@pytest.mark.parametrize("usable, cores, load, idle, threads", [
    (8, 8, 0.1, 0.99, 8),    # idle: every core
    (8, 8, 8.0, 0.0, 1),     # busy: one
    (8, 8, 12.0, 0.0, 1),    # over-busy: still one
    (8, 8, 3.0, 0.6, 5),     # partly busy: the idle cores (8 - 3)
    (2, 2, 0.4, 0.8, 2),     # a core at least half idle counts as idle
    (2, 2, 0.6, 0.9, 1),
    (4, 64, 0.0, 1.0, 4),    # never more than this process may use
])
def test_threads_are_the_idle_cores_at_least_one(usable, cores, load, idle, threads):
    assert runtime.threads_for(usable, cores, load, idle) == threads


def test_the_busier_reading_decides():
    # A job that just started: the load average has not caught up, the sample sees it (and the other way round).
    assert runtime.threads_for(4, 4, load=0.2, idle=0.25) == 1
    assert runtime.threads_for(4, 4, load=3.9, idle=1.0) == 1
    assert runtime.threads_for(4, 4, load=None, idle=0.5) == 2  # one reading missing: the other
    assert runtime.threads_for(4, 4, load=1.0, idle=None) == 3
    assert runtime.threads_for(4, 4, load=None, idle=None) == 4  # none at all: torch's default, every core


def test_default_threads_reads_the_machine_once_and_omp_num_threads_decides(monkeypatch):
    readings = []
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (7.5, 1.0, 1.0))
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(runtime, "cpu_idle_share", lambda: readings.append(1) or 0.95)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    runtime.default_threads.cache_clear()
    try:
        assert runtime.default_threads() == 1 and runtime.default_threads() == 1 and readings == [1]
        runtime.default_threads.cache_clear()
        monkeypatch.setattr(runtime.os, "getloadavg", lambda: (0.3, 1.0, 1.0))
        assert runtime.default_threads() == 8
        runtime.default_threads.cache_clear()
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert runtime.default_threads() == 3
    finally:
        runtime.default_threads.cache_clear()


def test_cpu_idle_share_is_a_share():
    share = runtime.cpu_idle_share(0.02)
    assert share is None or 0.0 <= share <= 1.0


# ------------------------------------------------------------------------------- full float32 (no TF32 on CUDA)
def flags():
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.fixture
def tf32_on():
    """TF32 allowed for both, as a user's process may have it (PyTorch's default allows it for convolutions)."""
    before = flags()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_full_float32_turns_tf32_off_inside_and_restores_after(tf32_on):
    with runtime.full_float32():
        assert flags() == (False, False)
    assert flags() == (True, True)
    with pytest.raises(RuntimeError), runtime.full_float32():
        raise RuntimeError("inside")
    assert flags() == (True, True)


def test_likelihoods_and_samplers_run_in_full_float32(tf32_on):
    """On a GPU, TF32 convolutions moved a likelihood's fourth decimal and made the naive image sampler draw
    other pixels than the cached one (seen on an H200): evaluation and every sampler run with TF32 off."""
    seen = []

    def spy(module, inputs):
        seen.append(flags())

    def watch(model):  # every submodule: the samplers call parts of a model, not its forward
        for m in model.modules():
            m.register_forward_pre_hook(spy)

    def runs_without_tf32(call):
        before = len(seen)
        call()
        assert len(seen) > before and set(seen[before:]) == {(False, False)}
        assert flags() == (True, True)  # and restored

    image = GatedPixelCNN(channels=1, levels=4, hidden=8, layers=2, kernel_size=3)
    watch(image)
    runs_without_tf32(lambda: image.sample(1, size=(2, 2), cached=False))
    runs_without_tf32(lambda: evaluate(image, ImageDataset("zeros", torch.zeros(2, 1, 2, 2, dtype=torch.uint8),
                                                           None, levels=4), 1))
    vae = PixelVAE(channels=1, levels=2, hidden=8, layers=2, kernel_size=3, latent_channels=2, latent_stride=1,
                   encoder_channels=8)
    watch(vae)
    runs_without_tf32(lambda: vae.sample(1, size=(2, 2)))
    wave = WaveNet(layers=2, stacks=1, residual_channels=4, gate_channels=4, skip_channels=4, levels=8)
    watch(wave)
    runs_without_tf32(lambda: wave.generate(3, backend="naive"))  # the queue loop calls no module: one scope
