"""Origins: the text that names who asked for a posting, and the run it names, if any."""

from __future__ import annotations

import pytest

from reconcile.domain import origin


@pytest.mark.parametrize(
    ("text", "run_id", "words"),
    [
        (
            origin.for_run("20261120T020000Z-ab12"),
            "20261120T020000Z-ab12",
            "run 20261120T020000Z-ab12",
        ),
        (origin.for_webhook("evt_1"), None, "webhook evt_1"),
        (origin.for_top_up("key:1"), None, "top-up key:1"),
        ("run:", None, "run:"),
        ("by hand", None, "by hand"),
    ],
)
def test_an_origin_names_its_run_only_when_a_run_made_it(
    text: str, run_id: str | None, words: str
) -> None:
    assert origin.run_id_of(text) == run_id
    assert origin.describe(text) == words
