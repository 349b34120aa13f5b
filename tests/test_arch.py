"""The Serpent network: shapes, sizes, options, registration, gradients."""

import pytest
import torch

import serpent_arch  # noqa: F401  (registers into BasicSR)
from serpent_arch.archs import VARIANTS, Serpent
from serpent_arch.archs.blocks import Affine, SerpentBlock
from serpent_arch.archs.serpent_arch import pad_to_multiple
from serpent_arch.archs.ss2d import cross_merge, cross_scan


def test_registered_in_basicsr():
    from basicsr.archs import build_network
    from basicsr.data import build_dataset  # noqa: F401
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY

    assert ARCH_REGISTRY.get("Serpent") is Serpent
    assert "SerpentModel" in MODEL_REGISTRY
    assert "DegradedImageDataset" in DATASET_REGISTRY
    net = build_network({"type": "Serpent", "variant": "tiny", "upscale": 2})
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
        ((1, 3, 9, 14), {"patch_size": 1, "upscale": 2, "upsampler": "pixelshuffle", "stage_conv": True}, (18, 28)),
        ((1, 3, 20, 20), {"depths": [1, 2], "stage_conv": True}, (20, 20)),
        ((1, 3, 9, 14), {"patch_size": 1, "upscale": 4, "upsampler": "nearest+conv"}, (36, 56)),
        ((1, 1, 8, 6), {"upscale": 2, "upsampler": "nearest+conv", "in_chans": 1}, (16, 12)),
        ((1, 3, 9, 14), {"upscale": 4, "upsampler": "nearest+conv", "upsampler_channels": 5}, (36, 56)),
        ((1, 3, 7, 10), {"upscale": 3, "upsampler": "pixelshuffle", "upsampler_channels": 7}, (21, 30)),
        ((1, 3, 9, 14), {"patch_size": 1, "embed_kernel": 3, "upscale": 4, "upsampler": "nearest+conv"}, (36, 56)),
        ((1, 3, 11, 13), {"patch_size": 1, "embed_kernel": 5, "embed_norm": False}, (11, 13)),
        ((1, 3, 9, 14), {"patch_size": 1, "upscale": 4, "upsampler": "nearest+conv", "contrast_norm": 7}, (36, 56)),
        ((1, 3, 3, 5), {"upscale": 2, "contrast_norm": 9}, (6, 10)),  # window wider than the image
        ((1, 1, 9, 14), {"patch_size": 1, "upscale": 2, "contrast_norm": 3, "contrast_norm_raw": True, "in_chans": 1},
         (18, 28)),
    ],
)
def test_output_shapes_tiny(size, kwargs, out_size):
    net = Serpent(variant="tiny", **kwargs).eval()
    with torch.no_grad():
        out = net(torch.rand(size))
    out_chans = kwargs.get("out_chans", size[1])
    assert out.shape == (size[0], out_chans, *out_size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("variant", ["small", "base"])
def test_output_shapes_larger_variants(variant):
    net = Serpent(variant=variant).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 37, 29))
    assert out.shape == (1, 3, 37, 29)


