"""``dualoptim unlearn`` for causal LMs: forget a user's rows from a ``save_pretrained`` model.

:func:`unlearn_llm` reads forget, retain and (optionally) held-out rows from JSON Lines files,
each row ``{"question", "answer"}`` or ``{"messages": [{"role", "content"}, ...]}`` ending with the
assistant's answer. Prompts use the tokenizer's chat template when it has one, TOFU's
``Question: ... Answer:`` tags otherwise. Unlearning runs the task's Trainer
(:class:`~dualoptim.llm.trainer.UnlearningTrainer`) with a loss of :mod:`~dualoptim.llm.losses`
and a strategy of the registry, saving a checkpoint every ``checkpoint_every`` steps from which
an interrupted request resumes. The model is saved with ``save_pretrained`` and audited
(:mod:`dualoptim.audit`) on answer probability, ROUGE-L, the answer loss and Min-K% probability.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualoptim.audit import (
    SetScores,
    atomic_folder,
    build_audit,
    parse_requirements,
    sha256_file,
    sha256_ids,
    sha256_path,
    write_audit,
)
from dualoptim.audit.record import load_scores, scores_to_json
from dualoptim.config import option
from dualoptim.devices import resolve_device, set_threads
from dualoptim.io import write_text_atomic
from dualoptim.llm.data import (
    QAFormat,
    TofuSplit,
    UnlearningCollator,
    UnlearningDataset,
    encode_qa,
    pad_batch,
)
from dualoptim.llm.facts import (
    greedy_matches,
    informative_token_mask,
    informative_words,
    question_text,
    words,
)
from dualoptim.llm.losses import UnlearningLoss, answer_logprobs
from dualoptim.llm.metrics import rouge_l_recall
from dualoptim.runs import environment, stable_hash
from dualoptim.schedule import Schedule
from dualoptim.strategies import check_strategy

__all__ = ["ConversationFormat", "LLMRequest", "PRIMARY", "audit_llm", "default_schedule", "min_k_scores", "read_rows", "score_rows", "unlearn_llm"]

#: the headline metric of a causal LM's audit: the probability of the answer's informative tokens
PRIMARY = "fact_probability"

#: refusals the IDK and DPO losses steer forget questions towards
REFUSALS = ("I don't know.", "I'm not able to answer that.", "I have no information about that.",
            "That is not something I can tell you.", "I can't answer that question.")  # fmt: skip


@dataclass
class LLMRequest:
    """A deletion request on a causal LM: ``dualoptim unlearn``'s options for language models."""

    model: str = option("a transformers folder (save_pretrained) or hub id of a causal LM", "")
    forget: str | None = option("JSONL of rows to forget: {question, answer} or {messages: [...]}", None)
    retain: str | None = option("JSONL of rows to keep (the retain loss and the utility audit)", None)
    heldout: str | None = option("JSONL of rows not in the forget or retain sets, the audit's control", None)
    heldout_unseen: bool = option("you know the model never saw the held-out rows (else they are described as data "
                                  "not in the forget or retain sets)", False)
    method: str = option("FORGET+RETAIN losses: GA, IDK, ME, NPO, DPO + GD, KL, AP", "NPO+GD")
    strategy: str = option(
        "joint | alternate (one rate: --forget-lr must equal --lr) | alternate-2lr | dual | dual+ | dual+-ref | "
        "dual-8bit | dual+-8bit",
        "dual",
    )
    epochs: int | None = option("passes over the forget set (each forget step followed by retain_steps retain steps); "
                                "default: from the model size (default_schedule)", None)
    steps: int | None = option("total optimizer steps instead of epochs", None)
    retain_steps: int = option("retain steps after each forget step", 5)
    forget_lr: float | None = option("forget learning rate (default: from the model size, default_schedule)", None)
    lr: float | None = option("retain learning rate (default: from the model size, default_schedule)", None)
    beta: float = option("beta of NPO, DPO and AP", 0.1)
    batch_size: int = option("rows per step", 8)
    max_length: int = option("tokens per prompt + answer", 256)
    max_new_tokens: int = option("longest greedy answer generated for ROUGE", 64)
    min_k: float = option("Min-K% probability: the share of lowest-probability answer tokens averaged", 0.2)
    device: str = option("cpu | cuda | auto", "auto")
    threads: int | None = option("torch CPU threads", None)
    eval_examples: int = option("rows per set scored for the audit (the first N)", 200)
    checkpoint_every: int = option("save a resumable Trainer checkpoint every N steps", 50)
    seed: int = option("seed of the data order", 0)
    bootstrap: int = option("bootstrap resamples of each MIA AUC", 1000)
    require: list[str] = option("audit thresholds, e.g. mia_auc<=0.6,retain_drop<=5 (exit 3 when one fails)", factory=list)
    probes: list[str] = option("robustness probes of the audit: relearn, int8, 4bit (docs/design.md §7.5)", factory=list)
    stop_when: list[str] = option("stop early: forget (the forget rows' mean answer loss reached the held-out rows'), "
                                  "retain (the retain answer probability fell by more than retain_budget points)", factory=list)
    stop_every: int = option("check the stop_when conditions every N optimizer steps", 10)
    retain_budget: float = option("stop_when retain: the largest retain answer-probability drop allowed, in points", 5.0)
    relearn_steps: int = option("relearn probe: fine-tuning steps (batch_size rows each)", 5)
    relearn_rows: int = option("relearn probe: forget rows it trains on (the other forget rows are scored)", 4)
    relearn_lr: float = option("relearn probe: AdamW learning rate", 1e-5)


