"""The multi-tensor launch plan, counted independently of csrc/include/multi_tensor.h.

ATen's rule: a launch takes tensors until it holds `max_tensors` of them or `max_blocks`
chunks of 65536 elements; a tensor cut by the block limit continues as slot 0 of the next
launch. Empty tensors take no slot.
"""

from __future__ import annotations

CHUNK = 65536
MAX_BLOCKS = 320


def plan_oracle(numels, max_tensors, max_blocks=MAX_BLOCKS):
    """(launches, blocks) of the plan for tensors of `numels` elements."""
    launches = blocks = 0
    tensors_here = blocks_here = 0
    live = [n for n in numels if n > 0]
    for i, n in enumerate(live):
        chunks = -(-n // CHUNK)
        tensors_here += 1
        for c in range(chunks):
            blocks_here += 1
            blocks += 1
            last_chunk = c == chunks - 1
            if ((tensors_here == max_tensors and last_chunk) or blocks_here == max_blocks
                    or (i == len(live) - 1 and last_chunk)):
                launches += 1
                blocks_here = 0
                tensors_here = 0 if last_chunk else 1
    return launches, blocks
