"""Deploy: artifacts from the repository, rolled out to an environment (``lumi deploy``).

Deploy reads only the repository (:class:`lumi.packaging.Repository`): versions, manifests,
and artifacts pulled by digest. The local target is a control plane per environment
(``lumi up``): a supervisor over the deployed versions, each running from its own installed
artifact, with a token-protected control API on loopback. See ``docs/shipping.md``.
"""
