"""Fused GPU kernels where they exist for the architecture: Liger-Kernel (RMSNorm, RoPE, SwiGLU / GeGLU, and fused
linear cross-entropy), an optional extra (`pip install prompt-workbench[cuda]`). Everything here is CUDA-only and
falls back to the eager path (and the chunked loss of `linear_ce`) when there is no GPU or no Liger."""

from __future__ import annotations

import torch


def liger_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import liger_kernel.transformers  # noqa: F401
    except ImportError:
        return False
    return True


def apply_fused_kernels(model: torch.nn.Module) -> bool:
    """Patch Liger's norm, rotary and MLP kernels into the Hugging Face model instance inside `model` (through PEFT's
    wrappers). The loss is not patched here: `fused_linear_cross_entropy` takes it where the workbench computes one,
    after the method's own inputs (a soft prompt) went through the model. Returns whether anything was applied."""
    if not liger_available():
        return False
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    from peft import PeftModel

    inner = model.get_base_model() if isinstance(model, PeftModel) else model  # prefix tuning's wrapper
    try:
        _apply_liger_kernel_to_instance(model=inner, rope=True, rms_norm=True, swiglu=True, geglu=True,
                                        cross_entropy=False, fused_linear_cross_entropy=False)
    except (ValueError, KeyError, NotImplementedError, TypeError):  # an architecture Liger does not cover
        return False
    return True


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               bias: torch.Tensor | None, softcap: float | None) -> torch.Tensor | None:
    """Liger's fused linear cross-entropy on CUDA (mean over `targets`), or None where it does not apply."""
    if hidden.device.type != "cuda" or not liger_available():
        return None
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    loss = LigerFusedLinearCrossEntropyLoss(softcap=softcap) if softcap else LigerFusedLinearCrossEntropyLoss()
    return loss(weight, hidden, targets, bias)
