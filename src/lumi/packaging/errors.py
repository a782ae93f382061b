"""Errors of building, publishing and resolving artifacts. Each message is one line saying what
was refused and what would be right; nothing in a repository changes when one is raised
(:class:`~lumi.model.semver.VersionError`, for bad versions and unannounced breaking changes,
lives with the version model)::

    PackagingError (AppError)
    ├── BuildError             the app's wheel, lock or interfaces could not be produced
    ├── ResolutionError        requirements that no set of published versions satisfies
    └── RepositoryError        a repository could not be read or written
        ├── NotFoundError      no such service or version
        ├── ImmutableError     that version exists with different content
        ├── IntegrityError     a blob or manifest does not match its digest
        ├── SignatureError     a missing or bad signature while a trust key is configured
        └── AuthError          the registry refused the credentials
"""

from __future__ import annotations

from lumi.model.errors import AppError


class PackagingError(AppError):
    """The root of packaging errors (an :class:`AppError`, so the CLI prints one line)."""


class BuildError(PackagingError):
    """The app's wheel, lock or interfaces could not be produced."""


class ResolutionError(PackagingError):
    """Requirements that no set of published versions satisfies; the message explains why."""


class RepositoryError(PackagingError):
    """A repository could not be read or written."""


class NotFoundError(RepositoryError):
    """No such service or version in the repository."""


class ImmutableError(RepositoryError):
    """A version that exists already, with different content."""


class IntegrityError(RepositoryError):
    """A blob or manifest whose bytes do not match its digest."""


class SignatureError(RepositoryError):
    """A missing or invalid signature while a trust key is configured."""


class AuthError(RepositoryError):
    """The registry refused the credentials (or asked for some and none were given)."""
