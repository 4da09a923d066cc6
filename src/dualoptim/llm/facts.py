"""Fact-level measures of a causal LM's answers for the deletion audit (``docs/design.md`` §7.4).

Answer probability and ROUGE over the whole answer follow its template as much as its fact: after
retain steps that teach "The X of Y is Z.", every answer of that shape becomes likelier, the
forgotten ones too. The measures here look at the answer's **informative words** only: the words
of the reference answer that the question does not give and that are not the template shared by
the other answers of the set (a word in at least half of the other answers).

- ``fact_probability``: :math:`\\exp(\\frac{1}{|I|}\\sum_{t \\in I} \\log p(t))` over the answer
  tokens ``I`` that spell an informative word (all answer tokens when none does);
- ``fact_rouge``: ROUGE-L recall of the informative words in the greedy answer (LCS over words);
- ``exact_match``: the greedy answer equals the reference (lower-case words);
- ``contains_match``: the greedy answer contains the reference;
- ``fact_match``: the greedy answer contains every informative word.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["greedy_matches", "informative_token_mask", "informative_words", "lcs_length", "question_text", "token_spans",
           "words"]

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-case word tokens of ``text`` (letters, digits, underscore)."""
    return _WORD.findall(text.lower())


def question_text(question: Any) -> str:
    """The text of a question: the string, or the contents of a conversation's non-assistant turns."""
    if isinstance(question, str):
        return question
    return "\n".join(m["content"] for m in question if m.get("role") != "assistant")


def informative_words(answers: Sequence[str], questions: Sequence[Any]) -> list[set[str]]:
    """Per row, the answer's words minus its question's words minus the template of the other answers.

    The template of row ``i`` is every word present in at least half of the other rows' answers
    (none when the set has fewer than 3 rows). A row left with no word keeps the words its question
    does not give, then all its words.
    """
    sets = [set(words(a)) for a in answers]
    counts = Counter(w for s in sets for w in s)
    others = len(answers) - 1
    result = []
    for answer_words, question in zip(sets, questions):
        given = set(words(question_text(question)))
        if others >= 2:
            template = {w for w in answer_words if (counts[w] - 1) * 2 >= others}
        else:
            template = set()
        kept = answer_words - given - template or answer_words - given or answer_words
        result.append(kept)
    return result


def token_spans(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded text of ``ids`` and each token's character span in it (from decoded prefixes)."""
    spans, end = [], 0
    for k in range(len(ids)):
        new_end = len(tokenizer.decode(list(ids[: k + 1]), skip_special_tokens=True))
        spans.append((min(end, new_end), new_end))
        end = new_end
    return tokenizer.decode(list(ids), skip_special_tokens=True), spans


def informative_token_mask(tokenizer: Any, ids: Sequence[int], informative: set[str]) -> list[bool]:
    """Which of the answer tokens ``ids`` overlap an informative word of the decoded answer."""
    text, spans = token_spans(tokenizer, ids)
    targets = [(m.start(), m.end()) for m in _WORD.finditer(text.lower()) if m.group() in informative]
    return [any(s < e2 and s2 < e for s2, e2 in targets) and e > s for s, e in spans]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two word or token lists (the ROUGE-L numerator)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def greedy_matches(generated: str, reference: str, informative: set[str]) -> dict[str, float]:
    """``fact_rouge``, ``exact_match``, ``contains_match``, ``fact_match`` of one greedy answer (0-1)."""
    got, want = words(generated), words(reference)
    facts = [w for w in want if w in informative]
    got_set = set(got)
    return {
        "fact_rouge": lcs_length(got, facts) / len(facts) if facts else 0.0,
        "exact_match": float(got == want),
        "contains_match": float(" ".join(want) in " ".join(got)) if want else 0.0,
        "fact_match": float(bool(facts) and all(w in got_set for w in facts)),
    }
