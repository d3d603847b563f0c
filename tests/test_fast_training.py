"""The training-speed paths compute the same function: WaveNet's time-major pass equals a plain Conv1d pass
over the same weights, and every model trains under bfloat16 autocast (`pixelwave train --bf16`) with a
log-likelihood close to float32's."""

import pytest
import torch

from pixelwave.compare import matched_model
from pixelwave.models.wavenet import WaveNet

TINY = dict(layers=6, stacks=2, residual_channels=8, gate_channels=8, skip_channels=16, levels=16)


def conv_reference_logits(m: WaveNet, a, speaker=None, cond=None):
    """WaveNet's parallel pass written the textbook way, channels first with nn.Conv1d: inputs shifted by one,
    silence before t = 0, every dilated conv left-padded with that layer's input after endless silence."""
    silence = torch.full_like(a[:, :1], m.silence)
    x = m.embedding(torch.cat([silence, a[:, :-1]], 1)).transpose(1, 2)  # (B, R, T)
    spk = None if speaker is None else m.speaker_embedding(speaker).view(a.shape[0], len(m.blocks), -1)
    up = None if cond is None else m.upsampler(cond)[..., :a.shape[1]]
    states = m._silence_states(spk)
    skips = 0
    for i, block in enumerate(m.blocks):
        pad = states[i].to(x.dtype)[:, :, None].expand(x.shape[0], -1, block.padding)
        h = block.conv(torch.cat([pad, x], 2))  # (B, 2G, T)
        if spk is not None:
            h = h + spk[:, i, :, None]
        if up is not None:
            h = h + block.cond_proj(up)
        g = block.gate_channels
        z = torch.tanh(h[:, :g]) * torch.sigmoid(h[:, g:])
        skips = skips + block.skip(z)
        if block.residual is not None:
            x = x + block.residual(z)
    return m.head(skips)


@pytest.mark.parametrize("kw, steps", [(dict(), 40), (dict(kernel_size=3), 40), (dict(), 3),
                                       (dict(num_speakers=3, cond_channels=4, hop_length=5), 23)])
