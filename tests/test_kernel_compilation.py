"""The Triton kernels as the library launches them, built for GPUs that CI does not have.

The interpreter (``test_kernels.py``) checks what the kernels compute, not that they compile: this
file captures every launch the ops make at base-model sizes, forward and backward, compiles each for
Ampere (sm80), Hopper (sm90) and Blackwell (sm100) with Triton's own compiler and ptxas, checks the
shared memory each binary asks for, and runs Inductor's mutation analysis on it. If that analysis saw a kernel write one of its inputs, ``torch.compile`` would copy
the input before every call (why ``short_attention.py`` computes store addresses in its kernels).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import pytest
import torch

from efficient_bert.kernels import (add_layer_norm, add_layer_norm_and_sum, cross_entropy, geglu, short_attention,
                                    triton_available)
from efficient_bert.kernels.short_attention import SHARED_MEMORY_BYTES

pytestmark = [pytest.mark.skipif(not triton_available(), reason="needs triton"),
              pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                                 reason="compiles kernels; under TRITON_INTERPRET=1 they are Python functions")]

KERNEL_MODULES = [importlib.import_module(f"efficient_bert.kernels.{name}")
                  for name in ("cross_entropy", "geglu", "layer_norm", "short_attention")]
HIDDEN, INNER, VOCAB, HEADS, HEAD_DIM = 768, 3072, 30528, 12, 64  # Mosaic BERT-Base


@dataclass
class Launch:
    kernel: object
    grid: tuple
    args: tuple
    kwargs: dict

    @property
    def arguments(self) -> dict:
        return {**dict(zip(self.kernel.arg_names, self.args)), **self.kwargs}

    @property
    def name(self) -> str:
        return f"{self.kernel.fn.__module__.rsplit('.', 1)[-1]}.{self.kernel.fn.__name__}"


def _writes(flag: str, always: set, extra: set):
    return lambda arguments: always | (extra if arguments[flag] else set())


# What each kernel writes; every other tensor argument it only reads.
WRITES = {
    "cross_entropy._forward_kernel": lambda _: {"Losses", "LSE"},
    "cross_entropy._backward_kernel": lambda _: {"DLogits"},
    "geglu._forward_kernel": lambda _: {"Out"},
    "geglu._backward_kernel": lambda _: {"DH"},
    "layer_norm._forward_kernel": _writes("HAS_RESIDUAL", {"Y", "Mean", "Rstd"}, {"S"}),
    "layer_norm._backward_kernel": _writes("HAS_DROPOUT", {"DX", "DW", "DB"}, {"DXB"}),
    "short_attention._forward_kernel": lambda _: {"Out", "LSE"},
    "short_attention._backward_kernel": lambda _: {"DQKV"},
}


class _Target:
    """Triton's active driver for a GPU that is not here: enough for compiling and for Inductor's analysis."""

    def __init__(self, capability: int):
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", capability, 32)

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        # a key of its own in each kernel's per-device caches, apart from any real GPU's
        return f"compile-check-sm{self.target.arch}"

    def get_current_stream(self, device):
        return 0


@pytest.fixture
def use_target(monkeypatch, tmp_path):
    from triton.runtime import driver

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # compile, don't reuse an earlier run's binaries
    return lambda capability: monkeypatch.setattr(driver, "_active", _Target(capability))


def _launches(monkeypatch, dtype: torch.dtype) -> list[Launch]:
    """Every kernel launch of the ops' forward and backward, recorded instead of run."""
    launches = []

    def record(kernel):
        class Grid:
            def __getitem__(self, grid):
                return lambda *args, **kwargs: launches.append(Launch(kernel, grid, args, kwargs))
        return Grid()

    for module in KERNEL_MODULES:
        monkeypatch.setattr(module, "traceable", record)

    def leaf(*shape):
        return torch.randn(*shape, dtype=dtype, requires_grad=True)

    rows = 200
    x, residual, weight, bias = leaf(rows, HIDDEN), leaf(rows, HIDDEN), leaf(HIDDEN), leaf(HIDDEN)
    outputs = [add_layer_norm(x, weight, bias, 1e-5), add_layer_norm(x, weight, bias, 1e-5, residual=residual),
               add_layer_norm(x, weight, bias, 1e-5, residual=residual, dropout_p=0.1)]
    for dropout_p in (0.0, 0.1):
        outputs += add_layer_norm_and_sum(x, weight, bias, 1e-5, residual, dropout_p=dropout_p)
    h = leaf(rows, 2 * INNER)
    outputs += [geglu(h, leaf(2 * INNER)), geglu(h)]
    outputs.append(cross_entropy(leaf(rows, VOCAB), torch.randint(VOCAB, (rows,))))
    qkv, slopes = leaf(rows, 3 * HEADS * HEAD_DIM), torch.rand(HEADS)
    cu_seqlens = torch.tensor([0, 128, rows], dtype=torch.int32)
    documents = torch.repeat_interleave(torch.arange(4, dtype=torch.int32), torch.tensor([50, 78, 40, 32]))
    outputs += [short_attention(qkv, HEADS, cu_seqlens, slopes, 128),
                short_attention(qkv, HEADS, cu_seqlens, slopes, 128, documents=documents)]
    torch.autograd.backward([out.float().sum() for out in outputs])
    return launches


def test_inductor_sees_each_kernel_write_only_its_outputs(monkeypatch, use_target):
    from torch._higher_order_ops.triton_kernel_wrap import identify_accessed_tensors

    use_target(90)
    launches = _launches(monkeypatch, torch.bfloat16)
    assert {launch.name for launch in launches} == set(WRITES)
    for launch in launches:
        arguments = launch.arguments
        accesses = identify_accessed_tensors(launch.kernel, dict(arguments), {})
        tensors = {name for name, value in arguments.items() if isinstance(value, torch.Tensor)}
        written = {dep.name for dep in accesses.read_writes.writes} & tensors
        assert written == WRITES[launch.name](arguments), launch.name


@pytest.mark.parametrize("capability", [80, 90, 100], ids=["sm80", "sm90", "sm100"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_each_kernel_compiles_for_the_gpu_and_fits_its_shared_memory(monkeypatch, use_target, capability, dtype):
    use_target(capability)
    built = {}
    for launch in _launches(monkeypatch, dtype):
        compiled = launch.kernel.warmup(*launch.args, grid=launch.grid, **launch.kwargs)
        assert compiled.asm["cubin"], launch.name
        built.setdefault(launch.name, set()).add(compiled.hash)
        # attention: within what BackendPlan compares with the device's; the rest: within the 99 KiB per
        # block of the smallest GPUs from sm80 on (RTX 30 and 40 series), so they launch on any of them
        limit = SHARED_MEMORY_BYTES[dtype] if launch.name.startswith("short_attention") else 99 * 1024
        assert compiled.metadata.shared <= limit, (launch.name, compiled.metadata.shared)
    # one binary per variant: layer norm's forward three (plain, residual, dropout), its backward four
    assert {name: len(hashes) for name, hashes in built.items()} == {
        "cross_entropy._forward_kernel": 1, "cross_entropy._backward_kernel": 1,
        "geglu._forward_kernel": 2, "geglu._backward_kernel": 2,
        "layer_norm._forward_kernel": 3, "layer_norm._backward_kernel": 4,
        "short_attention._forward_kernel": 2, "short_attention._backward_kernel": 2}
