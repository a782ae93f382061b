"""Which repository a command talks to, and with which keys.

First found wins: the command line; the environment (``LUMI_REPOSITORY``, ``LUMI_TRUST_KEY``,
``LUMI_SIGNING_KEY``); the app's ``[repository]`` table (``url``, ``trust_key``, relative to
the app folder); the default embedded repository ``~/.lumi/repository``. The signing key is a
secret, so it never comes from the config file.
"""

from __future__ import annotations

import os
from pathlib import Path

from lumi.config import AppConfig
from lumi.packaging.repository import Repository, open_repository


def repository_for(
    config: AppConfig | None,
    *,
    url: str | None = None,
    trust_key: str | None = None,
    signing_key: str | None = None,
) -> Repository:
    """The repository for a command run on ``config``'s app (or on no app)."""
    section = config.repository if config is not None else None
    chosen = url or os.environ.get("LUMI_REPOSITORY") or (section.url if section else None)
    if chosen and config is not None and "://" not in chosen and not chosen.startswith("oci-"):
        chosen = str((config.root / Path(chosen).expanduser()).resolve())
    trust = trust_key or os.environ.get("LUMI_TRUST_KEY")
    if not trust and section is not None and section.trust_key and config is not None:
        trust = str(config.root / section.trust_key)
    signer = signing_key or os.environ.get("LUMI_SIGNING_KEY")
    return open_repository(chosen, signing_key=signer, trust_key=trust)
