"""Moving through a queue longer than one page of the review page: skip, previous page.

Found by driving the page in Chromium with 149 reported images: `s` on the 100th item
wrapped to the 1st, so skipping never reached item 101, and on the second page `k` on its
first item (and the pager) could not step back to the page before.
"""

from __future__ import annotations

import html
import re

from admin_helpers import Tokens, reported_image
from test_review_page import sign_in

from server.admin.page import QUEUE_SHOWN

DASH = "\u2013"


def _link(page: str, element_id: str) -> str | None:
    match = re.search(rf'id="{element_id}" href="([^"]+)"', page)
    return html.unescape(match.group(1)) if match else None


def _heading(page: str) -> str:
    return page.split("<h1>", 1)[1].split("</h1>", 1)[0]


async def test_skipping_past_the_last_item_of_a_page_goes_on_and_k_steps_back(
    client, tokens: Tokens
) -> None:
    shas = [await reported_image(client) for _ in range(QUEUE_SHOWN + 2)]
    await sign_in(client, tokens.reviewer)

    # Skip on the page's last item opens the next page, not the top of this one.
    last_of_first = (await client.get(f"/admin/items/{shas[QUEUE_SHOWN - 1]}")).text
    skip = _link(last_of_first, "skip")
    assert skip is not None
    second = (await client.get(skip)).text
    assert shas[QUEUE_SHOWN][:16] in _heading(second)
    assert f"Items {QUEUE_SHOWN + 1}{DASH}{QUEUE_SHOWN + 2} of" in second

    # Within a page, skip still moves to the following item, keeping the page's cursor.
    skip_on_second = _link(second, "skip")
    assert skip_on_second is not None and f"/admin/items/{shas[QUEUE_SHOWN + 1]}?" in skip_on_second
    assert f"cursor={shas[QUEUE_SHOWN - 1]}" in skip_on_second

    # From the second page, "previous page" (k on its first item) lands on the end of the first.
    previous = _link(second, "queue-prev")
    assert previous is not None
    back = (await client.get(previous)).text
    assert shas[QUEUE_SHOWN - 1][:16] in _heading(back)
    assert f"Items 1{DASH}{QUEUE_SHOWN} of" in back
    assert 'aria-current="page"' in back.split(shas[QUEUE_SHOWN - 1], 1)[1][:200]
    assert _link(back, "queue-prev") is None  # the first page has none before it


async def test_a_page_with_one_item_has_no_skip_and_no_previous_page(
    client, tokens: Tokens
) -> None:
    await reported_image(client)
    await sign_in(client, tokens.reviewer)
    page = (await client.get("/admin")).text
    assert _link(page, "skip") is None and _link(page, "queue-prev") is None
