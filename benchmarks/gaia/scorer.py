"""GAIA's official scoring rules, re-implemented (same behaviour as the leaderboard's scorer.py).

- The ground truth is a number (``float()`` accepts it): the answer is a number after removing
  ``$``, ``%`` and ``,``; anything else scores as infinity (never equal).
- The ground truth contains ``,`` or ``;``: both sides are split on either separator; the lists
  must have the same length and match element by element, in order (numbers as above; strings
  lower-cased with all whitespace removed, punctuation kept).
- Otherwise: strings compared lower-cased with whitespace and punctuation removed.
- A missing answer is the string ``"None"``.

Known quirks of the official rules are kept on purpose (tests pin them): ``float()`` accepts
``"1_000"``, ``"inf"`` and ``"nan"``, and ``nan`` never equals itself; in a list, every comma
splits, so ``"$1,000"`` inside a list answer is two elements.
"""

from __future__ import annotations

import re
import string

FINAL_ANSWER = "FINAL ANSWER:"


def normalize_number_str(number_str: str) -> float:
    """The number in ``number_str`` after removing ``$``, ``%`` and ``,`` (``inf`` if none)."""
    for char in ("$", "%", ","):
        number_str = number_str.replace(char, "")
    try:
        return float(number_str)
    except ValueError:
        return float("inf")


def split_string(s: str, char_list: tuple[str, ...] = (",", ";")) -> list[str]:
    """``s`` split at any of ``char_list``."""
    return re.split(f"[{''.join(char_list)}]", s)


def normalize_str(input_str: str, remove_punct: bool = True) -> str:
    """Lower-cased, all whitespace removed, and punctuation removed unless told otherwise."""
    no_spaces = re.sub(r"\s", "", input_str)
    if remove_punct:
        return no_spaces.lower().translate(str.maketrans("", "", string.punctuation))
    return no_spaces.lower()


def _is_float(element: str) -> bool:
    try:
        float(element)
    except ValueError:
        return False
    return True


def question_scorer(model_answer: str | None, ground_truth: str) -> bool:
    """Whether ``model_answer`` is right under GAIA's rules."""
    if model_answer is None:
        model_answer = "None"
    if _is_float(ground_truth):
        return normalize_number_str(model_answer) == float(ground_truth)
    if any(char in ground_truth for char in (",", ";")):
        gt_elems = split_string(ground_truth)
        ma_elems = split_string(model_answer)
        if len(gt_elems) != len(ma_elems):
            return False
        comparisons = []
        for ma_elem, gt_elem in zip(ma_elems, gt_elems, strict=True):
            if _is_float(gt_elem):
                comparisons.append(normalize_number_str(ma_elem) == float(gt_elem))
            else:
                comparisons.append(
                    normalize_str(ma_elem, remove_punct=False) == normalize_str(gt_elem, remove_punct=False)
                )
        return all(comparisons)
    return normalize_str(model_answer) == normalize_str(ground_truth)


def extract_final_answer(text: str | None) -> str | None:
    """The text after the last "FINAL ANSWER:" (case-insensitive), else the whole text, stripped."""
    if text is None:
        return None
    at = text.upper().rfind(FINAL_ANSWER)
    answer = text[at + len(FINAL_ANSWER) :] if at >= 0 else text
    answer = answer.strip()
    # A trailing full stop is the model's prose, not part of the answer ("FINAL ANSWER: 42.").
    if answer.endswith(".") and not _is_float(answer):
        answer = answer[:-1].rstrip()
    return answer
