"""Worker resource samples: psutil for real, NVML through a fake (no GPU on this machine)."""

from __future__ import annotations

from types import SimpleNamespace

from kale_ext.widgets import ResourcesView, gpu_samples, sample_resources


class FakeNVML:
    """Stands in for ``pynvml``: this machine has no GPU, so the NVML path runs on a fake
    with two devices."""

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init, self.shutdown = fail_init, False

    def nvmlInit(self):
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.shutdown = True

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=40 + 10 * h, memory=5)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=(h + 1) * 2**30, total=16 * 2**30, free=0)

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA A100-SXM4-40GB"


def test_nvml_path_with_a_fake():
    nvml = FakeNVML()
    gpus = gpu_samples(nvml)
    assert gpus == [
        {"index": 0, "name": "NVIDIA A100-SXM4-40GB", "util": 40.0, "memory_used": 2**30,
         "memory_total": 16 * 2**30},
        {"index": 1, "name": "NVIDIA A100-SXM4-40GB", "util": 50.0, "memory_used": 2**31,
         "memory_total": 16 * 2**30},
    ]
    assert nvml.shutdown


def test_no_nvml_library_means_no_gpus():
    assert gpu_samples(FakeNVML(fail_init=True)) == []
    assert gpu_samples() == []  # the real pynvml on this GPU-less machine


def test_real_sample_and_gpu_plot():
    s = sample_resources()
    assert 0 <= s["cpu"] <= 100 and s["memory_total"] > 0 and s["rss"] > 0
    view = ResourcesView()
    s["gpus"] = gpu_samples(FakeNVML())
    view.show({"worker-a": s})
    view.show({"worker-a": {**s, "time": s["time"] + 1}})
    assert view.gpu.visible
    assert list(view.sources["worker-a"].data["gpu"]) == [50.0, 50.0]
    assert view.sources["worker-a"].data["gpu_memory"][0] == 12.5
    view.set_trials({"worker-a": [3, 1]})
    assert "<td>1, 3</td>" in view.table.value and "A100" in view.table.value
