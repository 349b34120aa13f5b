"""The restorer of `basicsr infer`: device and precision choice, then one image through the network
(channel layouts, whole or tiled, optionally with self-ensemble)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from serpent_arch import amp
from serpent_arch.forward_passes import self_ensemble_forward, tiled_forward
from serpent_arch.infer.errors import ImageError, InferError
from serpent_arch.infer.network import LoadedNetwork

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(name: str) -> torch.device:
    """``--device auto|cpu|cuda`` as a torch device (auto: cuda if available)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise InferError("--device cuda: CUDA is not available (torch sees no GPU); use --device cpu or auto.")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def pick_amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, as ``val.amp`` would run it (serpent_arch.amp): on CUDA and on the CPU."""
    amp_dtype = PRECISIONS[precision]
    problem = amp.unsupported(device, amp_dtype)
    if problem:
        raise InferError(f"--precision {precision}: {problem}.")
    return amp_dtype


@dataclass
class Restorer:
    """Runs the network on one image at a time, whole or tiled, optionally with self-ensemble."""

    loaded: LoadedNetwork
    device: torch.device
    amp_dtype: torch.dtype | None
    tile: int
    tile_overlap: int
    self_ensemble: bool

    def restore(self, img: np.ndarray) -> np.ndarray:
        """(H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA float in [0, 1] -> the same layout,
        ``scale`` times larger, in [0, 1]."""
        is_gray = img.ndim == 2
        colour = img if is_gray else img[..., :3]
        alpha = img[..., 3] if not is_gray and img.shape[2] == 4 else None
        channels = 1 if is_gray else 3
        in_chans = self.loaded.in_chans or channels
        if channels == in_chans:
            net_input = colour[..., None] if is_gray else cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
        elif is_gray and in_chans == 3:
            net_input = np.repeat(colour[..., None], 3, axis=2)
        else:
            raise ImageError(
                f"channel mismatch: the image is {'gray' if is_gray else 'colour'} ({channels} channel(s)) but the "
                f"network takes {in_chans} (network_g.in_chans); convert the image first"
            )
        out = np.clip(self.run_network(net_input), 0, 1)  # clipped before any gray conversion, like the colour image
        if out.shape[2] == 3:
            out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
            if is_gray:  # back to what the user gave: one channel, by the usual luma weights
                out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        elif out.shape[2] == 1:
            out = out[..., 0]
        else:
            raise ImageError(f"the network gave {out.shape[2]} output channels; only 1 or 3 can be written")
        if alpha is not None:
            if out.ndim == 2:
                out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
            out_size = (out.shape[1], out.shape[0])
            alpha = np.clip(cv2.resize(alpha, out_size, interpolation=cv2.INTER_CUBIC), 0, 1)
            out = np.dstack([out, alpha])
        return out

    def run_network(self, img: np.ndarray) -> np.ndarray:
        """(H, W, C_in) float32 in [0, 1], RGB order -> (sH, sW, C_out) float32 (not clipped)."""
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None].to(self.device)
        with torch.inference_mode():
            y = self_ensemble_forward(self._tiled, x) if self.self_ensemble else self._tiled(x)
        scale = self.loaded.scale
        expected = (x.shape[-2] * scale, x.shape[-1] * scale)
        if tuple(y.shape[-2:]) != expected:
            raise ImageError(
                f"the network gave a {tuple(y.shape[-2:])} output for a {tuple(x.shape[-2:])} input, expected "
                f"{expected}; check 'scale' in the option file"
            )
        return y[0].permute(1, 2, 0).cpu().numpy()

    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        return tiled_forward(self._net_forward, x, self.loaded.scale, tile=self.tile, overlap=self.tile_overlap)

    def _net_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.amp_dtype is None:
            return self.loaded.net(x)
        # float32 out, so that tile blending and the ensemble mean never accumulate in half precision
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            return self.loaded.net(x).float()
