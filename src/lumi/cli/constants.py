"""Library constants the CLI shows in its help, copied so that defining the commands imports
nothing heavy (``tests/unit/test_cli_startup.py`` checks each equals the library's)."""

from __future__ import annotations

from pathlib import Path

ALLOW_FILE = "lumi-api-allow.toml"  # lumi.packaging.compat.ALLOW_FILE
CI_STAGES = ("gen", "api", "test", "build", "publish")  # lumi.packaging.ci.STAGES
CI_WORKFLOW = Path(".github") / "workflows" / "lumi.yml"  # lumi.packaging.github.WORKFLOW
DASHBOARD_PORT = 4400  # lumi.dashboard.server.DEFAULT_PORT
