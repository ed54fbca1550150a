"""The ``flash_attn`` backend on FlashAttention-4 (the optional ``flash-attn-4`` package).

CI has neither flash-attn package: there only the error for a missing package runs. With the package
installed, the kernels with our ALiBi score mod are compiled for Hopper without a GPU (CuTe's
cross-compilation under fake tensors); on a Hopper or Blackwell GPU they run against the reference.
"""

import os
import subprocess
import sys

import pytest
import torch

from efficient_bert.kernels import short_attention_reference
from efficient_bert.kernels.flash_attention4 import flash_attention4, flash_attention4_installed, \
    flash_attention4_unsupported
from efficient_bert.model.mosaic_bert.alibi import alibi_slopes

installed = pytest.mark.skipif(not flash_attention4_installed(), reason="needs the flash-attn-4 package")
LENGTHS = [128, 5, 77, 1, 128, 64, 100, 512, 300]  # up to 512: FlashAttention has no 128-token limit
HEADS, DIM = 12, 64


def packed_inputs(device: str):
    cu_seqlens = torch.tensor([0] + LENGTHS, device=device).cumsum(0).int()
    g = torch.Generator(device=device).manual_seed(2)
    qkv = torch.randn(sum(LENGTHS), 3 * HEADS * DIM, device=device, generator=g).bfloat16().requires_grad_()
    return qkv, cu_seqlens, alibi_slopes(HEADS).to(device), torch.randn(qkv.shape[0], HEADS * DIM, device=device,
                                                                       generator=g).bfloat16()


@pytest.mark.skipif(flash_attention4_installed(), reason="flash-attn-4 is installed here")
def test_flash_attn_without_a_package_names_the_package_to_install():
    from efficient_bert.model.mosaic_bert.attention import flash_attn_version, backend_for_device

    if flash_attn_version() is not None:
        pytest.skip("flash-attn 2 is installed here")
    assert "pip install flash-attn-4==" in flash_attention4_unsupported(torch.device("cpu"))
    with pytest.raises(ValueError, match=r"needs flash-attn-4 or flash-attn 2 \(pip install flash-attn-4\)"):
        backend_for_device("flash_attn", torch.device("cpu"))


COMPILE_FOR_HOPPER = """
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from efficient_bert.kernels.flash_attention4 import attention_backward, attention_forward
with FakeTensorMode():
    qkv = torch.empty(300, 3 * 12 * 64, device="cuda", dtype=torch.bfloat16)
    cu_seqlens = torch.tensor([0, 128, 133, 210, 211, 300], device="cuda", dtype=torch.int32)
    slopes = torch.empty(12, device="cuda")
    out, lse = attention_forward(qkv, cu_seqlens, slopes, 12, 128)
    dqkv = attention_backward(torch.empty_like(out), qkv, out, lse, cu_seqlens, slopes, 12, 128)
print(tuple(out.shape), tuple(lse.shape), tuple(dqkv.shape))
"""


@installed
def test_the_alibi_kernels_compile_for_hopper_without_a_gpu():
    env = {**os.environ, "FLASH_ATTENTION_ARCH": "sm_90", "CUTE_DSL_ARCH": "sm_90a", "FLASH_ATTENTION_NUM_SMS": "132"}
    done = subprocess.run([sys.executable, "-c", COMPILE_FOR_HOPPER], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[-2] == "(300, 768) (12, 300) (300, 2304)"


@pytest.mark.skipif(not torch.cuda.is_available() or flash_attention4_unsupported(torch.device("cuda")) is not None,
                    reason="needs flash-attn-4 and a Hopper or Blackwell GPU")
@pytest.mark.parametrize("compiled", [False, True])
def test_flash_attention4_matches_the_reference(compiled):
    qkv, cu_seqlens, slopes, grad = packed_inputs("cuda")
    attend = torch.compile(flash_attention4, dynamic=True) if compiled else flash_attention4
    out = attend(qkv, HEADS, cu_seqlens, slopes, max(LENGTHS))
    ref = short_attention_reference(qkv.float(), HEADS, cu_seqlens, slopes)
    assert torch.allclose(out.float(), ref, atol=2e-2, rtol=2e-2)  # bf16 inputs and output
    (a,), (b,) = torch.autograd.grad(out, [qkv], grad), torch.autograd.grad(ref, [qkv], grad.float())
    assert torch.allclose(a.float(), b.float(), atol=5e-2, rtol=5e-2)


@pytest.mark.skipif(not torch.cuda.is_available() or flash_attention4_unsupported(torch.device("cuda")) is not None,
                    reason="needs flash-attn-4 and a Hopper or Blackwell GPU")
def test_auto_runs_batches_too_long_for_our_kernel_on_flash_attention4_and_matches_eager():
    from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM
    from efficient_bert.model.mosaic_bert.attention import BackendPlan, plan_backends

    cuda = torch.device("cuda")
    shared_memory = torch.cuda.get_device_properties(cuda).shared_memory_per_block_optin
    assert plan_backends("auto", cuda) == BackendPlan("triton", "flex", "flash_attn", shared_memory)
    # a head dim it cannot take
    assert plan_backends("auto", cuda, head_dim=132) == BackendPlan("triton", "flex", None, shared_memory)
    cfg = dict(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    auto = MosaicBertForMaskedLM(MosaicBertConfig(**cfg, attention="auto")).cuda().eval()
    eager = MosaicBertForMaskedLM(MosaicBertConfig(**cfg, attention="eager")).cuda().eval()
    eager.load_state_dict(auto.state_dict())
    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([300, 129, 40, 7])
    mask = (torch.arange(300)[None] < lengths[:, None]).long()
    ids = (torch.randint(5, 512, (4, 300), generator=g) * mask).cuda()
    mask = mask.cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        out, inputs = auto.bert.encode(ids, mask)
        ref, _ = eager.bert.encode(ids, mask)
    assert inputs.backend == "flash_attn" and inputs.flash_version == 4
    assert torch.allclose(out.float(), ref.float(), atol=5e-2, rtol=5e-2)  # bf16 activations
