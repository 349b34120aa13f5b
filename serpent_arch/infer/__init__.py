"""`basicsr infer`: restore your own images (a file or a folder) with a trained network.

    basicsr infer -e experiments/NAME -i IMAGE_OR_FOLDER -o OUT_DIR      (or -opt OPTIONS.yml --weights NET.pth)
                  [--weights NET.pth] [--force_yml KEY=VALUE ...] [--remove_yml KEY ...]
                  [--tile N [--tile-overlap M]] [--self-ensemble] [--device auto|cpu|cuda]
                  [--precision fp32|fp16|bf16] [--param-key KEY] [--suffix TEXT]
                  [--gt IMAGE_OR_FOLDER] [--compare]

The network is that of a training's folder (``-e``: the options it ran with, ``options_resolved.yml``,
and its newest checkpoint) or of an option file (a test or a train file) with ``--weights``; only
``network_g`` and ``scale`` are read. Every
restored image is written as ``OUT_DIR/<stem><suffix>.png`` with the bit depth of its input (8 or
16 bits) and its channel layout:
- colour images go through the network as RGB (as BasicSR trains it);
- a grayscale image given to a 3-channel network is replicated to RGB, restored, and turned back
  into one channel with the usual luma weights (cv2 BGR2GRAY), so gray in gives gray out;
- an RGBA image has its RGB restored by the network and its alpha channel enlarged bicubically
  (the network was never trained on alpha), written as a 4-channel PNG;
- a colour image given to a 1-channel network is refused for that image: there is no single right
  conversion (luma only, or Y with bicubic chroma), so the user chooses.

Exit status: 0 when every image was restored, 1 when some failed (each named on stderr with its
problem, the others are still restored), 2 when nothing can run (flags, option file, weights).

Modules, one job each: ``cli`` (flags, checks, progress loop), ``network`` (the option file's
network and its weights), ``images`` (reading, writing, quantising), ``restorer`` (device,
precision, tiling, self-ensemble), ``process`` (one image: restore, score, compare), ``compare``
(the comparison image), ``errors`` (the two failure kinds).
"""

from serpent_arch.infer.cli import build_parser, main
from serpent_arch.infer.compare import COMPARE_GAP, comparison_image
from serpent_arch.infer.errors import PROG, ImageError, InferError
from serpent_arch.infer.images import bicubic_upscale, list_images, max_value, quantize, read_image
from serpent_arch.infer.network import LoadedNetwork, load_network
from serpent_arch.infer.process import ImageResult, process_image, psnr_y
from serpent_arch.infer.restorer import PRECISIONS, Restorer, pick_amp_dtype, pick_device

__all__ = [
    "COMPARE_GAP",
    "PRECISIONS",
    "PROG",
    "ImageError",
    "ImageResult",
    "InferError",
    "LoadedNetwork",
    "Restorer",
    "bicubic_upscale",
    "build_parser",
    "comparison_image",
    "list_images",
    "load_network",
    "main",
    "max_value",
    "pick_amp_dtype",
    "pick_device",
    "process_image",
    "psnr_y",
    "quantize",
    "read_image",
]
