"""Parity of `vit_seed` with the network the study's tutorial code builds (issue 23).

`TutorialViT` below is the tutorial's model (uygarkurt/ViT-PyTorch, `vit-implementation.ipynb` on
main, the version the study followed) written with torch.nn exactly as the notebook writes it:

    encoder_layer = nn.TransformerEncoderLayer(d_model=embed_dim, nhead=num_heads, dropout=dropout,
                                               activation=activation, batch_first=True, norm_first=True)
    self.encoder_blocks = nn.TransformerEncoder(encoder_layer, num_layers=num_encoders)

(no `dim_feedforward`, so PyTorch's 2048 applies), with the study's sizes: patch 4, embedding 16,
8 heads, 6 layers, dropout 0.2. The tests check that one seed gives both the same initial weights,
that copied weights give the same logits (eval, and train mode with dropout off) to 1e-5, and
the parameter count.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fmbench.config import apply_overrides
from fmbench.engine.fuse import cpu_view
from fmbench.models import build_model, count_params, resolve_config

PATCH, IMG, EMBED, HEADS, LAYERS, CLASSES = 4, 28, 16, 8, 6, 10


class PatchEmbedding(nn.Module):  # the notebook's class, unchanged
    def __init__(self, embed_dim, patch_size, num_patches, dropout, in_channels):
        super().__init__()
        self.patcher = nn.Sequential(
            nn.Conv2d(in_channels=in_channels, out_channels=embed_dim, kernel_size=patch_size, stride=patch_size),
            nn.Flatten(2))
        self.cls_token = nn.Parameter(torch.randn(size=(1, in_channels, embed_dim)), requires_grad=True)
        self.position_embeddings = nn.Parameter(torch.randn(size=(1, num_patches + 1, embed_dim)), requires_grad=True)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x):
        cls_token = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.patcher(x).permute(0, 2, 1)
        x = torch.cat([cls_token, x], dim=1)
        x = self.position_embeddings + x
        x = self.dropout(x)
        return x


class TutorialViT(nn.Module):  # the notebook's ViT, unchanged but for the unused hidden_dim argument
    def __init__(self, num_patches, num_classes, patch_size, embed_dim, num_encoders, num_heads, dropout,
                 activation, in_channels):
        super().__init__()
        self.embeddings_block = PatchEmbedding(embed_dim, patch_size, num_patches, dropout, in_channels)
        encoder_layer = nn.TransformerEncoderLayer(d_model=embed_dim, nhead=num_heads, dropout=dropout,
                                                   activation=activation, batch_first=True, norm_first=True)
        self.encoder_blocks = nn.TransformerEncoder(encoder_layer, num_layers=num_encoders)
        self.mlp_head = nn.Sequential(nn.LayerNorm(normalized_shape=embed_dim),
                                      nn.Linear(in_features=embed_dim, out_features=num_classes))

    def forward(self, x):
        x = self.embeddings_block(x)
        x = self.encoder_blocks(x)
        x = self.mlp_head(x[:, 0, :])
        return x


def tutorial_vit(dropout: float = 0.2) -> TutorialViT:
    with pytest.warns(UserWarning, match="enable_nested_tensor"):   # norm_first: PyTorch says so, as in the notebook
        return TutorialViT((IMG // PATCH) ** 2, CLASSES, PATCH, EMBED, LAYERS, HEADS, dropout, "gelu", 1)


def fmbench_state(tut: TutorialViT) -> dict[str, torch.Tensor]:
    """The tutorial model's weights under vit_seed's names (the mapping is the whole correspondence)."""
    sd = tut.state_dict()
    out = {
        "patch_embed.proj.weight": sd["embeddings_block.patcher.0.weight"].reshape(EMBED, PATCH * PATCH),
        "patch_embed.proj.bias": sd["embeddings_block.patcher.0.bias"],
        "cls_token": sd["embeddings_block.cls_token"],
        "pos_embed": sd["embeddings_block.position_embeddings"],
        "norm.weight": sd["mlp_head.0.weight"], "norm.bias": sd["mlp_head.0.bias"],
        "head.weight": sd["mlp_head.1.weight"], "head.bias": sd["mlp_head.1.bias"],
    }
    names = {"self_attn.in_proj_weight": "attn.qkv.weight", "self_attn.in_proj_bias": "attn.qkv.bias",
             "self_attn.out_proj.weight": "attn.proj.weight", "self_attn.out_proj.bias": "attn.proj.bias",
             "linear1.weight": "mlp.0.weight", "linear1.bias": "mlp.0.bias",
             "linear2.weight": "mlp.3.weight", "linear2.bias": "mlp.3.bias",
             "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
             "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias"}
    for i in range(LAYERS):
        for theirs, ours in names.items():
            out[f"blocks.{i}.{ours}"] = sd[f"encoder_blocks.layers.{i}.{theirs}"]
    return out


def vit_seed(**overrides):
    model_cfg, _ = resolve_config("vit_seed", "seed")
    return build_model("vit_seed", apply_overrides(model_cfg, overrides))


def test_parameter_count_is_the_tutorials():
    torch.manual_seed(0)
    assert count_params(vit_seed()) == count_params(tutorial_vit()) == 413_802
    assert count_params(vit_seed(mlp_dim=768)) == 160_362          # the study's stated HIDDEN_DIM


def test_one_seed_gives_the_tutorials_initial_weights():
    torch.manual_seed(42)
    tut = tutorial_vit()
    after_tutorial = torch.rand(3)
    torch.manual_seed(42)
    ours = vit_seed()
    assert torch.equal(torch.rand(3), after_tutorial)               # the same number of draws
    theirs = fmbench_state(tut)
    mine = ours.state_dict()
    assert set(theirs) == set(mine)
    for key, value in theirs.items():
        assert torch.equal(mine[key], value), key
    # and the properties the copy implies: six identical layers, attention as MultiheadAttention
    assert torch.equal(mine["blocks.0.mlp.0.weight"], mine["blocks.5.mlp.0.weight"])
    assert not mine["blocks.0.attn.qkv.bias"].any() and not mine["blocks.0.attn.proj.bias"].any()


def test_independent_init_draws_each_layer():
    torch.manual_seed(42)
    sd = vit_seed(init="independent").state_dict()
    assert not torch.equal(sd["blocks.0.mlp.0.weight"], sd["blocks.1.mlp.0.weight"])


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("engine", ["as written", "cpu view"])
def test_copied_weights_give_the_tutorials_logits(mode, engine):
    torch.manual_seed(1)
    tut = tutorial_vit(dropout=0.0)
    ours = vit_seed(dropout=0.0, init="independent")          # other weights, then the tutorial's copied in
    ours.load_state_dict(fmbench_state(tut))
    tut.train(mode == "train")
    ours.train(mode == "train")
    net = cpu_view(ours) if engine == "cpu view" else ours
    images = torch.rand(64, 1, IMG, IMG)                       # fmbench's input: [0, 1]
    with torch.no_grad():
        theirs = tut((images - 0.5) / 0.5)                     # the notebook's Normalize([0.5], [0.5])
        mine = net(images)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


def test_runs_written_before_issue_23_reload_as_they_were_trained():
    """A config.json (or weights card) written before these fields existed names mlp_dim 768 and
    lacks `init`, `restore_best`, `aug_interp`, `aug_fill` and `val_split`: it reads back as the
    network and recipe it was trained with, not as today's defaults."""
    from dataclasses import asdict

    from fmbench.config import TrainConfig
    from fmbench.models.vit import ViTConfig
    from fmbench.spec import spec_from as run_config_from

    old_model = {k: v for k, v in asdict(ViTConfig(mlp_dim=768)).items() if k != "init"}
    new_fields = ("restore_best", "aug_interp", "aug_fill", "val_split")
    old_train = {k: v for k, v in asdict(TrainConfig(aug_rotation=10.0)).items() if k not in new_fields}
    rc = run_config_from("vit_seed", {"model_config": old_model, "train_config": old_train, "preset": "seed"}, "old")
    assert rc.model_cfg.mlp_dim == 768 and rc.model_cfg.init == "independent"
    t = rc.train_cfg
    assert (t.restore_best, t.aug_interp, t.aug_fill, t.val_split) == (True, "bilinear", "zeros", "stratified")
    torch.manual_seed(0)
    sd = build_model("vit_seed", rc.model_cfg).state_dict()
    assert count_params(build_model("vit_seed", rc.model_cfg)) == 160_362
    assert not torch.equal(sd["blocks.0.mlp.0.weight"], sd["blocks.1.mlp.0.weight"])
