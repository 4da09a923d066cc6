"""Image-classification metrics of the unlearning papers (``docs/design.md`` §4.1).

FA, RA, TA: top-1 accuracy (%) on the forget set, the retain set and the test set.
MIA: a membership-inference attack on the prediction entropy :math:`H(p) = -\\sum_c p_c \\log p_c`.
A class-balanced logistic regression learns "member" (retain set, 1) against "non-member" (test
set, 0) from that one feature; MIA is the percentage of the forget set it calls "member". A model
that never saw the forget set scores about what it scores on unseen data.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dualoptim.metrics.mia import entropy, mia_entropy, mia_svc

__all__ = ["accuracy", "evaluate", "predict_probs"]


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in percent."""
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


@torch.no_grad()
def predict_probs(model: nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    """Softmax outputs of ``model`` in eval mode (no augmentation), in batches."""
    was_training = model.training
    model.eval()
    try:
        outputs = [
            torch.softmax(model(images[i : i + batch_size]).float(), dim=1)
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)


def evaluate(
    model: nn.Module,
    forget: tuple[Tensor, Tensor],
    retain: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    *,
    svc: bool = False,
) -> dict[str, float]:
    """FA, RA, TA and the entropy MIA (and ``MIA-SVC`` efficacy when ``svc``) of ``model``.

    Each argument is an (images, labels) pair.
    """
    probs = {
        name: predict_probs(model, images)
        for name, (images, _) in (("forget", forget), ("retain", retain), ("test", test))
    }
    metrics = {
        "FA": accuracy(probs["forget"], forget[1]),
        "RA": accuracy(probs["retain"], retain[1]),
        "TA": accuracy(probs["test"], test[1]),
        "MIA": mia_entropy(entropy(probs["retain"]), entropy(probs["test"]), entropy(probs["forget"])),
    }
    if svc:
        metrics["MIA-SVC"] = mia_svc(
            probs["retain"], retain[1], probs["test"], test[1], probs["forget"], forget[1]
        )
    return metrics
