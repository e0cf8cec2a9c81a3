"""Hierarchically Gated Recurrent Network token mixer: ``hgrn`` (the HGRU layer, complex form).

Shapes: ``x: [B, T, D]``; complex hidden state ``[B, D]``, carried in the returned state as real
and imaginary parts ``{"h": [B, D, 2]}``; gates and output before projection ``[B, T, 2D]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.layers.token_mixers.base import State, TokenMixer
from mixerlab.ops.backends.fla import check_backend, hgrn_fla, use_fla
from mixerlab.ops.linear_scan import (
    linear_scan_chunk,
    linear_scan_packed,
    linear_scan_recurrent,
    linear_scan_reference,
)
from mixerlab.ops.precision import wide_dtype, widen
from mixerlab.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register(
    "hgrn",
    paper="Hierarchically Gated Recurrent Neural Network for Sequence Modeling",
    arxiv="2311.04823",
    test_kwargs={"dim": 16, "lower_bound": 0.25, "chunk_size": 8},
    meta={
        "state": "2 D (complex state as real/imaginary pairs)",
        "time": "O(T D^2)",
        "memory": "O(T D)",
        "state_kind": "fixed",
    },
)
class HGRN(TokenMixer):
    """Hierarchically Gated Recurrent Neural Network for Sequence Modeling (arXiv:2311.04823).

    The HGRU token mixer in the paper's complex-valued form (chosen over the HGRN2 outer-product
    variant, which is a separate paper):

        mu_t     = sigmoid(W_f x_t + b_f)                        (forget gate, [D])
        lambda_t = gamma + (1 - gamma) * mu_t                     (lower-bounded by gamma)
        c_t      = SiLU(W_r x_t + b_r) + i SiLU(W_i x_t + b_i)    (complex input)
        h_t      = lambda_t * exp(i theta) * h_{t-1} + (1 - lambda_t) * c_t
        g_t      = sigmoid(W_g x_t + b_g)                         (output gate, [2D])
        o_t      = W_o LayerNorm(g_t * [Re h_t, Im h_t])

    The input gate is tied to the forget gate (``1 - lambda_t``) and the phase ``theta: [D]`` is
    learned but data-independent, initialised to rotary-style frequencies ``10000^(-2j/D)`` as in
    the authors' code. In the paper the lower bound ``gamma`` of layer ``k`` is a learned vector
    made monotone across layers (a cumulative softmax over the stack), which only a whole stack
    can own; a single mixer takes it as the fixed option ``lower_bound`` in ``[0, 1)`` (0 = the
    first layer, no bound). A model builder can pass ``k / num_layers``-style values per layer.

    Real and imaginary parts are interleaved channel by channel (``[Re h_0, Im h_0, Re h_1, ...]``)
    in the outputs of ``input_proj`` and in the ``2D`` channels of ``gate_proj``, ``norm`` and
    ``out_proj``: a fixed permutation of the paper's ``[Re, Im]`` halves (the same function class),
    chosen because complex tensors are then views of real ones, with no copies; it made the layer
    1.2x faster (forward + backward, T=4096, one CPU thread).

    Modes: ``"scan"`` (chunked doubling scan, ``chunk_size`` steps per chunk) and
    ``"reference"`` (per-step loop). ``backend`` (``"auto"``, ``"torch"``, ``"fla"``): the scan
    mode runs on fla's real-valued ``chunk_hgrn`` for CUDA inputs when installed, through an exact
    change of variables that moves the phase onto the inputs (see
    :func:`mixerlab.ops.backends.fla.hgrn_fla`); packed batches stay on mixerlab's scan.
    """

    modes = ("scan", "reference")
    packed = "native"

    def __init__(
        self,
        dim: int,
        lower_bound: float = 0.0,
        chunk_size: int = 64,
        bias: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = "hgrn"
        check_backend(name, backend)
        self.backend = backend
        check_positive_int(name, "dim", dim)
        check_positive_int(name, "chunk_size", chunk_size)
        check(
            isinstance(lower_bound, (int, float)) and 0.0 <= lower_bound < 1.0,
            name,
            "lower_bound",
            lower_bound,
            "expected 0 <= lower_bound < 1",
        )
        self.dim, self.lower_bound, self.chunk_size = dim, float(lower_bound), chunk_size
        self.input_proj = nn.Linear(dim, 2 * dim, bias=bias)
        self.forget_proj = nn.Linear(dim, dim, bias=bias)
        self.gate_proj = nn.Linear(dim, 2 * dim, bias=bias)
        self.theta = nn.Parameter(torch.empty(dim))
        self.norm = nn.LayerNorm(2 * dim)
        self.out_proj = nn.Linear(2 * dim, dim, bias=bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The learned phases start at rotary frequencies ``10000^(-2 d / D)``."""
        dim = self.dim
        self.theta.copy_(
            10000.0 ** (-2 * torch.arange(dim, dtype=torch.float32, device=self.theta.device) / dim)
        )

    def recurrence(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``a_t = lambda_t exp(i theta)`` and ``b_t = (1 - lambda_t) c_t``, both ``[B, T, D]`` complex."""
        lam, b = self._decay_and_input(x, log=False)
        return torch.polar(lam, self.theta.to(lam.dtype).expand_as(lam)), b

    def _decay_and_input(self, x: Tensor, *, log: bool) -> tuple[Tensor, Tensor]:
        """``lambda_t`` (or ``log lambda_t`` when ``log``): ``[B, T, D]`` real, and ``b_t = (1 -
        lambda_t) c_t``: ``[B, T, D]`` complex."""
        lb = self.lower_bound
        # complex numbers need float32 at least (see ops/precision.py)
        (forget,) = widen(self.forget_proj(x))
        lam = lb + (1 - lb) * torch.sigmoid(forget)
        # (re, im) interleaved in the projection's output, so b is scaled while real (complex
        # times real promotes to a complex product) and then read as complex without a copy.
        c = rearrange(nn.functional.silu(self.input_proj(x)), "b t (d two) -> b t d two", two=2)
        b = torch.view_as_complex(c.to(lam.dtype) * (1 - lam)[..., None])
        if not log:
            return lam, b
        # log lambda from log-sigmoid: log(sigmoid) underflows to -inf (and a NaN gradient) for
        # strongly negative forget pre-activations, logsigmoid does not
        log_lam = F.logsigmoid(forget)
        if lb > 0:
            log_lam = torch.logaddexp(log_lam + math.log1p(-lb), log_lam.new_tensor(math.log(lb)))
        return log_lam, b

    def forward(
        self, x: Tensor, *, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        self._check_input(x, mask)
        h0 = None
        if state is not None:
            h0 = torch.view_as_complex(state["h"].to(wide_dtype(x.dtype)).contiguous())
        if self.mode == "reference":
            h, last = linear_scan_reference(*self.recurrence(x), h0)
        elif x.shape[1] > 1 and use_fla("hgrn", self.backend, x):
            log_lam, b = self._decay_and_input(x, log=True)
            h, last = hgrn_fla(log_lam, self.theta, b, h0)
        elif x.shape[1] == 1 and h0 is not None:
            a, b = self.recurrence(x)
            last = linear_scan_recurrent(a[:, 0], b[:, 0], h0)
            h = last[:, None]
        else:
            h, last = linear_scan_chunk(*self.recurrence(x), h0, chunk_size=self.chunk_size)
        # the state stays in the scan's dtype (float32 for half layers): it is carried indefinitely
        return self._readout(x, h), {"h": torch.view_as_real(last)}

    def forward_packed(
        self, x: Tensor, cu_seqlens: Tensor, *, states: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        """Packed documents (see :meth:`TokenMixer.forward_packed`) in one scan whose decay is 0 at
        each document start (:func:`linear_scan_packed`). Mode ``reference`` runs each alone."""
        lengths = self._check_packed(x, cu_seqlens, states)
        if self.mode == "reference":
            return self._forward_split(x, lengths, states)
        h0 = None
        if states is not None:
            h0 = torch.cat([s["h"] for s in states]).to(wide_dtype(x.dtype))
            h0 = torch.view_as_complex(h0.contiguous())  # [N, D]
        h, last = linear_scan_packed(*self.recurrence(x), lengths, h0, chunk_size=self.chunk_size)
        return self._readout(x, h), [{"h": h_n} for h_n in torch.view_as_real(last).split(1)]

    def _readout(self, x: Tensor, h: Tensor) -> Tensor:
        """``o_t = W_o LayerNorm(g_t * [Re h_t, Im h_t])`` from the states ``h: [B, T, D]`` complex."""
        gate = torch.sigmoid(self.gate_proj(x))
        o = self.norm(gate * rearrange(torch.view_as_real(h), "b t d two -> b t (d two)").to(x.dtype))
        return self.out_proj(o)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return {"h": torch.zeros(batch_size, self.dim, 2, **self._factory(device, dtype))}

    def state_size(self, seq_len: int) -> int:
        return 2 * self.dim
