"""mamba_ssm counts as usable only when its kernel runs: tested on CPU with a faked mamba-ssm
module and a faked CUDA device (the probe's tensors live on the CPU), in the three states a GPU
user can be in: not installed, installed without its kernel (the RuntimeError of mamba-ssm
releases after 2.3.2.post1), and working. Also the "selective scan: ..." log line."""

import importlib
import logging
import sys
import types

import pytest
import torch

from serpent_arch.archs.serpent_arch import Serpent
from serpent_arch.ops import _mamba_ssm, backend_report, selective_scan_ref

ss = importlib.import_module("serpent_arch.ops.selective_scan")
FAKE_CUDA = types.SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.float32)
MODULE = "mamba_ssm.ops.selective_scan_interface"
NOT_INSTALLED = (
    "selective_scan_cuda is not installed. To use Mamba-1, reinstall with:\n"
    "  MAMBA_KEEP_CUDA_BUILD=TRUE pip install mamba-ssm --no-build-isolation"
)


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    """Forget cached imports, probes and warnings; probe tensors on the CPU."""

    def clear():
        getattr(_mamba_ssm._mamba_ssm_import, "cache_clear", lambda: None)()  # a test may have replaced it
        _mamba_ssm._mamba_ssm_checked.clear()
        ss._warn_once.cache_clear()

    clear()
    monkeypatch.setattr(_mamba_ssm, "_probe_device", lambda device: torch.device("cpu"))
    monkeypatch.setattr(
        backend_report, "_representative", lambda device: FAKE_CUDA if device.type == "cuda" else torch.empty(0)
    )
    yield
    clear()


def fake_mamba_ssm(monkeypatch, selective_scan_fn):
    """Install a fake ``mamba_ssm.ops.selective_scan_interface``; returns its call counter."""
    calls = []

    def fn(*args, **kwargs):
        calls.append(1)
        return selective_scan_fn(*args, **kwargs)

    module = types.ModuleType(MODULE)
    module.selective_scan_fn = fn
    monkeypatch.setitem(sys.modules, MODULE, module)
    return calls


def raise_not_installed(*args, **kwargs):
    raise RuntimeError(NOT_INSTALLED)


