"""`basicsr export` (serpent_arch.export) and `basicsr infer --onnx`: the graph under ONNX Runtime against
PyTorch at sizes the export never saw.

Fast tests: the ``onnx`` scan backend against the reference, the in-graph padding against eager padding,
a scan alone exported and run at other lengths, and every error of the two commands. The exports of whole
networks (about a minute each on two busy cores) are marked slow.
"""

# serpent_arch before torch (its OpenMP setting; see tests/conftest.py)
import serpent_arch  # noqa: F401

# isort: split
import json
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from serpent_arch.archs.padding import _pad_by_gather, pad_reflect_or_replicate
from serpent_arch.archs.serpent_arch import Serpent
from serpent_arch.ops import selective_scan

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from serpent_arch.export import main as export_main  # noqa: E402
from serpent_arch.export.graph import FORMAT, store_weights_in_half  # noqa: E402
from serpent_arch.infer import main as infer_main  # noqa: E402

EXPORT_SIZE = (37, 45)  # graph.py traces with this size (batch 2); no test size below equals it


def scan_inputs(batch, dim, length, n, groups, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(batch, dim, length, generator=g),
        delta=torch.randn(batch, dim, length, generator=g),
        A=-torch.rand(dim, n, generator=g) * 4,
        B=torch.randn(batch, groups, n, length, generator=g),
        C=torch.randn(batch, groups, n, length, generator=g),
        D=torch.randn(dim, generator=g),
        z=torch.randn(batch, dim, length, generator=g),
        delta_bias=torch.randn(dim, generator=g),
    )


@pytest.mark.parametrize("length", [1, 63, 64, 65, 200])
def test_onnx_backend_matches_reference(length):
    inputs = scan_inputs(2, 8, length, 4, 2)
    ref, ref_last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend="reference")
    out, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend="onnx")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, ref_last, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 9), (16, 16), (17, 30)])
@pytest.mark.parametrize("pads", [(0, 15, 0, 11), (7, 7, 7, 7), (0, 1, 0, 0)])
def test_padding_in_the_graph_matches_eager(size, pads):
    x = torch.randn(1, 2, *size)
    torch.testing.assert_close(_pad_by_gather(x, *pads), pad_reflect_or_replicate(x, *pads), rtol=0, atol=0)


class ScanOnly(torch.nn.Module):
    def __init__(self, dim, n):
        super().__init__()
        self.A = torch.nn.Parameter(-torch.rand(dim, n) * 4)
        self.D = torch.nn.Parameter(torch.randn(dim))
        self.delta_bias = torch.nn.Parameter(torch.randn(dim))

    def forward(self, u, delta, B, C, z):
        return selective_scan(u, delta, self.A, B, C, self.D, z, self.delta_bias, True, backend="onnx")


def test_exported_scan_runs_any_length_in_standard_operators(tmp_path):
    """The scan alone, traced at length 100: ONNX Runtime gives the reference at 1, 37 and 300 steps, with
    one Scan node and no custom domain."""
    module = ScanOnly(8, 4).requires_grad_(False)
    inputs = scan_inputs(2, 8, 100, 4, 2)
    args = tuple(inputs[k] for k in ("u", "delta", "B", "C", "z"))
    dyn = torch.export.Dim.DYNAMIC
    shapes = ({0: dyn, 2: dyn}, {0: dyn, 2: dyn}, {0: dyn, 3: dyn}, {0: dyn, 3: dyn}, {0: dyn, 2: dyn})
    program = torch.export.export(module, args, dynamic_shapes=shapes, strict=False)
    path = tmp_path / "scan.onnx"
    torch.onnx.export(program, dynamo=True, opset_version=18, verbose=False).save(str(path))
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {(node.domain or "ai.onnx", node.op_type) for node in model.graph.node}
    assert ("ai.onnx", "Scan") in ops and {domain for domain, _ in ops} == {"ai.onnx"}
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    for batch, length in [(1, 1), (3, 37), (2, 300)]:
        x = scan_inputs(batch, 8, length, 4, 2, seed=length)
        ref = selective_scan(x["u"], x["delta"], module.A, x["B"], x["C"], module.D, x["z"], module.delta_bias,
                             True, backend="reference")  # fmt: skip
        feeds = dict(zip(names, (x[k].numpy() for k in ("u", "delta", "B", "C", "z"))))
        out = session.run(None, feeds)[0]
        assert np.abs(out - ref.numpy()).max() < 1e-4, (batch, length)


