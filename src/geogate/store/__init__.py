"""The gateway's state: users, service accounts and gateway API keys.

    store = await open_store("sqlite:///.geogate/state.db")
    created = await store.create_key("alice@example.com", groups=["support"], expires_in=86400)
    print(created.key)                                   # shown once; only its hash is stored
    record = await store.find_key(hash_api_key(created.key))
    await store.close()

Several gateway worker processes and the CLI share one SQLite file: it runs in WAL mode (readers
never wait for a writer), writers take the write lock when their transaction begins (so two
writers queue instead of failing half-way) and wait up to `busy_timeout` for it. Migrations run
inside such a transaction too, so processes starting together migrate one after the other.

The store mints API keys itself, so a clear key exists only in the `CreatedKey` handed back to
the caller that asked for it; the database sees its SHA-256 and an 8-character display prefix.
"""

from geogate.store.journal import Event
from geogate.store.recorded import CallRow, RecordIndex, SessionSummary
from geogate.store.reviews import ReviewConflict, ReviewRow, ReviewStore
from geogate.store.rules import StoreError
from geogate.store.scim import (
    KEEP,
    Keep,
    MemberChange,
    ScimDirectory,
    ScimError,
    ScimGroup,
    ScimPage,
    ScimRef,
    ScimUser,
)
from geogate.store.state import (
    API_KEY_PREFIX,
    CreatedKey,
    DirectorySnapshot,
    EventInfo,
    KeyInfo,
    KeyRecord,
    ServiceAccountInfo,
    SessionRecord,
    Store,
    UserInfo,
    driver_urls,
    hash_api_key,
    looks_like_api_key,
    new_api_key,
    open_store,
)

__all__ = [
    "API_KEY_PREFIX",
    "KEEP",
    "CallRow",
    "CreatedKey",
    "DirectorySnapshot",
    "Event",
    "EventInfo",
    "Keep",
    "KeyInfo",
    "KeyRecord",
    "MemberChange",
    "RecordIndex",
    "ReviewConflict",
    "ReviewRow",
    "ReviewStore",
    "ScimDirectory",
    "ScimError",
    "ScimGroup",
    "ScimPage",
    "ScimRef",
    "ScimUser",
    "ServiceAccountInfo",
    "SessionRecord",
    "SessionSummary",
    "Store",
    "StoreError",
    "UserInfo",
    "driver_urls",
    "hash_api_key",
    "looks_like_api_key",
    "new_api_key",
    "open_store",
]
