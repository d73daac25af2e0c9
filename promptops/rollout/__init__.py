"""Guarded rollouts (issue 14): a candidate prompt version served to a share of live traffic.

The rollout state lives in the prompt's tags in the MLflow registry (`_state`), each process reads it in the
background (`_cache`), tracked calls are assigned an arm by a sticky key (`_assign`), and the CLI starts,
steers and ends rollouts (`_admin`). The online comparison (`_compare`, `_stats`: numpy) and the report are
imported by the commands that use them, not by `import promptops`.

Each name is imported from its module when first asked for (issue 16): `import promptops` loads only what the
decorator needs (`_assign`, which loads `_cache` and `_state`), not the administration or feedback modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._admin import RolloutError, list_rollouts, promote, read_rollout, rollback, set_share, start_rollout
    from ._assign import KeyReader, assign, rollout_key
    from ._cache import RolloutCache, rollout_cache
    from ._feedback import feedback, feedback_values, flush_feedback
    from ._state import ARMS, Arm, RolloutState, bucket

__all__ = [
    "ARMS",
    "Arm",
    "feedback",
    "feedback_values",
    "flush_feedback",
    "KeyReader",
    "RolloutCache",
    "RolloutError",
    "RolloutState",
    "assign",
    "bucket",
    "list_rollouts",
    "promote",
    "read_rollout",
    "rollback",
    "rollout_cache",
    "rollout_key",
    "set_share",
    "start_rollout",
]

_MODULES = {
    "_admin": ("RolloutError", "list_rollouts", "promote", "read_rollout", "rollback", "set_share", "start_rollout"),
    "_assign": ("KeyReader", "assign", "rollout_key"),
    "_cache": ("RolloutCache", "rollout_cache"),
    "_feedback": ("feedback", "feedback_values", "flush_feedback"),
    "_state": ("ARMS", "Arm", "RolloutState", "bucket"),
}
_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # asked once
    return value
