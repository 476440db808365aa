"""One message's verdict from the current models: spam or not, and its category.

Whatever goes wrong here (no model, a message the models cannot read, a model that fails)
ends as "not spam, no category" with the reason logged: the classifier never loses mail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from postdesk.daemon.classify.features import from_message
from postdesk.daemon.classify.loader import ModelCache
from postdesk.daemon.mail.parse import ParsedMessage

log = logging.getLogger("postdesk.classify")


@dataclass(frozen=True)
class Verdict:
    """What the classifier says about one message (scores are None without a model)."""

    spam: bool = False
    spam_score: float | None = None
    category: str | None = None
    category_score: float | None = None
    explanation: tuple[tuple[str, float], ...] = ()


def judge(cache: ModelCache, parsed: ParsedMessage, explain: bool = False) -> Verdict:
    """The verdict of the current models on ``parsed``."""
    spam_model, category_model = cache.get("spam"), cache.get("category")
    if spam_model is None and category_model is None:
        return Verdict()
    try:
        sample = from_message(parsed)
        spam_score = spam_model.one(sample)[2] if spam_model else None
        category: str | None = None
        category_score: float | None = None
        if category_model is not None:
            best, category_score, _ = category_model.one(sample)
            category = best if category_model.confident(category_score) else None
        explanation: list[tuple[str, float]] = []
        if explain and spam_model is not None and spam_score is not None:
            explanation = spam_model.explain(sample, "spam")
    except Exception as error:  # a model must never cost a message
        log.warning(
            "%s not classified (counted as not spam): %s: %s",
            parsed.message_id,
            type(error).__name__,
            " ".join(str(error).split())[:200],
        )
        return Verdict()
    is_spam = (
        spam_model is not None and spam_score is not None and spam_score > spam_model.threshold
    )
    return Verdict(is_spam, spam_score, category, category_score, tuple(explanation))
