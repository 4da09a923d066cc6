"""Membership-inference attacks on per-example features, shared by every task (``docs/design.md`` §4.1).

An attack learns "member" against "non-member" from examples the model was trained on (the
retain set) and examples it never saw (the test set), then says how much of the forget set looks
like a member. A model that never saw the forget set scores about what it scores on unseen data.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["entropy", "mia_entropy", "mia_svc"]


def entropy(probs: Tensor) -> Tensor:
    """Prediction entropy :math:`-\\sum_c p_c \\log p_c` per row (0 log 0 = 0)."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)


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
