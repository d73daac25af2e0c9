"""MLflow client settings for promptops' own short-lived uses of it (the CLI, replay's run logging)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Generator

__all__ = ["mlflow_environment"]


@contextlib.contextmanager
def mlflow_environment(timeout: int) -> Generator[None]:
    """Inside the block, MLflow's client gives up on an unreachable server within `timeout` seconds.

    MLflow's HTTP defaults (120 s timeout, up to 7 retries) would leave a command hanging for minutes: unless the
    user set them, `MLFLOW_HTTP_REQUEST_MAX_RETRIES` is 0 and `MLFLOW_HTTP_REQUEST_TIMEOUT` is `timeout`; MLflow's
    own log lines below WARNING are muted and its telemetry is off.
    """
    defaults = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout),
        # "Creating initial MLflow database tables..." and the like would pollute stderr.
        "MLFLOW_LOGGING_LEVEL": "WARNING",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    added = [name for name in defaults if name not in os.environ]
    for name in added:
        os.environ[name] = defaults[name]
    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    if mlflow_logger.getEffectiveLevel() < logging.WARNING:
        mlflow_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        mlflow_logger.setLevel(level)
        for name in added:
            os.environ.pop(name, None)