@dataclass(frozen=True)
class ConversationFormat(QAFormat):
    """:class:`QAFormat` that also takes a conversation (a list of messages) as the question."""

    def prompt(self, question: Any, tokenizer: Any = None) -> str:
        if isinstance(question, str):
            return super().prompt(question, tokenizer)
        if self.uses_chat_template(tokenizer):
            return tokenizer.apply_chat_template(list(question), add_generation_prompt=True, tokenize=False)
        text = []
        for message in question:
            if message["role"] == "assistant":
                text.append(f"{self.answer_start}{self.answer_prefix}{message['content']}\n")
            else:  # user and system turns are both context the answer follows
                text.append(f"{self.question_start}{message['content']}{self.question_end}")
        return "".join(text) + self.answer_start


def _row(raw: Any, where: str) -> dict[str, Any]:
    expected = ('a row needs "question" and "answer" strings, or "messages": a list of {"role", "content"} '
                "ending with an assistant message")  # fmt: skip
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {expected}; got {type(raw).__name__}")
    paraphrases = raw.get("paraphrases", [])
    if not isinstance(paraphrases, list) or not all(isinstance(p, str) and p.strip() for p in paraphrases):
        raise ValueError(f"{where}: \"paraphrases\" must be a list of non-empty strings (reworded questions), got {paraphrases!r}"[:300])
    if isinstance(raw.get("question"), str) and isinstance(raw.get("answer"), str):
        return {"question": raw["question"], "answer": raw["answer"], "paraphrases": paraphrases}
    messages = raw.get("messages")
    if isinstance(messages, list) and messages and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            raise ValueError(f"{where}: the last message must be the assistant's answer after at least one other message")
        return {"question": [dict(m) for m in messages[:-1]], "answer": messages[-1]["content"], "paraphrases": paraphrases}
    raise ValueError(f"{where}: {expected}; got keys {sorted(raw)}")


def read_rows(path: str | os.PathLike[str], what: str) -> list[dict[str, Any]]:
    """The rows of a JSONL file, each ``{"question", "answer", "id", "line"}`` (question: text or messages)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {number} is not JSON: {error.msg}") from None
            row = _row(raw, f"{path} line {number}")
            # a row's id: its own "id" field, else a hash of what it says
            text = json.dumps([row["question"], row["answer"]], sort_keys=True)
            row["id"] = str(raw.get("id", hashlib.sha256(text.encode()).hexdigest()[:16]))
            row["line"] = number
            rows.append(row)
    if not rows:
        raise ValueError(f"the {what} set {path} is empty")
    return rows


def _normalised_question(question: Any) -> str:
    """A question's user text as lower-case words: a system turn or punctuation does not make it another question."""
    if not isinstance(question, str):
        users = [m["content"] for m in question if m.get("role") == "user"]
        question = users[-1] if users else question_text(question)
    return " ".join(words(question))


def _check_sets(forget: list[dict], retain: list[dict], heldout: list[dict] | None) -> None:
    seen: dict[str, int] = {}
    for row in forget:
        if row["id"] in seen:
            raise ValueError(f"the forget set repeats a row: lines {seen[row['id']]} and {row['line']}")
        seen[row["id"]] = row["line"]
    # the same question, whatever the row format (a chat row here, a question/answer row there)
    asked = {_normalised_question(row["question"]) for row in forget}
    for name, rows in (("retain", retain), ("held-out", heldout or [])):
        both = [r["line"] for r in rows if r["id"] in seen or _normalised_question(r["question"]) in asked]
        if both:
            raise ValueError(f"{len(both)} {name} row(s) are also in the forget set (lines {', '.join(map(str, both[:5]))})")


@torch.no_grad()
def min_k_scores(token_logp: torch.Tensor, mask: torch.Tensor, k: float) -> torch.Tensor:
    """Min-K% probability (Shi et al., 2024): per row, the mean of its ``k`` lowest answer-token log-probabilities."""
    scores = []
    for logp, keep in zip(token_logp, mask):
        values = logp[keep]
        count = max(1, math.ceil(k * len(values)))
        scores.append(values.sort().values[:count].mean() if len(values) else torch.tensor(float("nan")))
    return torch.stack(scores)


