"""Fault injection for trialbridge's tests: a loopback HTTP proxy that breaks requests on purpose."""

from tests.faults.proxy import FaultKind, FaultProxy, FaultStats

__all__ = ["FaultKind", "FaultProxy", "FaultStats"]