# --- errors of the commands (no export runs) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_model")
    net_opt = {"type": "Serpent", "preset": "sr-tiny", "upscale": 4}
    (root / "opt.yml").write_text(yaml.safe_dump({"name": "export_test", "scale": 4, "network_g": net_opt}))
    torch.manual_seed(0)
    torch.save({"params_ema": perturbed(Serpent(preset="sr-tiny", upscale=4)).state_dict()}, root / "net.pth")
    torch.save({"params": Serpent(preset="tiny").state_dict()}, root / "other.pth")
    return root


def perturbed(net: Serpent) -> Serpent:
    """Random non-zero weights: the last conv starts at zero, so an untrained network is only bicubic."""
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.02 * torch.randn_like(param))
    return net.eval()


def run_export(root, *flags, weights="net.pth"):
    return export_main(["-opt", str(root / "opt.yml"), "--weights", str(root / weights), *flags])


def test_export_refuses_weights_of_another_network(tiny_model, tmp_path, capsys):
    assert run_export(tiny_model, "-o", str(tmp_path / "m.onnx"), weights="other.pth") == 2
    err = capsys.readouterr().err
    assert err.startswith("basicsr export: error: weights") and "e.g. shallow.weight" in err
    assert "they fit preset 'tiny'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


def test_export_refuses_an_unwritable_output(tiny_model, tmp_path, capsys):
    assert run_export(tiny_model, "-o", str(tmp_path / "missing" / "m.onnx")) == 2
    err = capsys.readouterr().err
    assert err.startswith("basicsr export: error: cannot write") and "does not exist" in err
    assert run_export(tiny_model, "-o", str(tmp_path)) == 2
    assert "is a folder" in capsys.readouterr().err


def test_export_refuses_an_old_opset(tiny_model, tmp_path, capsys):
    assert run_export(tiny_model, "-o", str(tmp_path / "m.onnx"), "--opset", "13") == 2
    err = capsys.readouterr().err
    assert "--opset 13 is too old" in err and "--opset 18" in err and len(err.strip().splitlines()) == 1


def test_export_refuses_a_bad_fixed_size(tiny_model, tmp_path, capsys):
    assert run_export(tiny_model, "-o", str(tmp_path / "m.onnx"), "--fixed-size", "64") == 2
    assert "--fixed-size must be HxW" in capsys.readouterr().err


def test_export_says_what_to_install_without_onnx(tiny_model, tmp_path, capsys):
    with mock.patch.dict("sys.modules", {"onnxscript": None}):
        assert run_export(tiny_model, "-o", str(tmp_path / "m.onnx")) == 2
    assert 'pip install -e ".[onnx]"' in capsys.readouterr().err


def test_infer_onnx_refuses_a_file_that_is_no_serpent_export(tmp_path, capsys):
    images = tmp_path / "in"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert infer_main(["--onnx", str(tmp_path / "junk.onnx"), "-i", str(images), "-o", str(tmp_path / "out")]) == 2
    assert "is not an ONNX model ONNX Runtime can load" in capsys.readouterr().err
    # a valid ONNX model without Serpent's metadata
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "other.onnx"))
    assert infer_main(["--onnx", str(tmp_path / "other.onnx"), "-i", str(images), "-o", str(tmp_path / "out")]) == 2
    assert "is not a Serpent model written by `basicsr export`" in capsys.readouterr().err


