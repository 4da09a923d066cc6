r"""TOFU unlearning losses (``docs/design.md`` §3.2): forget losses and retain losses, combined by name.

A loss is a function ``(model, batch, reference, beta) -> scalar tensor`` where ``batch`` holds
the padded parts ``"forget"``, ``"forget_idk"``, ``"retain"``, ``"retain_idk"`` (each with
``input_ids``, ``attention_mask`` and ``labels``, labels ``-100`` on the question). The sign of
gradient ascent lives here, never in an optimizer flag. Token NLLs are averaged over answer
tokens; the preference losses (NPO, DPO, AP) use summed log-probabilities, with
:math:`\beta = 0.1` by default.

A method is a forget loss and a retain loss named together, ``"ME+GD"``; :class:`UnlearningLoss`
applies ``forget_coeff`` and ``regularization_coeff``. The reference model that NPO, DPO and KL
need is a frozen copy of the model before unlearning, made once by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.registry import Registry

__all__ = ["FORGET_LOSSES", "NEEDS_REFERENCE", "RETAIN_LOSSES", "TARGETED", "UnlearningLoss", "answer_logprobs", "answer_preference", "direct_preference", "gradient_ascent", "gradient_descent", "idk", "kl_to_reference", "maximum_entropy", "mean_nll", "negative_preference", "parse_loss", "sequence_nll"]

Batch = dict[str, dict[str, Tensor]]
LossFn = Callable[[nn.Module, Batch, "nn.Module | None", float], Tensor]

FORGET_LOSSES: Registry[LossFn] = Registry("forget loss")
RETAIN_LOSSES: Registry[LossFn] = Registry("retain loss")
#: forget losses that need the frozen reference model
NEEDS_REFERENCE = {"NPO", "DPO", "KL"}
#: forget losses that steer towards a target answer (refusals): scored by TFE, not UFE
TARGETED = {"IDK", "DPO"}


# --------------------------------------------------------------------------- building blocks


def answer_logprobs(model: nn.Module, part: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token log-probabilities of the answer: ``(token_logp [B, T-1], mask [B, T-1], logits)``.

    Position t predicts token t+1 (causal shift); ``mask`` is 1 on answer tokens.
    """
    logits = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
    logits = logits[:, :-1].float()
    targets = part["labels"][:, 1:]
    mask = targets.ne(-100)
    token_logp = torch.gather(logits.log_softmax(-1), 2, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return token_logp * mask, mask, logits


def mean_nll(model: nn.Module, part: dict[str, Tensor]) -> Tensor:
    """Cross-entropy averaged over every answer token of the batch (the usual LM loss)."""
    token_logp, mask, _ = answer_logprobs(model, part)
    return -token_logp.sum() / mask.sum().clamp_min(1)


def sequence_nll(model: nn.Module, part: dict[str, Tensor]) -> Tensor:
    """Summed answer NLL of each sequence, shape [B] (for the preference losses)."""
    token_logp, _, _ = answer_logprobs(model, part)
    return -token_logp.sum(-1)


def _reference(reference: nn.Module | None, name: str) -> nn.Module:
    if reference is None:
        raise ValueError(
            f"the {name} loss needs a reference model (a frozen copy of the model before unlearning)"
        )
    return reference


# --------------------------------------------------------------------------- forget losses


@FORGET_LOSSES.register("GA")
def gradient_ascent(model, batch, reference=None, beta=0.1):
    """GA: − NLL(answer_f). Ascending the forget answers' likelihood."""
    return -mean_nll(model, batch["forget"])


@FORGET_LOSSES.register("IDK")
def idk(model, batch, reference=None, beta=0.1):
    """IDK: NLL of a refusal ("I don't know" variant) as the answer to the forget question."""
    return mean_nll(model, batch["forget_idk"])


@FORGET_LOSSES.register("ME")
def maximum_entropy(model, batch, reference=None, beta=0.1):
    r"""ME: mean over answer positions of KL(uniform ‖ p_θ) = −log V − (1/V) Σ_v log p_v."""
    _, mask, logits = answer_logprobs(model, batch["forget"])
    log_p = logits.log_softmax(-1)
    vocab = log_p.shape[-1]
    kl = -math.log(vocab) - log_p.mean(-1)  # KL(U ‖ p) per position
    return (kl * mask).sum() / mask.sum().clamp_min(1)


@FORGET_LOSSES.register("NPO")
def negative_preference(model, batch, reference=None, beta=0.1):
    r"""NPO: −(2/β) mean log σ(β (NLL_θ − NLL_ref)) on the forget answers (summed NLL)."""
    ref = _reference(reference, "NPO")
    nll = sequence_nll(model, batch["forget"])
    with torch.no_grad():
        nll_ref = sequence_nll(ref, batch["forget"])
    return -(2.0 / beta) * F.logsigmoid(beta * (nll - nll_ref)).mean()


@FORGET_LOSSES.register("DPO")
def direct_preference(model, batch, reference=None, beta=0.1):
    r"""DPO with the refusal preferred: −(2/β) mean log σ(β [(log π(idk) − log π(a)) − (ref)])."""
    ref = _reference(reference, "DPO")
    margin = sequence_nll(model, batch["forget"]) - sequence_nll(model, batch["forget_idk"])
    with torch.no_grad():
        margin_ref = sequence_nll(ref, batch["forget"]) - sequence_nll(ref, batch["forget_idk"])
    # log π(idk) − log π(a) = NLL(a) − NLL(idk)
    return -(2.0 / beta) * F.logsigmoid(beta * (margin - margin_ref)).mean()


# --------------------------------------------------------------------------- retain losses


@RETAIN_LOSSES.register("GD")
def gradient_descent(model, batch, reference=None, beta=0.1):
    """GD: NLL(answer_r), the ordinary fine-tuning loss on retain answers."""
    return mean_nll(model, batch["retain"])


@RETAIN_LOSSES.register("KL")
def kl_to_reference(model, batch, reference=None, beta=0.1):
    r"""KL: KL(p_ref ‖ p_θ) averaged over the attended positions of the retain inputs."""
    ref = _reference(reference, "KL")
    part = batch["retain"]
    log_p = (
        model(input_ids=part["input_ids"], attention_mask=part["attention_mask"])
        .logits.float()
        .log_softmax(-1)
    )
    with torch.no_grad():
        log_ref = (
            ref(input_ids=part["input_ids"], attention_mask=part["attention_mask"])
            .logits.float()
            .log_softmax(-1)
        )
    kl = (log_ref.exp() * (log_ref - log_p)).sum(-1)
    mask = part["attention_mask"].to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp_min(1)


@RETAIN_LOSSES.register("AP")
def answer_preference(model, batch, reference=None, beta=0.1):
    r"""AP: −(1/β) mean log σ(β (NLL(idk | q_r) − NLL(a_r | q_r))): true answers above refusals."""
    margin = sequence_nll(model, batch["retain_idk"]) - sequence_nll(model, batch["retain"])
    return -(1.0 / beta) * F.logsigmoid(beta * margin).mean()


# --------------------------------------------------------------------------- combinations


def parse_loss(name: str) -> tuple[str, str]:
    """``"ME+GD"`` -> ``("ME", "GD")``, with errors that list the valid names."""
    parts = name.split("+")
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            f"unknown loss {name!r}: expected FORGET+RETAIN with FORGET in {', '.join(FORGET_LOSSES.names())} "
            f"and RETAIN in {', '.join(RETAIN_LOSSES.names())}"
        )
    forget, retain = parts
    FORGET_LOSSES.get(forget)
    RETAIN_LOSSES.get(retain)
    return forget, retain