@torch.no_grad()
def score_rows(
    model: Any, tokenizer: Any, fmt: QAFormat, rows: Sequence[dict], request: LLMRequest,
    informative: Sequence[set[str]] | None = None,
) -> SetScores:  # fmt: skip
    """Whole-answer and fact-level measures of each row (percent, :mod:`~dualoptim.llm.facts`), the
    per-row answer NLL, and the loss and Min-K% attack scores.

    ``informative``: the informative words of each row (default: computed from ``rows``, the
    template being the words shared by the set's other answers). Rows with ``paraphrases`` are also
    scored with each rewording as the question (``extra``: how many facts survive rewording).
    """
    from dualoptim.llm.evaluate import generate

    if informative is None:
        informative = informative_words([r["answer"] for r in rows], [r["question"] for r in rows])
    was_training = model.training
    model.eval()
    nll, min_k, fact_logp = [], [], []
    try:
        for begin, encoded, token_logp, mask in _answer_logprob_batches(model, tokenizer, fmt, rows, request):
            nll.append((-token_logp.sum(1) / mask.sum(1).clamp_min(1)).cpu())
            min_k.append(min_k_scores(token_logp, mask, request.min_k).cpu())
            for i, example in enumerate(encoded):
                answer_ids = [t for t in example["labels"] if t != -100]
                keep = torch.tensor(informative_token_mask(tokenizer, answer_ids, informative[begin + i]), dtype=torch.bool)
                values = token_logp[i][mask[i]].cpu()
                chosen = values[keep[: len(values)]] if keep[: len(values)].any() else values
                fact_logp.append(float(chosen.mean()) if len(chosen) else float("nan"))
        answers = generate(model, tokenizer, fmt, [r["question"] for r in rows], request.max_new_tokens, request.batch_size)
    finally:
        model.train(was_training)
    loss = torch.cat(nll).double().numpy()
    matches = [greedy_matches(text, r["answer"], words_) for (text, _), r, words_ in zip(answers, rows, informative)]
    per_example = {
        "probability": 100.0 * np.exp(-loss),
        "rouge": 100.0 * np.array([rouge_l_recall(text, r["answer"]) for (text, _), r in zip(answers, rows)]),
        "fact_probability": 100.0 * np.exp(np.array(fact_logp)),
        **{name: 100.0 * np.array([m[name] for m in matches]) for name in ("fact_rouge", "exact_match", "contains_match", "fact_match")},
    }
    extra = _paraphrase_scores(model, tokenizer, fmt, rows, request, informative)
    return SetScores(
        metrics={name: float(np.mean(values)) for name, values in per_example.items()},
        loss=loss,
        attacks={"loss": -loss, "min_k": torch.cat(min_k).double().numpy()},
        per_example=per_example,
        extra=extra,
    )


@torch.no_grad()
def answer_nll(model: Any, tokenizer: Any, fmt: QAFormat, rows: Sequence[dict], request: LLMRequest) -> np.ndarray:
    """Per-row mean answer NLL (no generation: the cheap check of ``stop_when``)."""
    was_training = model.training
    model.eval()
    try:
        nll = [(-logp.sum(1) / mask.sum(1).clamp_min(1)).cpu()
               for _, _, logp, mask in _answer_logprob_batches(model, tokenizer, fmt, rows, request)]  # fmt: skip
    finally:
        model.train(was_training)
    return torch.cat(nll).double().numpy()


def _answer_logprob_batches(model: Any, tokenizer: Any, fmt: QAFormat, rows: Sequence[dict], request: LLMRequest):
    """``(index of the batch's first row, its encoded rows, per-token answer log-probs, answer mask)``
    for each batch of ``rows``: the one forward pass the audit's scores and the cheap check share."""
    device = next(model.parameters()).device
    for begin in range(0, len(rows), request.batch_size):
        chunk = rows[begin : begin + request.batch_size]
        encoded = [encode_qa(tokenizer, r["question"], r["answer"], fmt, request.max_length) for r in chunk]
        batch = {k: v.to(device) for k, v in pad_batch(encoded, tokenizer.pad_token_id).items()}
        token_logp, mask, _ = answer_logprobs(model, batch)
        yield begin, encoded, token_logp, mask


def check_rank(check: dict[str, Any], budget: float) -> tuple[int, float]:
    """How a checked step ranks for the saved model (larger is better; docs/design.md §7.6).

    Out of the retain budget (``retain_drop > budget``): ``(0, -retain_drop)``, below every step
    within it. Within it, a step whose forget criterion is met (the forget rows' mean answer loss
    reached the held-out rows') ranks by the smallest retain drop, ``(2, -retain_drop)``; one that
    is not ranks by its forget score, ``(1, forget_gap)``, the forget minus held-out mean answer
    loss in nats (the forget loss alone without a held-out set), nearest to meeting the criterion.
    """
    if check["retain_drop"] > budget:
        return (0, -check["retain_drop"])
    if check.get("forget_met"):
        return (2, -check["retain_drop"])
    return (1, check["forget_gap"])