def check_falls_back(caplog, reason_words):
    """auto -> torch with one warning naming the reason and the install command; explicit raises it."""
    with caplog.at_level(logging.WARNING, logger=ss.__name__):
        assert ss.resolve_backend("auto", FAKE_CUDA) == "torch"
        assert ss.resolve_backend("auto", FAKE_CUDA) == "torch"
    warnings = [r.getMessage() for r in caplog.records if "mamba" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert reason_words in warnings[0] and ss.MAMBA_SSM_INSTALL in warnings[0] and "cuda:0" in warnings[0]
    with pytest.raises(RuntimeError) as err:
        ss.resolve_backend("mamba_ssm", FAKE_CUDA)
    assert reason_words in str(err.value) and ss.MAMBA_SSM_INSTALL in str(err.value)


def test_public_names_are_the_owners_objects():
    """backend_report, doctor and users import these from selective_scan (and backend_report
    re-exports one): they must be _mamba_ssm's own objects, not copies."""
    assert ss.mamba_ssm_status is _mamba_ssm.mamba_ssm_status is backend_report.mamba_ssm_status
    assert ss.MAMBA_SSM_INSTALL is _mamba_ssm.MAMBA_SSM_INSTALL


def test_not_installed(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, MODULE, None)  # import raises ImportError
    check_falls_back(caplog, "mamba-ssm cannot be imported (ModuleNotFoundError")


def test_old_release_installed_without_its_kernel(monkeypatch, caplog):
    """mamba-ssm 2.3.2.post1 built with MAMBA_SKIP_CUDA_BUILD=TRUE (tried in a venv here): the import fails."""
    monkeypatch.setattr(
        _mamba_ssm, "_mamba_ssm_import", lambda: (None, "ModuleNotFoundError: No module named 'selective_scan_cuda'")
    )
    check_falls_back(caplog, "mamba-ssm is installed without its CUDA kernel (ModuleNotFoundError: No module named")


def test_installed_without_its_kernel(monkeypatch, caplog):
    calls = fake_mamba_ssm(monkeypatch, raise_not_installed)
    check_falls_back(caplog, "RuntimeError: selective_scan_cuda is not installed.")
    assert len(calls) == 1, "the probe runs once per process and device"
    name, why = backend_report.explain("auto", "cuda:0")
    line = backend_report.scan_log_line(Serpent(preset="tiny"), "cuda:0")
    assert name == "torch" and "selective_scan_cuda is not installed" in why
    assert line == (
        "selective scan: torch on cuda:0 (chunked scan in plain PyTorch; backend 'mamba_ssm' cannot run: mamba-ssm "
        "is installed but its kernel does not run on cuda:0 (RuntimeError: selective_scan_cuda is not installed.); "
        f"install its CUDA kernel with `{ss.MAMBA_SSM_INSTALL}` (README: GPU install); "
        "backend 'triton' is unavailable: CUDA is not available here (no driver or no GPU)), "
        "four-direction scan unfused"
    )


def test_kernel_that_gives_wrong_results(monkeypatch, caplog):
    fake_mamba_ssm(monkeypatch, lambda *a, **k: selective_scan_ref(*a, **k) * 1.01)
    check_falls_back(caplog, "its kernel runs on cuda:0 but its output disagrees with the reference")


def test_kernel_that_runs(monkeypatch, caplog):
    calls = fake_mamba_ssm(monkeypatch, selective_scan_ref)
    with caplog.at_level(logging.WARNING, logger=ss.__name__):
        assert ss.resolve_backend("auto", FAKE_CUDA) == "mamba_ssm"
        assert ss.resolve_backend("mamba_ssm", FAKE_CUDA) == "mamba_ssm"
    assert not caplog.records and len(calls) == 1
    assert ss.mamba_ssm_status(torch.device("cuda", 0)) == (True, "")
    # another device is probed on its own
    assert ss.resolve_backend("auto", types.SimpleNamespace(device=torch.device("cuda", 1), dtype=torch.float32))
    assert len(calls) == 2
    # float64 never goes to mamba-ssm (no float64 kernel), and CPU tensors never do
    assert (
        ss.resolve_backend("auto", types.SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.float64))
        == "torch"
    )
    assert ss.resolve_backend("auto", torch.zeros(1)) != "mamba_ssm"
    assert backend_report.explain("auto", "cuda:0")[1].startswith("mamba-ssm ")


def test_probe_inside_no_grad(monkeypatch):
    """The first scan of a run may be a validation under no_grad / inference_mode."""
    fake_mamba_ssm(monkeypatch, selective_scan_ref)
    with torch.inference_mode():
        assert ss.resolve_backend("auto", FAKE_CUDA) == "mamba_ssm"


def test_log_line_on_cpu():
    ok, _ = backend_report.backend_status("cpu_kernel", "cpu")
    line = backend_report.scan_log_line(Serpent(preset="tiny"), "cpu")
    if ok:
        assert line.startswith("selective scan: cpu_kernel on cpu (compiled C kernel, ")
        assert line.endswith(f"{torch.get_num_threads()} threads), four-direction scan fused")
    else:
        assert line.startswith("selective scan: torch on cpu (chunked scan in plain PyTorch; ")
    explicit = backend_report.scan_log_line(Serpent(preset="tiny", scan_backend="torch"), "cpu")
    assert explicit == (
        "selective scan: torch on cpu (scan_backend: torch in network_g; chunked scan in plain PyTorch), "
        "four-direction scan unfused"
    )
    assert (
        backend_report.scan_log_line(torch.nn.Conv2d(3, 3, 3), "cpu") == "selective scan: not used by Conv2d (on cpu)"
    )


def test_log_line_names_the_fallback(monkeypatch):
    monkeypatch.setenv("SERPENT_DISABLE_CPU_KERNEL", "1")
    line = backend_report.scan_log_line(Serpent(preset="tiny"), "cpu")
    assert line == (
        "selective scan: torch on cpu (chunked scan in plain PyTorch; backend 'cpu_kernel' is unavailable: "
        "disabled by SERPENT_DISABLE_CPU_KERNEL), four-direction scan unfused"
    )
