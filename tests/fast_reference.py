"""References for the fused WaveNet step's tests (test_fast_isa.py, test_fast_arm.py): the inputs a generator
gets, the weight formats' rounding as they are defined, and a teacher-forced float64 pass over
GenerationWeights."""

import dataclasses

import torch


def generation_inputs(m, batch, steps, seed=3):
    """Speaker biases, local (upsampled mel) features, uniforms: what WaveNet.generate hands to a generator."""
    dtype = next(m.parameters()).dtype
    g = torch.Generator().manual_seed(seed)
    spk = torch.arange(batch) % m.num_speakers
    cond = torch.randn(batch, m.cond_channels, -(-steps // m.hop_length), generator=g).to(dtype)
    u = torch.rand(batch, steps, generator=g)
    with torch.no_grad():
        return m._speaker_bias(spk), m._local(cond, steps), u


def bf16_round(t: torch.Tensor) -> torch.Tensor:
    """bfloat16's nearest-even rounding, back in t's dtype: what the kernel does to bf16 weights."""
    return t.to(torch.bfloat16).to(t.dtype)


def fp16_round(t: torch.Tensor) -> torch.Tensor:
    """IEEE half float's nearest-even rounding, back in t's dtype: what the kernel does to fp16 weights."""
    return t.to(torch.float16).to(t.dtype)


def int8_round(t: torch.Tensor, dims) -> torch.Tensor:
    """int8 weight-only quantisation with a scale per output channel: scale = max |w| over the channel's inputs
    (dims) / 127 in float32, q = round(w / scale) (half to even), the weight q * scale."""
    scale = t.abs().amax(dim=dims, keepdim=True) / 127
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.where(scale > 0, torch.round(t / safe).clamp(-127, 127), 0) * scale


def rounded(w, fmt: str):
    """GenerationWeights w with the matrices rounded as weight format `fmt` defines (the biases, embedding,
    speaker biases, silence states and the mel projection stay float32)."""
    if fmt == "int8":  # per output channel of each matrix (the summed skips are one map of every layer's gates);
        # the output layer stays float32
        return dataclasses.replace(w, conv_w=int8_round(w.conv_w, (2, 3)), res_w=int8_round(w.res_w, (2,)),
                                   skip_w=int8_round(w.skip_w, (0, 2)), h1_w=int8_round(w.h1_w, (1,)))
    r = {"bf16": bf16_round, "fp16": fp16_round}[fmt]
    return dataclasses.replace(w, conv_w=r(w.conv_w), res_w=r(w.res_w), skip_w=r(w.skip_w), h1_w=r(w.h1_w),
                               h2_w=r(w.h2_w))


def reference_logits(w, codes, up):
    """`_reference_logits` on one torch thread: its ops are small, and on a busy 2-core machine a second thread
    makes each wait (~1 s instead of ~0.05 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _reference_logits(w, codes, up)
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def _reference_logits(w, codes, up):
    """Teacher-forced, in float64: every step's logits (T, B, levels) from GenerationWeights w (a categorical
    model) on the codes (B, T), with up (B, C, T) the upsampled mel features; the weights as given (`rounded`)."""
    f = r = lambda t: t.double()  # noqa: E731
    batch, steps = codes.shape
    k, L, G = w.kernel_size, w.layers, w.gate_channels
    prev = torch.cat([torch.full((batch, 1), w.initial_code), codes[:, :-1]], 1)  # (B, T): the code before t
    x = f(w.embedding)[prev]  # (B, T, R)
    skip = f(w.skip_b).expand(batch, steps, -1)
    bias = f(w.static_bias)[:, None]  # (B, 1, L, 2G)
    if up is not None:
        mel = r(up.transpose(1, 2)) @ f(w.cond_w).t() + f(w.cond_b)  # (B, T, L*2G)
        bias = bias + mel.view(batch, steps, L, 2 * G)
    for i, d in enumerate(w.dilations):
        pad = f(w.init_states[:, i, None, :]).expand(-1, (k - 1) * d, -1)  # (B, (k-1)d, R): endless silence
        xp = torch.cat([pad, x], 1)  # (B, (k-1)d + T, R)
        h = bias[:, :, i].clone()  # (B, T, 2G)
        for j in range(k):  # tap j reads the input (k-1-j)*d steps back
            h = h + r(xp[:, j * d: j * d + steps]) @ f(w.conv_w[i, :, :, j]).t()
        z = torch.tanh(h[..., :G]) * torch.sigmoid(h[..., G:])  # (B, T, G)
        skip = skip + r(z) @ f(w.skip_w[i]).t()
        if i + 1 < L:
            x = x + r(z) @ f(w.res_w[i]).t() + f(w.res_b[i])
    hidden = torch.relu(r(torch.relu(skip)) @ f(w.h1_w).t() + f(w.h1_b))
    return (r(hidden) @ f(w.h2_w).t() + f(w.h2_b)).transpose(0, 1)  # (T, B, levels)
