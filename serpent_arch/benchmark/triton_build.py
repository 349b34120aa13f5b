"""Compile the Triton scan kernels for a GPU architecture without a GPU; report registers and spills.

    python -m serpent_arch.benchmark triton_build [--arch 90] [--tiles 4x32x4 2x64x4 ...] [--dtype fp32] [--fused]

Triton's wheel ships ``ptxas`` and ``cuobjdump``, so the whole build (Triton IR -> PTX -> cubin)
runs on a CPU-only machine. For each tile ``BLOCK_DxCHUNKxWARPS`` (at N = 16, every optional
input present, softplus on) it prints, per kernel, the registers per thread, the stack frame
(spilled registers land there) and the shared memory, from ``cuobjdump --dump-resource-usage``.
This is how the backend's default tile was chosen while no GPU was at hand: more than 255
registers, or any stack, means spills to local memory in the scan loop.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from serpent_arch.ops import _triton_cross_scan, _triton_scan

# pointer arguments that are float32 whatever the inputs' dtype (weights, state, gradient sums)
_FLOAT32_POINTERS = {"A_ptr", "D_ptr", "bias_ptr", "last_ptr", "ckpt_ptr", "gA_ptr", "gB_ptr", "gC_ptr", "gD_ptr",
                     "gbias_ptr"}  # fmt: skip
# the four-direction kernels also sum the merged map and its gradient in float32
_CROSS_FLOAT32_POINTERS = _FLOAT32_POINTERS | {"out_ptr", "gx_ptr"}


def _nvidia_tool(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def toolchain_available() -> bool:
    """True if this Triton wheel bundles ptxas and cuobjdump."""
    return all(os.path.exists(_nvidia_tool(n)) for n in ("ptxas", "cuobjdump"))


def compile_kernels(block_d: int = 4, chunk: int = 32, num_warps: int = 4, block_n: int = 16, arch: int = 90,
                    dtype: str = "fp32", optional_inputs: bool = True) -> dict[str, bytes]:  # fmt: skip
    """cubins {"forward": ..., "backward": ...} for ``sm_<arch>``; ``dtype`` (fp32 / bf16 / fp16)
    is that of u, delta, z, B, C and the output; ``optional_inputs`` sets D, z, delta_bias,
    softplus, checkpoints and the last state all on (or all off)."""
    if _triton_scan.interpreted():
        raise RuntimeError("triton_build: TRITON_INTERPRET=1 is set; compiling needs the real compiler")
    flags = {"HAS_D": optional_inputs, "HAS_Z": optional_inputs, "HAS_BIAS": optional_inputs,
             "SOFTPLUS": optional_inputs, "BLOCK_D": block_d, "BLOCK_N": block_n, "CHUNK": chunk}  # fmt: skip
    kernels = {
        "forward": (_triton_scan._scan_fwd_kernel, {"SAVE_CKPT": optional_inputs, "SAVE_LAST": optional_inputs}),
        "backward": (_triton_scan._scan_bwd_kernel, {}),
    }
    return _compile(kernels, flags, _FLOAT32_POINTERS, arch, dtype, num_warps)


def compile_cross_kernels(block_d: int = 1, chunk: int = 32, num_warps: int = 4, block_n: int = 16, arch: int = 90,
                          dtype: str = "fp32", directions: int = 4, split: bool = False
                          ) -> dict[str, bytes]:  # fmt: skip
    """cubins {"forward": ..., "backward": ...} of the fused four-direction kernels
    (``_triton_cross_scan.py``; ``split``: split_directions) for ``sm_<arch>``, D, delta_bias, softplus and
    checkpoints on."""
    if _triton_scan.interpreted():
        raise RuntimeError("triton_build: TRITON_INTERPRET=1 is set; compiling needs the real compiler")
    flags = {"K": directions, "SPLIT": split, "HAS_D": True, "HAS_BIAS": True, "SOFTPLUS": True, "BLOCK_D": block_d,
             "BLOCK_N": block_n, "CHUNK": chunk}  # fmt: skip
    kernels = {
        "forward": (_triton_cross_scan._cross_scan_fwd_kernel, {"SAVE_CKPT": True}),
        "backward": (_triton_cross_scan._cross_scan_bwd_kernel, {}),
    }
    return _compile(kernels, flags, _CROSS_FLOAT32_POINTERS, arch, dtype, num_warps)


def _compile(kernels: dict, flags: dict, float32_pointers: set, arch: int, dtype: str, num_warps: int):
    binaries = {}
    for name, (kernel, extra) in kernels.items():
        constexprs = {**flags, **extra}
        signature = {}
        for arg in kernel.arg_names:
            if arg in constexprs:
                signature[arg] = "constexpr"
            elif arg.endswith("_ptr"):
                signature[arg] = "*fp32" if arg in float32_pointers else f"*{dtype}"
            else:
                signature[arg] = "i32"
        src = ASTSource(kernel, signature, constexprs={(kernel.arg_names.index(k),): v for k, v in constexprs.items()})
        binaries[name] = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})
    return {name: b.asm["cubin"] for name, b in binaries.items()}


def resource_usage(cubin: bytes) -> dict[str, int]:
    """{"REG", "STACK", "SHARED", "LOCAL"} of the (single) kernel in ``cubin``, from cuobjdump."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([_nvidia_tool("cuobjdump"), "--dump-resource-usage", f.name], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
    found = {k: int(v) for k, v in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", text)}
    if "REG" not in found:
        raise RuntimeError(f"triton_build: no resource usage in cuobjdump's output:\n{text}")
    return found


def _tile(text: str) -> tuple[int, int, int]:
    try:
        block_d, chunk, warps = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BLOCK_DxCHUNKxWARPS like 4x32x4, got {text!r}") from None
    return block_d, chunk, warps


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m serpent_arch.benchmark triton_build",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--arch", type=int, default=90, help="compute capability as an integer (90 = sm_90)")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="dtype of u, B, C, ...")
    default_tile = f"{_triton_scan.DEFAULT_BLOCK_D}x{_triton_scan.DEFAULT_CHUNK}x{_triton_scan.DEFAULT_NUM_WARPS}"
    parser.add_argument("--tiles", nargs="+", type=_tile, default=[_tile(default_tile), (4, 64, 4), (2, 64, 4)],
                        help=f"BLOCK_DxCHUNKxWARPS at N = 16 (default: {default_tile} 4x64x4 2x64x4)")  # fmt: skip
    parser.add_argument("--fused", action="store_true",
                        help="the fused four-direction kernels (_triton_cross_scan.py, K = 4) instead")  # fmt: skip
    args = parser.parse_args(argv)
    if not toolchain_available():
        raise SystemExit("triton_build: this Triton wheel has no bundled ptxas / cuobjdump")

    compile_tile = compile_cross_kernels if args.fused else compile_kernels
    which = "fused four-direction kernels, K = 4, D / delta_bias" if args.fused else "D / z / delta_bias"
    lines = [
        f"Triton {triton.__version__}, sm_{args.arch}, inputs {args.dtype}, N = 16, {which} / softplus on",
        "",
        "| tile (channels x states x steps, warps) | kernel | registers | stack (bytes) | shared (bytes) |",
        "|---|---|---:|---:|---:|",
    ]
    for block_d, chunk, warps in args.tiles:
        cubins = compile_tile(block_d, chunk, warps, arch=args.arch, dtype=args.dtype)
        for name, cubin in cubins.items():
            r = resource_usage(cubin)
            lines.append(f"| {block_d} x 16 x {chunk}, {warps} | {name} | {r['REG']} | {r.get('STACK', 0)} "
                         f"| {r.get('SHARED', 0)} |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    print(table)
    return table


if __name__ == "__main__":
    main()
