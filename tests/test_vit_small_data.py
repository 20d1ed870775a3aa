"""Shifted patch tokenization and locality self-attention (models/vit.py `spt`, `lsa`; Lee et al.
2021, "Vision Transformer for Small-Size Datasets"): what each does, the CPU view computing the
same, and run identities that do not move for the models that leave them off."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)

from fmbench.config import config_hash
from fmbench.engine.fuse import cpu_view
from fmbench.errors import ConfigError
from fmbench.models import build_model, resolve_config
from fmbench.models.hybrid import HybridConfig
from fmbench.models.vit import PatchEmbed, ViTBestConfig, ViTConfig


def _vit(**over) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("vit_best", ViTBestConfig(depth=2, **over))


def test_spt_concatenates_the_image_and_its_four_diagonal_shifts_by_half_a_patch():
    embed = PatchEmbed(4, 8, shifted=True)
    seen = {}
    embed.norm.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0]))
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 10] = 1.0
    embed(x)
    # (1, 49, 5 * 16): channel c of patch (h, w) at column c*16 + row-in-patch*4 + column-in-patch
    tokens = seen["x"][0].reshape(7, 7, 5, 4, 4).permute(2, 0, 3, 1, 4).reshape(5, 28, 28)
    where = [tuple(t.nonzero().flatten().tolist()) for t in tokens]
    assert where == [(10, 10), (12, 12), (12, 8), (8, 12), (8, 8)]   # image, then right-down, left-down, right-up, left-up
    assert embed.proj.in_features == 80 and embed.norm.normalized_shape == (80,)


def test_lsa_masks_each_tokens_attention_to_itself_and_learns_its_scale():
    model = _vit(lsa=True).eval()
    attn = model.blocks[0].attn
    assert attn.log_scale.item() == pytest.approx(math.log(32 ** -0.5))     # plain attention's 1/sqrt(32) at first
    attn.record = True
    with torch.no_grad():
        model(torch.rand(2, 1, 28, 28))
    probs = attn.attention_probs                                          # (2 images + 2 mirrors, heads, 49, 49)
    assert probs.diagonal(dim1=-2, dim2=-1).abs().max() == 0
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
    model.train()
    F.cross_entropy(model(torch.rand(4, 1, 28, 28)), torch.arange(4)).backward()
    assert all(b.attn.log_scale.grad.abs() > 0 for b in model.blocks)


def test_spt_and_lsa_are_off_by_default_and_change_the_network_only_when_on():
    plain, both = _vit(), _vit(spt=True, lsa=True)
    assert not ViTConfig().spt and not ViTConfig().lsa
    extra = set(dict(both.named_parameters())) - set(dict(plain.named_parameters()))
    assert extra == {"patch_embed.norm.weight", "patch_embed.norm.bias"} | {f"blocks.{i}.attn.log_scale" for i in range(2)}


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_the_cpu_view_computes_what_the_model_does(dropout):
    """engine/fuse.CpuAttention runs LSA as Attention does: the same logits in eval; in training
    without dropout the same loss and gradients (with dropout, both train: finite gradients)."""
    model = _vit(spt=True, lsa=True, drop_path=0.0, dropout=dropout)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(cpu_view(model)(x), model(x), rtol=1e-4, atol=1e-5)
    model.train()
    grads = []
    for net in (model, cpu_view(model)):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        assert all(torch.isfinite(g).all() for g in grads[-1])
    if dropout == 0:
        for (name, _), ga, gb in zip(model.named_parameters(), *grads):
            assert (gb - ga).norm() <= 1e-4 * ga.norm() + 1e-7, name


def test_the_options_train_under_bf16_autocast():
    model = _vit(spt=True, lsa=True).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = cpu_view(model)(torch.rand(4, 1, 28, 28))
    loss = F.cross_entropy(logits.float(), torch.arange(4))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_runs_that_leave_them_off_keep_their_identity():
    """The hashes the registered presets had before `spt` and `lsa` existed (so runs made then are
    reused); turning either on is another run."""
    before = {"vit_seed": "a360c5995f27", "vit_best": "996feaa7f6c1", "hybrid_best": "95b4d03fff9a"}
    for name, old in before.items():
        assert config_hash(name, *resolve_config(name)) == old
    base = config_hash("vit_best", *resolve_config("vit_best"))
    assert len({base, *(config_hash("vit_best", *resolve_config("vit_best", overrides={k: "true"}))
                        for k in ("spt", "lsa"))}) == 3


def test_bad_settings_say_what_is_wrong():
    with pytest.raises(ConfigError, match="spt shifts by half a patch: it needs patch_size >= 2, got 1"):
        ViTConfig(patch_size=1, dim=16, spt=True)
    with pytest.raises(ConfigError, match="the hybrid's tokens come from its convolutions"):
        HybridConfig(spt=True)
    assert HybridConfig(lsa=True).lsa   # the hybrid's transformer takes LSA