@dataclass(frozen=True)
class UnlearningLoss:
    """A forget loss and a retain loss with their weights.

    ``forget(model, batch)`` = forget_coeff · L_f; ``retain(model, batch)`` = regularization_coeff · L_r.
    A joint strategy adds the two in the loop.
    """

    name: str
    forget_coeff: float = 1.0
    regularization_coeff: float = 1.0
    beta: float = 0.1

    def __post_init__(self) -> None:
        parse_loss(self.name)
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")

    @property
    def parts(self) -> tuple[str, str]:
        return parse_loss(self.name)

    @property
    def needs_reference(self) -> bool:
        return any(part in NEEDS_REFERENCE for part in self.parts)

    @property
    def targeted(self) -> bool:
        """True when the forget loss steers towards refusals (scored with TFE; else UFE)."""
        return self.parts[0] in TARGETED

    def forget(self, model: nn.Module, batch: Batch, reference: Any = None) -> Tensor:
        return self.forget_coeff * FORGET_LOSSES.get(self.parts[0])(model, batch, reference, self.beta)

    def retain(self, model: nn.Module, batch: Batch, reference: Any = None) -> Tensor:
        return self.regularization_coeff * RETAIN_LOSSES.get(self.parts[1])(
            model, batch, reference, self.beta
        )