def test_wavenet_time_major_pass_equals_conv1d(kw, steps):
    """Including sequences shorter than a dilation (the shifted tap then reads only the silence state)."""
    torch.manual_seed(0)
    m = WaveNet(**TINY, **kw).double()
    with torch.no_grad():  # non-zero biases everywhere, so a dropped bias would show
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    a = torch.randint(0, 16, (2, steps), generator=torch.Generator().manual_seed(1))
    spk = torch.tensor([0, 2]) if m.num_speakers else None
    cond = torch.randn(2, 4, -(-steps // 5), dtype=torch.float64) if m.cond_channels else None
    ours, ref = m.logits(a, spk, cond), conv_reference_logits(m, a, spk, cond)
    assert ours.shape == ref.shape == (2, 16, steps)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    # and the reference itself is sensitive: perturbing one weight moves it
    with torch.no_grad():
        m.blocks[1].conv.weight[0, 0, 0] += 1.0
    assert not torch.allclose(conv_reference_logits(m, a, spk, cond), ref)


@pytest.mark.parametrize("name", ["pixelcnn", "gated_pixelcnn", "pixelcnn_pp", "pixelrnn_row", "pixelrnn_diag",
                                  "pixelvae", "pixelsnail", "wavenet"])
def test_bf16_autocast_trains_every_model(name):
    """Under bf16 autocast the log-likelihood stays within 2% of float32's and every parameter gets a finite
    gradient; bf16 matrix products really ran (the result differs from float32's)."""
    torch.manual_seed(0)
    if name == "wavenet":
        model = WaveNet(**TINY)
        inputs = {"a": torch.randint(0, 16, (2, 300), generator=torch.Generator().manual_seed(1))}
    else:
        from pixelwave.data import load

        train_set = load("mnist-sample-binary", "train")
        model = matched_model(name, train_set, 20_000)
        inputs = {"x": train_set.batch(torch.arange(4))["x"]}
    torch.manual_seed(1)  # PixelVAE draws its latent: the same draw in both passes
    fp32 = model(**inputs)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model(**inputs)
    assert bf16.dtype == torch.float32  # the loss is reduced in float32
    assert not torch.equal(bf16, fp32)
    torch.testing.assert_close(bf16, fp32, rtol=0.02, atol=0.0)
    (-bf16.mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_fast_dropout_is_inverted_dropout(p):
    """pixelwave.nn.Dropout (PixelCNN++'s): each element kept with probability 1 - p and scaled by 1 / (1 - p),
    independently; the gradient passes through the same mask; identity in eval mode; the input's dtype kept."""
    from pixelwave.nn import Dropout

    torch.manual_seed(0)
    x = torch.randn(64, 32, 16, 16, requires_grad=True)  # 524,288 elements
    drop = Dropout(p)
    y = drop(x)
    kept = y != 0
    n = kept.numel()
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5  # 5 sigma
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / (1 - p))
    rows = kept.flatten(1).float().mean(1)  # no structure: every image keeps about the same share
    assert (rows - (1 - p)).abs().max() < 6 * (p * (1 - p) / (n // 64)) ** 0.5  # 6 sigma for 8,192 each
    assert not torch.equal(kept, drop(x) != 0)  # a fresh mask per call
    drop.eval()
    assert drop(x) is x
    assert Dropout(p).train()(x.detach().bfloat16()).dtype == torch.bfloat16


def _compile_case(name):
    """A tiny model of kind `name` and inputs for its training pass."""
    from pixelwave.models import MODELS

    torch.manual_seed(0)
    if name == "wavenet":
        return WaveNet(**TINY), dict(a=torch.randint(0, 16, (2, 40)))
    if name == "wavenet, speaker + mel":
        model = WaveNet(**TINY, num_speakers=3, cond_channels=4, hop_length=5)
        return model, dict(a=torch.randint(0, 16, (2, 40)), speaker=torch.tensor([0, 2]), cond=torch.randn(2, 4, 8))
    if name in ("gated_pixelcnn, classes", "pixelsnail, classes"):
        model = MODELS[name.split(",")[0]](channels=1, levels=2, hidden=8, layers=2, num_classes=3)
        return model, dict(x=torch.randint(0, 2, (2, 1, 8, 8)), y=torch.tensor([0, 2]))
    return MODELS[name](channels=1, levels=2, hidden=8, layers=2), dict(x=torch.randint(0, 2, (2, 1, 8, 8)))


@pytest.mark.parametrize("name", ["pixelcnn", "gated_pixelcnn", "pixelcnn_pp", "pixelrnn_row", "pixelrnn_diag",
                                  "pixelvae", "pixelsnail", "wavenet", "gated_pixelcnn, classes",
                                  "pixelsnail, classes", "wavenet, speaker + mel"])
def test_training_pass_compiles_to_one_graph(name):
    """`pixelwave train --compile`: the training pass traces as one graph (no graph break, which torch.compile
    reports at length), computes what the eager pass computes, and keeps its input check: out-of-range levels
    raise inside the compiled graph too (PixelCNN++'s likelihood would otherwise give a number for them)."""
    import torch._dynamo

    model, inputs = _compile_case(name)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(**inputs)
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    compiled = torch.compile(model, backend="eager")  # dynamo only: no C++ code generation in the test suite
    torch.manual_seed(1)  # PixelVAE draws z
    eager = model(**inputs)
    torch.manual_seed(1)
    assert torch.allclose(compiled(**inputs), eager)
    key, levels = ("a", 16) if name.startswith("wavenet") else ("x", 2)
    bad = inputs[key].clone()
    bad.view(-1)[3] = levels
    with pytest.raises(ValueError, match=rf"{key} values must be in \[0, {levels}\), got \[0, {levels}\]"):
        model(**{**inputs, key: bad})
    with pytest.raises(RuntimeError, match=rf"{key} values must be in \[0, {levels}\)"):
        compiled(**{**inputs, key: bad})
    label, what, high = (("y", "class labels", 3) if "classes" in name else
                         ("speaker", "speaker ids", 3) if "speaker" in name else (None, None, None))
    if label:  # the conditioning ids are checked the same way
        wrong = {**inputs, label: torch.tensor([0, high])}
        with pytest.raises(ValueError, match=rf"{what} must be in \[0, {high}\), got"):
            model(**wrong)
        with pytest.raises(RuntimeError, match=rf"{what} must be in \[0, {high}\)"):
            compiled(**wrong)