def _checkpoint_callback(request: LLMRequest, tokenizer: Any, fmt: QAFormat, audit_rows: dict[str, list[dict]],
                         before: dict[str, SetScores], folder: Path):  # fmt: skip
    """A Trainer callback that checks the model every ``stop_every`` steps, keeps the best-ranked
    step's weights (:func:`check_rank`) in ``folder/best.pt`` (replacing the previous best, so that
    with the Trainer's one resumable checkpoint, the last, at most two are on disk) and ends
    unlearning once a ``stop_when`` condition holds. Its checks are kept in ``folder/checks.json``
    so that a resumed request ranks against the steps taken before it was interrupted."""
    from transformers import TrainerCallback

    retain_before = float(np.mean(np.exp(-before["retain"].loss))) * 100.0
    checks_file, best_file = folder / "checks.json", folder / "best.pt"

    class CheckAndStop(TrainerCallback):
        stopped: dict[str, Any] | None = None

        def __init__(self) -> None:
            saved = json.loads(checks_file.read_text()) if checks_file.is_file() and best_file.is_file() else {}
            self.checks: list[dict[str, Any]] = saved.get("checks", [])
            self.best: dict[str, Any] | None = saved.get("best")

        def check(self, model: Any, step: int) -> dict[str, Any]:
            """The forget and retain measures of ``model`` at ``step`` (answer losses only, no generation)."""
            forget = float(np.mean(answer_nll(model, tokenizer, fmt, audit_rows["forget"], request)))
            retain = float(np.mean(np.exp(-answer_nll(model, tokenizer, fmt, audit_rows["retain"], request)))) * 100.0
            check: dict[str, Any] = {"step": step, "forget_loss": forget, "retain_drop": retain_before - retain}
            if "heldout" in audit_rows:
                heldout = float(np.mean(answer_nll(model, tokenizer, fmt, audit_rows["heldout"], request)))
                check.update(heldout_loss=heldout, forget_gap=forget - heldout, forget_met=forget >= heldout)
            else:
                check.update(forget_gap=forget, forget_met=None)
            # a resumed request checks again the steps after its checkpoint: the new check replaces the old
            self.checks = [c for c in self.checks if c["step"] != step] + [check]
            return check

        def ranks_above(self, check: dict[str, Any], other: dict[str, Any] | None) -> bool:
            return other is None or check_rank(check, request.retain_budget) > check_rank(other, request.retain_budget)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if model is None or state.global_step % request.stop_every:
                return
            check = self.check(model, state.global_step)
            if self.ranks_above(check, self.best) or (self.best and self.best["step"] == check["step"]):
                # the weights of the best step so far replace the previous best's (written whole, then renamed)
                partial = best_file.with_suffix(".partial")
                torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, partial)
                os.replace(partial, best_file)
                self.best = check
            write_text_atomic(checks_file, json.dumps({"checks": self.checks, "best": self.best}))
            if "forget" in request.stop_when and check["forget_met"]:
                self.stopped = {"step": state.global_step, "reason": f"forget answer loss {check['forget_loss']:.4f} reached the "
                                f"held-out rows' {check['heldout_loss']:.4f} nats"}  # fmt: skip
            elif "retain" in request.stop_when and check["retain_drop"] > request.retain_budget:
                self.stopped = {"step": state.global_step, "reason": f"retain answer probability fell {check['retain_drop']:.2f} "
                                f"points (> retain_budget {request.retain_budget:g})"}  # fmt: skip
            if self.stopped is not None:
                control.should_training_stop = True

        def choose(self, model: Any, step: int) -> dict[str, Any]:
            """Which weights are the saved model: the best-ranked checked step, or the last (``model`` as it is)."""
            last = next((c for c in self.checks if c["step"] == step), None) or self.check(model, step)
            if self.best is None or self.best["step"] == step or not self.ranks_above(self.best, last):
                return {"checkpoint": "last", "step": step, "check": last, "checks": self.checks,
                        "why": "the last step ranks at least as high as every checked step"}  # fmt: skip
            return {"checkpoint": "best", "step": self.best["step"], "check": self.best, "last": last, "checks": self.checks,
                    "why": _why_best(self.best, last, request.retain_budget)}  # fmt: skip

    return CheckAndStop()


def _why_best(best: dict[str, Any], last: dict[str, Any], budget: float) -> str:
    """Why the best checked step, not the last, is the saved model (one clause of the audit)."""
    if best["retain_drop"] > budget:
        return (f"every checked step spent more than the retain budget ({budget:g} points); step {best['step']} "
                f"the least ({best['retain_drop']:.2f}, the last {last['retain_drop']:.2f})")  # fmt: skip
    if last["retain_drop"] > budget >= best["retain_drop"]:
        return f"the last step spent more than the retain budget ({last['retain_drop']:.2f} > {budget:g} points)"
    if best.get("forget_met") and last.get("forget_met"):
        return f"both meet the forget criterion; step {best['step']} with the smaller retain drop"
    if best.get("forget_met"):
        return f"step {best['step']} meets the forget criterion, the last step does not"
    return f"step {best['step']} has the better forget score within the retain budget"


def _reworded(question: Any, paraphrase: str) -> Any:
    """The question with its text replaced by ``paraphrase`` (a conversation's last user turn)."""
    if isinstance(question, str):
        return paraphrase
    messages = [dict(m) for m in question]
    last = max(i for i, m in enumerate(messages) if m["role"] == "user") if any(m["role"] == "user" for m in messages) else -1
    messages[last]["content"] = paraphrase
    return messages


def _paraphrase_scores(model, tokenizer, fmt, rows, request, informative) -> dict[str, Any]:
    """Each paraphrase scored like its original; a fact survives when some rewording's greedy answer holds it."""
    pairs = [(i, p) for i, r in enumerate(rows) for p in r.get("paraphrases") or ()]
    if not pairs:
        return {}
    reworded = [{"question": _reworded(rows[i]["question"], p), "answer": rows[i]["answer"]} for i, p in pairs]
    scores = score_rows(model, tokenizer, fmt, reworded, request, [informative[i] for i, _ in pairs])
    survived = {i for (i, _), hit in zip(pairs, scores.per_example["fact_match"]) if hit > 0}
    return {"paraphrases": len(pairs), "facts_with_paraphrases": len({i for i, _ in pairs}),
            "paraphrase_survivors": len(survived), "paraphrase_fact_probability": scores.metrics["fact_probability"],
            "paraphrase_fact_match": scores.metrics["fact_match"]}  # fmt: skip


