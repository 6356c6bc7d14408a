"""What the region's journal receives: one FHIR transaction Bundle per alert event, pure.

Each opening, acknowledgement, resolution and note of an alert becomes one Bundle (the
Flag as it stands after the event, the event as a Communication, and for an opening the
reading that opened it), made so that a Bundle delivered twice changes nothing the second
time. `journal_round` turns the alert events read after the feeder's cursor into outbox
rows and says where the cursor moves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .fhir_export import (
    PRESSURES,
    ExportAlert,
    ExportEvent,
    ExportReading,
    FhirSystems,
    Resource,
    communication,
    flag,
    full_url,
    instant,
    observations,
)


def _identifier_query(resource: Resource) -> str:
    identifier = resource["identifier"][0]
    return f"identifier={identifier['system']}|{identifier['value']}"


def evidence_for(alert: ExportAlert, message: Iterable[ExportReading]) -> list[ExportReading]:
    """Of the readings of the message that opened an alert, those it is about: the reading
    of its measurement, and for a blood pressure the whole pair."""
    if alert.measurement is None:
        return []
    wanted = ({p.value for p in PRESSURES} if alert.measurement in PRESSURES
              else {alert.measurement})
    return [reading for reading in message if reading.type.value in wanted]


def _create_once(resource: Resource) -> Resource:
    return {"fullUrl": full_url(resource),
            "resource": {key: value for key, value in resource.items() if key != "id"},
            "request": {"method": "POST", "url": resource["resourceType"],
                        "ifNoneExist": _identifier_query(resource)}}


def journal_bundle(alert: ExportAlert, event: ExportEvent, systems: FhirSystems,
                   personnummer: str | None = None,
                   evidence: Sequence[ExportReading] = ()) -> Resource:
    """The transaction a journal receives for one event of an alert: the Flag as it stands
    after the event (a conditional update on its identifier: created once, then kept up to
    date) and the event as a Communication (created once: `ifNoneExist` on its identifier),
    so a Bundle delivered twice changes nothing the second time. The opening also carries
    the reading that opened the alert (`evidence`), created once the same way."""
    flagged = flag(alert, systems, personnummer, as_of=event)
    flag_url = full_url(flagged)
    shown = (observations(evidence, systems, {alert.patient_id: personnummer}
                          if personnummer else None)
             if event.action == "opened" else [])
    told = communication(event, alert, systems, personnummer, flag_reference=flag_url,
                         evidence=[full_url(o) for o in shown])
    flag_entry = {key: value for key, value in flagged.items() if key != "id"}
    return {
        "resourceType": "Bundle",
        "identifier": {"system": systems.of("journal-bundle"), "value": str(event.id)},
        "type": "transaction",
        "timestamp": instant(event.at),
        "entry": [
            {"fullUrl": flag_url, "resource": flag_entry,
             "request": {"method": "PUT", "url": f"Flag?{_identifier_query(flagged)}"}},
            *(_create_once(o) for o in shown),
            _create_once(told),
        ],
    }


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One outbox row for the journal."""

    alert_id: int
    key: str
    bundle: Resource


def journal_round(events: Sequence[tuple[ExportAlert, ExportEvent]], cursor: int,
                  now: datetime, settle: timedelta, systems: FhirSystems,
                  personnummer: Mapping[str, str],
                  openings: Mapping[int, Sequence[ExportReading]] | None = None,
                  ) -> tuple[list[JournalEntry], int]:
    """The journal's outbox rows for events read after the cursor, and the new cursor.
    `openings` has, by alert id, the readings of the message that opened the alert.

    Event ids are taken when a transaction writes, not when it commits, so an event may
    appear behind one with a higher id. The cursor therefore stops short of the events
    younger than `settle`: they are read again next round, and their outbox rows, keyed by
    the event, are written once.
    """
    entries = [JournalEntry(alert.id, f"hemmon-journal-{event.id}",
                            journal_bundle(alert, event, systems,
                                           personnummer.get(alert.patient_id),
                                           evidence_for(alert, (openings or {}).get(
                                               alert.id, ()))))
               for alert, event in events]
    settled = cursor
    for _, event in events:
        if event.at > now - settle:
            break
        settled = event.id
    return entries, settled
