"""Guarded rollouts (issue 14): a candidate prompt version served to a share of live traffic.

The rollout state lives in the prompt's tags in the MLflow registry (`_state`), each process reads it in the
background (`_cache`), tracked calls are assigned an arm by a sticky key (`_assign`), and the CLI starts,
steers and ends rollouts (`_admin`). The online comparison (`_compare`, `_stats`: numpy) and the report are
imported by the commands that use them, not by `import promptops`.
"""

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