def test_variants_and_overrides():
    assert set(VARIANTS) == {"tiny", "small", "base", "large"}
    counts = [sum(p.numel() for p in Serpent(variant=v).parameters()) for v in ("tiny", "small", "base")]
    assert counts == sorted(counts)
    net = Serpent(variant="small", embed_dim=32)  # an explicit key overrides the variant
    assert net.patch_embed.out_channels == 32 and len(net.encoder) == 4
    net = Serpent(variant="tiny", depths=[2, 1])
    assert len(net.encoder) == 2 and len(net.decoder[0].blocks) == 2  # decoder mirrors the encoder
    assert Serpent().patch_embed.out_channels == VARIANTS["base"]["embed_dim"]  # default variant


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"variant": "huge"}, "unknown variant 'huge'"),
        ({"upsampler": "nearest"}, "upsampler must be one of"),
        ({"upscale": 5, "upsampler": "pixelshuffle"}, "2\\^n or 3"),
        ({"upscale": 3, "upsampler": "nearest+conv"}, "'nearest\\+conv' supports upscale 2\\^n, got 3"),
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
        ({"contrast_norm_raw": True}, "contrast_norm_raw needs contrast_norm"),
        ({"contrast_norm_scale": False}, "contrast_norm_scale false needs contrast_norm"),
        ({"block_rescale": True, "block_norm": False}, "block_rescale rescales by .* block_norm false removes it"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Serpent(**{"variant": "tiny", **kwargs})


def test_embed_kernel_sees_the_neighbourhood():
    """With embed_kernel 3 a token depends on its pixel's 3x3 neighbourhood; with the default 1x1
    embedding on its colour alone. embed_norm False leaves the embedding un-normalised."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 8)
    moved = x.clone()
    moved[..., 3, 4] += 0.5  # the right-hand neighbour of pixel (3, 3)
    for kernel, changes in ((None, False), (3, True)):
        net = Serpent(variant="tiny", patch_size=1, embed_kernel=kernel)
        tokens = [net.embed_norm(net.patch_embed(t).permute(0, 2, 3, 1))[0, 3, 3] for t in (x, moved)]
        assert (not torch.allclose(*tokens)) == changes
    normed = sum(p.numel() for p in Serpent(variant="tiny", patch_size=1).parameters())
    cases = (({"embed_norm": False}, 1), ({"out_norm": False}, 1), ({"embed_norm": False, "out_norm": False}, 2))
    for kwargs, dropped in cases:
        plain = Serpent(variant="tiny", patch_size=1, **kwargs)
        assert isinstance(plain.embed_norm, torch.nn.Identity) == (not kwargs.get("embed_norm", True))
        assert isinstance(plain.out_norm, torch.nn.Identity) == (not kwargs.get("out_norm", True))
        assert sum(p.numel() for p in plain.parameters()) == normed - dropped * 2 * 24  # LayerNorm weight + bias


def test_without_io_norms_a_token_keeps_its_amplitude():
    """With the embedding's and the output's LayerNorm on, the body's output does not change when the
    embedded tokens are scaled (LayerNorm removes it); with both off it does: the scale reaches the pixels."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 8)
    for norms, scale_reaches_output in ((True, False), (False, True)):
        net = _trained_looking(Serpent(variant="tiny", patch_size=1, depths=[1], embed_norm=norms, out_norm=norms))
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


def test_block_rescale_makes_the_body_homogeneous():
    """With block_rescale (and no LayerNorm or bias outside the blocks) the token features scale with the
    input, f(c x) = c f(x) for c > 0, with trained-looking norms and biases inside the blocks; without it they
    do not. The update is the plain one times std(x): block_rescale changes no parameter."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16) - 0.5
    kw = dict(variant="tiny", patch_size=1, embed_norm=False, out_norm=False, scale_norm=False)
    net = Serpent(block_rescale=True, **kw).eval()
    plain = Serpent(**kw).eval()
    assert net.state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias") and (name.startswith(("patch_embed", "fuses", "unembed"))):
                p.zero_()  # the token path outside the blocks: linear
            elif ".norm" in name or name.endswith("bias"):
                p.normal_()  # inside the blocks: anything
    plain.load_state_dict(net.state_dict())
    for norm in (m for model in (net, plain) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)):
        norm.eps = 1e-10  # homogeneous up to the eps; here float32 rounding is all that is left
    for model, homogeneous in ((net, True), (plain, False)):
        with torch.no_grad():
            feats = [model.restore_features(x * s) - model.shallow(x * s) for s in (1.0, 0.25)]
        error = (feats[1] - 0.25 * feats[0]).abs().max() / feats[1].abs().max()
        assert (error < 3e-4) if homogeneous else (error > 0.05), error
    block = net.encoder[0].blocks[0]
    tokens = torch.randn(2, 4, 4, block.norm1.normalized_shape[0])
    std = torch.sqrt(tokens.var(-1, unbiased=False, keepdim=True) + block.norm1.eps)
    with torch.no_grad():
        expected = block.ss2d(block.norm1(tokens)) * std
        torch.testing.assert_close(block._residual(tokens, block.norm1, block.ss2d, None), tokens + expected)


def test_block_norm_off_reads_tokens_unnormalised_and_skip_scale_scales_the_stream():
    """block_norm False swaps each block's LayerNorms for a per-channel affine (same parameter count) that
    starts as the identity; skip_scale adds a per-channel scale s (from 1) on the stream: s * x + update.
    Both train: every new parameter gets a gradient."""
    torch.manual_seed(0)
    kw = dict(variant="tiny", patch_size=1, depths=[1, 1], depths_decoder=[1])
    plain, affine, skip = Serpent(**kw), Serpent(block_norm=False, **kw), Serpent(skip_scale=True, **kw)
    blocks = [m for m in affine.modules() if isinstance(m, SerpentBlock)]
    assert blocks and all(isinstance(n, Affine) for b in blocks for n in (b.norm1, b.norm2))
    assert sum(p.numel() for p in affine.parameters()) == sum(p.numel() for p in plain.parameters())
    tokens = torch.randn(2, 4, 4, blocks[0].norm1.weight.numel()) * 3 + 1
    torch.testing.assert_close(blocks[0].norm1(tokens), tokens)  # untrained: the token as it is
    with torch.no_grad():
        blocks[0].norm1.weight.fill_(2.0)
        blocks[0].norm1.bias.fill_(0.5)
    torch.testing.assert_close(blocks[0].norm1(tokens), 2 * tokens + 0.5)

    extra = sum(p.numel() for n, p in skip.named_parameters() if ".skip" in n)
    widths = [b.norm1.weight.numel() for b in skip.modules() if isinstance(b, SerpentBlock)]
    assert extra == 2 * sum(widths)  # one scale per residual connection and channel
    skip.eval()
    block = next(m for m in skip.modules() if isinstance(m, SerpentBlock))
    tokens = torch.randn(2, 4, 4, block.norm1.weight.numel())
    with torch.no_grad():
        update = block.ss2d(block.norm1(tokens))
        torch.testing.assert_close(block._residual(tokens, block.norm1, block.ss2d, block.skip1), tokens + update)
        block.skip1.fill_(0.25)
        scaled = block._residual(tokens, block.norm1, block.ss2d, block.skip1)
        torch.testing.assert_close(scaled, 0.25 * tokens + update)

    for net in (affine, skip):
        net = _trained_looking(net).train()  # the zero-initialised last conv would stop every gradient
        net(torch.rand(1, 3, 8, 8)).square().mean().backward()
        for name, param in net.named_parameters():
            if ".skip" in name or (".norm" in name and "blocks" in name):
                assert param.grad is not None and param.grad.abs().sum() > 0, name


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
    net = _trained_looking(Serpent(variant="tiny", contrast_norm=5, **kwargs)).eval()
    plain = Serpent(variant="tiny", **kwargs).eval()
    plain.load_state_dict(net.state_dict())
    net.contrast_eps = 0.0
    for model, follows in ((net, True), (plain, False)):
        with torch.no_grad():
            out, moved = model(x), model(a + c * (x - a))
        assert torch.allclose(moved, a + c * (out - a), atol=2e-5) == follows
    bicubic = Serpent(variant="tiny", **kwargs).eval()(x)  # the correction is there: not the bare residual
    assert (out - bicubic).abs().mean() > 1e-3
    # contrast_norm_raw: the input itself beside the normalised one, so the output no longer follows exactly
    raw = _trained_looking(Serpent(variant="tiny", contrast_norm=5, contrast_norm_raw=True, **kwargs)).eval()
    raw.contrast_eps = 0.0
    assert raw.patch_embed.in_channels == raw.shallow.in_channels == 6
    with torch.no_grad():
        out, moved = raw(x), raw(a + c * (x - a))
    assert not torch.allclose(moved, a + c * (out - a), atol=2e-5)
    # contrast_norm_scale false: only the local mean is taken off, so the output follows the brightness
    # exactly (f(x + b) = f(x) + b) but not the contrast
    mean_only = _trained_looking(Serpent(variant="tiny", contrast_norm=5, contrast_norm_scale=False, **kwargs)).eval()
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
    net = Serpent(variant="tiny", in_chans=3)
    with pytest.raises(ValueError, match="in_chans=3.*got shape \\(1, 1, 16, 16\\)"):
        net(torch.rand(1, 1, 16, 16))


def test_img_range_scales_input_and_output():
    torch.manual_seed(0)
    net = _trained_looking(Serpent(variant="tiny")).eval()
    net255 = Serpent(variant="tiny", img_range=255.0).eval()
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
        out = Serpent(variant="tiny", upscale=2).eval()(x)
    expected = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(out, expected)


def test_gradients_reach_every_parameter_and_checkpointing_matches():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 20, 20)
    net = _trained_looking(Serpent(variant="tiny", drop_path_rate=0.0))
    net_ckpt = Serpent(variant="tiny", drop_path_rate=0.0, use_checkpoint=True)
    net_ckpt.load_state_dict(net.state_dict())
    net(x).square().mean().backward()
    net_ckpt(x).square().mean().backward()
    for (name, p), p_ckpt in zip(net.named_parameters(), net_ckpt.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        torch.testing.assert_close(p.grad, p_ckpt.grad, rtol=1e-4, atol=1e-6)


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    net = _trained_looking(Serpent(variant="tiny", drop_path_rate=0.5))
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
    plain = Serpent(variant="tiny")
    conv = Serpent(variant="tiny", ffn_conv=3)
    extra = sum(p.numel() for p in conv.parameters()) - sum(p.numel() for p in plain.parameters())
    blocks = sum(1 for m in conv.modules() if isinstance(m, FeedForward))
    widths = [int(m.fc1.out_features) for m in conv.modules() if isinstance(m, FeedForward)]
    assert blocks == 5 and extra == sum(w * 9 + w for w in widths)  # weights + bias of each depthwise conv
    torch.nn.init.normal_(conv.conv_last.weight)  # zero-initialised: no gradient would pass it
    conv(torch.rand(1, 3, 16, 16)).sum().backward()
    assert all(m.dwconv.weight.grad is not None and m.dwconv.weight.grad.abs().sum() > 0
               for m in conv.modules() if isinstance(m, FeedForward))


def test_ffn_dense_is_a_dense_conv_then_linear():
    """ffn_dense makes the FFN Conv k x k (C -> hidden, all channels of the neighbourhood) -> GELU ->
    Linear: it matches that computation written out, mixes neighbours, and needs a kernel size."""
    from serpent_arch.archs.blocks import FeedForward

    torch.manual_seed(0)
    ffn = FeedForward(8, 16, 3, dense=True)
    assert ffn.fc1 is None and ffn.dwconv is None and ffn.dense_conv.groups == 1
    x = torch.randn(2, 6, 7, 8)
    hidden = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), ffn.dense_conv.weight, ffn.dense_conv.bias, padding=1)
    expected = torch.nn.functional.gelu(hidden.permute(0, 2, 3, 1)) @ ffn.fc2.weight.T + ffn.fc2.bias
    torch.testing.assert_close(ffn(x), expected)
    changed = x.clone()
    changed[0, 3, 4, 0] += 1.0
    diff = (ffn(changed) - ffn(x)).abs().sum(-1)[0] > 0
    assert diff[2, 3] and diff[4, 5] and not diff[0, 0]
    net = Serpent(variant="tiny", patch_size=1, ffn_conv=3, ffn_dense=True, mlp_ratio=2.0)
    widths = [m.fc2.in_features for m in net.modules() if isinstance(m, FeedForward)]
    assert widths == [48, 96, 192, 96, 48]
    torch.nn.init.normal_(net.conv_last.weight)
    net(torch.rand(1, 3, 8, 8)).sum().backward()
    assert all(m.dense_conv.weight.grad.abs().sum() > 0 for m in net.modules() if isinstance(m, FeedForward))
    with pytest.raises(ValueError, match="ffn_dense needs ffn_conv"):
        Serpent(variant="tiny", ffn_dense=True)


def test_channel_attention_scales_the_ffn_output_per_channel_from_the_image_mean():
    """channel_attention closes every FFN with squeeze-and-excitation: it matches the computation
    written out, one token's change reaches every token (through the mean), its weights get
    gradients, and a bad squeeze factor is an error naming the option."""
    from serpent_arch.archs.blocks import ChannelAttention, FeedForward

    torch.manual_seed(0)
    ffn = FeedForward(16, 32, 3, squeeze=4)
    assert ffn.attention.down.out_features == 4
    torch.nn.init.constant_(ffn.attention.down.bias, 2.0)  # the bottleneck's ReLUs open
    x = torch.randn(2, 5, 6, 16)
    plain = ffn.fc2(ffn.act(ffn.dwconv(ffn.fc1(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)))
    pooled = plain.mean(dim=(1, 2), keepdim=True)
    gate = torch.sigmoid(torch.relu(pooled @ ffn.attention.down.weight.T + ffn.attention.down.bias)
                         @ ffn.attention.up.weight.T + ffn.attention.up.bias)
    torch.testing.assert_close(ffn(x), plain * gate)
    changed = x.clone()
    changed[0, 0, 0] += 3.0
    diff = (ffn(changed) - ffn(x)).abs().sum(-1)
    assert bool((diff[0] > 0).all()) and not bool((diff[1] > 0).any())  # global within a photo only
    net = Serpent(variant="tiny", patch_size=1, ffn_conv=3, channel_attention=16)
    assert [m.down.out_features for m in net.modules() if isinstance(m, ChannelAttention)] == [1, 3, 6, 3, 1]
    torch.nn.init.normal_(net.conv_last.weight)
    net(torch.rand(1, 3, 8, 8)).sum().backward()
    assert all(m.down.weight.grad.abs().sum() > 0 for m in net.modules() if isinstance(m, ChannelAttention))
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="channel_attention must be 0 or a positive squeeze factor"):
            Serpent(variant="tiny", channel_attention=bad)
    with pytest.raises(ValueError, match="channel_attention closes the feed-forward networks"):
        Serpent(variant="tiny", channel_attention=16, mlp_ratio=0)


def test_stage_conv_closes_every_stage_with_a_residual_dense_conv():
    """stage_conv adds one dense 3x3 conv (with bias) after the blocks of every encoder and decoder
    stage, inside a residual: it mixes channels and neighbouring tokens, is a no-op when zeroed,
    and receives gradients."""
    from serpent_arch.archs.blocks import Stage

    torch.manual_seed(0)
    stage = Stage(8, 0, [], False, conv=True)  # no blocks: the stage is x + conv(x)
    x = torch.randn(1, 6, 7, 8)
    changed = x.clone()
    changed[0, 3, 4, 0] += 1.0  # one channel of one token
    diff = (stage(changed) - stage(x)).abs()[0]
    assert diff[3, 4, 5] > 0 and diff[2, 3].sum() > 0 and diff[0, 0].sum() == 0  # channels, neighbours, local
    torch.nn.init.zeros_(stage.conv.weight)
    torch.nn.init.zeros_(stage.conv.bias)
    assert torch.equal(stage(x), x)

    plain = Serpent(variant="tiny")
    conv = Serpent(variant="tiny", stage_conv=True)
    extra = sum(p.numel() for p in conv.parameters()) - sum(p.numel() for p in plain.parameters())
    widths = [24, 48, 96, 48, 24]  # tiny: encoder 24, 48, 96; decoder 48, 24
    assert extra == sum(w * w * 9 + w for w in widths)
    assert plain(torch.zeros(1, 3, 8, 8)).shape == conv(torch.zeros(1, 3, 8, 8)).shape
    torch.nn.init.normal_(conv.conv_last.weight)  # zero-initialised: no gradient would pass it
    conv(torch.rand(1, 3, 16, 16)).sum().backward()
    stages = [m for m in conv.modules() if isinstance(m, Stage)]
    assert len(stages) == 5 and all(s.conv.weight.grad.abs().sum() > 0 for s in stages)


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
    net = Serpent(variant="tiny", patch_size=1, upscale=4, upsampler="nearest+conv").eval()
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


def test_upsampler_fused_is_a_network_option_with_the_same_weights():
    """``upsampler_fused`` changes how nearest+conv is computed, not the network: a checkpoint of one loads
    into the other and gives the same output in float32; under bfloat16 autocast the fused path runs too."""
    torch.manual_seed(0)
    kw = dict(variant="tiny", patch_size=1, upscale=4, upsampler="nearest+conv")
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


def test_transposed_conv_upsampler_starts_as_nearest_conv_and_unties_its_taps():
    """transposed+conv: at initialisation every step is a nearest x2 + 3x3 conv (the conv its taps were folded
    from, recovered from them, gives the same output on fresh random inputs and biases); its 16 taps are free
    parameters, so a gradient step leaves the tied form; x2^n only, and a Serpent with it starts at bicubic."""
    from serpent_arch.archs.upsamplers import TransposedConvUpsampler

    torch.manual_seed(3)
    up = TransposedConvUpsampler(4, 5).double()
    steps = [m for m in up if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(steps) == 2 and len([m for m in up if isinstance(m, torch.nn.Conv2d)]) == 1
    x = torch.randn(2, 5, 7, 4, dtype=torch.float64)
    for step in steps:
        with torch.no_grad():
            step.bias.normal_()
        t = step.weight.transpose(0, 1)  # (C_out, C_in, 4, 4): taps w2, w1 + w2, w0 + w1, w0 on each axis
        w = torch.stack([t[:, :, 3], t[:, :, 1] - t[:, :, 0], t[:, :, 0]], 2)
        w = torch.stack([w[..., 3], w[..., 1] - w[..., 0], w[..., 0]], 3)
        nearest = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        torch.testing.assert_close(step(x), torch.nn.functional.conv2d(nearest, w, step.bias, padding=1))
        torch.testing.assert_close(t[:, :, 2], t[:, :, 3] + t[:, :, 1] - t[:, :, 0])  # tied at the start
    up(x).square().sum().backward()
    with torch.no_grad():
        for p in up.parameters():
            p -= 0.1 * p.grad
    t = steps[0].weight.transpose(0, 1)
    assert (t[:, :, 2] - (t[:, :, 3] + t[:, :, 1] - t[:, :, 0])).abs().max() > 1e-3  # free after a step
    with pytest.raises(ValueError, match="supports upscale 2\\^n, got 3"):
        TransposedConvUpsampler(3, 4)

    torch.manual_seed(0)
    net = Serpent(variant="tiny", patch_size=1, upscale=4, upsampler="transposed+conv").eval()
    lr = torch.rand(1, 3, 8, 8)
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(net(lr), bicubic, atol=1e-6, rtol=0)  # zero-initialised last conv


def test_pixelshuffle_conv_upsampler_is_srresnets():
    """pixelshuffle+conv: per factor a conv C -> f*f*C, PixelShuffle and LeakyReLU, then a conv + LeakyReLU at
    the output size; non-linear, x2^n and x3, and an untrained network still returns the bicubic image."""
    from serpent_arch.archs.upsamplers import PixelShuffleConvUpsampler

    for scale, steps in ((4, 2), (2, 1), (3, 1)):
        up = PixelShuffleConvUpsampler(scale, 6)
        convs = [m for m in up if isinstance(m, torch.nn.Conv2d)]
        assert [c.out_channels for c in convs] == [6 * (scale if scale == 3 else 2) ** 2] * steps + [6]
        assert sum(isinstance(m, torch.nn.LeakyReLU) for m in up) == steps + 1
        x = torch.randn(1, 6, 5, 7)
        assert up(x).shape == (1, 6, 5 * scale, 7 * scale)
        assert not torch.allclose(up(2 * x), 2 * up(x))
    with pytest.raises(ValueError, match="'pixelshuffle\\+conv' supports upscale 2\\^n or 3, got 5"):
        Serpent(variant="tiny", upscale=5, upsampler="pixelshuffle+conv")
    net = Serpent(variant="tiny", patch_size=1, upscale=3, upsampler="pixelshuffle+conv").eval()
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        bicubic = torch.nn.functional.interpolate(lr, scale_factor=3, mode="bicubic", align_corners=False)
        torch.testing.assert_close(net(lr), bicubic)


def test_upsampler_channels_sets_the_width_of_the_output_size_convolutions():
    """upsampler_channels (SwinIR's num_feat): a conv maps embed_dim to it, and every upsampler conv
    and the last conv work at that width; the default keeps embed_dim, and upscale 1 ignores it."""
    net = Serpent(variant="tiny", patch_size=1, upscale=4, upsampler="nearest+conv", upsampler_channels=10)
    convs = [m for m in net.upsample.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(24, 10)] + [(10, 10)] * 3
    assert net.conv_last.in_channels == 10
    default = Serpent(variant="tiny", patch_size=1, upscale=4, upsampler="nearest+conv")
    assert {c.out_channels for c in default.upsample.modules() if isinstance(c, torch.nn.Conv2d)} == {24}
    narrower = sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in default.parameters())
    assert narrower
    same_size = Serpent(variant="tiny", upscale=1, upsampler_channels=10)
    assert same_size.conv_last.in_channels == 24  # no upsampler: the option has nothing to set
    lr = torch.rand(2, 3, 6, 6)
    net.conv_last.weight.data.normal_()  # leave the zero start, so every parameter gets a gradient
    net(lr).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.upsample.parameters())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patch_size": 1, "upscale": 4, "upsampler": "nearest+conv", "embed_kernel": 3, "depths": [2, 1]},
        {"patch_size": 1, "upscale": 2, "upsampler": "pixelshuffle", "upsampler_channels": 8},
        {"upscale": 1},  # no upsampler: the last convolution alone
    ],
)
def test_upsampler_channels_last_matches_nchw(kwargs):
    """upsampler_channels_last changes the memory layout of the output-size convolutions, not the result:
    outputs and every gradient agree with the NCHW network on fresh random inputs, and the output is NCHW."""
    torch.manual_seed(0)
    ref = Serpent(variant="tiny", drop_path_rate=0.0, **kwargs)
    for p in ref.conv_last.parameters():  # the zero-initialised last conv would hide the upsampler
        torch.nn.init.normal_(p, std=0.1)
    fast = Serpent(variant="tiny", drop_path_rate=0.0, upsampler_channels_last=True, **kwargs)
    fast.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 9, 14)
    out_ref, out_fast = ref(x), fast(x)
    assert out_fast.is_contiguous()
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(out_ref)
    out_ref.backward(grad)
    out_fast.backward(grad)
    for (name, a), b in zip(ref.named_parameters(), fast.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