#: default_schedule's constants, measured by benchmarks/unlearn_defaults.py (docs/unlearn.md, "LLM defaults")
RATE_SCALE = 0.5
RATE_RANGE = (1e-5, 3e-3)
DEFAULT_PASSES = 10


def default_schedule(parameters: int, forget_rows: int) -> dict[str, float | int]:
    """The learning rates and passes of a request that sets none (docs/unlearn.md, "LLM defaults").

    ``forget_lr = lr = clip(RATE_SCALE / sqrt(parameters), *RATE_RANGE)``: the rate at which the
    measured models met the audit's headline with the smallest retain drop (1e-3 at 0.11 M
    parameters, 3e-4 at 2.7 M) fell about as the inverse square root of the parameter count. The
    scale 0.5 is the large model's best (3e-4) and inside the small one's passing range (1e-3 to
    3e-3; a scale of 0.4 left the large model short of the forget criterion in 10 passes). It gives
    4.3e-5 at 135 M, 1.6e-5 at 1 B and the clip's 1e-5, the papers' rate, for 2-7 B models. ``epochs = DEFAULT_PASSES`` passes over the forget rows,
    a cap that ``--stop-when forget`` ends early; the steps follow the request's size,
    ``epochs * ceil(forget_rows / batch_size) * (1 + retain_steps)``.
    """
    if parameters < 1 or forget_rows < 1:
        raise ValueError(f"default_schedule needs a model and forget rows, got {parameters} parameters and {forget_rows} rows")
    low, high = RATE_RANGE
    rate = min(high, max(low, RATE_SCALE / math.sqrt(parameters)))
    return {"forget_lr": float(f"{rate:.2g}"), "lr": float(f"{rate:.2g}"), "epochs": DEFAULT_PASSES}


def validate(request: LLMRequest) -> None:
    """Fail before any loading, naming the bad value."""
    for name in ("model", "forget", "retain"):
        if not getattr(request, name):
            raise ValueError(f"--{name} is required for a causal LM")
    UnlearningLoss(request.method, beta=request.beta)
    for name in ("epochs", "batch_size", "max_length", "checkpoint_every", "eval_examples", "bootstrap", "retain_steps"):
        if getattr(request, name) is not None and getattr(request, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(request, name)}")
    if request.steps is not None and request.steps < 1:
        raise ValueError(f"steps must be >= 1, got {request.steps}")
    if not 0.0 < request.min_k <= 1.0:
        raise ValueError(f"min_k must be in (0, 1], got {request.min_k}")
    check_strategy(request.strategy, _settings(request))
    parse_requirements(request.require)
    _check_probe_options(request)
    _check_stop_options(request)


def _check_stop_options(request: LLMRequest) -> None:
    for name in request.stop_when:
        if name not in ("forget", "retain"):
            raise ValueError(f"unknown stop_when condition {name!r}; valid: forget, retain")
    if "forget" in request.stop_when and not request.heldout:
        raise ValueError("stop_when forget compares the forget rows with the held-out rows: give --heldout")
    if request.stop_every < 1:
        raise ValueError(f"stop_every must be >= 1, got {request.stop_every}")
    if not request.retain_budget > 0:
        raise ValueError(f"retain_budget must be > 0 points, got {request.retain_budget}")


def _check_probe_options(request: LLMRequest) -> None:
    from dualoptim.audit.probes import check_probes

    for name in ("relearn_steps", "relearn_rows"):
        if getattr(request, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(request, name)}")
    if not request.relearn_lr > 0:
        raise ValueError(f"relearn_lr must be > 0, got {request.relearn_lr}")
    check_probes(list(request.probes), heldout=bool(request.heldout), device_type=resolve_device(request.device).type)


def _settings(request: LLMRequest):
    from dualoptim.llm.trainer import DEFAULT_SETTINGS

    # before the model is loaded (validate) an unset rate is checked as the trainer's default
    return dataclasses.replace(DEFAULT_SETTINGS, forget_lr=request.forget_lr or DEFAULT_SETTINGS.forget_lr,
                               retain_lr=request.lr or DEFAULT_SETTINGS.retain_lr)


