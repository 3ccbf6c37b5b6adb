"""The Firestore store, for functions that run in Google Cloud (or against the emulator).

Claims use ``create()`` for fresh keys and updates guarded by the ``last_update_time`` precondition for
everything else, never read-modify-write transactions: the emulator (and Firestore under contention) answers
contended transactions with ``409 Aborted: Transaction lock timeout``. A lost race simply re-reads and decides
again with the same rules as the SQLite store (:func:`farmsync.store.base.decide_claim`). Aborted, Unavailable
and DeadlineExceeded are retried with a short backoff; anything else becomes a StoreError.

Importing this module imports grpc and the Firestore client (about 0.4 s), so only :func:`farmsync.store.open_store`
imports it, and only when STORE_BACKEND=firestore.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import google.auth.exceptions
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from farmsync.errors import ConfigError, LeaseLost, StoreError
from farmsync.store.base import (
    EPHEMERAL_KEY_NAMESPACES,
    EPHEMERAL_RETENTION_SECONDS,
    EPHEMERAL_VALUE_NAMESPACES,
    Claim,
    Clock,
    Counts,
    Cursor,
    Outcome,
    Record,
    State,
    Store,
    decide_claim,
    new_owner,
)

T = TypeVar("T")
RETRYABLE = (gexc.Aborted, gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError)
LOST_RACE = (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.Conflict)
MAX_ROUNDS = 50
RPC: dict[str, Any] = {"retry": None, "timeout": 10.0}
"""Every Firestore call: no client-side retry (its default retries UNAVAILABLE for up to 300 s, which made a
tick hang through a store outage) and a timeout; :meth:`FirestoreStore._call` retries transient errors itself."""

NO_CREDENTIALS = (
    "STORE_BACKEND=firestore: no Google credentials found: set GOOGLE_APPLICATION_CREDENTIALS, run "
    "`gcloud auth application-default login`, or set FIRESTORE_EMULATOR_HOST (environment or .env)"
)


class FirestoreStore(Store):
    """Store in three collections: ``<prefix>_keys``, ``<prefix>_cursors`` and ``<prefix>_values``."""

    def __init__(
        self,
        project: str,
        prefix: str = "farmsync",
        database: str = "(default)",
        clock: Clock = time.time,
        client: firestore.Client | None = None,
    ) -> None:
        super().__init__(clock)
        try:
            self.client = client or firestore.Client(project=project, database=database)
        except google.auth.exceptions.DefaultCredentialsError:
            raise ConfigError(NO_CREDENTIALS) from None
        self.prefix = prefix
        self._keys = self.client.collection(f"{prefix}_keys")
        self._cursors = self.client.collection(f"{prefix}_cursors")
        self._values = self.client.collection(f"{prefix}_values")

    # --- plumbing ----------------------------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one Firestore call, retrying transient errors; raise StoreError for the rest."""
        for attempt in range(4):
            try:
                return fn()
            except LOST_RACE:
                raise
            except RETRYABLE as exc:
                if attempt == 3:
                    raise StoreError(f"firestore store: {what}: {type(exc).__name__} after retries") from None
                time.sleep(random.uniform(0, 0.05 * 2**attempt))
            except gexc.GoogleAPICallError as exc:
                raise StoreError(f"firestore store: {what}: {type(exc).__name__}: {exc.message}") from None
            except Exception as exc:  # grpc/transport failures surface as assorted types
                raise StoreError(f"firestore store: {what}: {type(exc).__name__}") from None
        raise StoreError(f"firestore store: {what}: gave up")  # pragma: no cover

    @staticmethod
    def _doc_id(namespace: str, key: str) -> str:
        return f"{quote(namespace, safe='')}:{quote(key, safe='')}"

    @staticmethod
    def _expiry(namespace: str, updated_at: float, ephemeral: frozenset[str]) -> dict[str, Any]:
        """``expires_at`` for the TTL policy, only on records that are safe to forget."""
        if namespace not in ephemeral:
            return {}
        return {"expires_at": datetime.fromtimestamp(updated_at + EPHEMERAL_RETENTION_SECONDS, UTC)}

    @classmethod
    def _to_fields(cls, record: Record) -> dict[str, Any]:
        return {
            **cls._expiry(record.namespace, record.updated_at, EPHEMERAL_KEY_NAMESPACES),
            "namespace": record.namespace,
            "key": record.key,
            "state": record.state.value,
            "owner": record.owner,
            "lease_until": record.lease_until,
            "attempts": record.attempts,
            "last_error": record.last_error,
            "result": record.result,
            "not_before": record.not_before,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }

    @staticmethod
    def _from_fields(data: dict[str, Any] | None) -> Record | None:
        if not data:
            return None
        return Record(
            data["namespace"],
            data["key"],
            State(data["state"]),
            data.get("owner"),
            data.get("lease_until"),
            int(data.get("attempts", 0)),
            data.get("last_error"),
            data.get("result"),
            data.get("not_before"),
            data.get("created_at", 0.0),
            data.get("updated_at", 0.0),
        )

    # --- claims ----------------------------------------------------------------------------------------------------
    def claim(
        self,
        namespace: str,
        key: str,
        *,
        lease_seconds: float,
        owner: str | None = None,
        retry_parked: bool = False,
    ) -> Claim:
        owner = owner or new_owner()
        doc = self._keys.document(self._doc_id(namespace, key))
        for _ in range(MAX_ROUNDS):
            snap = self._call("read key", lambda: doc.get(**RPC))
            current = self._from_fields(snap.to_dict()) if snap.exists else None
            outcome, record = decide_claim(
                current, namespace, key, owner, self.clock(), lease_seconds, retry_parked
            )
            if outcome not in (Outcome.ACQUIRED, Outcome.TAKEOVER):
                return Claim(outcome, current)
            try:
                if current is None:
                    self._call("create key", functools.partial(doc.create, self._to_fields(record), **RPC))
                else:
                    option = self.client.write_option(last_update_time=snap.update_time)
                    self._call(
                        "claim key",
                        functools.partial(doc.update, self._to_fields(record), option=option, **RPC),
                    )
            except LOST_RACE:
                continue  # someone else wrote first: read again and decide again
            return Claim(outcome, record, owner)
        raise StoreError(f"firestore store: claim {namespace}:{key}: too much contention")

    def _update_held(self, claim: Claim, change: Callable[[Record, float], Record]) -> Record:
        if not claim.held or claim.record is None:
            raise LeaseLost(f"{claim.outcome} claims cannot be changed")
        doc = self._keys.document(self._doc_id(claim.namespace, claim.key))
        for _ in range(MAX_ROUNDS):
            snap = self._call("read key", lambda: doc.get(**RPC))
            current = self._from_fields(snap.to_dict()) if snap.exists else None
            if current is None or current.owner != claim.owner or current.state is not State.CLAIMED:
                raise LeaseLost(f"lease on {claim.namespace}:{claim.key} is no longer ours")
            record = change(current, self.clock())
            option = self.client.write_option(last_update_time=snap.update_time)
            try:
                self._call(
                    "update key", functools.partial(doc.update, self._to_fields(record), option=option, **RPC)
                )
            except LOST_RACE:
                continue
            return record
        raise StoreError(f"firestore store: update {claim.namespace}:{claim.key}: too much contention")

    # --- reads -----------------------------------------------------------------------------------------------------
    def get(self, namespace: str, key: str) -> Record | None:
        doc = self._keys.document(self._doc_id(namespace, key))
        snap = self._call("read key", lambda: doc.get(**RPC))
        return self._from_fields(snap.to_dict()) if snap.exists else None

    def _query(self, namespace: str, state: State | None) -> Any:
        query = self._keys.where(filter=FieldFilter("namespace", "==", namespace))
        if state is not None:
            query = query.where(filter=FieldFilter("state", "==", State(state).value))
        return query

    def list(self, namespace: str, state: State | None = None, limit: int = 100) -> list[Record]:
        query = self._query(namespace, state).order_by("updated_at", direction=firestore.Query.DESCENDING)
        snaps = self._call("list keys", lambda: list(query.limit(limit).stream(**RPC)))
        return [r for r in (self._from_fields(s.to_dict()) for s in snaps) if r is not None]

    def counts(self, namespace: str) -> Counts:
        out: dict[str, int] = {}
        for state in State:
            query = self._query(namespace, state).count()
            result = self._call("count keys", functools.partial(query.get, **RPC))
            n = int(result[0][0].value)
            if n:
                out[state.value] = n
        return Counts(out)

    # --- cursors -----------------------------------------------------------------------------------------------------
    def get_cursor(self, stream: str) -> Cursor | None:
        cursor_doc = self._cursors.document(quote(stream, safe=""))
        snap = self._call("read cursor", lambda: cursor_doc.get(**RPC))
        if not snap.exists:
            return None
        data = snap.to_dict() or {}
        return Cursor(stream, data.get("value"), int(data.get("version", 0)), data.get("updated_at", 0.0))

    def cas_cursor(self, stream: str, expected_version: int | None, value: Any) -> Cursor | None:
        doc = self._cursors.document(quote(stream, safe=""))
        now = self.clock()
        try:
            if expected_version is None:
                self._call(
                    "create cursor",
                    lambda: doc.create({"value": value, "version": 1, "updated_at": now}, **RPC),
                )
                return Cursor(stream, value, 1, now)
            snap = self._call("read cursor", lambda: doc.get(**RPC))
            if not snap.exists or int((snap.to_dict() or {}).get("version", 0)) != expected_version:
                return None
            version = expected_version + 1
            option = self.client.write_option(last_update_time=snap.update_time)
            self._call(
                "set cursor",
                lambda: doc.update(
                    {"value": value, "version": version, "updated_at": now}, option=option, **RPC
                ),
            )
            return Cursor(stream, value, version, now)
        except LOST_RACE:
            return None

    # --- values ------------------------------------------------------------------------------------------------------
    def _value_doc(self, namespace: str, key: str) -> Any:
        return self._values.document(self._doc_id(namespace, key))

    def get_value(self, namespace: str, key: str) -> Any:
        value_doc = self._value_doc(namespace, key)
        snap = self._call("read value", lambda: value_doc.get(**RPC))
        return (snap.to_dict() or {}).get("value") if snap.exists else None

    def put_value(self, namespace: str, key: str, value: Any) -> None:
        doc = self._value_doc(namespace, key)
        now = self.clock()
        fields = {
            "value": value,
            "updated_at": now,
            **self._expiry(namespace, now, EPHEMERAL_VALUE_NAMESPACES),
        }
        self._call("write value", lambda: doc.set(fields, **RPC))

    def delete_value(self, namespace: str, key: str) -> None:
        value_doc = self._value_doc(namespace, key)
        self._call("delete value", lambda: value_doc.delete(**RPC))

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]  # google-cloud-firestore leaves close() unannotated
