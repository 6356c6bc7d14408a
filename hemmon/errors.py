"""hemmon's exceptions, one tree, so that each kind of trouble looks different in logs,
metrics and exit codes:

    HemmonError
    ├── SettingsError        a wrong or missing setting: stop at start, naming it (exit 2)
    │   └── RosterError      a roster file that cannot be loaded (nothing is loaded)
    ├── Unavailable          a service is away (transient): retry, acknowledge nothing
    │   ├── DatabaseUnavailable
    │   └── BrokerUnavailable
    └── InternalError        a bug in hemmon: ERROR with traceback, the message kept for
                             replay as an `internal_error` rejection

Bad input is no exception at all: `normalise()` returns it as a rejection with a reason
from a fixed list (hemmon.ingest.model.RejectReason), and it is kept.
"""

from __future__ import annotations


class HemmonError(Exception):
    """Base of every error hemmon raises on purpose."""


class SettingsError(HemmonError, ValueError):
    """A setting (HEMMON_*) is wrong or missing; the message names it."""


class Unavailable(HemmonError):
    """A service hemmon needs cannot be reached now; the work is kept and retried."""


class DatabaseUnavailable(Unavailable):
    """The database named by HEMMON_DATABASE_URL cannot be reached or used."""


class BrokerUnavailable(Unavailable):
    """The MQTT broker or Kafka cannot be reached."""


class InternalError(HemmonError):
    """A bug in hemmon met while handling a message (not the message's fault)."""
