"""Attention of one query over a growing prefix, as a many-to-many RNN, "Attention as an RNN"
(arXiv:2405.13956).

For scores ``s_i`` and values ``v_i`` the output after token ``t`` is ``o_t = w_t / u_t`` with the
running triple ``(m_t, u_t, w_t) = (max_{i<=t} s_i, sum_{i<=t} exp(s_i - m_t), sum_{i<=t}
exp(s_i - m_t) v_i)``. Two triples combine associatively (section 3.2 of the paper)::

    (m_a, u_a, w_a) (+) (m_b, u_b, w_b) = (m, u_a e^{m_a - m} + u_b e^{m_b - m},
                                              w_a e^{m_a - m} + w_b e^{m_b - m}),   m = max(m_a, m_b)

which is what lets the prefix outputs be computed in parallel.
"""

from mixerlab.ops.aaren.recurrent import aaren_recurrent
from mixerlab.ops.aaren.reference import aaren_reference
from mixerlab.ops.aaren.scan import aaren_scan

__all__ = ["aaren_recurrent", "aaren_reference", "aaren_scan"]
