"""The Serpent network: shapes, sizes, options, registration, gradients."""

import pytest
import torch

import serpent_arch  # noqa: F401  (registers into BasicSR)
from serpent_arch.archs import PRESETS, Serpent
from serpent_arch.archs.serpent_arch import pad_to_multiple
from serpent_arch.ops.cross_scan import cross_merge, cross_scan


def test_registered_in_basicsr():
    from basicsr.archs import build_network
    from basicsr.data import build_dataset  # noqa: F401
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY

    assert ARCH_REGISTRY.get("Serpent") is Serpent
    assert "SerpentModel" in MODEL_REGISTRY
    assert "DegradedImageDataset" in DATASET_REGISTRY
    net = build_network({"type": "Serpent", "preset": "tiny", "upscale": 2})
    assert isinstance(net, Serpent) and net.upscale == 2


@pytest.mark.parametrize(
    "size,kwargs,out_size",
    [
        ((1, 3, 32, 32), {}, (32, 32)),
        ((2, 3, 17, 23), {}, (17, 23)),  # odd sizes: padded and cropped back
        ((1, 3, 5, 3), {}, (5, 3)),  # smaller than the padding multiple
        ((1, 1, 19, 21), {"in_chans": 1}, (19, 21)),  # grayscale
        ((1, 3, 9, 14), {"upscale": 4}, (36, 56)),  # interpolate upsampler
        ((1, 3, 9, 14), {"upscale": 4, "upsampler": "pixelshuffle"}, (36, 56)),
        ((1, 1, 7, 10), {"upscale": 3, "upsampler": "pixelshuffle", "in_chans": 1}, (21, 30)),
        ((1, 3, 16, 16), {"upscale": 8}, (128, 128)),
        ((1, 3, 20, 20), {"in_chans": 3, "out_chans": 1}, (20, 20)),
        ((1, 3, 24, 20), {"scan_directions": 2, "mlp_ratio": 0}, (24, 20)),
        ((1, 3, 24, 20), {"scan_directions": 1, "patch_size": 2}, (24, 20)),
        ((1, 3, 15, 15), {"patch_size": 1, "depths": [1, 1], "embed_dim": 8}, (15, 15)),
        ((1, 3, 9, 14), {"patch_size": 1, "upscale": 4, "upsampler": "pixelshuffle", "ffn_conv": 3}, (36, 56)),
        ((1, 3, 20, 20), {"depths": [1, 2]}, (20, 20)),
        ((1, 3, 9, 14), {"patch_size": 1, "upscale": 4, "upsampler": "nearest+conv"}, (36, 56)),
        ((1, 1, 8, 6), {"upscale": 2, "upsampler": "nearest+conv", "in_chans": 1}, (16, 12)),
        ((1, 3, 9, 14), {"upscale": 4, "upsampler": "nearest+conv", "upsampler_channels": 5}, (36, 56)),
        ((1, 3, 7, 10), {"upscale": 3, "upsampler": "pixelshuffle", "upsampler_channels": 7}, (21, 30)),
        ((1, 3, 9, 14), {"patch_size": 1, "embed_kernel": 3, "upscale": 4, "upsampler": "nearest+conv"}, (36, 56)),
        ((1, 3, 11, 13), {"patch_size": 1, "embed_kernel": 5, "embed_norm": False}, (11, 13)),
        ((1, 3, 9, 14), {"patch_size": 1, "upscale": 4, "upsampler": "nearest+conv", "contrast_norm": 7}, (36, 56)),
        ((1, 3, 3, 5), {"upscale": 2, "contrast_norm": 9}, (6, 10)),  # window wider than the image
        ((1, 1, 9, 14), {"patch_size": 1, "upscale": 2, "contrast_norm": 3, "in_chans": 1}, (18, 28)),
        ((1, 3, 7, 10), {"patch_size": 1, "upscale": 3, "upsampler": "nearest+conv"}, (21, 30)),
    ],
)
def test_output_shapes_tiny(size, kwargs, out_size):
    net = Serpent(preset="tiny", **kwargs).eval()
    with torch.no_grad():
        out = net(torch.rand(size))
    out_chans = kwargs.get("out_chans", size[1])
    assert out.shape == (size[0], out_chans, *out_size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("preset", ["small", "base"])
def test_output_shapes_larger_presets(preset):
    net = Serpent(preset=preset).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 37, 29))
    assert out.shape == (1, 3, 37, 29)


