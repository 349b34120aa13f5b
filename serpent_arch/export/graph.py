"""A trained network as an ONNX graph: dynamic batch, height and width, the scan in standard operators.

The graph is :class:`ImageGraph` around the network, traced with ``torch.export`` (non-strict, every
size dynamic) and translated by ``torch.onnx`` (the dynamo exporter). Everything the network does with
the image size runs inside the graph: the padding to the network's multiple and the crop back
(``archs/padding.py`` picks reflect or replicate in the graph while exporting), and the selective
scan, which runs on the ``onnx`` backend (``ops/_export_scan.py``: one ONNX ``Scan`` over chunks of
the sequence, its trip count read from the input's shape).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

# LayerNormalization (opset 17) is in every Serpent; the dynamo exporter writes opset 18 natively and
# converts to other versions afterwards.
MIN_OPSET = 18
DEFAULT_OPSET = 18
FORMAT = "serpent-onnx/1"  # metadata "serpent.format": what `basicsr infer --onnx` accepts
INPUT_CONVENTION = "NCHW float32 RGB in [0, 1]; output NCHW float32 RGB, scale x the size, not clipped"


class ExportError(Exception):
    """The network cannot be exported as asked (one line for the user, exit status 2)."""


class ImageGraph(nn.Module):
    """What the exported graph computes: (N, C, H, W) float32 in [0, 1] -> (N, C_out, sH, sW) float32, the
    network seeing its own value range (``img_range``)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.img_range = float(getattr(net, "img_range", 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.img_range == 1.0:
            return self.net(x)
        return self.net(x * self.img_range) / self.img_range


@dataclass
class ExportSettings:
    opset: int = DEFAULT_OPSET
    fp16: bool = False
    fixed_size: tuple[int, int] | None = None  # (H, W) of a static graph (batch 1); None: dynamic
    metadata: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def export_scan(net: nn.Module):
    """Every selective scan of ``net`` on the ``onnx`` backend for the duration (restored after)."""
    blocks = [m for m in net.modules() if hasattr(m, "scan_backend")]
    before = [m.scan_backend for m in blocks]
    for m in blocks:
        m.scan_backend = "onnx"
    try:
        yield
    finally:
        for m, name in zip(blocks, before):
            m.scan_backend = name


def _sample_input(net: nn.Module, settings: ExportSettings) -> torch.Tensor:
    """The tensor the graph is traced with. Dynamic graphs: batch 2 and an odd, non-square size that is
    no multiple of anything (a batch of 1 or a size that divides evenly would be specialised)."""
    channels = int(getattr(net, "in_chans", 3))
    if settings.fixed_size:
        return torch.rand(1, channels, *settings.fixed_size)
    return torch.rand(2, channels, 37, 45)


def check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        raise ExportError(
            f"--opset {opset} is too old for this graph: it needs opset {MIN_OPSET} or newer "
            f"(LayerNormalization, Scan with the operators the exporter writes); use --opset {MIN_OPSET}."
        )


def export_onnx(net: nn.Module, path: str, settings: ExportSettings) -> None:
    """Write ``net`` (eval mode, on the CPU) to ``path`` as an ONNX model with ``settings.metadata``."""
    import onnx

    check_opset(settings.opset)
    net = net.eval().requires_grad_(False)  # a scan whose weights need gradients is traced with its backward
    graph = ImageGraph(net)
    x = _sample_input(net, settings)
    dynamic = None
    if not settings.fixed_size:
        dim = torch.export.Dim.DYNAMIC
        dynamic = ({0: dim, 2: dim, 3: dim},)
    with export_scan(net), _quiet_exporter(), torch.no_grad():
        # non-strict: the strict (dynamo) trace refines the sizes from the sample (e.g. to odd ones)
        program = torch.export.export(graph, (x,), dynamic_shapes=dynamic, strict=False)
        onnx_program = torch.onnx.export(
            program, dynamo=True, opset_version=settings.opset, input_names=["image"], output_names=["restored"],
            verbose=False,
        )  # fmt: skip
    model = onnx_program.model_proto
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset != settings.opset:
        raise ExportError(f"the exporter could not write opset {settings.opset} (it wrote {opset}); use --opset 18.")
    if settings.fp16:
        store_weights_in_half(model)
    for key, value in settings.metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, path)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's progress lines and warnings are for its developers; a failure still raises."""
    loggers = [logging.getLogger(name) for name in ("torch.export", "torch._dynamo", "torch.fx", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def store_weights_in_half(model) -> None:
    """Store every float32 weight of ``model`` (an ONNX ModelProto, changed in place) as float16, read back
    through a Cast to float32 at the top of the graph.

    The file is half as large; the arithmetic stays float32 (ONNX Runtime folds the casts when it loads
    the model), because ONNX Runtime's CPU provider has float16 kernels for few of the graph's operators
    and the scan's recurrence should not run in float16 anyway.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < 16:  # scalars and tiny ones stay
            kept.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{init.name}__fp16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


def serpent_metadata(net: nn.Module, net_opt: dict, scale: int, version: str, settings: ExportSettings) -> dict:
    """The metadata of an exported Serpent: what `basicsr infer --onnx` and a user's code read back."""
    config = getattr(net, "config", None)
    network = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (config or {}).items()}
    size = settings.fixed_size
    return {
        "serpent.format": FORMAT,
        "serpent.version": version,
        "serpent.scale": str(scale),
        "serpent.preset": str(getattr(net, "preset", None) or net_opt.get("preset") or ""),
        "serpent.network_g": json.dumps(net_opt, sort_keys=True, default=str),
        "serpent.structure": json.dumps(network, sort_keys=True, default=str),
        "serpent.in_chans": str(getattr(net, "in_chans", 3)),
        "serpent.out_chans": str(getattr(net, "out_chans", getattr(net, "in_chans", 3))),
        "serpent.input": INPUT_CONVENTION,
        "serpent.precision": "fp16 weights, fp32 arithmetic" if settings.fp16 else "fp32",
        "serpent.size": f"{size[0]}x{size[1]} (static, batch 1)" if size else "dynamic (batch, height, width)",
    }