def test_infer_onnx_refuses_flags_of_the_pytorch_path(tmp_path, capsys):
    args = ["--onnx", str(tmp_path / "m.onnx"), "-i", str(tmp_path), "-o", str(tmp_path / "out")]
    assert infer_main([*args, "--weights", "net.pth"]) == 2
    assert "leave out --weights" in capsys.readouterr().err
    assert infer_main([*args, "--precision", "fp16"]) == 2
    assert "basicsr export --fp16" in capsys.readouterr().err


# --- whole networks exported (slow) ---------------------------------------------------------------------------

FAMILIES = {
    # the quick start's network (SR family, LR size, nearest+conv upsampler, contrast norm)
    "sr-tiny": {"type": "Serpent", "preset": "sr-tiny", "upscale": 4},
    # the U-Net family at full resolution (4x4 patches, pad to a multiple of 16), x2 by interpolation
    "tiny": {"type": "Serpent", "preset": "tiny", "upscale": 2, "drop_path_rate": 0.0},
}
SIZES = [(20, 20), (33, 47), (64, 24)]  # square, odd and non-square, wide; none is EXPORT_SIZE


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each family exported once through `basicsr export` (fp32), with the PyTorch network it came from."""
    root = tmp_path_factory.mktemp("exported")
    models = {}
    for name, net_opt in FAMILIES.items():
        scale = net_opt["upscale"]
        (root / f"{name}.yml").write_text(yaml.safe_dump({"name": name, "scale": scale, "network_g": net_opt}))
        torch.manual_seed(0)
        net = perturbed(Serpent(**{k: v for k, v in net_opt.items() if k != "type"}))
        torch.save({"params_ema": net.state_dict()}, root / f"{name}.pth")
        path = root / f"{name}.onnx"
        flags = ["-opt", str(root / f"{name}.yml"), "--weights", str(root / f"{name}.pth"), "-o", str(path)]
        assert export_main(flags) == 0
        models[name] = {"path": path, "net": net, "scale": scale}
    return models


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnx_runtime_equals_pytorch_at_unseen_sizes(exported, family):
    model = exported[family]
    onnx.checker.check_model(onnx.load(str(model["path"])), full_check=True)
    session = ort.InferenceSession(str(model["path"]))
    assert [d if isinstance(d, int) else "dyn" for d in session.get_inputs()[0].shape] == ["dyn", 3, "dyn", "dyn"]
    for batch, size in zip((1, 2, 1), SIZES):
        assert size != EXPORT_SIZE
        x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(size[0]))
        with torch.no_grad():
            ref = model["net"](x).numpy()
        out = session.run(None, {"image": x.numpy()})[0]
        assert out.shape == (batch, 3, size[0] * model["scale"], size[1] * model["scale"])
        print(f"{family} {batch}x{size[0]}x{size[1]}: max abs difference {np.abs(out - ref).max():.2e}")  # -s shows it
        assert np.abs(out - ref).max() <= 1e-4, (family, size, np.abs(out - ref).max())


@pytest.mark.slow
def test_metadata_names_scale_network_convention_and_version(exported):
    from serpent_arch import __version__

    meta = {p.key: p.value for p in onnx.load(str(exported["sr-tiny"]["path"])).metadata_props}
    assert meta["serpent.format"] == FORMAT and meta["serpent.version"] == __version__
    assert meta["serpent.scale"] == "4" and meta["serpent.preset"] == "sr-tiny"
    assert json.loads(meta["serpent.network_g"])["preset"] == "sr-tiny"
    assert "NCHW float32 RGB in [0, 1]" in meta["serpent.input"]


@pytest.mark.slow
def test_fp16_weights_are_within_45_db_of_fp32(exported, tmp_path):
    """`--fp16` stores the weights in float16 (what export_onnx does after the export, applied here to the
    fp32 file): half the weight bytes, the output at least 45 dB PSNR from the fp32 graph's."""
    model = exported["sr-tiny"]
    proto = onnx.load(str(model["path"]))
    store_weights_in_half(proto)
    onnx.checker.check_model(proto, full_check=True)
    path = tmp_path / "half.onnx"
    onnx.save(proto, str(path))
    assert path.stat().st_size < model["path"].stat().st_size - 0.4 * 4 * sum(
        p.numel() for p in model["net"].parameters()
    )
    full, half = (ort.InferenceSession(str(p)) for p in (model["path"], path))
    x = torch.rand(1, 3, 33, 47, generator=torch.Generator().manual_seed(1)).numpy()
    a, b = full.run(None, {"image": x})[0], half.run(None, {"image": x})[0]
    assert b.dtype == np.float32
    psnr = 10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    print(f"fp16 weights: {psnr:.1f} dB PSNR from the fp32 graph")  # -s shows it
    assert psnr >= 45, psnr


