"""Manhattan self-attention of RMT, "RMT: Retentive Networks Meet Vision Transformers" (arXiv:2309.11523).

RetNet's explicit decay carried to an image: with softmax scores over all tokens, each score is
scaled by a decay in the Manhattan distance between the two tokens' grid cells::

    o_n = sum_m softmax_m(q_n . k_m / sqrt(K)) gamma_h^{|x_n - x_m| + |y_n - y_m|} v_m

one ``gamma_h`` per head. Prefix (class) tokens have no cell: their decay to every token is 1.

- :func:`manhattan_retention_reference`: the spec, per query and key with the distance counted
  from the two cells' coordinates;
- :func:`manhattan_retention_parallel`: the fast form; the decay matrix is the Kronecker product of
  two 1-D decays (``gamma^{|dy| + |dx|} = gamma^{|dy|} gamma^{|dx|}``), built without a loop.

Shapes: ``q, k, v: [B, T, H, K]`` with ``T = P + H_grid W_grid``; ``gammas: [H]``.
"""

from mixerlab.ops.manhattan_retention.parallel import manhattan_decay, manhattan_retention_parallel
from mixerlab.ops.manhattan_retention.reference import manhattan_retention_reference

__all__ = ["manhattan_decay", "manhattan_retention_parallel", "manhattan_retention_reference"]
