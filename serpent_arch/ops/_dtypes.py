"""The scan's compute-dtype rule, shared by every backend that implements it (see the contract in
``selective_scan.py``): float32 for float16 / bfloat16 / float32 inputs, float64 when any of u,
delta, A, B, C is float64 (what makes ``torch.autograd.gradcheck`` usable)."""

from __future__ import annotations

import torch


def compute_dtype(u, delta, A, B, C) -> torch.dtype:
    """The dtype the recurrence runs in for these inputs."""
    return torch.float64 if any(t.dtype == torch.float64 for t in (u, delta, A, B, C)) else torch.float32
