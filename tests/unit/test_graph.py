"""The capability graph: missing capabilities, cycles, deterministic start order."""

from __future__ import annotations

import pytest

import lumi
from lumi.model.graph import start_order
from lumi.model.interface import ServiceInterface


def iface(name: str, *requires: str) -> ServiceInterface:
    return ServiceInterface(name=name, requires=list(requires))


def test_dependencies_start_first() -> None:
    """Every service comes after what it requires, in a deterministic order."""
    services = [
        iface("Orders", "Inventory", "Billing"),
        iface("Billing"),
        iface("Inventory", "Catalog"),
        iface("Catalog"),
    ]
    order = start_order(services)
    for service in services:
        assert all(order.index(r) < order.index(service.name) for r in service.requires)
    assert order == start_order(services) == ["Catalog", "Inventory", "Billing", "Orders"]


def test_cycle_is_printed() -> None:
    """A cycle is an AppError that prints the cycle."""
    with pytest.raises(lumi.AppError, match="capability cycle: Orders -> Inventory -> Orders"):
        start_order([iface("Orders", "Inventory"), iface("Inventory", "Orders")])
    with pytest.raises(lumi.AppError, match="A -> B -> C -> A"):
        start_order([iface("A", "B"), iface("B", "C"), iface("C", "A")])


def test_missing_capability_is_named() -> None:
    """A required service that is not in the app is named, with a suggestion."""
    with pytest.raises(
        lumi.AppError,
        match="Orders requires Inventry, which is not in the app \\(did you mean 'Inventory'\\?\\)",
    ):
        start_order([iface("Orders", "Inventry"), iface("Inventory")])


def test_provided_services_satisfy_requirements() -> None:
    """Services provided from outside (fakes, remote) satisfy requirements."""
    assert start_order([iface("Orders", "Inventory")], provided=["Inventory"]) == ["Orders"]


def test_duplicate_names_are_rejected() -> None:
    """Two services with one name cannot be in one app."""
    with pytest.raises(lumi.AppError, match="two services are named 'A'"):
        start_order([iface("A"), iface("A")])


class Orders(lumi.Service):
    inventory: Inventory


class Inventory(lumi.Service):
    orders: Orders


def test_cycle_between_python_classes() -> None:
    """Mutually referencing service classes are reported as a cycle by the App."""
    with pytest.raises(lumi.AppError, match="Orders -> Inventory -> Orders"):
        lumi.App([Orders, Inventory])
