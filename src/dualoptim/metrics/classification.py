"""Image-classification metrics of the unlearning papers (SPEC §4.1).

FA, RA, TA: top-1 accuracy (%) on the forget set, the retain set and the test set.
MIA: a membership-inference attack on the prediction entropy :math:`H(p) = -\\sum_c p_c \\log p_c`.
A class-balanced logistic regression learns "member" (retain set, 1) against "non-member" (test
set, 0) from that one feature; MIA is the percentage of the forget set it calls "member". A model
that never saw the forget set scores about what it scores on unseen data.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "accuracy",
    "entropy",
    "evaluate",
    "mia_entropy",
    "mia_svc",
    "predict_probs",
]


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in percent."""
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


def entropy(probs: Tensor) -> Tensor:
    """Prediction entropy :math:`-\\sum_c p_c \\log p_c` per row (0 log 0 = 0)."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)


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


def mia_entropy(retain_entropy: Tensor, test_entropy: Tensor, forget_entropy: Tensor) -> float:
    """Entropy MIA of the tables: % of the forget set that the attack calls "member".

    The attack is a class-balanced logistic regression on the single entropy feature, trained with
    the retain set as members and the test set as non-members.
    """
    from sklearn.linear_model import LogisticRegression

    features = torch.cat([retain_entropy, test_entropy]).double().cpu().numpy().reshape(-1, 1)
    targets = np.concatenate([np.ones(len(retain_entropy)), np.zeros(len(test_entropy))])
    attack = LogisticRegression(class_weight="balanced")
    attack.fit(features, targets)
    predicted = attack.predict(forget_entropy.double().cpu().numpy().reshape(-1, 1))
    return 100.0 * float(predicted.mean())


def mia_svc(
    retain_probs: Tensor,
    retain_labels: Tensor,
    test_probs: Tensor,
    test_labels: Tensor,
    forget_probs: Tensor,
    forget_labels: Tensor,
    max_per_side: int = 2000,
    seed: int = 0,
) -> float:
    """SVC MIA-efficacy of the SalUn paper: % of the forget set an SVC attack calls "non-member".

    Not the number of the tables (that is :func:`mia_entropy`); higher means more forgotten. The
    attack is an RBF SVC on the confidence :math:`p_y` of the true label, trained on up to
    ``max_per_side`` retain (member) and as many test (non-member) examples.
    """
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    n = min(len(retain_labels), len(test_labels), max_per_side)

    def confidence(probs: Tensor, labels: Tensor) -> np.ndarray:
        return probs.gather(1, labels.view(-1, 1)).double().cpu().numpy()

    members = confidence(retain_probs, retain_labels)[rng.choice(len(retain_labels), n, replace=False)]
    non_members = confidence(test_probs, test_labels)[rng.choice(len(test_labels), n, replace=False)]
    attack = SVC(C=3, gamma="auto", kernel="rbf")
    attack.fit(np.concatenate([members, non_members]), np.concatenate([np.ones(n), np.zeros(n)]))
    predicted = attack.predict(confidence(forget_probs, forget_labels))
    return 100.0 * float(1.0 - predicted.mean())


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
