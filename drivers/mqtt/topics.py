"""The per-station topic tree. Everything a station sends or receives is under ``<prefix>/<station id>/``,
so one ACL pattern line per topic confines a station, and a fleet consumer subscribes with ``+``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StationTopics:
    prefix: str
    station_id: str

    def _t(self, leaf: str) -> str:
        return f"{self.prefix}/{self.station_id}/{leaf}"

    @property
    def status(self) -> str:
        return self._t("status")

    @property
    def telemetry(self) -> str:
        return self._t("telemetry")

    @property
    def events(self) -> str:
        return self._t("events")

    @property
    def dispatch_set(self) -> str:
        return self._t("dispatch/set")

    @property
    def dispatch_ack(self) -> str:
        return self._t("dispatch/ack")

    @property
    def dispatch_report(self) -> str:
        return self._t("dispatch/report")
