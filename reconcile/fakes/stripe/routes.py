"""The fake Stripe's reads as the real SDK asks for them: retrieve, list, filters, pages.

Lists are newest first by ``created``, as Stripe documents; cursors, ``created`` filters and
``has_more`` follow the one order a list serves (see :class:`~reconcile.fakes.stripe.store.Store`).
"""

from __future__ import annotations

import bisect
import copy
import math
from collections.abc import Callable, Collection, Mapping
from urllib.parse import unquote_plus

from reconcile.fakes.stripe.errors import StripeApiError
from reconcile.fakes.stripe.store import BY_PREFIX, COLLECTIONS, Obj, Query, Store

FINAL_INVOICE_LINK_VERSION = "2025-03-31"
"""From this API version (basil) on, Stripe's PaymentIntents no longer name their invoice."""

_LIST_FILTERS = {
    "customer": ("customer",),
    "subscription": ("customer",),
    "payment_intent": ("customer",),
    "charge": ("customer", "payment_intent"),
    "refund": ("charge", "payment_intent"),
    "dispute": ("charge", "payment_intent"),
    "balance_transaction": ("type", "source"),
    "invoice_payment": ("invoice", "payment[payment_intent]", "payment[type]"),
}


class Routes:
    """Answers authenticated GETs of ``/v1/<collection>`` and ``/v1/<collection>/<id>``."""

    def __init__(
        self,
        state: Store,
        *,
        api_key: str,
        served: Collection[str],
        unknown_url: tuple[int, Obj] | None,
        unfiltered: Collection[str],
    ) -> None:
        """Read from ``state``; the switches are :class:`FakeStripe`'s (see there)."""
        self._state = state
        self._api_key = api_key
        self._served = frozenset(served)
        self._unknown_url = unknown_url
        self._unfiltered = frozenset(unfiltered)

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """Refuse a request without the one API key, naming the key as Stripe masks it."""
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if given != self._api_key:
            masked = f"{given[:8]}{'*' * max(0, len(given) - 12)}{given[-4:]}" if given else ""
            raise StripeApiError(401, f"Invalid API Key provided: {masked}")

    def read(
        self, method: str, path: str, query: Query, version: str, *, repeat_pages: bool = False
    ) -> Obj:
        """Answer a request that is not a POST: one object, or one page of a list."""
        # The SDK quotes ids as a form does (quote_plus); take them back as it does.
        segments = [unquote_plus(part) for part in path.split("/") if part]
        if method != "GET" or len(segments) not in (2, 3) or segments[0] != "v1":
            raise self._unrecognized(method, path)
        kind = COLLECTIONS.get(segments[1]) if segments[1] in self._served else None
        if kind is None:
            raise self._unrecognized(method, path)
        with self._state.lock:
            if len(segments) == 3:
                return self._retrieve(kind, segments[2], query, version)
            return self._list(kind, path, query, version, repeat_pages)

    def _unrecognized(self, method: str, path: str) -> StripeApiError:
        error = StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")
        if self._unknown_url is not None:
            error.status, error.body = self._unknown_url[0], copy.deepcopy(self._unknown_url[1])
        return error

    def _retrieve(self, kind: str, object_id: str, query: Query, version: str) -> Obj:
        found = self._state.objects[kind].get(object_id)
        if found is None:
            raise StripeApiError(
                404, f"No such {kind}: '{object_id}'", code="resource_missing", param="id"
            )
        return self._render(found, version, _expansions(query, ""))

    def _list(self, kind: str, path: str, query: Query, version: str, repeat_pages: bool) -> Obj:
        limit = _limit(query)
        filtered = kind not in self._unfiltered
        if repeat_pages:
            page, has_more = self._indexed_page(kind, {**query, "starting_after": ""}, limit)
            has_more = True
        elif query.get("ending_before"):
            items = [
                item
                for item in self._ordered(kind)
                if _matches(item, kind, query, filtered=filtered)
            ]
            page, has_more = _page(items, query, limit)
        else:
            page, has_more = self._indexed_page(kind, query, limit)
        expand = _expansions(query, "data.")
        return {
            "object": "list",
            "data": [self._render(item, version, expand) for item in page],
            "has_more": has_more,
            "url": path,
        }

    def _indexed_page(self, kind: str, query: Query, limit: int) -> tuple[list[Obj], bool]:
        """Return one page, newest first, reading only the index range the query can reach."""
        index = self._state.index(kind)
        low, high = _created_bounds(query)
        start = bisect.bisect_left(index.created, low)
        stop = bisect.bisect_right(index.created, high)
        cursor = query.get("starting_after")
        filtered = kind not in self._unfiltered
        if cursor:
            position = index.position.get(cursor)
            if position is None or not _matches(
                index.items[position], kind, query, filtered=filtered
            ):
                raise StripeApiError(400, f"No such object: '{cursor}'", param="starting_after")
            stop = min(stop, position)
        page: list[Obj] = []
        for position in range(stop - 1, start - 1, -1):
            item = index.items[position]
            if _matches(item, kind, query, filtered=filtered):
                if len(page) == limit:
                    return page, True
                page.append(item)
        return page, False

    def _ordered(self, kind: str) -> list[Obj]:
        """Return every stored object of ``kind``, newest first (as lists serve them)."""
        return self._state.index(kind).items[::-1]

    def _render(self, item: Obj, version: str, expand: set[str]) -> Obj:
        rendered = copy.deepcopy(item)
        if item["object"] == "payment_intent" and version[:10] >= FINAL_INVOICE_LINK_VERSION:
            rendered.pop("invoice", None)
        for name, inner in _nested(expand).items():
            value = rendered.get(name)
            if isinstance(value, str) and value.split("_", 1)[0] in BY_PREFIX:
                target = self._state.objects[BY_PREFIX[value.split("_", 1)[0]]].get(value)
                if target is not None:
                    rendered[name] = self._render(target, version, inner)
        return rendered


