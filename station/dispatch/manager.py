"""Dispatch leases: which limits the grid operator has in force at any instant, and the fallback.

Rules (docs/mqtt.md, "Leases"):

- A setpoint is a lease on ``[valid_from, valid_until)`` (wall-clock UTC epoch seconds). Accepted
  setpoints are kept as disjoint windows: when a newer one (higher ``seq``) overlaps older ones, it wins
  from its ``valid_from`` on; an older one keeps only the part of its window before that (a renewal is a
  new setpoint whose ``valid_from`` is at or before the old ``valid_until``).
- Between leases the station is on the fallback profile (:class:`DispatchConfig`). When a lease ends
  without a successor, the limits move from the lease's *effective* limits to the fallback at the
  fallback ramp rate: the target is dropped at once, but the caps start where the target held the power
  (a target of -50 kW becomes an import cap of 0 and an export cap of 50 kW), so grid power moves
  smoothly instead of stepping when a whole fleet's leases expire at once.
- ``limits_at`` never returns an import limit above the site import cap or an export limit above
  ``grid.export_limit_kw``; targets are clamped into the returned limits.
- The manager's time never runs backwards: callers on different threads read the wall clock at slightly
  different moments, so a ``now`` a little older than one already seen is taken as the latest one. A
  backward step larger than ``max_clock_skew_s`` is a clock fault: every lease is dropped (they were
  placed on a time line that no longer holds), the station falls back, and the operator re-sends.

The manager is sans-IO and thread-safe: the MQTT thread calls :meth:`submit`, the control cycle calls
:meth:`limits_at` and :meth:`observe_grid_power`; every method takes ``now`` from the caller's clock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from station.dispatch.evidence import Asked, ResponseMeter, move_toward
from station.dispatch.model import Ack, DispatchEvent, GridLimits, Setpoint, StationRange
from station.dispatch.reasons import Reason
from station.dispatch.validate import Rejection, Verifier, no_signature, parse_message

if TYPE_CHECKING:
    from station.config import StationConfig

_RECENT_SEQS = 4096  # accepted seqs remembered to tell a replay from a merely stale seq
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """Everything the manager needs from the station file, resolved once."""

    range: StationRange
    fallback_import_kw: float
    fallback_export_kw: float
    fallback_ramp_kw_per_s: float
    settle_tolerance_kw: float = 20.0
    change_threshold_kw: float = 5.0
    evidence_max_gap_s: float = 5.0
    max_clock_skew_s: float = 30.0
    max_message_bytes: int = 65536
    max_schedule_length: int = 96
    max_pending_setpoints: int = 256
    max_lease_s: float = 2 * 86400.0
    max_schedule_ahead_s: float = 2 * 86400.0

    @classmethod
    def from_config(cls, cfg: StationConfig) -> DispatchSettings:
        d, g = cfg.dispatch, cfg.grid
        return cls(
            range=station_range(cfg),
            fallback_import_kw=min(
                cfg.import_cap_kw,
                cfg.import_cap_kw if d.fallback_import_limit_kw is None else d.fallback_import_limit_kw,
            ),
            fallback_export_kw=min(g.export_limit_kw, d.fallback_export_limit_kw),
            fallback_ramp_kw_per_s=d.fallback_ramp_kw_per_s or g.ramp_limit_kw_per_s,
            settle_tolerance_kw=d.settle_tolerance_kw,
            change_threshold_kw=d.change_threshold_kw,
            evidence_max_gap_s=d.evidence_max_gap_s,
            max_clock_skew_s=cfg.mqtt.signing.max_clock_skew_s,
            max_message_bytes=d.max_message_bytes,
            max_schedule_length=d.max_schedule_length,
            max_pending_setpoints=d.max_pending_setpoints,
            max_lease_s=d.max_lease_s,
            max_schedule_ahead_s=d.max_schedule_ahead_s,
        )


def station_range(cfg: StationConfig) -> StationRange:
    """Caps and physical reach of the station at its grid connection.

    Import reach: auxiliary load + what the guns can draw (bounded by the modules' rating) + BESS
    charging. Export reach: BESS discharge + bidirectional guns, minus the auxiliary load. Both are
    further bounded by the contractual caps.
    """
    g = cfg.grid
    guns_kw = min(sum(gun.max_power_kw for gun in cfg.guns()),
                  sum(c.modules.count * c.modules.rated_kw for c in cfg.cabinets))
    v2g_kw = sum(gun.max_discharge_kw for gun in cfg.guns() if gun.bidirectional)
    bess_charge = cfg.bess.max_charge_kw if cfg.bess else 0.0
    bess_discharge = cfg.bess.max_discharge_kw if cfg.bess else 0.0
    return StationRange(
        import_cap_kw=cfg.import_cap_kw,
        export_cap_kw=g.export_limit_kw,
        max_import_kw=min(cfg.import_cap_kw, g.aux_load_kw + guns_kw + bess_charge),
        max_export_kw=min(g.export_limit_kw, max(0.0, bess_discharge + v2g_kw - g.aux_load_kw)),
        ramp_limit_kw_per_s=g.ramp_limit_kw_per_s,
    )


class _Lease:
    """An accepted setpoint and the part of its window still in force."""

    __slots__ = ("sp", "start", "end", "superseded_by", "asked")

    def __init__(self, sp: Setpoint, asked: Asked, start: float | None = None, end: float | None = None) -> None:
        self.sp = sp
        self.asked = asked
        self.start = sp.valid_from if start is None else start
        self.end = sp.valid_until if end is None else end
        self.superseded_by: str | None = None


class DispatchManager:
    """Accepts setpoints, answers with acks, and says which grid limits are in force at any time."""

    def __init__(self, settings: DispatchSettings, verifier: Verifier = no_signature) -> None:
        self.settings = settings
        self._verify = verifier
        self._lock = threading.Lock()
        self._leases: list[_Lease] = []  # sorted by start, pairwise disjoint
        self._active: _Lease | None = None
        self._meter: ResponseMeter | None = None
        self._ramp: tuple[float, float, float] | None = None  # fallback ramp: (t0, import0, export0)
        self._last_seq = -1
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._last_sample: tuple[float, float] | None = None
        self._now = float("-inf")  # the latest time seen (see the module docstring)
        self._events: list[DispatchEvent] = []
        self._reports: list[dict[str, Any]] = []

    @classmethod
    def from_config(cls, cfg: StationConfig, verifier: Verifier = no_signature) -> DispatchManager:
        return cls(DispatchSettings.from_config(cfg), verifier)

    # ------------------------------------------------------------------ input

    def submit(self, payload: bytes, now: float) -> list[Ack]:
        """Validate one ``dispatch/set`` message received at ``now``; one ack per setpoint (or one for
        the whole message when it cannot be read). A rejected message changes nothing."""
        s = self.settings
        parsed = parse_message(payload, now, verifier=self._verify, max_message_bytes=s.max_message_bytes,
                               max_schedule_length=s.max_schedule_length)
        if parsed.error is not None:
            e = parsed.error
            return [Ack(None, None, False, e.reason, e.detail, now, ref=parsed.ref)]
        with self._lock:
            self._advance(now)
            verdicts = self._check(parsed.items, now)
            if any(isinstance(v, Rejection) for v in verdicts):
                return self._reject_all(verdicts, parsed.is_schedule, now, parsed.ref)
            acks = [self._accept(sp, now, parsed.ref) for sp in verdicts if isinstance(sp, Setpoint)]
            self._advance(now)
            return acks

    def observe_grid_power(self, t: float, kw: float) -> None:
        """A grid-meter sample (positive = import) taken at ``t``, for the dispatch evidence. It does not
        move the manager's time: a meter timestamp may lag the cycle's clock."""
        with self._lock:
            self._last_sample = (t, kw)
            if self._meter is not None and self._active is not None and t < self._active.end:
                self._meter.add(t, kw)

    # ------------------------------------------------------------------ output

    def limits_at(self, now: float) -> GridLimits:
        """The grid limits in force at ``now`` (advances leases and the fallback ramp)."""
        with self._lock:
            self._advance(now)
            now = self._now
            s, r = self.settings, self.settings.range
            if self._active is not None:
                a = self._active.asked
                return GridLimits(a.import_limit_kw, a.export_limit_kw, a.target_kw, a.ramp_kw_per_s,
                                  f"lease:{self._active.sp.id}", self._active.end)
            imp, exp = self._ramp_values(now)
            return GridLimits(min(imp, r.import_cap_kw), min(exp, r.export_cap_kw), None,
                              s.fallback_ramp_kw_per_s, "fallback", None)

    def drain_events(self) -> list[DispatchEvent]:
        with self._lock:
            out, self._events = self._events, []
            return out

    def drain_reports(self) -> list[dict[str, Any]]:
        """Evidence reports of setpoints that ended (``dispatch/report`` payloads)."""
        with self._lock:
            out, self._reports = self._reports, []
            return out

    def status(self, now: float) -> dict[str, Any]:
        """The dispatch part of the telemetry: what is in force and what is scheduled."""
        with self._lock:
            self._advance(now)
            active = self._active
            return {
                "source": f"lease:{active.sp.id}" if active else "fallback",
                "active_id": active.sp.id if active else None,
                "active_seq": active.sp.seq if active else None,
                "valid_until": active.end if active else None,
                "scheduled": [{"id": x.sp.id, "seq": x.sp.seq, "from": x.start, "until": x.end}
                              for x in self._leases if x is not active],
                "last_seq": self._last_seq if self._last_seq >= 0 else None,
            }

    # ------------------------------------------------------------------ persistence

    def export_state(self) -> dict[str, Any]:
        """What must survive a controller restart (JSON-able): accepted leases and the replay memory."""
        with self._lock:
            return {
                "version": STATE_VERSION,
                "last_seq": self._last_seq,
                "recent_seqs": list(self._recent),
                "leases": [{"setpoint": x.sp.to_dict(), "start": x.start, "end": x.end} for x in self._leases],
            }

    def restore_state(self, state: dict[str, Any], now: float) -> None:
        """Reload :meth:`export_state` output after a restart; leases already over are dropped."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"dispatch state version {state.get('version')!r} is not {STATE_VERSION}")
        with self._lock:
            self._last_seq = int(state["last_seq"])
            self._recent = OrderedDict((int(q), None) for q in state["recent_seqs"][-_RECENT_SEQS:])
            self._leases = []
            for item in state["leases"]:
                sp = Setpoint(**item["setpoint"])
                if item["end"] > now:
                    self._leases.append(_Lease(sp, self._asked(sp), item["start"], item["end"]))
            self._leases.sort(key=lambda x: x.start)
            self._advance(now)

    # ------------------------------------------------------------------ internals (lock held)

    def _asked(self, sp: Setpoint) -> Asked:
        """The setpoint clamped to the site: the limits the cycle is actually given."""
        r = self.settings.range
        imp = min(sp.import_limit_kw, r.import_cap_kw)
        exp = min(sp.export_limit_kw, r.export_cap_kw)
        target = None if sp.target_kw is None else min(max(sp.target_kw, -exp), imp)
        ramp = min(sp.ramp_kw_per_s or r.ramp_limit_kw_per_s, r.ramp_limit_kw_per_s)
        return Asked(imp, exp, target, ramp)

    def _check(self, items: tuple[Setpoint | Rejection, ...], now: float) -> list[Setpoint | Rejection]:
        s, r = self.settings, self.settings.range
        out: list[Setpoint | Rejection] = []
        prev_seq = self._last_seq
        placed: list[Setpoint] = []
        for item in items:
            if isinstance(item, Rejection):
                out.append(item)
                continue
            sp = item

            def no(reason: Reason, detail: str) -> Rejection:
                return Rejection(reason, detail, sp.id, sp.seq)

            t = sp.target_kw
            if sp.seq in self._recent:
                v: Setpoint | Rejection = no(Reason.SEQ_REPLAYED, f"seq {sp.seq} was already accepted")
            elif sp.seq <= prev_seq:
                v = no(Reason.SEQ_STALE, f"seq {sp.seq} must be above {prev_seq}"
                       + (" (seq must increase within a schedule)" if prev_seq != self._last_seq else ""))
            elif sp.valid_until <= now:
                v = no(Reason.VALID_UNTIL_PAST, f"valid_until is {now - sp.valid_until:.3f} s in the past")
            elif abs(sp.issued_at - now) > s.max_clock_skew_s:
                v = no(Reason.ISSUED_AT_OUT_OF_WINDOW,
                       f"issued_at is {sp.issued_at - now:+.3f} s from the station clock (max +/-{s.max_clock_skew_s:g} s)")
            elif sp.valid_from > now + s.max_schedule_ahead_s:
                v = no(Reason.TOO_FAR_AHEAD, f"valid_from is {sp.valid_from - now:.0f} s ahead (max {s.max_schedule_ahead_s:g} s)")
            elif sp.valid_until - sp.valid_from > s.max_lease_s:
                v = no(Reason.LEASE_TOO_LONG, f"window of {sp.valid_until - sp.valid_from:.0f} s (max {s.max_lease_s:g} s)")
            elif t is not None and not -r.max_export_kw <= t <= r.max_import_kw:
                v = no(Reason.TARGET_OUT_OF_RANGE,
                       f"target_kw {t:g} outside the station's reach [{-r.max_export_kw:g}, {r.max_import_kw:g}]")
            elif t is not None and not -sp.export_limit_kw <= t <= sp.import_limit_kw:
                v = no(Reason.TARGET_OUTSIDE_LIMITS,
                       f"target_kw {t:g} outside [-export_limit_kw, import_limit_kw] = "
                       f"[{-sp.export_limit_kw:g}, {sp.import_limit_kw:g}]")
            elif any(p.valid_from < sp.valid_until and sp.valid_from < p.valid_until for p in placed):
                v = no(Reason.SCHEDULE_OVERLAP, "its window overlaps an earlier setpoint of this schedule")
            else:
                v = sp
                placed.append(sp)
            prev_seq = max(prev_seq, sp.seq)
            out.append(v)
        if not any(isinstance(v, Rejection) for v in out):
            if len(self._leases) + len(out) > s.max_pending_setpoints:
                return [Rejection(Reason.TOO_MANY_PENDING,
                                  f"{len(self._leases)} pending + {len(out)} new > {s.max_pending_setpoints}",
                                  v.id, v.seq) for v in out if isinstance(v, Setpoint)]
        return out

    def _reject_all(self, verdicts: list[Setpoint | Rejection], schedule: bool, now: float, ref: str) -> list[Ack]:
        bad = [i for i, v in enumerate(verdicts) if isinstance(v, Rejection)]
        acks = []
        for i, v in enumerate(verdicts):
            if isinstance(v, Rejection):
                detail = f"[{i}] {v.detail}" if schedule else v.detail
                acks.append(Ack(v.id, v.seq, False, v.reason, detail, now, ref=ref))
            else:
                acks.append(Ack(v.id, v.seq, False, Reason.SCHEDULE_REJECTED,
                                f"[{i}] valid, but setpoint(s) {bad} of this schedule were rejected", now, ref=ref))
        return acks

    def _accept(self, sp: Setpoint, now: float, ref: str) -> Ack:
        new = _Lease(sp, self._asked(sp))
        kept: list[_Lease] = []
        superseded: list[str] = []
        for old in self._leases:
            if old.end <= new.start or old.start >= new.end:
                kept.append(old)
                continue
            superseded.append(old.sp.id)
            if old.start < new.start:  # keeps its part before the newer one
                old.end = new.start
                old.superseded_by = sp.id
                kept.append(old)
        kept.append(new)
        kept.sort(key=lambda x: x.start)
        self._leases = kept
        self._last_seq = max(self._last_seq, sp.seq)
        self._recent[sp.seq] = None
        if len(self._recent) > _RECENT_SEQS:
            self._recent.popitem(last=False)
        applied = max(now, sp.valid_from)
        detail = "active" if sp.valid_from <= now else f"scheduled in {sp.valid_from - now:.3f} s"
        if sp.import_limit_kw > new.asked.import_limit_kw or sp.export_limit_kw > new.asked.export_limit_kw:
            detail += "; limits clamped to the site caps"
        return Ack(sp.id, sp.seq, True, Reason.OK, detail, now, applied, tuple(superseded), ref)

    def _advance(self, now: float) -> None:
        """Bring leases, the active lease, the fallback ramp, events and evidence up to ``now``."""
        if now < self._now:
            if self._now - now <= self.settings.max_clock_skew_s:
                return  # another thread's slightly older reading: time stands still
            self._clock_stepped_back(now)
        self._now = now
        ended: _Lease | None = None
        while self._leases and self._leases[0].end <= now:
            lease = self._leases.pop(0)
            if lease is self._active:
                self._finish(lease, lease.end, "superseded" if lease.superseded_by else "expired")
                ended = lease
            else:
                self._emit("dispatch_ended", lease.end, lease, reason="skipped")  # never seen by the cycle
        head = self._leases[0] if self._leases and self._leases[0].start <= now else None
        if self._active is not None and head is not self._active:  # superseded at once by a newer one
            gone = self._active
            self._finish(gone, now, "superseded")
            ended = gone
        if head is not None and head is not self._active:
            self._start(head, now)
        elif head is None and ended is not None:
            self._begin_fallback(ended, min(ended.end, now))
        if self._ramp is not None and self._active is None:
            t0, imp0, exp0 = self._ramp
            s = self.settings
            span = max(abs(s.fallback_import_kw - imp0), abs(s.fallback_export_kw - exp0))
            done_at = t0 + span / s.fallback_ramp_kw_per_s
            if now >= done_at:
                self._ramp = None
                self._events.append(DispatchEvent("dispatch_fallback_reached", done_at, {
                    "import_limit_kw": s.fallback_import_kw, "export_limit_kw": s.fallback_export_kw}))

    def _ramp_values(self, now: float) -> tuple[float, float]:
        """(import, export) caps of the fallback profile at ``now``, on the way from the last lease."""
        s = self.settings
        if self._ramp is None:
            return s.fallback_import_kw, s.fallback_export_kw
        t0, imp0, exp0 = self._ramp
        step = s.fallback_ramp_kw_per_s * max(0.0, now - t0)
        return move_toward(imp0, s.fallback_import_kw, step), move_toward(exp0, s.fallback_export_kw, step)

    def _clock_stepped_back(self, now: float) -> None:
        """The wall clock jumped back: drop every lease, fall back from where the active one held the grid."""
        active = self._active
        for lease in self._leases:
            if lease is active:
                self._finish(lease, now, "clock_stepped_back")
            else:
                self._emit("dispatch_ended", now, lease, reason="clock_stepped_back")
        self._leases = []
        if active is not None:
            self._begin_fallback(active, now)
        elif self._ramp is not None:  # continue a fallback ramp from where it had got to
            self._ramp = (now, *self._ramp_values(self._now))

    def _start(self, lease: _Lease, now: float) -> None:
        self._active = lease
        self._ramp = None
        s = self.settings
        initial = self._last_sample[1] if self._last_sample is not None else None
        self._meter = ResponseMeter(lease.asked, now, initial, tolerance_kw=s.settle_tolerance_kw,
                                    change_threshold_kw=s.change_threshold_kw, max_gap_s=s.evidence_max_gap_s)
        a = lease.asked
        self._emit("dispatch_started", now, lease, import_limit_kw=a.import_limit_kw,
                   export_limit_kw=a.export_limit_kw, target_kw=a.target_kw, ramp_kw_per_s=a.ramp_kw_per_s,
                   valid_until=lease.end)

    def _finish(self, lease: _Lease, at: float, reason: str) -> None:
        self._active = None
        self._emit("dispatch_ended", at, lease, reason=reason, superseded_by=lease.superseded_by)
        if self._meter is not None:
            self._reports.append(self._meter.report(at, reason, lease.sp.to_dict()))
            self._meter = None

    def _begin_fallback(self, ended: _Lease, t0: float) -> None:
        """Start the ramp from where the ended lease held the grid toward the fallback profile."""
        a, s = ended.asked, self.settings
        imp0, exp0 = a.import_limit_kw, a.export_limit_kw
        if a.target_kw is not None:
            imp0, exp0 = min(imp0, max(a.target_kw, 0.0)), min(exp0, max(-a.target_kw, 0.0))
        self._ramp = (t0, imp0, exp0)
        self._events.append(DispatchEvent("dispatch_fallback", t0, {
            "after_id": ended.sp.id,
            "from_import_limit_kw": imp0,
            "from_export_limit_kw": exp0,
            "import_limit_kw": s.fallback_import_kw,
            "export_limit_kw": s.fallback_export_kw,
            "ramp_kw_per_s": s.fallback_ramp_kw_per_s,
        }))

    def _emit(self, kind: str, at: float, lease: _Lease, **data: Any) -> None:
        self._events.append(DispatchEvent(kind, at, {"id": lease.sp.id, "seq": lease.sp.seq, **data}))
