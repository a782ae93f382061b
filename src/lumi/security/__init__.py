"""Who may call what: service identities, the app's CA, mTLS settings, access policies and
end-user authentication (docs/security.md).

``identity`` (SPIFFE names), ``ca`` and ``bundle`` (the CA and the files it writes), ``issuer``
(``lumi run``'s side: issue and renew), ``policy`` (``[services.X.access]``), ``guard`` (the
server middleware deciding each call), ``jwt`` (``lumi.Jwt`` for ``@lumi.auth`` handlers) and
``setup`` (what a replica or an operator tool needs from the config). The TLS itself goes
through the transport seam: :mod:`lumi.transports.tls`.
"""
