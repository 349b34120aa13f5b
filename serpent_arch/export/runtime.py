"""An exported Serpent under ONNX Runtime, shaped like the network `basicsr infer` runs (``--onnx``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from serpent_arch.export.graph import FORMAT
from serpent_arch.infer.errors import InferError
from serpent_arch.infer.network import LoadedNetwork

ONNX_INSTALL = 'pip install -e ".[onnx]"   (or: pip install onnxruntime)'


class OnnxNetwork(nn.Module):
    """Calls an ONNX Runtime session like a network: (N, C, H, W) float32 tensor -> (N, C_out, sH, sW).

    ``threads``: ONNX Runtime's intra-op threads (default: as many as torch uses).
    """

    def __init__(self, path: str, threads: int | None = None):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise InferError(f"--onnx needs ONNX Runtime: {ONNX_INSTALL}") from None
        if not Path(path).is_file():
            raise InferError(f"--onnx {path!r} does not exist.")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InferError(f"--onnx {path!r} is not an ONNX model ONNX Runtime can load: {detail}") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if self.metadata.get("serpent.format") != FORMAT:
            raise InferError(
                f"--onnx {path!r} is not a Serpent model written by `basicsr export` (no serpent.format "
                f"{FORMAT!r} in its metadata); export one with: basicsr export -opt OPTIONS.yml --weights NET.pth "
                "-o MODEL.onnx"
            )
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = self.session.get_inputs()[0].shape
        self.scale = int(self.metadata["serpent.scale"])
        self.in_chans = int(self.metadata.get("serpent.in_chans", 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fixed = [d for d in self.input_shape[2:] if isinstance(d, int)]
        if len(fixed) == 2 and tuple(x.shape[-2:]) != tuple(fixed):
            from serpent_arch.infer.errors import ImageError

            raise ImageError(
                f"the model was exported for {fixed[0]}x{fixed[1]} inputs (--fixed-size), this one is "
                f"{x.shape[-2]}x{x.shape[-1]}; use --tile {min(fixed)} with --tile-overlap < {min(fixed)}, "
                "or a dynamic export"
            )
        image = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (out,) = self.session.run(None, {self.input_name: image})
        return torch.from_numpy(out)


def load_onnx_network(path: str, threads: int | None = None) -> LoadedNetwork:
    """An exported Serpent as `basicsr infer` loads a network (scale and channels from its metadata)."""
    net = OnnxNetwork(path, threads)
    return LoadedNetwork(net, "Serpent (ONNX)", net.scale, net.in_chans, None)
