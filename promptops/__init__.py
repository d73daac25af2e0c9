"""promptops: LLM prompts as code, pinned from the MLflow Prompt Registry.

```python
import promptops

@promptops.track(prompt="summarize")
def summarize(text: str, *, prompt: promptops.Prompt) -> str:
    return llm(prompt.format(text=text))
```
"""

from typing import TYPE_CHECKING

from ._config import Settings, configure, get_settings
from ._errors import ConfigError, PromptFormatError, PromptNotFoundError, PromptopsError, PromptUnavailableError
from ._lifecycle import flush, shutdown, stats
from ._span import record_usage
from ._track import track
from ._version import __version__
from .prompts import Prompt, current_prompt, preload, use_prompt

if TYPE_CHECKING:
    from .rollout._assign import rollout_key
    from .rollout._feedback import feedback
    from .scorers import scorer

__all__ = [
    "ConfigError",
    "Prompt",
    "PromptFormatError",
    "PromptNotFoundError",
    "PromptUnavailableError",
    "PromptopsError",
    "Settings",
    "__version__",
    "configure",
    "current_prompt",
    "feedback",
    "flush",
    "get_settings",
    "preload",
    "record_usage",
    "rollout_key",
    "scorer",
    "shutdown",
    "stats",
    "track",
    "use_prompt",
]


def __getattr__(name: str) -> object:
    # `@promptops.scorer` lives with the scorers, which import numpy and friends: only when asked for.
    if name == "scorer":
        from .scorers import scorer

        return scorer
    # Rollouts are imported on first need, not by `import promptops` (issue 16): `@track` imports the assignment
    # when it decorates; `feedback` (a worker thread and a queue) and `rollout_key` when first asked for.
    if name == "feedback":
        from .rollout._feedback import feedback

        globals()[name] = feedback  # asked once: later uses are a plain lookup
        return feedback
    if name == "rollout_key":
        from .rollout._assign import rollout_key

        globals()[name] = rollout_key  # `with promptops.rollout_key(user):` in a request handler
        return rollout_key
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
