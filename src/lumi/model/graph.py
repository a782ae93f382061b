"""The capability graph of an app: who requires whom, checked and sorted.

Works on interfaces (``requires`` lists service names), so it serves apps assembled from Python
classes and from interface JSON alike.
"""

from __future__ import annotations

from collections.abc import Iterable

from lumi.model.errors import AppError
from lumi.model.interface import ServiceInterface
from lumi.model.suggest import close_matches


def start_order(
    interfaces: Iterable[ServiceInterface], *, provided: Iterable[str] = ()
) -> list[str]:
    """Service names with every service after the services it requires.

    ``provided`` names services that are satisfied from outside the app (fakes, remote
    endpoints). Raises :class:`AppError` on a missing capability or a cycle, naming it.
    Ties keep the order the services were given in, so the result is deterministic.
    """
    by_name: dict[str, ServiceInterface] = {}
    for iface in interfaces:
        if iface.name in by_name:
            raise AppError(f"two services are named {iface.name!r}")
        by_name[iface.name] = iface
    external = set(provided)
    for iface in by_name.values():
        for required in iface.requires:
            if required not in by_name and required not in external:
                match = close_matches(required, list(by_name), n=1)
                hint = f" (did you mean {match[0]!r}?)" if match else ""
                raise AppError(
                    f"{iface.name} requires {required}, which is not in the app{hint}; "
                    f"add it to the app's services"
                )
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> None:
        if state.get(name) == 2 or name not in by_name:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise AppError(f"capability cycle: {' -> '.join(cycle)}")
        state[name] = 1
        path.append(name)
        for required in by_name[name].requires:
            visit(required)
        path.pop()
        state[name] = 2
        order.append(name)

    for name in by_name:
        visit(name)
    return order
