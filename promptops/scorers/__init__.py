"""Scorers: metrics computed on each replayed record, batched, against a reference output.

Built-in names: `rouge1`, `rouge2`, `rougeL` (rouge-score, stemmed), `bleu` (sacrebleu), `semantic`
(sentence-transformers cosine similarity; `semantic:<model name or path>`), `exact_match`, `length_ratio`,
`latency` and `errors`. Your own: a function decorated with `@promptops.scorer`, or a `Scorer` subclass.

```python
from promptops.scorers import ScoreInput, resolve

rouge, bleu = resolve(["rougeL", "bleu"])
item = ScoreInput(inputs={}, output="The cat sat on the mat.", reference="A cat sat on the mat.")
assert 0.8 < rouge.score([item])[0].value < 1.0
```

Not imported by `import promptops`; importing this package imports none of the scoring libraries either
(each is imported when its scorer first scores).
"""

from __future__ import annotations

from ._base import Score, ScoreInput, Scorer, ScorerError, SimilarityScorer, to_text
from ._function import PARAMETERS, FunctionScorer
from ._properties import Errors, Latency
from ._registry import BUILTINS, available, get, register, resolve, scorer, unregister
from ._semantic import DEFAULT_MODEL, Semantic
from ._text import Bleu, ExactMatch, LengthRatio, Rouge

__all__ = [
    "BUILTINS",
    "DEFAULT_MODEL",
    "PARAMETERS",
    "Bleu",
    "Errors",
    "ExactMatch",
    "FunctionScorer",
    "LengthRatio",
    "Latency",
    "Rouge",
    "Score",
    "ScoreInput",
    "Scorer",
    "ScorerError",
    "Semantic",
    "SimilarityScorer",
    "available",
    "get",
    "register",
    "resolve",
    "scorer",
    "to_text",
    "unregister",
]
