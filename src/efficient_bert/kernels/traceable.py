"""How our ops start a Triton kernel: through ``torch.library.wrap_triton``, so that
inside a ``torch.compile`` region Inductor launches the kernel from its generated code. They are
``triton_op``s for the same reason: a Python custom op costs ~100 us of host time per call, which
made the host, not the GPU, set the pace of a base-size training step.

Short attention is one too: its tile size is picked before the op, so Inductor sees a constant
(pytorch/pytorch#181735 fails on a symbolic one). Float arguments reach Inductor-launched kernels
as fp64, so kernels cast them to fp32 before use."""

from __future__ import annotations

import os

import torch


def traceable(kernel):
    """``kernel`` ready for ``[grid](...)``: traceable by torch.compile, or as is under the Triton
    interpreter (``TRITON_INTERPRET=1``), whose kernels torch cannot trace."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return kernel
    return torch.library.wrap_triton(kernel)
