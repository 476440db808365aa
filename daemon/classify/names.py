"""Names and defaults shared by the classifier's modules (importing this loads no library)."""

SPAM, HAM = "spam", "ham"
KINDS = ("spam", "category")
DEFAULT_TARGET_FPR = 0.002  # spam: the ham false-positive rate the threshold is chosen for
DEFAULT_FLOOR = 0.5  # category: below this probability the category is unknown
