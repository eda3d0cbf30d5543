"""Recording: every call's tamper-evident record, stored before anything is forwarded.

    recorder = await Recorder.start(config.gateway, store.recorded)
    await recorder.write_ahead(calls.call(...))   # or RecordingUnavailable: refuse the call
    recorder.append(calls.reply(...))
    report = await verify(open_storage(url), AuditKey.load(path).verifier())

`calls` says what a record holds, `log` how records are laid out and chained, `merkle` and
`note` how they are hashed and signed, `storage` where they live, `verify` how an auditor
checks all of it.
"""

from geogate.recording import calls
from geogate.recording.note import AuditKey, Checkpoint, NoteError, Verifier
from geogate.recording.recorder import Recorder, RecordingUnavailable
from geogate.recording.storage import Storage, StorageError, open_storage

__all__ = [
    "AuditKey",
    "Checkpoint",
    "NoteError",
    "Recorder",
    "RecordingUnavailable",
    "Storage",
    "StorageError",
    "Verifier",
    "calls",
    "open_storage",
]
