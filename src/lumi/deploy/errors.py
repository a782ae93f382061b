"""Errors of deploying. Each message is one line saying what was refused and what would be
right; when one is raised before a rollout starts, nothing in the environment has changed::

    DeployError (AppError)
    ├── RefusedError      the deployment cannot go ahead (a range, a runtime, a busy rollout)
    ├── InstallError      an artifact could not be installed (pip failed)
    ├── RolloutFailed     a rollout stopped (not ready, a threshold crossed); rolled back
    └── ControlError      the environment's control plane is down or refused the request
"""

from __future__ import annotations

from lumi.model.errors import AppError


class DeployError(AppError):
    """The root of deploy errors (an :class:`AppError`, so the CLI prints one line)."""


class RefusedError(DeployError):
    """A deployment refused before anything changed."""


class InstallError(DeployError):
    """An artifact's environment could not be built."""


class ControlError(DeployError):
    """The control plane is not running, or refused or failed a request."""


class RolloutFailed(DeployError):
    """A rollout stopped and was undone; the message says why (what ran keeps running)."""
