"""The model registry and the models: shapes, gradients, overfitting one batch, cost, architecture.

Every behavioural test is parametrized over `fmbench.models.REGISTRY`, so a model added there is
covered without touching this file. The architecture tests pin the study's two models.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)

from fmbench.config import apply_overrides, field_names
from fmbench.engine.fuse import cpu_view
from fmbench.errors import ConfigError
from fmbench.models import FAMILIES, REGISTRY, TIERS, build_model, count_flops, count_params, get_spec, resolve_config
from fmbench.models.cnn import CNNSeedConfig
from fmbench.models.vit import ViTConfig

MODELS = list(REGISTRY)


def _batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 10


def _without_dropout(name: str) -> nn.Module:
    """The registered model with every dropout-like rate its config exposes set to 0."""
    spec = get_spec(name)
    off = {k: 0.0 for k in ("dropout", "drop_path", "attn_dropout") if k in field_names(spec.config_cls)}
    return spec.build(apply_overrides(spec.config_cls(), off))


# ---------------------------------------------------------------- the registry

def test_registry_holds_the_study_models():
    assert {"cnn_seed", "vit_seed"} <= set(REGISTRY)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_has_a_default_preset_family_tier_and_valid_presets(name):
    spec = get_spec(name)
    assert spec.default_preset in spec.presets, "`fmbench train MODEL` uses the model's default preset"
    assert spec.family in FAMILIES and spec.tier in TIERS
    assert spec.description and all(p.about for p in spec.presets.values())
    for preset in spec.presets:  # every preset resolves to valid configs
        model_cfg, train_cfg = resolve_config(name, preset)
        assert isinstance(model_cfg, spec.config_cls)
        assert train_cfg.epochs >= 1


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(ConfigError) as e:
        get_spec("resnet999")
    assert "unknown model 'resnet999'" in str(e.value)
    for name in MODELS:
        assert name in str(e.value)


# ---------------------------------------------------------------- behaviour of every model

@pytest.mark.parametrize("name", MODELS)
def test_output_shape(name):
    torch.manual_seed(0)
    model = build_model(name)
    model.eval()
    with torch.no_grad():
        for n in (1, 5):
            x, _ = _batch(n)
            assert model(x).shape == (n, 10)
            # the engine feeds channels_last batches; the result must not depend on memory layout
            cl = x.contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(model(cl), model(x), rtol=1e-4, atol=1e-5)
    model.train()
    x, _ = _batch(4)
    assert model(x).shape == (4, 10)


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_finite_nonzero_gradient(name):
    torch.manual_seed(0)
    model = build_model(name)
    model.train()
    x, y = _batch(8)
    loss = F.cross_entropy(model(x), y)
    if hasattr(model, "regularization_loss"):
        loss = loss + model.regularization_loss()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.requires_grad, pname
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", MODELS)
def test_one_fixed_batch_can_be_overfitted(name):
    """10 random images, one per class, no augmentation, dropout off: Adam memorises them.

    Measured with one thread on the busy 2-core machine: the CNNs need 3 steps (< 1 s), vit_best
    about 35 (5 s), vit_seed 55-70 (8 s; its 16-dim embedding over 8 heads learns slowly). With 16
    images the ViTs needed 1.5-3x more steps. The cap of 300 leaves room for other seeds and BLAS.
    """
    torch.manual_seed(0)
    model = _without_dropout(name)
    model.train()
    x, y = _batch(10, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for step in range(300):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        first = loss.item() if first is None else first
        accuracy = (logits.argmax(1) == y).float().mean().item()
        if accuracy == 1.0 and loss.item() < 0.7:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert accuracy == 1.0 and loss.item() < 0.7, (
        f"{name}: after {step + 1} steps loss {first:.3f} -> {loss.item():.3f}, train accuracy {accuracy:.3f}")


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_builds_the_same_model(name):
    torch.manual_seed(3)
    a = build_model(name).state_dict()
    torch.manual_seed(3)
    b = build_model(name).state_dict()
    torch.manual_seed(4)
    c = build_model(name).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("name", MODELS)
def test_params_and_flops_are_positive_and_flops_keep_the_mode(name):
    model = build_model(name)
    assert count_params(model) > 0
    model.train()
    flops = count_flops(model)
    assert flops > 0
    assert model.training, "count_flops must restore training mode"
    model.eval()
    assert count_flops(model) == flops and not model.training


@pytest.mark.parametrize("name", MODELS)
def test_the_engines_cpu_view_computes_what_the_model_does(name):
    """engine/fuse.cpu_view, how CPU training and prediction run every model: the same logits in
    eval and, without dropout, the same loss and gradients in training (fused kernels or not)."""
    torch.manual_seed(0)
    model = _without_dropout(name).to(memory_format=torch.channels_last)
    x, y = _batch(8)
    x = x.contiguous(memory_format=torch.channels_last)   # as the engine feeds the CNNs
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(cpu_view(model)(x), model(x), rtol=1e-4, atol=1e-5)
    model.train()
    runs = []
    for net in (model, cpu_view(model)):
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        runs.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = runs
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    for (pname, _), ga, gb in zip(model.named_parameters(), grads_a, grads_b):
        # relative to the norm: the C BatchNorm sums float32 statistics in another order (~1e-4 apart);
        # plus float32 noise for a gradient that is 0 in exact arithmetic (the hybrid's sequence-pooling
        # bias: a softmax over the tokens does not change when every score moves by the same amount)
        assert (gb - ga).norm() <= 1e-3 * ga.norm() + 1e-7, pname


@pytest.mark.parametrize("name", MODELS)
def test_model_and_cpu_view_both_train_with_dropout(name):
    """With the registered dropout rates: the model as written (on CPU: SDPA with dropout) and its CPU view."""
    torch.manual_seed(0)
    model = build_model(name).train()
    x, y = _batch(8)
    for net in (model, cpu_view(model)):
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ---------------------------------------------------------------- cnn_seed: the study's CNN

def test_cnn_seed_flops_match_the_study():
    """Forward FLOPs per image (multiply-add = 2): 19.4 M; forward + backward about 3x = 58 M."""
    flops = count_flops(build_model("cnn_seed"))
    expected = 2 * (26 * 26 * 64 * 9 * 1 + 11 * 11 * 128 * 9 * 64 + 3200 * 128 + 128 * 10)
    assert flops == pytest.approx(expected, rel=0.01)
    assert flops == pytest.approx(19.4e6, rel=0.01)
    assert 3 * flops == pytest.approx(58e6, rel=0.01)


def test_cnn_seed_parameter_count_matches_keras():
    # Keras' summary says 486,282 params, of which 384 are BatchNorm moving statistics
    # (2 x (64 + 128)); PyTorch keeps those as buffers.
    assert count_params(build_model("cnn_seed")) == 486_282 - 2 * (64 + 128)


def test_cnn_seed_architecture():
    """Conv 64 3x3 valid -> ReLU -> BN -> MaxPool, Conv 128 -> ReLU -> BN -> MaxPool, flatten 3200,
    Dropout 0.5, Dense 128 + ReLU, Dense 10: checked by the order in which layers run."""
    model = build_model("cnn_seed")
    assert model.cfg == CNNSeedConfig() and model.cfg.dropout == 0.5
    calls: list[tuple[nn.Module, tuple, tuple]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append((m, tuple(i[0].shape), tuple(o.shape))))
             for m in model.modules() if not list(m.children())]
    model.eval()
    with torch.no_grad():
        model(_batch(2)[0])
    for h in hooks:
        h.remove()
    kinds = [type(m) for m, _, _ in calls]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d,
                     nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d,
                     nn.Dropout, nn.Linear, nn.Linear]
    conv1, conv2 = calls[0][0], calls[4][0]
    for conv, c_in, c_out in ((conv1, 1, 64), (conv2, 64, 128)):
        assert (conv.in_channels, conv.out_channels) == (c_in, c_out)
        assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (0, 0)  # 'valid'
        assert conv.bias is not None
    for bn in (calls[2][0], calls[6][0]):  # Keras BatchNormalization defaults
        assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01)
    for pool in (calls[3][0], calls[7][0]):
        assert pool.kernel_size == 2
    assert [o for _, _, o in calls[:8:4]] == [(2, 64, 26, 26), (2, 128, 11, 11)]
    assert calls[3][2] == (2, 64, 13, 13) and calls[7][2] == (2, 128, 5, 5)
    assert calls[8][0].p == 0.5 and calls[8][1] == (2, 3200)             # dropout on the flattened 3200
    dense, head = calls[9][0], calls[10][0]
    assert (dense.in_features, dense.out_features) == (3200, 128)
    assert (head.in_features, head.out_features) == (128, 10)


def test_cnn_resnet20_is_the_random_erasing_papers_resnet20():
    """He et al.'s CIFAR ResNet as the paper's `models/fashion/resnet.py` builds it for one channel: a
    3x3 stem of 16, three stages of 3 basic blocks at 16/32/64 channels on 28/14/7-pixel maps (stride-2
    3x3 convolutions and 1x1 stride-2 shortcuts with BatchNorm where the width changes), 19 3x3
    convolutions and a linear layer (the 20 layers), global average pooling; 0.27M parameters
    (its script prints 'Total params: %.2fM')."""
    model = build_model("cnn_resnet20").eval()
    assert count_params(model) == 272_186
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs].count((3, 3)) == 19 and all(c.bias is None for c in convs)
    shortcuts = [c for c in convs if c.kernel_size == (1, 1)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in shortcuts] == [(16, 32, (2, 2)), (32, 64, (2, 2))]
    shapes = []
    hooks = [b.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for b in model.stages]
    with torch.no_grad():
        model(_batch(2)[0])
    for h in hooks:
        h.remove()
    assert shapes == [(16, 28, 28)] * 3 + [(32, 14, 14)] * 3 + [(64, 7, 7)] * 3
    assert (model.head.in_features, model.head.out_features) == (64, 10)
    # its init: normal with std sqrt(2 / (k * k * c_out)) for every convolution
    torch.manual_seed(0)
    wide = build_model("cnn_resnet20").stages[-1].conv2.weight
    assert wide.std().item() == pytest.approx((2 / (9 * 64)) ** 0.5, rel=0.05)


@pytest.mark.parametrize("overrides, message", [
    ({"depth": 21}, "depth must be 6n + 2 between 8 and 38"),
    ({"depth": 44}, "the paper's code builds bottleneck blocks from 44"),
    ({"width": 0}, "width must be >= 1"),
])
def test_cnn_resnet20_config_errors_say_what_is_wrong(overrides, message):
    from fmbench.models.cifar_resnet import CifarResNetConfig

    with pytest.raises(ConfigError) as e:
        CifarResNetConfig(**overrides)
    assert message in str(e.value)


def test_cnn_seed_dense_layer_has_a_relu_and_an_l2_penalty():
    model = build_model("cnn_seed").eval()
    seen = {}
    model.head.register_forward_hook(lambda m, i, o: seen.update(head_in=i[0]))
    with torch.no_grad():
        model(_batch(16)[0] - 0.5)
    assert (seen["head_in"] >= 0).all() and (seen["head_in"] == 0).any()  # ReLU after Dense(128)
    expected = 1e-3 * model.dense.weight.pow(2).sum()
    torch.testing.assert_close(model.regularization_loss(), expected)


# ---------------------------------------------------------------- vit_seed: the study's ViT

def test_vit_seed_architecture():
    """49 patches of 4x4 -> dim 16, a class token, learned position embedding (1, 50, 16),
    6 blocks of 8 heads (2 dims each), MLP 2048 (nn.TransformerEncoderLayer's default; the study states 768), head 16 -> 10."""
    model = build_model("vit_seed")
    cfg = model.cfg
    assert cfg == ViTConfig()
    assert (cfg.patch_size, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_dim, cfg.pool) == (4, 16, 6, 8, 2048, "cls")
    assert isinstance(model.pos_embed, nn.Parameter) and model.pos_embed.shape == (1, 50, 16)
    assert isinstance(model.cls_token, nn.Parameter) and model.cls_token.shape == (1, 1, 16)
    assert len(model.blocks) == 6
    for block in model.blocks:
        assert block.attn.heads == 8
        assert (block.attn.qkv.in_features, block.attn.qkv.out_features) == (16, 48)
        hidden = [m for m in block.mlp.modules() if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in hidden] == [(16, 2048), (2048, 16)]
    assert (model.head.in_features, model.head.out_features) == (16, 10)

    seen = {}
    model.patch_embed.register_forward_hook(lambda m, i, o: seen.update(tokens=tuple(o.shape)))
    model.blocks[0].register_forward_hook(lambda m, i, o: seen.update(block=tuple(o.shape)))
    model.eval()
    with torch.no_grad():
        model(_batch(3)[0])
    assert seen["tokens"] == (3, 49, 16)   # (B, 7 * 7 patches, dim)
    assert seen["block"] == (3, 50, 16)    # (B, class token + 49 patches, dim)


def test_vit_patches_are_4x4_in_row_major_order():
    """Changing the pixels of one patch changes exactly that patch's token."""
    model = build_model("vit_seed").eval()
    x = _batch(1)[0]
    y = x.clone()
    y[0, 0, 8:12, 4:8] += 1.0  # patch row 2, column 1 -> token 2 * 7 + 1
    with torch.no_grad():
        changed = (model.patch_embed(x) != model.patch_embed(y)).any(-1)[0]
    assert changed.nonzero().flatten().tolist() == [15]


def test_vit_rejects_a_wrong_input_shape():
    with pytest.raises(ValueError, match=r"expected input \(B, 1, 28, 28\), got \(2, 1, 32, 32\)"):
        build_model("vit_seed")(torch.zeros(2, 1, 32, 32))


@pytest.mark.parametrize("overrides, message", [
    ({"patch_size": 5}, "image size 28 is not divisible by patch size 5"),
    ({"heads": 3}, "dim 16 is not divisible by heads 3"),
    ({"pool": "max"}, "pool must be 'cls' or 'mean'"),
    ({"dropout": 1.0}, "dropout and drop_path must be in [0, 1)"),
])
def test_vit_config_errors_say_what_is_wrong(overrides, message):
    with pytest.raises(ConfigError) as e:
        ViTConfig(**overrides)
    assert message in str(e.value)


def test_vit_variants_still_give_logits():
    """The config switches other presets use: mean pooling, sin-cos positions, stochastic depth."""
    torch.manual_seed(0)
    model = build_model("vit_seed", ViTConfig(pool="mean", pos_embed="sincos", drop_path=0.1, depth=2))
    assert model(_batch(4)[0]).shape == (4, 10)
    assert not any(n == "pos_embed" for n, _ in model.named_parameters())  # fixed, not learned


@pytest.mark.parametrize("name", [n for n in MODELS if "tta_flip" in field_names(get_spec(n).config_cls)])
def test_flip_tta_averages_image_and_mirror_in_eval_only(name):
    spec = get_spec(name)
    torch.manual_seed(0)
    tta = spec.build(apply_overrides(spec.config_cls(), {"tta_flip": True})).eval()
    plain = spec.build(apply_overrides(spec.config_cls(), {"tta_flip": False})).eval()
    plain.load_state_dict(tta.state_dict())
    x, _ = _batch(4)
    with torch.no_grad():
        expected = (plain(x) + plain(x.flip(-1))) / 2
        assert torch.allclose(tta(x), expected, atol=1e-5)
        assert not torch.allclose(plain(x), expected, atol=1e-5)   # the mirror does change the logits
    tta.train()
    torch.manual_seed(1); a = tta(x)
    plain.train()
    torch.manual_seed(1); b = plain(x)
    assert torch.allclose(a, b, atol=1e-5)                          # training sees one view


# ---------------------------------------------------------------- the study's architectures, short recipes

def test_vit_seed_is_the_studys_network_and_fast_changes_only_the_recipe():
    study, seed_train = resolve_config("vit_seed", "seed")
    assert (study.patch_size, study.dim, study.heads, study.depth, study.mlp_dim) == (4, 16, 8, 6, 2048)
    assert study.init == "torch"                                        # nn.TransformerEncoder's copies
    assert (study.pool, study.pos_embed, study.dropout) == ("cls", "learned", 0.2)
    assert study.embed_init_std == 1.0 and study.center_input          # the tutorial's randn, Normalize(0.5, 0.5)
    assert (seed_train.lr, seed_train.batch_size, seed_train.epochs, seed_train.aug_rotation) == (1e-4, 256, 60, 15.0)
    assert (seed_train.aug_interp, seed_train.aug_fill, seed_train.val_split) == ("nearest", "zeros", "random")
    assert not seed_train.restore_best                                  # the notebook keeps its last model
    fast, fast_train = resolve_config("vit_seed", "fast")
    same = ("image_size", "patch_size", "dim", "depth", "heads", "mlp_dim", "pool", "pos_embed", "center_input", "init")
    assert all(getattr(fast, f) == getattr(study, f) for f in same)
    assert fast.dropout == 0.0 and fast.embed_init_std == 0.02
    assert (fast_train.optimizer, fast_train.epochs, fast_train.schedule, fast_train.aug_rotation) == (
        "adamw", 4, "onecycle", 0.0)
    assert count_params(build_model("vit_seed", fast)) == count_params(build_model("vit_seed", study)) == 413_802


def test_vit_seed_init_draws_class_token_and_positions_with_the_configured_std():
    torch.manual_seed(0)
    study = build_model("vit_seed")
    assert 0.9 < study.pos_embed.std().item() < 1.1
    fast = build_model("vit_seed", resolve_config("vit_seed", "fast")[0])
    assert fast.pos_embed.std().item() < 0.03 and fast.cls_token.abs().max().item() < 0.2


def test_center_input_maps_pixels_to_minus_one_one():
    cfg = ViTConfig(depth=1)
    torch.manual_seed(0)
    centered = build_model("vit_seed", cfg).eval()
    plain = build_model("vit_seed", ViTConfig(depth=1, center_input=False)).eval()
    plain.load_state_dict(centered.state_dict())
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(centered(x), plain(x * 2 - 1))


def test_cnn_seed_fast_keeps_the_study_layers():
    study, _ = resolve_config("cnn_seed", "seed")
    fast, train = resolve_config("cnn_seed", "fast")
    assert (fast.conv1, fast.conv2, fast.dense) == (study.conv1, study.conv2, study.dense) == (64, 128, 128)
    assert train.epochs == 4 and fast.bn_momentum == 0.1 and fast.dropout == 0.0   # issue 16's recipe, issue 26's 4 epochs


def test_fast_presets_of_the_strong_models_keep_their_architecture_and_use_both_cores():
    """`fast` changes the recipe; the one change to a network is vit_best's shifted patches and locality
    self-attention (issue 26), which keep it a ViT: a linear patch projection, then attention."""
    for name in ("cnn_best", "vit_best"):
        best_model, best = resolve_config(name, "best")
        fast_model, fast = resolve_config(name, "fast")
        assert fast.epochs < best.epochs and fast.threads == 0 and best.threads == 1
        same = lambda cfg: {k: v for k, v in vars(cfg).items() if k not in ("drop_path", "spt", "lsa")}  # noqa: E731
        assert same(fast_model) == same(best_model)
    vit_fast, vit_best = resolve_config("vit_best", "fast")[0], resolve_config("vit_best", "best")[0]
    assert (vit_fast.spt, vit_fast.lsa, vit_best.spt, vit_best.lsa) == (True, True, False, False)


def test_old_vit_configs_reload_with_the_values_they_were_trained_with(tmp_path):
    from fmbench.fileio import write_json
    from fmbench.spec import make_spec, read_spec

    rc = make_spec("vit_seed", "seed")
    raw = rc.to_json()
    for key in ("embed_init_std", "center_input"):
        del raw["model_config"][key]                   # a config.json written before these fields
    write_json(tmp_path / "config.json", raw)
    back = read_spec(tmp_path)
    assert back.model_cfg.embed_init_std == 0.02 and back.model_cfg.center_input is False


def test_only_the_seed_and_record_recipes_keep_the_last_epoch():
    """Keras' EarlyStopping and the tutorial's notebook keep the last epoch, and so does the record
    recipe (a 2% validation split is too small to pick an epoch by); fmbench's other recipes (built on
    the seed recipes' values) keep the best, and fill zooms with zeros as before."""
    for model, preset in (("cnn_seed", "seed"), ("vit_seed", "seed"), ("cnn_resnet20", "record")):
        assert not resolve_config(model, preset)[1].restore_best
    for model, preset in (("cnn_seed", "fast"), ("vit_seed", "fast"), ("cnn_best", "best"), ("cnn_best", "fast"),
                          ("vit_best", "best"), ("vit_best", "fast")):
        train = resolve_config(model, preset)[1]
        assert train.restore_best and train.aug_fill == "zeros" and train.val_split == "stratified", (model, preset)
