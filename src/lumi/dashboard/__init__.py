"""The local dashboard that ``lumi run`` serves on 127.0.0.1 (and ``lumi dashboard`` opens).

It reads what a running app already records — the registry of replicas, the interfaces, the span
store, the event log, the JSON logs and each service's ``/metrics`` — and draws it in the
browser: a service graph, an API explorer, traces, events, logs and metrics. Live views are fed
by server-sent events. The front end is plain HTML, CSS and JavaScript shipped in ``static/``:
nothing is built or fetched at install or run time.

Module map: :mod:`.server` (the aiohttp application, the token and host checks), :mod:`.api`
(the JSON and SSE routes), and one module per data source: :mod:`.appstate`, :mod:`.caller`,
:mod:`.traces`, :mod:`.logview`, :mod:`.eventview`, :mod:`.metricsview`; :mod:`.hub` fans live
updates out to the browsers.
"""

from lumi.dashboard.server import Dashboard

__all__ = ["Dashboard"]
