"""Parity of `cnn_seed` with the study's CNN built in Keras 3 on its PyTorch backend (issue 23).

The Keras model is the study's network as it describes it: Conv2D(64, 3, relu) -> BatchNormalization
-> MaxPooling2D(2) -> Conv2D(128, 3, relu) -> BatchNormalization -> MaxPooling2D(2) -> Flatten ->
Dropout(0.5) -> Dense(128, relu, L2 kernel regulariser) -> Dense(10, softmax), Keras' defaults
everywhere else (BatchNormalization momentum 0.99, epsilon 1e-3; channels-last). Its weights are
copied into `cnn_seed`; the outputs must agree in inference mode, and one training-mode forward must
move the BatchNorm running statistics the same way (Keras momentum 0.99 is PyTorch's 0.01).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")   # before keras is imported; no TensorFlow needed

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fmbench.models import build_model, count_params, resolve_config  # noqa: E402

L2 = 1e-3  # cnn_seed's dense_l2 (the study does not state its factor; docs/reproduction.md)


def keras_cnn() -> keras.Model:
    layers = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(64, 3, activation="relu"), layers.BatchNormalization(), layers.MaxPooling2D(2),
        layers.Conv2D(128, 3, activation="relu"), layers.BatchNormalization(), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dropout(0.5),
        layers.Dense(128, activation="relu", kernel_regularizer=keras.regularizers.l2(L2)),
        layers.Dense(10, activation="softmax"),
    ])


def t(v) -> torch.Tensor:
    return torch.as_tensor(np.asarray(keras.ops.convert_to_numpy(v)), dtype=torch.float32)


def copy_into_cnn_seed(km: keras.Model) -> torch.nn.Module:
    """cnn_seed with the Keras model's weights (kernels HWIO -> OIHW; the dense kernel's rows from
    Keras' (H, W, C) flatten order to ours, (C, H, W))."""
    torch.manual_seed(0)
    model_cfg, _ = resolve_config("cnn_seed", "seed")
    ours = build_model("cnn_seed", model_cfg)
    conv1, bn1, _, conv2, bn2, _, _, _, dense, head = km.layers
    with torch.no_grad():
        for (conv, bn), block in zip(((conv1, bn1), (conv2, bn2)), ours.features):
            block[0].weight.copy_(t(conv.kernel).permute(3, 2, 0, 1))
            block[0].bias.copy_(t(conv.bias))
            block[2].weight.copy_(t(bn.gamma))
            block[2].bias.copy_(t(bn.beta))
            block[2].running_mean.copy_(t(bn.moving_mean))
            block[2].running_var.copy_(t(bn.moving_variance))
        kernel = t(dense.kernel).reshape(5, 5, 128, 128).permute(2, 0, 1, 3).reshape(3200, 128)  # (C*H*W, out)
        ours.dense.weight.copy_(kernel.T)
        ours.dense.bias.copy_(t(dense.bias))
        ours.head.weight.copy_(t(head.kernel).T)
        ours.head.bias.copy_(t(head.bias))
    return ours


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    km = keras_cnn()
    # Move the BatchNorm statistics off their initial (0, 1), so that inference mode tests them too.
    for layer in km.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(np.linspace(-0.2, 0.3, n).astype("float32"))
            layer.moving_variance.assign(np.linspace(0.5, 2.0, n).astype("float32"))
            layer.gamma.assign(np.linspace(0.8, 1.2, n).astype("float32"))
            layer.beta.assign(np.linspace(-0.1, 0.1, n).astype("float32"))
    return km, copy_into_cnn_seed(km)


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))   # [0, 1], as both feed


def test_parameter_counts_agree(models):
    km, ours = models
    trainable = sum(int(np.prod(w.shape)) for w in km.trainable_weights)
    assert count_params(ours) == trainable == 485_898
    assert km.count_params() - trainable == 2 * (64 + 128)      # Keras also counts the moving statistics


def test_inference_outputs_agree(models):
    km, ours = models
    x = images(32, 1)
    keras_probs = t(km(x.permute(0, 2, 3, 1).numpy(), training=False))   # channels-last
    with torch.no_grad():
        our_probs = ours.eval()(x).softmax(1)
    torch.testing.assert_close(our_probs, keras_probs, atol=1e-5, rtol=1e-4)


def test_l2_penalty_agrees(models):
    km, ours = models
    km(np.zeros((1, 28, 28, 1), dtype="float32"), training=False)
    keras_penalty = float(sum(keras.ops.convert_to_numpy(v) for v in km.losses))
    assert ours.regularization_loss().item() == pytest.approx(keras_penalty, rel=1e-5)


def test_one_training_step_moves_batchnorm_statistics_alike():
    """Keras: moving = 0.99 * moving + 0.01 * batch; PyTorch: running = 0.99 * running + 0.01 * batch
    (momentum 0.01). The batch variance differs by Bessel's factor n / (n - 1) in PyTorch (n = 16 *
    26 * 26 = 10,816 values per channel in the first block: a 1e-6 relative effect at weight 0.01)."""
    keras.utils.set_random_seed(0)
    km = keras_cnn()
    ours = copy_into_cnn_seed(km).train()
    x = images(16, 2)
    km(x.permute(0, 2, 3, 1).numpy(), training=True)
    ours(x)
    bns = [layer for layer in km.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for bn, block in zip(bns, ours.features):
        assert not torch.allclose(block[2].running_mean, torch.zeros_like(block[2].running_mean))   # it moved
        torch.testing.assert_close(block[2].running_mean, t(bn.moving_mean), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(block[2].running_var, t(bn.moving_variance), atol=1e-6, rtol=1e-5)
