"""S4D specifics: the convolution view and the recurrent view are the same layer."""

from __future__ import annotations

import math

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.ops.linear_scan import linear_scan_reference


def _mixer(**kwargs):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer("s4d", **{"dim": 5, "state_dim": 8, **kwargs}).double()


def test_s4d_lin_initialisation():
    mixer = _mixer(state_dim=10)
    A = torch.complex(-mixer.log_A_real.exp(), mixer.A_imag).detach()
    expected = torch.complex(torch.full((5,), -0.5), math.pi * torch.arange(5.0)).to(torch.complex128)
    torch.testing.assert_close(A, expected.expand(5, 5))
    dt = mixer.log_dt.exp()
    assert dt.min() >= 0.001 - 1e-12 and dt.max() <= 0.1 + 1e-12


def test_convolution_kernel_is_the_impulse_response_of_the_recurrence():
    mixer = _mixer()
    with torch.no_grad():  # move the tiny imaginary parts of B off zero so they matter
        mixer.B_im.normal_(0, 0.3)
    T = 40
    _, A_bar, B_bar, C = mixer._discretize()
    impulse = torch.zeros(1, T, 5, dtype=torch.float64)
    impulse[:, 0] = 1.0
    h, _ = linear_scan_reference(A_bar, B_bar * impulse[..., None])  # [1, T, H, M]
    response = 2 * torch.einsum("hm,bthm->bth", C, h).real
    torch.testing.assert_close(mixer.kernel(T), response[0].T, rtol=1e-10, atol=1e-12)


def test_convolution_view_with_a_state_matches_the_recurrent_view():
    mixer = _mixer()
    x = torch.randn(2, 23, 5, dtype=torch.float64)
    state = {"h": torch.randn(2, 5, 4, 2, dtype=torch.float64)}
    outs = {}
    for mode in ("conv", "recurrent", "reference"):
        mixer.mode = mode
        outs[mode] = mixer(x, state=state)
    for mode in ("conv", "recurrent"):
        torch.testing.assert_close(outs[mode][0], outs["reference"][0])
        torch.testing.assert_close(outs[mode][1]["h"], outs["reference"][1]["h"])


def test_zero_input_decays_the_state_by_a_bar_powers():
    """With u = 0 only the incoming state speaks: h_{T-1} = A_bar^T h_{-1}."""
    mixer = _mixer()
    h0 = torch.randn(1, 5, 4, dtype=torch.complex128)
    _, state = mixer(torch.zeros(1, 7, 5, dtype=torch.float64), state={"h": torch.view_as_real(h0)})
    _, A_bar, _, _ = mixer._discretize()
    torch.testing.assert_close(torch.view_as_complex(state["h"]), A_bar**7 * h0)


def test_odd_state_dim_is_a_clear_error():
    with pytest.raises(ConfigError, match="state_dim=7"):
        mixerlab.create_token_mixer("s4d", dim=4, state_dim=7)


@pytest.mark.parametrize("T", [2, 9, 16, 50])
def test_factorised_powers_match_the_reference_at_square_and_ragged_lengths(T):
    # The conv view splits t = c J + j with J = ceil(sqrt(T)); lengths on and off a square
    # exercise the padded last block of both the kernel and the final-state sum.
    mixer = _mixer()
    g = torch.Generator().manual_seed(T)
    x = torch.randn(2, T, 5, generator=g, dtype=torch.float64)
    h0 = {"h": torch.randn(2, 5, 4, 2, generator=g, dtype=torch.float64)}
    y, state = mixer(x, state=h0)
    mixer.mode = "reference"
    y_ref, state_ref = mixer(x, state=h0)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(state["h"], state_ref["h"], rtol=1e-10, atol=1e-12)
