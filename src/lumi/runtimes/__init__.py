"""Runtimes, chosen by the ``runtime`` config value: where each replica runs.

Built in: ``process`` (a local OS process per replica, the default) and ``inproc`` (a task in
``lumi run``'s own process); ``container`` and ``function`` as their modules land. Third-party
runtimes register a ``lumi.runtimes`` entry point naming a
:class:`~lumi.runtimes.base.Runtime` subclass (the registry is
:data:`lumi.backends.RUNTIMES`).
"""
