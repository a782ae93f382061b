"""What a channel knows when a call failed for want of a connection.

Both are UNAVAILABLE on the wire and in metrics; they differ in what may follow:

* :class:`~lumi.model.errors.NotSent` — the connection could not be made, so nothing was sent:
  any method may be tried again, on this replica or another (the balancer does).
* :class:`Lost` — the connection broke after the call was sent: it may have run, so only an
  idempotent method may be retried (the resilience layer's rule). A callee's own UNAVAILABLE
  answer is neither: it is retried as UNAVAILABLE always is.

Both are local classes, so they never cross a wire as such.
"""

from __future__ import annotations

from lumi.model.errors import NotSent, Unavailable


class Lost(Unavailable):
    """The connection broke after the call was sent; its outcome is unknown."""


__all__ = ["Lost", "NotSent"]
