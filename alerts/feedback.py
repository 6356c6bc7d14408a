"""What the patient's device is told after each message: a colour and a short Swedish text.

Written for someone aged 80 reading a small screen: short sentences, what to do next.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from hemmon.ingest.model import Normalised, RejectReason
from hemmon.rules.evaluate import Finding, worst_level
from hemmon.rules.model import Level

FeedbackStatus = Literal["green", "yellow", "red", "rejected"]

TEXTS: dict[str, str] = {
    "green": "Tack! Din mätning är mottagen och ligger inom dina gränser.",
    "yellow": (
        "Tack! Din mätning ligger utanför dina gränser. "
        "Din hälsocentral ser över den under dagen."
    ),
    "red": (
        "Din mätning behöver ses över nu. Vården har fått besked och kontaktar dig. "
        "Om du mår mycket dåligt, ring 112."
    ),
    "rejected": "Mätningen kunde inte tas emot. Mät gärna igen.",
    "remeasure": (
        "Värdet ser avvikande ut. Sitt still och vila i fem minuter, värm händerna och mät"
        " igen. Om du mår mycket dåligt, ring 112."
    ),
}
_REJECTED_TEXTS: dict[RejectReason, str] = {
    RejectReason.FUTURE_TIME: (
        "Mätningen kunde inte tas emot: klockan i mätaren går fel. "
        "Kontakta din hälsocentral."
    ),
    RejectReason.IMPLAUSIBLE_VALUE: (
        "Mätningen verkar felaktig och kunde inte tas emot. Mät gärna igen."
    ),
    RejectReason.UNKNOWN_DEVICE: (
        "Mätaren är inte kopplad till dig ännu. Kontakta din hälsocentral."
    ),
}


class Feedback(BaseModel):
    """The payload hemmon publishes on the device's feedback topic (contract.md)."""

    model_config = ConfigDict(frozen=True)

    message_id: str | None
    status: FeedbackStatus
    text: str

    def payload(self) -> bytes:
        return json.dumps(self.model_dump(), ensure_ascii=False).encode()


def feedback_for(normalised: Normalised, findings: Iterable[Finding], *,
                 held: bool = False) -> Feedback | None:
    """Green, yellow or red by the worst finding; rejected when nothing became a reading;
    yellow asking for a new measurement when a value waits for one (`held`: a rule's
    `confirm`), unless something is already red.

    None when the message held nothing to answer (an empty sync, only goals or extras).
    """
    if not normalised.readings and not normalised.rejections:
        return None
    if not normalised.readings:
        first = normalised.rejections[0].reason if normalised.rejections else None
        text = _REJECTED_TEXTS.get(first, TEXTS["rejected"]) if first else TEXTS["rejected"]
        return Feedback(message_id=normalised.key, status="rejected", text=text)
    level = worst_level(findings)
    if held and level is not Level.RED:
        return Feedback(message_id=normalised.key, status="yellow", text=TEXTS["remeasure"])
    status: FeedbackStatus = (
        "red" if level is Level.RED else "yellow" if level is Level.YELLOW else "green"
    )
    return Feedback(message_id=normalised.key, status=status, text=TEXTS[status])
