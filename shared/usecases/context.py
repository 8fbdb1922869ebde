"""What a use case works with: the settings, the ports, and the device resolver over the MDE port."""

from __future__ import annotations

from dataclasses import dataclass

from ..ports import Ports
from ..settings import Settings
from .devices import DeviceResolver


@dataclass(frozen=True)
class Context:
    """Built once per process (shared/bootstrap.py); tests build one on in-memory fakes."""

    settings: Settings
    ports: Ports
    devices: DeviceResolver

    @classmethod
    def of(cls, settings: Settings, ports: Ports) -> Context:
        return cls(settings, ports, DeviceResolver(ports.mde, settings.device_cache_seconds))
