"""`basicsr leaderboard`: metrics.json files of test runs -> one markdown table and a CSV."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest

import serpent_arch  # noqa: F401  (before basicsr: compat fixes and registrations)
from serpent_arch import cli
from serpent_arch.archs import Serpent
from serpent_arch.leaderboard import FlopsCache, count_network_gflops, main, parse_size
from serpent_arch.measure.flops import count_flops

TINY_X4 = {"type": "Serpent", "preset": "tiny", "upscale": 4, "upsampler": "interpolate"}
Y_CROP4 = {
    "psnr": {"type": "calculate_psnr", "crop_border": 4, "test_y_channel": True},
    "ssim": {"type": "calculate_ssim", "crop_border": 4, "test_y_channel": True},
}


def record(
    name: str,
    dataset: str,
    metrics: dict,
    *,
    network_g: dict | None = None,
    params: int = 330_123,
    scale: int = 4,
    num_images: int = 5,
    self_ensemble: bool = False,
    metric_opts: dict | None = None,
    baseline: dict | None = None,
) -> dict:
    """A record as SerpentModel._write_metrics writes it into results/<name>/metrics.json."""
    return {
        "name": name,
        "dataset": dataset,
        "iter": 0,
        "network": (network_g or TINY_X4)["type"],
        "network_g": copy.deepcopy(network_g or TINY_X4),
        "params": params,
        "scale": scale,
        "num_images": num_images,
        "self_ensemble": self_ensemble,
        "metric_opts": copy.deepcopy(metric_opts or Y_CROP4),
        "metrics": metrics,
        "baseline": baseline if baseline is not None else {},
    }


def write_run(results: Path, name: str, *records: dict) -> Path:
    """results/<name>/metrics.json holding ``records`` in order, keyed by dataset like basicsr test."""
    folder = results / name
    folder.mkdir(parents=True)
    path = folder / "metrics.json"
    path.write_text(json.dumps({r["dataset"]: r for r in records}, indent=2))
    return path


def table_lines(markdown: str) -> dict[str, list[str]]:
    """Markdown table rows by label, each a list of its stripped cells."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("|:"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