def _limit(query: Query) -> int:
    raw = query.get("limit", "10")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise StripeApiError(
            400,
            "Invalid integer: limit must be between 1 and 100.",
            code="parameter_invalid_integer",
            param="limit",
        )
    return int(raw)


def _matches(item: Obj, kind: str, query: Query, *, filtered: bool = True) -> bool:
    if not _created_matches(item["created"], query):
        return False
    if not filtered:
        return True
    for name in _LIST_FILTERS[kind]:
        if name in query and str(_field(item, name) or "") != query[name]:
            return False
    if kind == "subscription":
        return _subscription_status_matches(item["status"], query.get("status"))
    return True


def _field(item: Obj, name: str) -> object:
    if "[" not in name:
        return item.get(name)
    outer, inner = name.rstrip("]").split("[", 1)
    value = item.get(outer)
    return value.get(inner) if isinstance(value, dict) else None


def _created_matches(created: int, query: Query) -> bool:
    checks: dict[str, Callable[[int, int], bool]] = {
        "gte": lambda a, b: a >= b,
        "gt": lambda a, b: a > b,
        "lte": lambda a, b: a <= b,
        "lt": lambda a, b: a < b,
    }
    if "created" in query:
        return created == _integer(query["created"], "created")
    return all(
        check(created, _integer(query[f"created[{name}]"], f"created[{name}]"))
        for name, check in checks.items()
        if f"created[{name}]" in query
    )


def _created_bounds(query: Query) -> tuple[float, float]:
    """Return the inclusive range of ``created`` a list query can match."""
    low, high = -math.inf, math.inf
    if "created" in query:
        exact = _integer(query["created"], "created")
        return exact, exact
    for name in ("gte", "gt", "lte", "lt"):
        key = f"created[{name}]"
        if key in query:
            value = _integer(query[key], key)
            if name in ("gte", "gt"):
                low = max(low, value + (name == "gt"))
            else:
                high = min(high, value - (name == "lt"))
    return low, high


def _integer(raw: str, param: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise StripeApiError(400, f"Invalid integer: {raw}", param=param) from None


def _subscription_status_matches(status: str, wanted: str | None) -> bool:
    if wanted == "all":
        return True
    if wanted is None:
        return status not in ("canceled", "incomplete_expired")
    if wanted == "ended":
        return status in ("canceled", "incomplete_expired")
    return status == wanted


def _page(items: list[Obj], query: Query, limit: int) -> tuple[list[Obj], bool]:
    ids = [item["id"] for item in items]
    if query.get("starting_after"):
        start = _cursor(ids, query["starting_after"]) + 1
        return items[start : start + limit], len(items) > start + limit
    if query.get("ending_before"):
        end = _cursor(ids, query["ending_before"])
        return items[max(0, end - limit) : end], end - limit > 0
    return items[:limit], len(items) > limit


def _cursor(ids: list[str], cursor: str) -> int:
    if cursor not in ids:
        raise StripeApiError(400, f"No such object: '{cursor}'", param="starting_after")
    return ids.index(cursor)


def _nested(expand: set[str]) -> dict[str, set[str]]:
    """Return each field to expand with what to expand inside it (``a.b`` expands ``b`` of ``a``).

    Stripe expands up to four levels deep; the fake does not count them.
    """
    nested: dict[str, set[str]] = {}
    for path in expand:
        head, _, rest = path.partition(".")
        nested.setdefault(head, set()).update([rest] if rest else [])
    return nested


def _expansions(query: Query, prefix: str) -> set[str]:
    return {
        value.removeprefix(prefix)
        for name, value in query.items()
        if name.startswith("expand[") and value.startswith(prefix)
    }
