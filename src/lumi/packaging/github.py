"""``lumi ci init github``: a GitHub Actions workflow running the same stages as ``lumi ci``.

One step per stage (``lumi ci --only STAGE``), so a failure is shown on the stage that failed;
``publish`` runs only for pushes to the default branch and for tags. Registry credentials and
the signing key come from repository secrets, never from the workflow file.
"""

from __future__ import annotations

import json
from pathlib import Path

from lumi.packaging.ci import STAGES

WORKFLOW = Path(".github") / "workflows" / "lumi.yml"
_STEP_NAMES = {"gen": "Generated files are up to date", "api": "No unannounced breaking change",
               "test": "Tests", "build": "Build artifacts", "publish": "Publish"}  # fmt: skip


def workflow(app: str, *, python: str = "3.11", repository: str = "") -> str:
    """The workflow YAML for the app at ``app`` (relative to the git repository's root).
    JSON is valid YAML; it is written as block YAML by hand for people to read."""
    steps: list[str] = [
        "      - uses: actions/checkout@v4\n        with:\n          fetch-depth: 0",
        "      - uses: actions/setup-python@v5\n        with:\n"
        f"          python-version: {_q(python)}",
        "      - name: Install\n        run: |\n"
        "          python -m pip install --upgrade pip\n"
        "          pip install 'lumi-runtime[shipping]' pytest\n"
        "          if [ -f requirements.lock ]; then pip install -r requirements.lock; fi\n"
        "          if [ -f lumi-requires.lock ]; then lumi install --frozen; fi",
    ]
    for stage in STAGES:
        step = f"      - name: {_q(_STEP_NAMES[stage])}\n        run: lumi ci --only {stage}"
        if stage == "publish":
            step += (
                "\n        if: github.event_name == 'push' && "
                "(github.ref == format('refs/heads/{0}', github.event.repository.default_branch)"
                " || startsWith(github.ref, 'refs/tags/'))"
            )
        steps.append(step)
    env = {
        "LUMI_REPOSITORY": repository or "${{ vars.LUMI_REPOSITORY }}",
        "LUMI_REGISTRY_USERNAME": "${{ secrets.LUMI_REGISTRY_USERNAME }}",
        "LUMI_REGISTRY_PASSWORD": "${{ secrets.LUMI_REGISTRY_PASSWORD }}",
    }
    env_lines = "".join(f"      {key}: {_q(value)}\n" for key, value in env.items())
    return (
        "# Written by `lumi ci init github`: the stages of `lumi ci`, one step each.\n"
        "name: lumi\n"
        "on:\n"
        "  push:\n"
        "    branches: [main]\n"
        "    tags: ['v*']\n"
        "  pull_request:\n"
        "permissions:\n"
        "  contents: read\n"
        "jobs:\n"
        "  ship:\n"
        "    runs-on: ubuntu-latest\n"
        "    defaults:\n"
        "      run:\n"
        f"        working-directory: {_q(app or '.')}\n"
        "    env:\n"
        f"{env_lines}"
        "    steps:\n" + "\n".join(steps) + "\n"
    )


def _q(text: str) -> str:
    return json.dumps(text)