@pytest.mark.slow
def test_fixed_size_graph_is_static_and_equal(exported, tmp_path):
    model = exported["sr-tiny"]
    root, path = model["path"].parent, tmp_path / "fixed.onnx"
    flags = ["-opt", str(root / "sr-tiny.yml"), "--weights", str(root / "sr-tiny.pth"), "-o", str(path)]
    assert export_main([*flags, "--fixed-size", "24x30"]) == 0
    session = ort.InferenceSession(str(path))
    assert session.get_inputs()[0].shape == [1, 3, 24, 30]
    x = torch.rand(1, 3, 24, 30, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model["net"](x).numpy()
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - ref).max() <= 1e-4


@pytest.mark.slow
def test_infer_onnx_restores_awkward_images_like_pytorch(exported, tmp_path):
    """Gray, RGBA, 16-bit and odd-sized images, whole and in tiles, with a comparison image: the ONNX path
    writes what the PyTorch path writes (within one 8-bit or 16-bit level)."""
    model = exported["sr-tiny"]
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "gray.png"), rng.integers(0, 256, (19, 23), dtype=np.uint8))
    cv2.imwrite(str(images / "rgba.png"), rng.integers(0, 256, (21, 17, 4), dtype=np.uint8))
    cv2.imwrite(str(images / "deep.png"), rng.integers(0, 65536, (15, 26, 3), dtype=np.uint16))
    cv2.imwrite(str(images / "odd.png"), rng.integers(0, 256, (31, 45, 3), dtype=np.uint8))
    root = model["path"].parent
    torch_flags = ["-opt", str(root / "sr-tiny.yml"), "--weights", str(root / "sr-tiny.pth")]
    for tiles in ([], ["--tile", "16", "--tile-overlap", "4"]):
        out_onnx, out_torch = tmp_path / f"onnx{len(tiles)}", tmp_path / f"torch{len(tiles)}"
        common = ["-i", str(images), "--compare", *tiles]
        assert infer_main(["--onnx", str(model["path"]), "-o", str(out_onnx), *common]) == 0
        assert infer_main([*torch_flags, "-o", str(out_torch), *common]) == 0
        for name in ("gray", "rgba", "deep", "odd"):
            a = cv2.imread(str(out_onnx / f"{name}.png"), cv2.IMREAD_UNCHANGED)
            b = cv2.imread(str(out_torch / f"{name}.png"), cv2.IMREAD_UNCHANGED)
            assert a.shape == b.shape and a.dtype == b.dtype, name
            assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max() <= 1, name
        assert (out_onnx / "compare" / "odd.png").is_file()


def test_padding_while_exporting_takes_the_gather_path():
    x = torch.randn(1, 1, 3, 4)
    with mock.patch("torch.compiler.is_exporting", return_value=True):
        padded = pad_reflect_or_replicate(x, 0, 5, 0, 0)  # more than reflect can do: replicate
    torch.testing.assert_close(padded, F.pad(x, (0, 0, 0, 5), mode="replicate"), rtol=0, atol=0)
