"""A local Statsig API emulator (a real HTTP server) for tests, the demo and benchmarks."""

from statsig_airflow_provider.emulator.server import Emulator, EmulatorThread, serve

__all__ = ["Emulator", "EmulatorThread", "serve"]