def run_leaderboard(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def two_runs(tmp_path):
    """A plain and a self-ensemble run; the second lacks Set14, the first an extra metric."""
    results = tmp_path / "results"
    base = {"psnr": 28.4213, "ssim": 0.81042}
    write_run(
        results,
        "serpent_a_x4",
        record("serpent_a_x4", "Set5", {"ssim": 0.901234, "psnr": 32.714938}, baseline=base),
        record("serpent_a_x4", "Set14", {"psnr": 28.9012, "ssim": 0.7891}, num_images=14),
    )
    write_run(
        results,
        "serpent_b_x4",
        record("serpent_b_x4", "Set5", {"psnr": 32.8051, "ssim": 0.90211, "lpips": 0.123456}, self_ensemble=True),
    )
    return results


def test_markdown_table_rounding_labels_and_missing_cells(two_runs, capsys):
    code, out, _ = run_leaderboard(capsys, two_runs, "--no-flops")
    assert code == 0
    header = out.splitlines()[0]
    # datasets in file order (Set5 before Set14), PSNR before SSIM whatever the metrics' order, others last
    assert header == "| Model | Params (M) | Set5 PSNR | Set5 SSIM | Set5 LPIPS | Set14 PSNR | Set14 SSIM |"
    rows = table_lines(out)
    assert rows["serpent_a_x4"] == ["0.33", "32.71", "0.9012", "-", "28.90", "0.7891"]
    assert rows["serpent_b_x4+"] == ["0.33", "32.81", "0.9021", "0.1235", "-", "-"]
    assert rows["Bicubic ×4"] == ["-", "28.42", "0.8104", "-", "-", "-"]
    assert list(rows)[1] == "Bicubic ×4"  # baselines above the runs
    assert "- Set5 (5 images): PSNR, SSIM: Y channel, crop_border 4; LPIPS: metric options not recorded" in out
    assert "`+`: self-ensemble" in out
    assert (two_runs / "leaderboard.md").read_text() == out


def test_ssim_decimals_flag(two_runs, capsys):
    _, out, _ = run_leaderboard(capsys, two_runs, "--no-flops", "--ssim-decimals", "3")
    assert table_lines(out)["serpent_a_x4"][2] == "0.901"


def test_csv_has_full_values(two_runs, capsys):
    out_csv = two_runs / "tables" / "board.csv"
    assert run_leaderboard(capsys, two_runs, "--no-flops", "--out-csv", out_csv)[0] == 0
    rows = {row["model"]: row for row in csv.DictReader(out_csv.open())}
    assert set(rows) == {"Bicubic ×4", "serpent_a_x4", "serpent_b_x4+"}
    assert float(rows["serpent_a_x4"]["Set5 PSNR"]) == 32.714938
    assert float(rows["serpent_b_x4+"]["Set5 LPIPS"]) == 0.123456
    assert rows["serpent_b_x4+"]["Set14 PSNR"] == ""
    assert rows["serpent_a_x4"]["params"] == "330123"
    assert rows["serpent_b_x4+"]["self_ensemble"] == "True"
    assert rows["Bicubic ×4"]["kind"] == "baseline" and rows["Bicubic ×4"]["runs"] == "serpent_a_x4"


def test_gflops_of_a_serpent_record_match_count_flops(tmp_path, capsys):
    results = tmp_path / "results"
    write_run(results, "tiny", record("tiny", "Set5", {"psnr": 30.0}))
    write_run(results, "tiny_se", record("tiny_se", "Set5", {"psnr": 30.1}, self_ensemble=True))
    code, out, _ = run_leaderboard(capsys, results, "--flops-size", "128x96", "--out-csv", tmp_path / "t.csv")
    assert code == 0
    expected = count_flops(Serpent(preset="tiny", upscale=4, upsampler="interpolate"), (32, 24)).total / 1e9
    rows = {row["model"]: row for row in csv.DictReader((tmp_path / "t.csv").open())}
    assert float(rows["tiny"]["gflops"]) == pytest.approx(expected, rel=1e-12)
    assert float(rows["tiny_se+"]["gflops"]) == pytest.approx(8 * expected, rel=1e-12)
    assert table_lines(out)["tiny"][1] == f"{expected:.2f}"
    assert "one forward at 128×96 output (32×24 input for ×4)" in out


def test_gflops_of_basicsr_networks_and_failures(tmp_path, capsys):
    edsr = {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1, "upscale": 2}
    unknown = {"type": "NoSuchNet", "width": 3}
    gflops, counted_size = count_network_gflops(edsr, (64, 64))
    assert gflops > 0 and counted_size == (64, 64)
    cache = FlopsCache()
    assert cache.gflops(edsr, (8, 8)) == cache.gflops(dict(edsr), (8, 8))
    assert len(cache.counted) == 1  # one count per distinct network and size
    # BasicSR's SwinIR only takes multiples of window_size: counted as SwinIRModel pads it, and said so
    swinir = {"type": "SwinIR", "upscale": 3, "img_size": 16, "window_size": 4, "depths": [1], "embed_dim": 8}
    swinir.update(num_heads=[1], mlp_ratio=1, upsampler="pixelshuffledirect")
    padded = cache.gflops(swinir, (10, 9))
    assert padded.value == pytest.approx(count_network_gflops(swinir, (12, 12))[0])
    assert padded.notes == (
        "GFLOPs of SwinIR counted at 12×12 input: the input padded to a multiple of window_size 4, as BasicSR tests it",
    )

    results = tmp_path / "results"
    write_run(results, "edsr_x2", record("edsr_x2", "Set5", {"psnr": 33.0}, network_g=edsr, scale=2))
    write_run(results, "mystery", record("mystery", "Set5", {"psnr": 31.0}, network_g=unknown))
    code, out, _ = run_leaderboard(capsys, results)
    assert code == 0
    rows = table_lines(out)  # two scales: a Scale column, x2 rows first
    assert list(rows) == ["Model", "edsr_x2", "mystery"]
    assert rows["edsr_x2"][0] == "×2" and float(rows["edsr_x2"][2]) > 0
    assert rows["mystery"][2] == "- [1]"
    assert "- [1] GFLOPs of NoSuchNet not counted: KeyError: NoSuchNet is not a registered" in out
    assert "128×128 input for ×2" in out and "64×64 input for ×4" in out


def test_mixed_conventions_get_footnotes(tmp_path, capsys):
    results = tmp_path / "results"
    rgb = {
        "psnr": {"type": "calculate_psnr", "crop_border": 0, "test_y_channel": False},
        "ssim": Y_CROP4["ssim"],
    }
    write_run(results, "a", record("a", "Set5", {"psnr": 32.0, "ssim": 0.9}))
    write_run(results, "b", record("b", "Set5", {"psnr": 32.1, "ssim": 0.91}))
    write_run(results, "c_rgb", record("c_rgb", "Set5", {"psnr": 30.5, "ssim": 0.89}, metric_opts=rgb))
    write_run(results, "d_fewer", record("d_fewer", "Set5", {"psnr": 33.0, "ssim": 0.92}, num_images=4))
    code, out, _ = run_leaderboard(capsys, results, "--no-flops")
    assert code == 0
    rows = table_lines(out)
    assert rows["a"][1:] == ["32.00", "0.9000"] and rows["b"][1:] == ["32.10", "0.9100"]
    assert rows["c_rgb"][1:] == ["30.50 [1]", "0.8900"]  # only the PSNR measured differently
    assert rows["d_fewer"][1:] == ["33.00 [2]", "0.9200 [2]"]
    assert "- [1] Set5 PSNR: RGB, crop_border 0 (rest of the column: Y channel, crop_border 4)" in out
    assert "- [2] Set5: 4 images (most rows: 5)" in out
    _, _, err = run_leaderboard(capsys, results, "--no-flops", "--sort-by", "Set5 PSNR")
    assert "Set5 PSNR mixes measuring conventions" in err


def test_scales_are_compared_within_their_group(tmp_path, capsys):
    """x2 runs crop 2 pixels and x4 runs 4, as papers do: neither is flagged against the other."""
    results = tmp_path / "results"
    crop2 = {name: {**options, "crop_border": 2} for name, options in Y_CROP4.items()}
    x2 = {**TINY_X4, "upscale": 2}
    write_run(results, "a_x2", record("a_x2", "Set5", {"psnr": 37.9}, scale=2, network_g=x2, metric_opts=crop2))
    write_run(results, "b_x4", record("b_x4", "Set5", {"psnr": 32.0}))
    write_run(results, "c_x4", record("c_x4", "Set5", {"psnr": 32.3}))
    _, out, _ = run_leaderboard(capsys, results, "--no-flops", "--sort-by", "Set5 PSNR")
    assert list(table_lines(out)) == ["Model", "a_x2", "c_x4", "b_x4"]  # sorted within each scale
    assert "[1]" not in out
    assert "- Set5 ×2 (5 images): PSNR: Y channel, crop_border 2" in out
    assert "- Set5 ×4 (5 images): PSNR: Y channel, crop_border 4" in out


def test_baseline_rows_once_per_scale(tmp_path, capsys):
    results = tmp_path / "results"
    baseline = {"psnr": 28.0, "ssim": 0.8}
    write_run(results, "x4_a", record("x4_a", "Set5", {"psnr": 32.0, "ssim": 0.9}, baseline=baseline))
    write_run(results, "x4_b", record("x4_b", "Set5", {"psnr": 32.2, "ssim": 0.9}, baseline=baseline))
    deblur = {**TINY_X4, "upscale": 1}
    write_run(
        results,
        "deblur",
        record("deblur", "FFHQ", {"psnr": 30.0}, scale=1, network_g=deblur, baseline={"psnr": 25.0}),
    )
    _, out, _ = run_leaderboard(capsys, results, "--no-flops")
    rows = table_lines(out)
    # one group per scale, smallest first, each under its baseline; FFHQ first: the deblur run sorts first
    assert list(rows) == ["Model", "Input (degraded)", "deblur", "Bicubic ×4", "x4_a", "x4_b"]
    assert rows["Input (degraded)"] == ["×1", "-", "25.00", "-", "-"]
    assert rows["Bicubic ×4"] == ["×4", "-", "-", "28.00", "0.8000"]
    _, out, _ = run_leaderboard(capsys, results, "--no-flops", "--no-baseline")
    assert "Bicubic" not in out and "Input (degraded)" not in out


def test_runs_on_different_inputs_under_one_dataset_name_are_grouped(tmp_path, capsys):
    """Denoising at two noise levels reuses the dataset names; the input baselines tell them apart."""
    results = tmp_path / "results"
    denoise = {**TINY_X4, "upscale": 1}

    def denoising_run(name: str, psnr: float, input_psnr: float) -> None:
        baseline = {"psnr": input_psnr}
        write_run(results, name, record(name, "CBSD68", {"psnr": psnr}, scale=1, network_g=denoise, baseline=baseline))

    denoising_run("dn_sigma15", 34.1, 24.61)
    denoising_run("dn_sigma15_small", 33.9, 24.61 + 1e-6)  # the same inputs, up to float noise
    denoising_run("dn_sigma50", 28.5, 14.16)
    _, out, _ = run_leaderboard(capsys, results, "--no-flops")
    rows = table_lines(out)
    assert list(rows) == [
        "Model",
        "Input (degraded), input of dn_sigma15",
        "dn_sigma15",
        "dn_sigma15_small",
        "Input (degraded), input of dn_sigma50",
        "dn_sigma50",
    ]
    assert rows["Input (degraded), input of dn_sigma50"] == ["-", "14.16"]
    assert "The ×1 runs were tested on different inputs under the same dataset names" in out
    assert "- CBSD68 (input of dn_sigma50) (5 images): PSNR: Y channel, crop_border 4" in out


def test_sort_by(two_runs, capsys):
    write_run(two_runs, "serpent_c_x4", record("serpent_c_x4", "Set5", {"psnr": 33.5, "ssim": 0.91}))
    _, out, _ = run_leaderboard(capsys, two_runs, "--no-flops", "--sort-by", "set5 psnr", "--no-baseline")
    assert list(table_lines(out))[1:] == ["serpent_c_x4", "serpent_b_x4+", "serpent_a_x4"]
    _, out, _ = run_leaderboard(capsys, two_runs, "--no-flops", "--sort-by", "Set14 PSNR", "--no-baseline")
    assert list(table_lines(out))[1] == "serpent_a_x4"  # the only run with Set14; the others last
    code, _, err = run_leaderboard(capsys, two_runs, "--no-flops", "--sort-by", "Urban100 PSNR")
    assert code == 2 and "no such column" in err and "Set5 PSNR" in err


def test_errors_and_malformed_files(tmp_path, capsys):
    code, _, err = run_leaderboard(capsys, tmp_path / "nowhere")
    assert code == 2 and "does not exist" in err
    results = tmp_path / "results"
    (results / "empty_run").mkdir(parents=True)
    code, _, err = run_leaderboard(capsys, results)
    assert code == 2 and "no metrics.json" in err

    (results / "broken").mkdir()
    (results / "broken" / "metrics.json").write_text('{"Set5": {"psnr": ')
    code, _, err = run_leaderboard(capsys, results)
    assert code == 2 and "could be read" in err and "broken/metrics.json: not readable as JSON" in err

    write_run(results, "good", record("good", "Set5", {"psnr": 31.0}))
    (results / "listed").mkdir()
    (results / "listed" / "metrics.json").write_text("[1, 2]")
    code, out, err = run_leaderboard(capsys, results, "--no-flops")
    assert code == 0
    assert "warning: skipping" in err and "broken/metrics.json" in err and "listed/metrics.json" in err
    assert list(table_lines(out)) == ["Model", "good"]


def test_archived_runs_left_out_unless_asked(tmp_path, capsys):
    results = tmp_path / "results"
    write_run(results, "run", record("run", "Set5", {"psnr": 31.0}))
    write_run(results, "run_archived_20240101_120000", record("run", "Set5", {"psnr": 30.0}))
    _, out, err = run_leaderboard(capsys, results, "--no-flops")
    assert list(table_lines(out)) == ["Model", "run"] and "archived" in err
    _, out, _ = run_leaderboard(capsys, results, "--no-flops", "--include-archived")
    assert "run_archived_20240101_120000" in table_lines(out)


def test_cli_dispatch_and_flags(two_runs, capsys):
    assert cli.main(["leaderboard", str(two_runs), "--no-flops"]) == 0
    assert "serpent_b_x4+" in capsys.readouterr().out
    assert parse_size("256x128") == (256, 128) and parse_size("64") == (64, 64) and parse_size("32×48") == (32, 48)
    code, _, err = run_leaderboard(capsys, two_runs, "--flops-size", "big")
    assert code == 2 and "HxW" in err
