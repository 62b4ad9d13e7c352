"""Loopback ports for servers started by tests: `free_port` is bench.processes' (one copy)."""

from __future__ import annotations

from bench.processes import free_port

__all__ = ["free_port"]
