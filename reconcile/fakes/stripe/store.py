"""The fake Stripe's memory: objects by kind, built on Stripe's example objects, in list order."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

Obj = dict[str, Any]
Query = dict[str, str]

TEMPLATES: dict[str, Obj] = {
    name: template
    for name, template in json.loads(
        resources.files("reconcile.fakes.stripe")
        .joinpath("stripe_fixtures.json")
        .read_text(encoding="utf-8")
    ).items()
    if not name.startswith("_")
}
"""Stripe's example object of each type this fake serves, by ``object`` name."""

COLLECTIONS = {
    "customers": "customer",
    "subscriptions": "subscription",
    "payment_intents": "payment_intent",
    "charges": "charge",
    "refunds": "refund",
    "disputes": "dispute",
    "balance_transactions": "balance_transaction",
    "invoice_payments": "invoice_payment",
}
"""The list URLs the fake serves (``/v1/<collection>``) and the object each holds."""

PREFIXES = {
    "customer": "cus",
    "subscription": "sub",
    "payment_intent": "pi",
    "charge": "ch",
    "refund": "re",
    "dispute": "dp",
    "balance_transaction": "txn",
    "invoice_payment": "inpay",
}
"""The id prefix of each kind of object."""

BY_PREFIX = {prefix: kind for kind, prefix in PREFIXES.items()}
"""The kind of object an id prefix names."""


@dataclass(frozen=True)
class Index:
    """Stored objects of one kind in list order (oldest first), for lists served without a scan."""

    items: list[Obj]
    created: list[int]
    position: dict[str, int]


class Store:
    """Every object the fake holds, by kind and id; one re-entrant lock guards them.

    Lists serve objects newest first by ``created``; Stripe promises no order among objects
    created in the same second, so ``order_seed`` permutes those ties (``None``: by id).
    """

    def __init__(
        self,
        clock: Callable[[], datetime],
        order_seed: int | None,
        numbers: Iterator[int] | None = None,
    ) -> None:
        """Hold nothing yet; ``clock`` dates what is made without a time of its own.

        ``numbers`` is the sequence generated ids take their digits from; connected accounts
        share their platform's, so ids stay unique across accounts as Stripe's are.
        """
        self.objects: dict[str, dict[str, Obj]] = {kind: {} for kind in PREFIXES}
        self.lock = threading.RLock()
        self._clock = clock
        self._order_seed = order_seed
        self._numbers = numbers if numbers is not None else itertools.count(1)
        self._indexes: dict[str, Index] = {}

    def put(self, kind: str, fields: Obj) -> str:
        """Store a new object of ``kind``: Stripe's example with ``fields`` over it; its id."""
        with self.lock:
            item = copy.deepcopy(TEMPLATES[kind])
            item.update({name: value for name, value in fields.items() if name != "id"})
            item["id"] = fields.get("id") or f"{PREFIXES[kind]}_fake{self.number():012d}"
            self.objects[kind][item["id"]] = item
            self._indexes.pop(kind, None)
            return str(item["id"])

    def get(self, kind: str, object_id: str) -> Obj:
        """Return the stored object itself (not a copy); the caller holds the lock."""
        found = self.objects[kind].get(object_id)
        if found is None:
            raise KeyError(f"the fake Stripe has no {kind} {object_id}")
        return found

    def copies(self, kind: str) -> list[Obj]:
        """Return copies of every stored object of ``kind``."""
        with self.lock:
            return [copy.deepcopy(item) for item in self.objects[kind].values()]

    def sibling(self) -> Store:
        """Return an empty store on the same clock, order and id sequence (a connected account)."""
        return Store(self._clock, self._order_seed, self._numbers)

    def number(self) -> int:
        """Return the next number of the one sequence every generated id takes its digits from."""
        return next(self._numbers)

    def now(self) -> int:
        """Return the clock's time in Unix seconds."""
        return int(self._clock().timestamp())

    def unix(self, moment: datetime | None) -> int:
        """Return ``moment`` in Unix seconds, or the clock's time when there is none."""
        return self.now() if moment is None else int(moment.timestamp())

    def index(self, kind: str) -> Index:
        """Return the list index of ``kind``, rebuilt after a :meth:`put`; hold the lock."""
        index = self._indexes.get(kind)
        if index is None:
            items = sorted(self.objects[kind].values(), key=self._listing_key)
            index = Index(
                items=items,
                created=[item["created"] for item in items],
                position={item["id"]: number for number, item in enumerate(items)},
            )
            self._indexes[kind] = index
        return index

    def _listing_key(self, item: Obj) -> tuple[int, bytes, str]:
        """Order by ``created``; ties in a permutation fixed by the seed (or by id)."""
        if self._order_seed is None:
            return (item["created"], b"", item["id"])
        tie = hashlib.blake2b(f"{self._order_seed}:{item['id']}".encode(), digest_size=8)
        return (item["created"], tie.digest(), item["id"])
