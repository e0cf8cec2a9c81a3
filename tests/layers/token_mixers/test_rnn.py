"""Recurrent mixers: minGRU/minLSTM widths and options, LSTM against torch.nn.LSTM."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_expand_sets_hidden_width_and_parameter_count(name):
    m = mixerlab.create_token_mixer(name, dim=8, expand=3)
    n = {"mingru": 2, "minlstm": 3}[name]
    assert m.hidden_dim == 24
    assert m.init_state(2)["h"].shape == (2, 24)
    # the paper's count: n gate/candidate maps d -> H (with bias) plus the output map H -> d
    assert sum(p.numel() for p in m.parameters()) == n * (8 * 24 + 24) + 24 * 8


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_float32_long_scan_close_to_reference(name):
    torch.manual_seed(0)
    m = mixerlab.create_token_mixer(name, dim=8, chunk_size=64)
    x = torch.randn(1, 300, 8)
    y, s = m(x)
    m.mode = "reference"
    y_ref, s_ref = m(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)


def test_lstm_fused_equals_torch_nn_lstm_plus_projection():
    torch.manual_seed(0)
    m = mixerlab.create_token_mixer("lstm", dim=6, hidden_dim=5).double()
    ref = torch.nn.LSTM(6, 5, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(m.weight_ih)
        ref.weight_hh_l0.copy_(m.weight_hh)
        ref.bias_ih_l0.copy_(m.bias_ih)
        ref.bias_hh_l0.copy_(m.bias_hh)
    x = torch.randn(3, 11, 6, dtype=torch.float64)
    y, state = m(x)
    out, (h, c) = ref(x)
    torch.testing.assert_close(y, m.out_proj(out))
    torch.testing.assert_close(state["c"], c[0])


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [("mingru", "expand", 0), ("minlstm", "chunk_size", 0), ("lstm", "hidden_dim", -2)],
)
def test_bad_options_name_the_field(name, field, value):
    with pytest.raises(ConfigError, match=f"{field}="):
        mixerlab.create_token_mixer(name, dim=8, **{field: value})


@pytest.mark.parametrize("training", [True, False])
def test_lstm_fused_backward_in_train_and_eval_mode(device, training):
    """The fused form's backward works whatever the module mode (cuDNN refuses a backward through
    a forward run as inference) and its gradients equal the per-token reference's; without
    gradients it runs as inference."""
    torch.manual_seed(0)
    m = mixerlab.create_token_mixer("lstm", dim=6, hidden_dim=5).double().to(device).train(training)
    x = torch.randn(2, 7, 6, dtype=torch.float64, device=device, requires_grad=True)
    y, state = m(x)
    grads = torch.autograd.grad(y.square().sum() + state["c"].sum(), [x, *m.parameters()])
    m.mode = "reference"
    y_ref, state_ref = m(x)
    grads_ref = torch.autograd.grad(y_ref.square().sum() + state_ref["c"].sum(), [x, *m.parameters()])
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)
    m.mode = "fused"
    with torch.no_grad():
        torch.testing.assert_close(m(x)[0], y)