def test_presets_and_overrides():
    assert list(PRESETS) == ["tiny", "small", "base", "large", "sr-tiny", "sr-small", "sr-base", "sr-large"]
    for family in ("unet", "sr"):
        names = [name for name, preset in PRESETS.items() if preset.family == family]
        counts = [sum(p.numel() for p in Serpent(preset=name, upscale=4).parameters()) for name in names]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), (family, counts)
    net = Serpent(preset="small", embed_dim=32)  # an explicit key overrides the preset's
    assert net.patch_embed.out_channels == 32 and len(net.encoder) == 4
    net = Serpent(preset="tiny", depths=[2, 1])
    assert len(net.encoder) == 2 and len(net.decoder[0].blocks) == 2  # decoder mirrors the depths given
    net = Serpent(preset="sr-small", depths=[3, 1])
    assert [len(s.blocks) for s in net.decoder] == [3]  # ... not the preset's own decoder
    assert Serpent().config == PRESETS["base"].structure | {"depths_decoder": (2, 2, 2)}  # default preset
    assert Serpent(variant="small").config == Serpent(preset="small").config  # variant: the former name


def test_every_preset_builds_its_whole_structure_and_restores():
    """A preset sets every structural argument (the network's config is the preset's, nothing left to a
    constructor default), and each one runs forward and backward at its family's use."""
    from serpent_arch.archs.presets import STRUCTURE

    torch.manual_seed(0)
    for name, preset in PRESETS.items():
        assert set(preset.structure) == set(STRUCTURE), name
        upscale = 4 if preset.family == "sr" else 1
        net = _trained_looking(Serpent(preset=name, upscale=upscale, in_chans=1))
        expected = dict(preset.structure)
        if expected["depths_decoder"] is None:
            expected["depths_decoder"] = tuple(reversed(expected["depths"][:-1]))
        assert net.config == {**expected, "depths": tuple(expected["depths"])}, name
        if name in ("large", "sr-large"):
            continue  # the larger members: construction and config are enough here
        out = net(torch.rand(1, 1, 9, 14))
        assert out.shape == (1, 1, 9 * upscale, 14 * upscale), name
        out.square().mean().backward()
        assert all(p.grad is not None for p in net.parameters()), name


