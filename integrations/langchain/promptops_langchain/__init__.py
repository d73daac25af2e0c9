"""promptops for LangChain: pinned prompt templates, OpenTelemetry spans and replayable captures for chains.

```python
from langchain_core.output_parsers import StrOutputParser
from promptops_langchain import PromptOpsCallbackHandler, pinned_prompt

prompt = pinned_prompt("summarize")  # resolved at every invoke: alias moves and use_prompt() apply
chain = prompt | chat_model | StrOutputParser()
chain.invoke({"text": "..."}, config={"callbacks": [PromptOpsCallbackHandler()]})
```
"""

from __future__ import annotations

try:
    import langchain_core
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "promptops_langchain needs langchain-core: pip install mlflow-promptops-langchain "
        "(or pip install 'langchain-core>=1')"
    ) from _missing

if int(langchain_core.__version__.split(".")[0]) < 1:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"promptops_langchain needs langchain-core 1.x, found {langchain_core.__version__}: "
        "pip install --upgrade 'langchain-core>=1,<2'"
    )

from ._handler import PromptOpsCallbackHandler
from ._prompt import PinnedPrompt, pinned_prompt
from ._version import __version__

__all__ = ["PinnedPrompt", "PromptOpsCallbackHandler", "__version__", "pinned_prompt"]
