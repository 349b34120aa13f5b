"""Seconds per training iteration of several networks, measured interleaved in one process.

One iteration is what the trainer repeats: forward of a batch, L1 loss, backward, AdamW step.
Blocks of iterations of every network take turns (``repeats`` rounds), so a load spike on a
shared machine hits all of them alike; the median block gives each network's s / iteration.
Data loading, the EMA update and validation are not included (they are the same trainer code
for every network and cheap next to the step). ``channels_last`` runs a network and its input in
PyTorch's channels-last memory format instead of the default NCHW (``python -m study layout``).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F


def _step(net, optimizer, lq: torch.Tensor, gt: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.l1_loss(net(lq), gt).backward()
    optimizer.step()


def _block(net, optimizer, lq, gt, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        _step(net, optimizer, lq, gt)
    return (time.perf_counter() - start) / iters


def seconds_per_iteration(
    networks: dict[str, dict],
    batch: int,
    gt_size: int,
    scale: int,
    repeats: int = 3,
    block_seconds: float = 2.0,
    seed: int = 0,
    channels_last: frozenset[str] = frozenset(),
) -> dict[str, dict]:
    """Median s / iteration of each network (``name -> network_g``) on (batch, 3, gt/scale, gt/scale) inputs.

    Returns ``name -> {"s_per_iter", "blocks" (all block medians), "iters_per_block"}``. Each block
    runs about ``block_seconds`` (at least one iteration), sized from a first timed iteration.
    """
    from basicsr.archs import build_network

    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(batch, 3, gt_size, gt_size, generator=gen)
    lq = gt if scale == 1 else F.interpolate(gt, scale_factor=1 / scale, mode="bicubic", align_corners=False)
    lq_last = lq.contiguous(memory_format=torch.channels_last)
    runs = {}
    for name, net_opt in networks.items():
        torch.manual_seed(seed)
        net = build_network(dict(net_opt)).train()
        inputs = lq
        if name in channels_last:
            net, inputs = net.to(memory_format=torch.channels_last), lq_last
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
        _step(net, optimizer, inputs, gt)  # warm-up: allocations, kernel compilation
        first = _block(net, optimizer, inputs, gt, 1)
        runs[name] = (net, optimizer, inputs, max(1, round(block_seconds / max(first, 1e-6))))
    blocks: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (net, optimizer, inputs, iters) in runs.items():
            blocks[name].append(_block(net, optimizer, inputs, gt, iters))
    return {
        name: {"s_per_iter": statistics.median(blocks[name]), "blocks": blocks[name], "iters_per_block": runs[name][3]}
        for name in runs
    }
