"""`basicsr export`: a trained Serpent as an ONNX model, and `basicsr infer --onnx` to run it.

    basicsr export -opt OPTIONS.yml --weights NET.pth -o MODEL.onnx     (or -e experiments/NAME)
                   [--param-key KEY] [--opset N] [--fp16] [--fixed-size HxW]
                   [--force_yml KEY=VALUE ...] [--remove_yml KEY ...]

The graph takes (N, C, H, W) float32 RGB in [0, 1] of any batch and size and returns the restored image,
``scale`` times larger, float32 (not clipped); the padding to the network's multiple and the crop back
are inside it, and the selective scan is one ONNX ``Scan`` over chunks in standard operators (no custom
op). Its metadata (``serpent.*``) names the scale, the network options, the input convention and the
project version. docs/export.md: how it is built, what was checked, what it costs.

Modules: ``cli`` (flags, checks), ``graph`` (the export), ``runtime`` (the model under ONNX Runtime, for
``basicsr infer --onnx``). ``onnx``, ``onnxscript`` and ``onnxruntime`` come with the ``onnx`` extra.
"""

from serpent_arch.export.cli import main

__all__ = ["main"]
