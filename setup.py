"""Serpent for BasicSR: install with `pip install -e .`.

mamba-ssm's CUDA scan kernel is a separate step (README, "GPU install"), not an extra: its build
imports torch, so it needs `pip install --no-build-isolation`, and releases after 2.3.2.post1 build
the kernel only with `MAMBA_KEEP_CUDA_BUILD=TRUE`; an extra can pass neither, and a failed kernel
build would fail this whole install. Without the kernel everything runs, with the slower scan:

    MAMBA_KEEP_CUDA_BUILD=TRUE pip install --no-build-isolation mamba-ssm
"""

from setuptools import find_packages, setup

ONNX = ["onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.5"]

setup(
    name="serpent-basicsr",
    version="0.2.0",
    description="Serpent (multi-scale selective state space image restoration) as a BasicSR plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["serpent_arch", "serpent_arch.*"]),
    package_data={"serpent_arch.ops": ["*.c"]},
    install_requires=[
        "basicsr==1.4.2",  # the version serpent_arch.compat.PATCHES are tested with
        # Tested with torch 2.14.1 / torchvision 0.29.1.
        "torch>=2.1",
        "torchvision>=0.16",
        "lmdb",
        "opencv-python",
        "pyyaml",
        "numpy",
        "scikit-image",  # bundled photos for the built-in sample set
        "matplotlib",  # a bundled photo for the sample set, benchmark plots
        "tqdm",
    ],
    extras_require={
        # no "cuda" extra: see the docstring (`pip install -e ".[cuda]"` now only warns that it is gone)
        # `basicsr export` (onnx + onnxscript: torch.onnx's exporter) and `basicsr infer --onnx` (onnxruntime);
        # tested with onnx 1.23.2, onnxruntime 1.32.0, onnxscript 0.7.2
        "onnx": ONNX,
        "test": ["pytest>=7", "ruff", *ONNX],
    },
    entry_points={"console_scripts": ["basicsr = serpent_arch.cli:main"]},
)