def test_sr_presets_are_the_studys_networks():
    """sr-tiny is the quick start's network and sr-small the equal-budget study's 10-minute leader (with MATLAB's
    kernel in its residual, the study's -mk- candidate): the same modules and parameter shapes as the structure
    they were written out with in the study."""
    lmn15 = dict(patch_size=1, embed_kernel=3, embed_dim=48, ssm_ratio=1.0, mlp_ratio=4.0, ffn_conv=3,
                 embed_norm=False, out_norm=False, contrast_norm=15, contrast_norm_scale=False,
                 upsampler="nearest+conv", resize_kernel="matlab", drop_path_rate=0.0, upscale=4)  # fmt: skip
    for name, depths, decoder in (("sr-tiny", [1, 1], [1]), ("sr-small", [2, 1], [1])):
        written = Serpent(preset="tiny", depths=depths, depths_decoder=decoder, **lmn15)
        preset = Serpent(preset=name, upscale=4)
        shapes = {k: v.shape for k, v in written.state_dict().items()}
        assert {k: v.shape for k, v in preset.state_dict().items()} == shapes, name
        assert preset.config == written.config, name


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"preset": "huge"}, "unknown preset 'huge'; choose one of tiny, small, base, large, sr-tiny"),
        ({"upsampler": "nearest"}, "upsampler must be one of"),
        ({"upscale": 5, "upsampler": "pixelshuffle"}, "2\\^n or 3"),
        ({"upscale": 6, "upsampler": "nearest+conv"}, "'nearest\\+conv' supports upscale 2\\^n or 3, got 6"),
        ({"patch_size": 3}, "patch_size must be 1, 2 or 4"),
        ({"depths": [1, 1], "depths_decoder": [1, 1]}, "depths_decoder must list 1"),
        ({"scan_directions": 3}, "scan_directions must be 1, 2 or 4"),
        ({"img_range": 0}, "img_range must be > 0"),
        ({"ffn_conv": 2}, "ffn_conv must be 0 or a positive odd kernel size, got 2"),
        ({"upsampler_channels": 0}, "upsampler_channels must be a positive integer, got 0"),
        ({"upsampler_channels": 1.5}, "upsampler_channels must be a positive integer, got 1.5"),
        ({"embed_kernel": 3}, "embed_kernel must be an odd .* got embed_kernel=3 with patch_size=4"),
        ({"patch_size": 1, "embed_kernel": 2}, "embed_kernel must be an odd .* got embed_kernel=2 with patch_size=1"),
        ({"contrast_norm": 4}, "contrast_norm must be 0 or an odd window side, got 4"),
        ({"contrast_norm": True}, "contrast_norm must be 0 or an odd window side, got True"),
        ({"contrast_norm": -3}, "contrast_norm must be 0 or an odd window side, got -3"),
        ({"contrast_norm_scale": False}, "contrast_norm_scale false needs contrast_norm"),
        ({"preset": "sr-tiny", "variant": "tiny"}, "preset 'sr-tiny' and variant 'tiny' both given"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Serpent(**{"preset": "tiny", **kwargs})


def test_embed_kernel_sees_the_neighbourhood():
    """With embed_kernel 3 a token depends on its pixel's 3x3 neighbourhood; with the default 1x1
    embedding on its colour alone. embed_norm False leaves the embedding un-normalised."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 8)
    moved = x.clone()
    moved[..., 3, 4] += 0.5  # the right-hand neighbour of pixel (3, 3)
    for kernel, changes in ((None, False), (3, True)):
        net = Serpent(preset="tiny", patch_size=1, embed_kernel=kernel)
        tokens = [net.embed_norm(net.patch_embed(t).permute(0, 2, 3, 1))[0, 3, 3] for t in (x, moved)]
        assert (not torch.allclose(*tokens)) == changes
    normed = sum(p.numel() for p in Serpent(preset="tiny", patch_size=1).parameters())
    cases = (({"embed_norm": False}, 1), ({"out_norm": False}, 1), ({"embed_norm": False, "out_norm": False}, 2))
    for kwargs, dropped in cases:
        plain = Serpent(preset="tiny", patch_size=1, **kwargs)
        assert isinstance(plain.embed_norm, torch.nn.Identity) == (not kwargs.get("embed_norm", True))
        assert isinstance(plain.out_norm, torch.nn.Identity) == (not kwargs.get("out_norm", True))
        assert sum(p.numel() for p in plain.parameters()) == normed - dropped * 2 * 24  # LayerNorm weight + bias


def test_without_io_norms_a_token_keeps_its_amplitude():
    """With the embedding's and the output's LayerNorm on, the body's output does not change when the
    embedded tokens are scaled (LayerNorm removes it); with both off it does: the scale reaches the pixels."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 8)
    for norms, scale_reaches_output in ((True, False), (False, True)):
        net = _trained_looking(Serpent(preset="tiny", patch_size=1, depths=[1], embed_norm=norms, out_norm=norms))
        for m in net.modules():  # blocks as identities: what is left is embedding -> (norms) -> unembedding
            if hasattr(m, "ss2d"):
                m.ss2d.out_proj.weight.data.zero_()
                m.ffn.fc2.weight.data.zero_()
                m.ffn.fc2.bias.data.zero_()
        net.patch_embed.bias.data.zero_()
        net.unembed.bias.data.zero_()
        feats = [net.restore_features(x * s) - net.shallow(x * s) for s in (1.0, 0.25)]
        assert torch.allclose(feats[1], feats[0] * 0.25, atol=1e-5) == scale_reaches_output
        assert torch.allclose(feats[1], feats[0], atol=1e-4) == (not scale_reaches_output)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"upscale": 2}, {"patch_size": 1, "upscale": 4, "upsampler": "nearest+conv"}],
)
def test_contrast_norm_follows_brightness_and_contrast(kwargs):
    """With contrast_norm (and its floor off) the output of a network whose correction is not zero follows
    any change of brightness and contrast of the input, a + c (x - a) -> a + c (f(x) - a); without it, not."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 12, 12)
    a, c = 0.3, 0.25
    net = _trained_looking(Serpent(preset="tiny", contrast_norm=5, **kwargs)).eval()
    plain = Serpent(preset="tiny", **kwargs).eval()
    plain.load_state_dict(net.state_dict())
    net.contrast_eps = 0.0
    for model, follows in ((net, True), (plain, False)):
        with torch.no_grad():
            out, moved = model(x), model(a + c * (x - a))
        assert torch.allclose(moved, a + c * (out - a), atol=2e-5) == follows
    bicubic = Serpent(preset="tiny", **kwargs).eval()(x)  # the correction is there: not the bare residual
    assert (out - bicubic).abs().mean() > 1e-3
    # contrast_norm_scale false: only the local mean is taken off, so the output follows the brightness
    # exactly (f(x + b) = f(x) + b) but not the contrast
    mean_only = _trained_looking(Serpent(preset="tiny", contrast_norm=5, contrast_norm_scale=False, **kwargs)).eval()
    with torch.no_grad():
        out, brighter, moved = mean_only(x), mean_only(x + 0.2), mean_only(a + c * (x - a))
    assert torch.allclose(brighter, out + 0.2, atol=2e-5)
    assert not torch.allclose(moved, a + c * (out - a), atol=2e-5)


def test_local_contrast_floor_keeps_flat_areas_faint():
    """What the network reads: a textured photo at unit local contrast whatever its own contrast, but faint
    noise on a flat area stays faint (the floor, CONTRAST_EPS), instead of being blown up to unit contrast."""
    from serpent_arch.archs.contrast_norm import CONTRAST_EPS, local_contrast

    torch.manual_seed(0)
    textured, flat = 0.5 + 0.1 * torch.randn(1, 3, 16, 16), 0.5 + 1e-3 * torch.randn(1, 3, 16, 16)
    for x, expected_std in ((textured, 1.0), (flat, 1e-3 / CONTRAST_EPS)):
        mean, std = local_contrast(x, 5, CONTRAST_EPS)
        assert mean.shape == x.shape and std.shape == (1, 1, 16, 16)
        assert ((x - mean) / std).std().item() == pytest.approx(expected_std, rel=0.25)


def test_channel_mismatch_is_a_clear_error():
    net = Serpent(preset="tiny", in_chans=3)
    with pytest.raises(ValueError, match="in_chans=3.*got shape \\(1, 1, 16, 16\\)"):
        net(torch.rand(1, 1, 16, 16))


def test_img_range_scales_input_and_output():
    torch.manual_seed(0)
    net = _trained_looking(Serpent(preset="tiny")).eval()
    net255 = Serpent(preset="tiny", img_range=255.0).eval()
    net255.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net255(x * 255) / 255, net(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("directions", [1, 2, 4])
def test_cross_scan_merge_roundtrip(directions):
    x = torch.randn(2, 5, 3, 4)
    xs = cross_scan(x, directions)
    assert xs.shape == (2, directions, 5, 12)
    torch.testing.assert_close(cross_merge(xs, 3, 4), x * directions)
    if directions == 4:  # the second direction is column-major
        torch.testing.assert_close(xs[:, 1], x.transpose(-1, -2).reshape(2, 5, 12))


def _cross_scan_by_indexing(x, directions):
    """The definition: row-major, column-major, then both reversed (plain autograd ops)."""
    b, d, h, w = x.shape
    rows, cols = x.reshape(b, d, h * w), x.transpose(-1, -2).reshape(b, d, h * w)
    seqs = {1: [rows], 2: [rows, rows.flip(-1)], 4: [rows, cols, rows.flip(-1), cols.flip(-1)]}[directions]
    return torch.stack(seqs, dim=1)


@pytest.mark.parametrize("directions", [1, 2, 4])
def test_cross_scan_and_merge_gradients(directions):
    """The hand-written backward passes: gradcheck, and the same values and gradients as the
    definition written with stack / flip."""
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, directions, 3, 20, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: cross_scan(t, directions), (x,))
    assert torch.autograd.gradcheck(lambda t: cross_merge(t, 4, 5), (y,))
    torch.testing.assert_close(cross_scan(x, directions), _cross_scan_by_indexing(x, directions))
    g = torch.randn(2, directions, 3, 20, dtype=torch.float64)
    (ours,) = torch.autograd.grad(cross_scan(x, directions), x, g)
    (plain,) = torch.autograd.grad(_cross_scan_by_indexing(x, directions), x, g)
    torch.testing.assert_close(ours, plain)
    # merge is the adjoint of scan: <scan(x), y> = <x, merge(y)>
    lhs = (cross_scan(x, directions) * y).sum()
    rhs = (x * cross_merge(y, 4, 5)).sum()
    torch.testing.assert_close(lhs, rhs)


def test_ss2d_scan_matches_einsum_formulation():
    """SS2D.scan's batched matmuls against the einsum formulation of the paper's projections,
    output and every parameter gradient (float64, so only the summation order differs)."""
    from serpent_arch.archs.ss2d import SS2D
    from serpent_arch.ops import selective_scan

    torch.manual_seed(0)
    m = SS2D(8, d_state=4, scan_backend="reference").double()
    x = torch.randn(2, 16, 3, 5, dtype=torch.float64)

    def einsum_scan(x):
        b, d, h, w = x.shape
        k, n, r = m.directions, m.d_state, m.dt_rank
        xs = _cross_scan_by_indexing(x, k)
        proj = torch.einsum("bkdl,kcd->bkcl", xs, m.x_proj_weight)
        dts, bs, cs = torch.split(proj, [r, n, n], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, m.dt_proj_weight)
        bias = m.dt_proj_bias.reshape(-1).float()
        y = selective_scan(xs.reshape(b, k * d, h * w), dts.reshape(b, k * d, h * w), -torch.exp(m.A_log.float()),
                           bs.contiguous(), cs.contiguous(), D=m.D.float(), delta_bias=bias, delta_softplus=True,
                           backend="reference")  # fmt: skip
        y = y.view(b, k, d, h * w)
        rows = y[:, 0] + y[:, 2].flip(-1)
        cols = y[:, 1] + y[:, 3].flip(-1)
        return rows.reshape(b, d, h, w) + cols.reshape(b, d, w, h).transpose(-1, -2)

    g = torch.randn(2, 16, 3, 5, dtype=torch.float64)
    results = []
    for fn in (m.scan, einsum_scan):
        xi = x.clone().requires_grad_()
        m.zero_grad()
        fn(xi).backward(g)
        results.append([xi.grad] + [p.grad.clone() for p in m.parameters() if p.grad is not None])
    assert len(results[0]) == len(results[1]) > 4
    for ours, plain in zip(*results):
        torch.testing.assert_close(ours, plain)


def test_pad_to_multiple_reflects_or_replicates():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    padded, size = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 4, 4) and size == (3, 4)
    torch.testing.assert_close(padded[..., 3, :], x[..., 1, :])  # reflect
    padded, _ = pad_to_multiple(x, 16)  # more than reflect can do
    assert padded.shape == (1, 1, 16, 16)


def _trained_looking(net):
    """The last conv starts at zero (identity network); give it weights so every branch matters."""
    torch.nn.init.normal_(net.conv_last.weight, std=0.05)
    return net


def test_untrained_network_is_the_bicubic_baseline():
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        out = Serpent(preset="tiny", upscale=2).eval()(x)
    expected = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(out, expected)


def test_gradients_reach_every_parameter_and_checkpointing_matches():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 20, 20)
    net = _trained_looking(Serpent(preset="tiny", drop_path_rate=0.0))
    net_ckpt = Serpent(preset="tiny", drop_path_rate=0.0, use_checkpoint=True)
    net_ckpt.load_state_dict(net.state_dict())
    net(x).square().mean().backward()
    net_ckpt(x).square().mean().backward()
    for (name, p), p_ckpt in zip(net.named_parameters(), net_ckpt.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        torch.testing.assert_close(p.grad, p_ckpt.grad, rtol=1e-4, atol=1e-6)


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    net = _trained_looking(Serpent(preset="tiny", drop_path_rate=0.5))
    x = torch.rand(4, 3, 16, 16)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x))
    net.train()
    with torch.no_grad():
        assert not torch.allclose(net(x), net(x))


def test_ffn_conv_mixes_neighbouring_tokens():
    """ffn_conv adds a depthwise convolution to every FFN: a token's FFN output then depends on its
    neighbours (the plain MLP's does not), and the option leaves the rest of the network alone."""
    from serpent_arch.archs.blocks import FeedForward

    torch.manual_seed(0)
    x = torch.randn(1, 6, 7, 8)
    for kernel, local in ((0, False), (3, True), (5, True)):
        ffn = FeedForward(8, 16, kernel)
        changed = x.clone()
        changed[0, 3, 4] += 1.0  # one token
        diff = (ffn(changed) - ffn(x)).abs().sum(-1)[0] > 0
        assert diff[3, 4] and bool(diff[2, 3]) == local and bool(diff[0, 0]) is False
        if kernel:
            assert ffn.dwconv.groups == 16 and ffn.dwconv.kernel_size == (kernel, kernel)
    plain = Serpent(preset="tiny")
    conv = Serpent(preset="tiny", ffn_conv=3)
    extra = sum(p.numel() for p in conv.parameters()) - sum(p.numel() for p in plain.parameters())
    blocks = sum(1 for m in conv.modules() if isinstance(m, FeedForward))
    widths = [int(m.fc1.out_features) for m in conv.modules() if isinstance(m, FeedForward)]
    assert blocks == 5 and extra == sum(w * 9 + w for w in widths)  # weights + bias of each depthwise conv
    torch.nn.init.normal_(conv.conv_last.weight)  # zero-initialised: no gradient would pass it
    conv(torch.rand(1, 3, 16, 16)).sum().backward()
    assert all(m.dwconv.weight.grad is not None and m.dwconv.weight.grad.abs().sum() > 0
               for m in conv.modules() if isinstance(m, FeedForward))


def test_nearest_conv_upsampler_is_non_linear_and_ends_at_the_output_size():
    """nearest+conv: per x2 step nearest + conv + LeakyReLU, then a conv + LeakyReLU at the output size;
    the body runs at the input size as with pixelshuffle, and training starts at the bicubic image."""
    from serpent_arch.archs.upsamplers import NearestConvUpsampler

    up = NearestConvUpsampler(4, 6)
    convs = [m for m in up if isinstance(m, torch.nn.Conv2d)]
    acts = [m for m in up if isinstance(m, torch.nn.LeakyReLU)]
    assert len(convs) == 3 and len(acts) == 3  # two x2 steps and the output-size conv
    x = torch.randn(1, 6, 5, 7)
    assert up(x).shape == (1, 6, 20, 28)
    assert not torch.allclose(up(2 * x), 2 * up(x))  # non-linear, unlike conv + PixelShuffle

    torch.manual_seed(0)
    net = Serpent(preset="tiny", patch_size=1, upscale=4, upsampler="nearest+conv").eval()
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        out = net(lr)
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.allclose(out, bicubic, atol=1e-6)  # zero-initialised last conv
    assert net.patch_embed.stride == (1, 1) and net.restore_features(lr).shape[-2:] == (8, 8)  # LR-size body


@pytest.mark.parametrize("scale, shape", [(2, (2, 5, 7, 3)), (4, (1, 6, 9, 14)), (8, (1, 4, 3, 2)), (4, (3, 8, 1, 5))])
def test_fused_nearest_conv_matches_upsample_then_conv(scale, shape):
    """The fused upsampler (each nearest x2 + conv as one transposed convolution) against the layers run as
    listed: outputs, input gradients and every weight's gradient, on fresh random weights, inputs and output
    gradients, in float64, at odd sizes and down to 1 pixel (the zero padding at the borders)."""
    from serpent_arch.archs.upsamplers import NearestConvUpsampler

    gen = torch.Generator().manual_seed(sum(shape) + scale)
    channels = shape[1]
    fused = NearestConvUpsampler(scale, channels).double()
    reference = NearestConvUpsampler(scale, channels, fused=False).double()
    with torch.no_grad():
        for p in fused.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    reference.load_state_dict(fused.state_dict())  # the same checkpoint keys
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    grad = torch.randn(shape[0], channels, shape[2] * scale, shape[3] * scale, generator=gen, dtype=torch.float64)
    results = []
    for up in (fused, reference):
        xi = x.clone().requires_grad_()
        out = up(xi)
        out.backward(grad)
        results.append((out, xi.grad, [p.grad for p in up.parameters()]))
    (out_f, dx_f, dw_f), (out_r, dx_r, dw_r) = results
    torch.testing.assert_close(out_f, out_r, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(dx_f, dx_r, rtol=1e-10, atol=1e-10)
    for a, b in zip(dw_f, dw_r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_nearest_conv_x3_runs_its_step_as_listed_in_either_setting():
    """upscale 3 with nearest+conv: one nearest x3 + conv step (no fused form), the same with fused on or off."""
    from serpent_arch.archs.upsamplers import NearestConvUpsampler

    torch.manual_seed(0)
    fused, plain = NearestConvUpsampler(3, 4), NearestConvUpsampler(3, 4, fused=False)
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(2, 4, 5, 7)
    assert fused(x).shape == (2, 4, 15, 21)
    torch.testing.assert_close(fused(x), plain(x))


def test_upsampler_fused_is_a_network_option_with_the_same_weights():
    """``upsampler_fused`` changes how nearest+conv is computed, not the network: a checkpoint of one loads
    into the other and gives the same output in float32; under bfloat16 autocast the fused path runs too."""
    torch.manual_seed(0)
    kw = dict(preset="tiny", patch_size=1, upscale=4, upsampler="nearest+conv")
    fused, plain = Serpent(**kw).eval(), Serpent(**kw, upsampler_fused=False).eval()
    torch.nn.init.normal_(fused.conv_last.weight, std=0.1)  # zero-initialised: the upsampler would not show
    plain.load_state_dict(fused.state_dict())
    assert fused.upsample[2].fused and not plain.upsample[2].fused
    lr = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(fused(lr), plain(lr), rtol=1e-4, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = fused(lr)
    assert low.shape == (2, 3, 48, 40) and (low.float() - plain(lr)).abs().max() < 0.05


def test_upsampler_channels_sets_the_width_of_the_output_size_convolutions():
    """upsampler_channels (SwinIR's num_feat): a conv maps embed_dim to it, and every upsampler conv
    and the last conv work at that width; the default keeps embed_dim, and upscale 1 ignores it."""
    net = Serpent(preset="tiny", patch_size=1, upscale=4, upsampler="nearest+conv", upsampler_channels=10)
    convs = [m for m in net.upsample.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(24, 10)] + [(10, 10)] * 3
    assert net.conv_last.in_channels == 10
    default = Serpent(preset="tiny", patch_size=1, upscale=4, upsampler="nearest+conv")
    assert {c.out_channels for c in default.upsample.modules() if isinstance(c, torch.nn.Conv2d)} == {24}
    narrower = sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in default.parameters())
    assert narrower
    same_size = Serpent(preset="tiny", upscale=1, upsampler_channels=10)
    assert same_size.conv_last.in_channels == 24  # no upsampler: the option has nothing to set
    lr = torch.rand(2, 3, 6, 6)
    net.conv_last.weight.data.normal_()  # leave the zero start, so every parameter gets a gradient
    net(lr).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.upsample.parameters())


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (5, 1)])
def test_sr_input_one_pixel_high_or_wide(size):
    """Bicubic needs two pixels per side: a 1-pixel row or column is enlarged by nearest instead, not an error."""
    net = Serpent(preset="sr-tiny", upscale=4).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, *size))
    assert out.shape == (1, 3, 4 * size[0], 4 * size[1]) and torch.isfinite(out).all()
