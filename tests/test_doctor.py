"""basicsr doctor: the report on this machine, with a mamba-ssm installed without its kernel, and
the exit status when the backend auto picks is wrong."""

import importlib
import importlib.util
import subprocess
import sys

import torch

from serpent_arch import doctor
from serpent_arch.cli import main as cli_main

ss = importlib.import_module("serpent_arch.ops.selective_scan")


def test_report_on_this_machine(capsys):
    assert cli_main(["doctor"]) == 0
    out = capsys.readouterr().out
    for key in ("python", "torch", "basicsr", "serpent", "mamba-ssm", "triton", "cpu", "cpu_kernel", "status"):
        assert any(line.startswith(key + " ") for line in out.splitlines()), key
    assert "cuDNN" in out and "scan backends on cpu" in out and out.rstrip().endswith("status      OK")
    # every backend of every device has a line; the available ones say how well they agree
    for name in ("mamba_ssm", "cpu_kernel", "torch", "reference"):
        assert f" {name} " in out
    assert "torch       yes: agrees with reference (max rel. error" in out
    assert "mamba_ssm   n/a on cpu" in out
    if not torch.cuda.is_available():
        assert "cuda        not available to torch" in out
    assert len(out.splitlines()) < 25  # pasteable


def test_mamba_ssm_without_its_kernel_is_named(monkeypatch):
    monkeypatch.setattr(doctor, "package_version", lambda dist: "2.3.2.post1" if dist == "mamba-ssm" else "1.0")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "selective_scan_cuda" else real(name))
    line = dict(doctor.versions())["mamba-ssm"]
    assert line.startswith("2.3.2.post1, WITHOUT its CUDA kernel (selective_scan_cuda missing)")
    assert ss.MAMBA_SSM_INSTALL in line


def test_exit_status_1_when_auto_backend_disagrees(monkeypatch, capsys):
    monkeypatch.setenv("SERPENT_DISABLE_CPU_KERNEL", "1")  # auto -> torch on the CPU
    real = ss.selective_scan_torch
    monkeypatch.setattr(ss, "selective_scan_torch", lambda *a, **k: real(*a, **k) * 1.01)
    assert doctor.main([]) == 1
    out = capsys.readouterr().out
    assert "* torch       yes: DISAGREES with reference" in out and "cpu_kernel  no: backend 'cpu_kernel'" in out
    assert "status      PROBLEM" in out


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "serpent_arch.doctor", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Exit status 0 when" in proc.stdout