def unlearn_llm(
    request: LLMRequest,
    out: str | os.PathLike[str],
    *,
    progress_bar: bool = True,
    command: list[str] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Carry out ``request`` (see the module docstring); write the model and the audit into ``out``; return the audit."""
    from transformers import TrainingArguments

    from dualoptim.llm.models import load_pretrained
    from dualoptim.llm.trainer import UnlearningTrainer

    started = time.perf_counter()
    validate(request)
    if not progress_bar:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # loading and saving shards draw bars of their own
    requirements = parse_requirements(request.require)
    set_threads(request.threads)
    env = environment(command)
    device = resolve_device(request.device)
    out = Path(out)
    forget = read_rows(request.forget, "forget")
    retain = read_rows(request.retain, "retain")
    heldout = read_rows(request.heldout, "held-out") if request.heldout else None
    _check_sets(forget, retain, heldout)
    if heldout is None and any(r.criterion.startswith(("mia", "ks", "heldout")) for r in requirements):
        raise ValueError("--require names a held-out criterion but there is no held-out set (give --heldout)")

    if Path(request.model).exists():
        source, target = Path(request.model).resolve(), (out / "model").resolve()
        if source == target or source in target.parents or target in source.parents:
            raise ValueError(f"--out {out} would overwrite the input model {request.model}: choose another folder")
    model, tokenizer = load_pretrained(request.model, pad_token="eos")
    fmt = ConversationFormat(chat_template=bool(getattr(tokenizer, "chat_template", None)))
    model.to(device)
    parameters = sum(p.numel() for p in model.parameters())
    rule = default_schedule(parameters, len(forget))
    chosen = {k: v for k, v in rule.items() if k in ("forget_lr", "lr", "epochs") and getattr(request, k) is None}
    request = dataclasses.replace(request, **chosen)
    sets = {"forget": forget, "retain": retain, **({"heldout": heldout} if heldout else {})}
    audit_rows = {name: rows[: request.eval_examples] for name, rows in sets.items()}
    if chosen:
        log(f"from the model size ({parameters:,} parameters, docs/unlearn.md 'LLM defaults'): "
            + ", ".join(f"{k} {v:g}" for k, v in chosen.items()))
    log(f"forget {len(forget)}, retain {len(retain)}, held-out {len(heldout) if heldout else 0} rows; "
        f"{request.method}/{request.strategy} on {device}; prompts: {'chat template' if fmt.chat_template else 'TOFU tags'}")  # fmt: skip
    informative = {name: informative_words([r["answer"] for r in rows], [r["question"] for r in rows])
                   for name, rows in audit_rows.items()}  # fmt: skip
    input_sha = sha256_path(request.model) if Path(request.model).exists() else None
    key = stable_hash({"request": _trajectory_options(request), "input": input_sha, "forget": sha256_file(request.forget),
                       "retain": sha256_file(request.retain)})  # fmt: skip
    checkpoints = out / ".checkpoints"
    key_file = checkpoints / "request-key"
    if checkpoints.exists() and (not key_file.is_file() or key_file.read_text() != key):
        shutil.rmtree(checkpoints)  # checkpoints of another request: never resume from them
    checkpoints.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
    # the "before" scores of this request, cached beside its checkpoints: a resumed run does not score them again
    scoring = stable_hash({"key": key, "heldout": sha256_file(request.heldout) if request.heldout else None,
                           "scoring": [request.eval_examples, request.max_new_tokens, request.min_k, request.max_length]})  # fmt: skip
    cache = checkpoints / f"before-{scoring}.json"
    before = load_scores(cache)
    before_cached = before is not None
    if before is None:
        before = {name: score_rows(model, tokenizer, fmt, rows, request, informative[name]) for name, rows in audit_rows.items()}
        write_text_atomic(cache, json.dumps({name: scores_to_json(s) for name, s in before.items()}))

    loss = UnlearningLoss(request.method, beta=request.beta)
    forget_steps = math.ceil(len(forget) / request.batch_size)
    period = 1 + request.retain_steps
    steps = request.steps if request.steps is not None else request.epochs * forget_steps * period
    schedule = Schedule(max(1, math.ceil(steps / period)), forget_steps=1, retain_steps=request.retain_steps)
    split = TofuSplit("request", "1", forget, retain, list(REFUSALS), {})
    dataset = UnlearningDataset(tokenizer, split, fmt, request.max_length, request.seed)
    args = TrainingArguments(
        output_dir=str(checkpoints), max_steps=steps, per_device_train_batch_size=request.batch_size,
        lr_scheduler_type="constant", max_grad_norm=1.0, seed=request.seed, save_strategy="steps",
        save_steps=request.checkpoint_every, save_total_limit=1, logging_strategy="no", report_to="none", disable_tqdm=not progress_bar,
        dataloader_pin_memory=device.type == "cuda", remove_unused_columns=False, use_cpu=device.type == "cpu",
    )  # fmt: skip
    model.train()
    stopper = _checkpoint_callback(request, tokenizer, fmt, audit_rows, before, checkpoints) if request.stop_when else None
    trainer = UnlearningTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=UnlearningCollator(tokenizer.pad_token_id),
        loss=loss, strategy=request.strategy, optimizer_settings=_settings(request), schedule=schedule,
        callbacks=[stopper] if stopper else None,
    )  # fmt: skip
    tick = time.perf_counter()
    resume = any(checkpoints.glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    unlearn_seconds = time.perf_counter() - tick
    model.eval()

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    # the saved model: without stop_when the last step; with it the best-ranked checked step (check_rank),
    # the last one then kept beside it as last-model (not audited: `dualoptim audit` audits it)
    saved = stopper.choose(model, trainer.state.global_step) if stopper else {"checkpoint": "last", "step": trainer.state.global_step,
                                                                             "why": "no stop_when: nothing ranks the steps"}  # fmt: skip
    shutil.rmtree(out / "last-model", ignore_errors=True)
    if saved["checkpoint"] == "best":
        atomic_folder(out / "last-model", save)
        model.load_state_dict(torch.load(checkpoints / "best.pt", weights_only=True))
        saved["last_model"] = "last-model"
    after = {name: score_rows(model, tokenizer, fmt, rows, request, informative[name]) for name, rows in audit_rows.items()}
    model_path = atomic_folder(out / "model", save)
    objectives = [objective for _, objective in trainer.objective_log]
    record = {
        "task": "causal language model",
        "model": {"source": request.model, "format": "huggingface (save_pretrained)", "input_sha256": input_sha,
                  "output": "model", "output_sha256": sha256_path(model_path)},
        "data": f"forget {request.forget}, retain {request.retain}, held-out {request.heldout}",
        "forget": {"source": f"rows of {request.forget}", "ids_sha256": sha256_ids(r["id"] for r in forget),
                   "file_sha256": sha256_file(request.forget), "first_ids": [r["id"] for r in forget[:10]]},
        "counts": {"forget": len(forget), "retain": len(retain), "heldout": len(heldout or []),
                   "scored": {name: len(rows) for name, rows in audit_rows.items()}},
        "method": request.method,
        "strategy": request.strategy,
        "steps": trainer.state.global_step,
        "saved_model": saved,
        "settings": {"forget_lr": request.forget_lr, "planned_steps": steps, "parameters": parameters,
                     "from_default_schedule": sorted(chosen),
                     "stopped_early": stopper.stopped if stopper else None, "lr": request.lr, "batch_size": request.batch_size,
                     "retain_steps_per_forget_step": request.retain_steps, "beta": request.beta, "seed": request.seed,
                     "prompt_format": "chat template" if fmt.chat_template else "TOFU tags", "device": str(device),
                     "resumed": resume, "before_cached": before_cached, "steps_this_call": {o: objectives.count(o) for o in ("forget", "retain", "joint")}},
        "options": dataclasses.asdict(request),
        "unlearn_seconds": unlearn_seconds,
        "seconds": time.perf_counter() - started,
        "environment": env,
    }  # fmt: skip
    audit = build_audit(request=record, before=before, after=after, primary=PRIMARY, requirements=requirements,
                        seed=request.seed, bootstrap=request.bootstrap, heldout_unseen=request.heldout_unseen)  # fmt: skip
    if request.probes:
        audit["probes"] = run_probes(model, tokenizer, fmt, audit_rows, informative, request, after, model_path)
    losses = {when: {name: s.loss for name, s in scores.items()} for when, scores in (("before", before), ("after", after))}
    write_audit(audit, out, losses)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return audit


def run_probes(model: Any, tokenizer: Any, fmt: QAFormat, audit_rows: dict[str, list[dict]],
               informative: dict[str, list[set[str]]], request: LLMRequest, after: dict[str, SetScores],
               folder: str | os.PathLike[str]) -> dict[str, Any]:  # fmt: skip
    """The robustness probes of ``request.probes`` on a copy of ``model`` (saved in ``folder``), :mod:`dualoptim.audit.probes`."""
    import copy

    from dualoptim.audit.probes import compare_return
    from dualoptim.llm.losses import mean_nll

    probed_sets = ("forget", "heldout")

    def rescore(m: Any) -> dict[str, SetScores]:
        return {n: score_rows(m, tokenizer, fmt, audit_rows[n], request, informative[n]) for n in probed_sets}

    def relearn(rows: list[dict]) -> dict[str, SetScores]:
        m = copy.deepcopy(model)
        m.train()
        device = next(m.parameters()).device
        optimizer = torch.optim.AdamW(m.parameters(), lr=request.relearn_lr)
        encoded = [encode_qa(tokenizer, r["question"], r["answer"], fmt, request.max_length) for r in rows]
        for step in range(request.relearn_steps):
            begin = (step * request.batch_size) % len(encoded)
            chunk = (encoded + encoded)[begin : begin + min(request.batch_size, len(encoded))]
            batch = {k: v.to(device) for k, v in pad_batch(chunk, tokenizer.pad_token_id).items()}
            optimizer.zero_grad()
            mean_nll(m, batch).backward()
            optimizer.step()
        m.eval()
        return rescore(m)

    results: dict[str, Any] = {}
    if "relearn" in request.probes:
        steps = f"{request.relearn_steps} AdamW steps (lr {request.relearn_lr:g}, {request.batch_size} rows each)"
        results["relearn on the retain set"] = compare_return(after, relearn(audit_rows["retain"]), PRIMARY,
                                                              f"{steps} on the retain set")  # fmt: skip
        shown = min(request.relearn_rows, len(audit_rows["forget"]) - 1)
        if shown >= 1:
            few_steps = f"{request.relearn_steps} AdamW steps (lr {request.relearn_lr:g}, {min(shown, request.batch_size)} rows each)"
            results["relearn on a few forget rows"] = compare_return(
                after, relearn(audit_rows["forget"][:shown]), PRIMARY,
                f"{few_steps} on {shown} forget rows; the other {len(audit_rows['forget']) - shown} forget rows scored", exclude=shown)
    if "int8" in request.probes:
        import warnings

        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # torch.ao.quantization warns of its move to torchao; it still works
            warnings.simplefilter("ignore")
            quantised = quantize_dynamic(copy.deepcopy(model).cpu().float(), {torch.nn.Linear}, dtype=torch.qint8)
        results["int8 quantisation"] = compare_return(after, rescore(quantised), PRIMARY,
                                                      "torch dynamic int8 quantisation of every Linear layer (CPU)")  # fmt: skip
    if "4bit" in request.probes:
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        quantised = AutoModelForCausalLM.from_pretrained(folder, quantization_config=BitsAndBytesConfig(load_in_4bit=True))
        results["4-bit quantisation"] = compare_return(after, rescore(quantised), PRIMARY, "bitsandbytes 4-bit NF4")
    return results


def audit_llm(
    request: LLMRequest,
    out: str | os.PathLike[str],
    *,
    original: str | None = None,
    command: list[str] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """``dualoptim audit`` of a causal LM as it is: score ``request.model`` (and ``original``, the
    model before unlearning, when given) on the forget, retain and held-out rows; write
    ``audit.json``, ``audit.md`` and plots into ``out``; return the audit.

    Without ``original``: does this model still know these rows, compared with the held-out rows?
    With it: the before/after audit of :func:`unlearn_llm` (``original == model`` is the negative
    control and never passes). The unlearning options of ``request`` are not used.
    """
    from dualoptim.llm.models import load_pretrained

    started = time.perf_counter()
    for name in ("model", "forget", "retain"):
        if not getattr(request, name):
            raise ValueError(f"--{name} is required for a causal LM")
    for name in ("batch_size", "max_length", "eval_examples", "bootstrap"):
        if getattr(request, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(request, name)}")
    requirements = parse_requirements(request.require)
    set_threads(request.threads)
    env = environment(command)
    device = resolve_device(request.device)
    forget = read_rows(request.forget, "forget")
    retain = read_rows(request.retain, "retain")
    heldout = read_rows(request.heldout, "held-out") if request.heldout else None
    _check_sets(forget, retain, heldout)
    if heldout is None and requirements:
        if any(r.criterion.startswith(("mia", "ks", "heldout", "forget_gap")) or "vs_heldout" in r.criterion for r in requirements):
            raise ValueError("--require names a held-out criterion but there is no held-out set (give --heldout)")
    for path in filter(None, (request.model, original)):
        if Path(path).exists() and (Path(out).resolve() == Path(path).resolve() or Path(path).resolve() in Path(out).resolve().parents):
            raise ValueError(f"--out {out} would write into the model folder {path}: choose another folder")
    sets = {"forget": forget, "retain": retain, **({"heldout": heldout} if heldout else {})}
    audit_rows = {name: rows[: request.eval_examples] for name, rows in sets.items()}
    informative = {name: informative_words([r["answer"] for r in rows], [r["question"] for r in rows])
                   for name, rows in audit_rows.items()}  # fmt: skip

    def score(path: str) -> tuple[dict[str, SetScores], Any, Any, QAFormat]:
        model, tokenizer = load_pretrained(path, pad_token="eos")
        fmt = ConversationFormat(chat_template=bool(getattr(tokenizer, "chat_template", None)))
        model.to(device)
        scores = {name: score_rows(model, tokenizer, fmt, rows, request, informative[name]) for name, rows in audit_rows.items()}
        return scores, model, tokenizer, fmt

    _check_probe_options(request)
    after, model, tokenizer, fmt = score(request.model)
    prompts = "chat template" if fmt.chat_template else "TOFU tags"
    before = score(original)[0] if original else None
    log(f"audit of {request.model}{f' against {original}' if original else ''}: forget {len(forget)}, retain {len(retain)}, "
        f"held-out {len(heldout) if heldout else 0} rows on {device}; prompts: {prompts}")  # fmt: skip

    def sha(path: str | None) -> str | None:
        return sha256_path(path) if path and Path(path).exists() else None

    record = {
        "task": "causal language model",
        "model": {"source": request.model, "format": "huggingface (save_pretrained)", "input_sha256": sha(request.model),
                  "original": original, "original_sha256": sha(original)},
        "data": f"forget {request.forget}, retain {request.retain}, held-out {request.heldout}",
        "forget": {"source": f"rows of {request.forget}", "ids_sha256": sha256_ids(r["id"] for r in forget),
                   "file_sha256": sha256_file(request.forget), "first_ids": [r["id"] for r in forget[:10]]},
        "counts": {"forget": len(forget), "retain": len(retain), "heldout": len(heldout or []),
                   "scored": {name: len(rows) for name, rows in audit_rows.items()}},
        "settings": {"prompt_format": prompts, "device": str(device), "max_new_tokens": request.max_new_tokens},
        "options": dataclasses.asdict(request),
        "seconds": time.perf_counter() - started,
        "environment": env,
    }  # fmt: skip
    audit = build_audit(request=record, before=before, after=after, primary=PRIMARY, requirements=requirements,
                        seed=request.seed, bootstrap=request.bootstrap, heldout_unseen=request.heldout_unseen)  # fmt: skip
    if request.probes:
        audit["probes"] = run_probes(model, tokenizer, fmt, audit_rows, informative, request, after, request.model)
    losses = {"after": {name: s.loss for name, s in after.items()}}
    if before is not None:
        losses["before"] = {name: s.loss for name, s in before.items()}
    write_audit(audit, out, losses)
    return audit


#: options that change the audit or the speed, not the steps unlearning takes: a changed one still resumes
_NOT_IN_KEY = ("require", "bootstrap", "eval_examples", "threads", "workers", "checkpoint_every", "max_new_tokens", "min_k",
               "heldout_unseen", "probes", "relearn_steps", "relearn_rows", "relearn_lr")
# stop_when changes the steps taken, so it stays in the key


def _trajectory_options(request) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(request).items() if k not in _NOT_IN_KEY}
