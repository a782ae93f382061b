"""``moto_server`` with SQS's per-message state changes made atomic, as on real SQS.

Run as a script (``python -P moto_main.py -H 127.0.0.1 -p PORT``); it takes moto_server's
arguments.

moto_server serves each request on its own thread, and ``SQSBackend.receive_message`` checks
that a message is visible and then marks it received without a lock, so two receivers polling
at once can both get one message (moto issue #519, 2016; still so in moto 5.2.1). Real SQS never
hands out a message that is in flight (inside its visibility timeout) again, and on a FIFO queue
not even another message of its group, so a conformance test that two members of a group split
the events failed now and then on duplicates that only moto made. ``Queue.delete_message``
likewise rebuilds the message list while a send may be appending to it.

Here one lock serialises, per server, each receive *pass* (moto's own receive called with no
wait), deletes, visibility changes and sends; the long-poll wait happens outside the lock, so
one poller never holds up the others. Nothing else of moto changes.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

from moto.server import main
from moto.sqs.models import Queue, SQSBackend

_STATE = threading.RLock()
_receive_pass = SQSBackend.receive_message


def _atomic(method: Any) -> Any:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _STATE:
            return method(*args, **kwargs)

    return locked


def receive_message(
    self: SQSBackend,
    queue_name: str,
    count: int,
    wait_seconds_timeout: int,
    visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> Any:
    """moto's receive, one atomic pass at a time, long-polling up to ``wait_seconds_timeout``."""
    deadline = time.monotonic() + wait_seconds_timeout
    while True:
        with _STATE:
            got = _receive_pass(
                self, queue_name, count, 0, visibility_timeout, message_attribute_names
            )
        remaining = deadline - time.monotonic()
        if got or remaining <= 0:
            return got
        queue = self.get_queue(queue_name)
        if queue.messages:  # visible but held back (their FIFO group is in flight)
            time.sleep(min(0.01, remaining))
        else:  # woken by a send
            queue.wait_for_messages(min(1.0, remaining))  # type: ignore[arg-type]


SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
SQSBackend.change_message_visibility = _atomic(SQSBackend.change_message_visibility)  # type: ignore[method-assign]
Queue.delete_message = _atomic(Queue.delete_message)  # type: ignore[method-assign]
Queue.add_message = _atomic(Queue.add_message)  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
