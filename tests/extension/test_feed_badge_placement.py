"""Where feed badges sit: in the page right after the image (or the link around it) they
describe, so the keyboard reaches each one next to its image; drawn over the image's corner
in the top layer, taking no room in the page's layout, and under a panel that is open."""

from __future__ import annotations

from typing import Any

import pytest
from feed_helpers import knows_every_image, switch_feed_mode_on
from panel_helpers import focused_in_panel, panel, press_escape_in_panel

pytestmark = pytest.mark.browser

# Two posts in a flex row, then a button. The page also tries to give the badges room.
POSTS_PAGE = """<!doctype html><html><head><title>Posts</title>
<style>
  body { font-family: sans-serif; margin: 20px; }
  .row { display: flex; gap: 12px; align-items: flex-start; }
  img { display: block; }
  fakescope-badge { display: block !important; position: static !important;
    width: 300px !important; height: 300px !important; margin: 40px !important; }
</style></head><body>
<h1>Posts</h1>
<div class="row">
  <article><a id="link-1" href="/posts/1"><img id="pic-1" src="/img/known.png" width="240"
    height="180" alt="first post"></a><p id="text-1">The first post.</p></article>
  <article><a id="link-2" href="/posts/2"><img id="pic-2" src="/img/unknown.png" width="240"
    height="180" alt="second post"></a><p id="text-2">The second post.</p></article>
</div>
<div id="more"></div>
<button id="end" type="button">Load more</button>
<script>
  window.appendImage = (src, id) => {
    const img = document.createElement('img');
    img.src = src; img.id = id; img.width = 240; img.height = 180; img.alt = id;
    document.getElementById('more').append(img);
  };
</script>
</body></html>"""

# Where everything of the page's own is: the badges must not move any of it.
LAYOUT = """() => ({
    size: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
    boxes: [...document.querySelectorAll('body *:not(fakescope-badge)')].map((el) => {
        const r = el.getBoundingClientRect();
        return [el.tagName, el.id, r.x, r.y, r.width, r.height];
    }),
})"""

# The focused element, named: a page element by its id, a badge by its image's address, the
# panel's host (its panel page has the focus) by its name.
FOCUSED_IN_PAGE = """() => {
    const el = document.activeElement;
    if (el?.localName === 'fakescope-badge') {
        return 'badge ' + el.shadowRoot.activeElement?.dataset.src.split('/').pop();
    }
    return el?.localName === 'fakescope-overlay' ? 'panel' : el?.id || el?.tagName;
}"""


def focused(page: Any) -> str:
    """The focused element (FOCUSED_IN_PAGE); in the panel, the panel's focused element's role."""
    where = str(page.evaluate(FOCUSED_IN_PAGE))
    if where != "panel":
        return where
    inside = focused_in_panel(page)
    return f"panel {inside['role'] if inside else None}"


def badge_count(page: Any) -> int:
    return int(page.locator("fakescope-badge button[data-label]").count())


def badge(page: Any, src: str) -> Any:
    return page.locator(f'fakescope-badge button[data-src="{src}"]')


def on_its_image(page: Any, image: str, src: str) -> bool:
    """Whether the badge of `src` sits over the top-left corner of `image` (a selector)."""
    box = page.locator(image).bounding_box()
    at = badge(page, src).bounding_box()
    return bool(box and at) and (at["x"], at["y"]) == pytest.approx(
        (box["x"] + 6, box["y"] + 6), abs=1
    )


@pytest.fixture
def posts_page(browser: Any, stub_server: Any, page_server: Any) -> Any:
    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    page_server.pages["/posts.html"] = POSTS_PAGE
    page = browser.context.new_page()
    page.goto(page_server.url("/posts.html"))
    return page


def test_tab_reaches_each_badge_right_after_its_image_and_the_badges_take_no_room(
    until: Any, browser: Any, posts_page: Any, page_server: Any
) -> None:
    page = posts_page
    without_badges = page.evaluate(LAYOUT)
    switch_feed_mode_on(browser, page_server.origin, until)
    page.reload()
    until(lambda: badge_count(page) == 2, what="a badge on each post's image")
    sources = {n: page_server.url(f"/img/{'known' if n == 1 else 'unknown'}.png") for n in (1, 2)}
    until(
        lambda: all(on_its_image(page, f"#pic-{n}", src) for n, src in sources.items()),
        what="the badges in place",
    )

    assert page.evaluate(LAYOUT) == without_badges, "no element of the page moved or resized"
    for n, src in sources.items():
        image = page.locator(f"#pic-{n}").bounding_box()
        placed = badge(page, src).bounding_box()
        assert image and placed
        assert placed["x"] == pytest.approx(image["x"] + 6, abs=1), "over the image's corner"
        assert placed["y"] == pytest.approx(image["y"] + 6, abs=1)

    order = []
    for _ in range(5):
        page.keyboard.press("Tab")
        order.append(focused(page))
    assert order == ["link-1", "badge known.png", "link-2", "badge unknown.png", "end"]

    # Shift+Tab goes back the same way, and the focused badge opens its image's panel.
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert focused(page) == "link-2"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    until(lambda: focused(page) == "panel dialog", what="the focus in the panel")
    assert panel(page).locator(".verdict").get_attribute("data-label") == "real"


def test_a_badge_that_appears_while_the_panel_is_open_stays_under_the_panel(
    until: Any, browser: Any, posts_page: Any, page_server: Any
) -> None:
    page = posts_page
    switch_feed_mode_on(browser, page_server.origin, until)
    page.reload()
    until(lambda: badge_count(page) == 2, what="a badge on each post's image")
    known = badge(page, page_server.url("/img/known.png"))
    known.focus()
    page.keyboard.press("Enter")
    until(lambda: focused(page) == "panel dialog", what="the focus in the panel")

    # The feed scrolls on: a new image shows up below the first one, under the open panel.
    page.evaluate("document.querySelector('.row').style.display = 'block'")
    page.evaluate("document.getElementById('pic-2').closest('article').remove()")
    page.evaluate("window.appendImage('/img/later.png', 'later')")
    later = badge(page, page_server.url("/img/later.png"))
    until(lambda: later.count() == 1, what="a badge on the new image")
    until(
        lambda: on_its_image(page, "#later", page_server.url("/img/later.png")),
        what="the new badge placed over its image",
    )

    box = later.bounding_box()
    panel_box = panel(page).frame_element().bounding_box()
    assert box and panel_box
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    assert panel_box["x"] < x < panel_box["x"] + panel_box["width"], "the badge lies under it"
    assert panel_box["y"] < y < panel_box["y"] + panel_box["height"]
    hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y)?.localName", [x, y])
    assert hit == "fakescope-overlay", "the panel stays on top"
    assert focused(page) == "panel dialog", "and keeps the keyboard focus"


def test_a_failed_lookup_is_said_once_in_a_notice_over_the_page(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    from playwright.sync_api import expect

    def unavailable(handler: Any) -> None:
        handler.reply(503, {"title": "Service Unavailable", "status": 503, "detail": "busy"})

    stub_server.routes["POST /v1/lookup"] = unavailable
    browser.set_settings(serverUrl=stub_server.url)
    page_server.pages["/posts.html"] = POSTS_PAGE
    switch_feed_mode_on(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/posts.html"))

    notice = page.locator("fakescope-notice [role=status]")
    expect(notice).to_contain_text("FakeScope feed lookups failed")
    assert page.locator("fakescope-notice").count() == 1
    box = notice.bounding_box()
    assert box is not None
    hit = page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y)?.localName",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
    )
    assert hit == "fakescope-notice"
    page.get_by_role("button", name="Dismiss the FakeScope notice").click()
    expect(page.locator("fakescope-notice")).to_have_count(0)
    assert badge_count(page) == 0


# Three linked posts, each a long way (more than a screen and feed mode's margin) from the next.
FAR_POSTS_PAGE = """<!doctype html><html><head><title>Far posts</title>
<style>body { margin: 20px; } img { display: block; } .gap { height: 2400px; }</style>
</head><body>
<a id="link-1" href="/posts/1"><img id="pic-1" src="/img/known.png" width="240" height="180"
  alt="first post"></a><div class="gap"></div>
<a id="link-2" href="/posts/2"><img id="pic-2" src="/img/lazy.png" width="240" height="180"
  alt="second post"></a><div class="gap"></div>
<a id="link-3" href="/posts/3"><img id="pic-3" src="/img/later.png" width="240" height="180"
  alt="third post"></a><div class="gap"></div>
</body></html>"""

# Whether a badge (by its image's address) has a box on the page, and its verdict.
BADGE_SHOWN = """(src) => {
    const button = [...document.querySelectorAll('fakescope-badge')]
        .map((host) => host.shadowRoot.querySelector('button'))
        .find((b) => b?.dataset.src === src);
    return { shown: Boolean(button?.checkVisibility()), label: button?.dataset.label ?? null };
}"""


def test_badges_far_from_the_viewport_are_hidden_and_come_back_in_place_when_scrolled_or_tabbed_to(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    page_server.pages["/far-posts.html"] = FAR_POSTS_PAGE
    switch_feed_mode_on(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/far-posts.html"))
    sources = {
        n: page_server.url(f"/img/{name}")
        for n, name in enumerate(("known.png", "lazy.png", "later.png"), start=1)
    }

    def state(n: int) -> dict[str, Any]:
        return dict(page.evaluate(BADGE_SHOWN, sources[n]))

    # Each post scrolled to gets its badge over its image.
    labels = {}
    for n, src in sources.items():
        page.locator(f"#pic-{n}").scroll_into_view_if_needed()
        until(lambda n=n, src=src: on_its_image(page, f"#pic-{n}", src), what=f"post {n}'s badge")
        labels[n] = state(n)["label"]
    assert all(labels.values())

    # Back at the top, the badges of the posts far below wait hidden (no box, out of the tab
    # order): a long feed scrolls without moving them. They stay in the page after their image.
    page.evaluate("window.scrollTo(0, 0)")
    until(
        lambda: [state(n)["shown"] for n in sources] == [True, False, False],
        what="only the badge near the viewport shown",
    )
    assert page.locator("fakescope-badge").count() == 3
    assert on_its_image(page, "#pic-1", sources[1])

    # Tab to the next post's link: the page scrolls to it, and its badge comes next in the
    # tab order, over its image, with the same verdict.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert focused(page) == "badge known.png"
    page.keyboard.press("Tab")
    assert focused(page) == "link-2"
    until(lambda: on_its_image(page, "#pic-2", sources[2]), what="post 2's badge back in place")
    page.keyboard.press("Tab")
    assert focused(page) == "badge lazy.png"
    assert state(2) == {"shown": True, "label": labels[2]}
    until(lambda: not state(1)["shown"], what="post 1's badge hidden, far above now")

    # Scrolled to again, a hidden badge shows the same verdict in the same place.
    page.evaluate("document.getElementById('pic-3').scrollIntoView()")
    until(lambda: on_its_image(page, "#pic-3", sources[3]), what="post 3's badge back in place")
    assert state(3) == {"shown": True, "label": labels[3]}


def test_a_badge_whose_panel_is_open_gets_the_focus_back_after_its_image_is_scrolled_far(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    """The panel of a badge stays open while the reader scrolls far from its image: on
    Escape the focus goes back to that badge, not to the page's body."""
    from playwright.sync_api import expect

    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    page_server.pages["/far-posts.html"] = FAR_POSTS_PAGE
    switch_feed_mode_on(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/far-posts.html"))
    known = page_server.url("/img/known.png")
    until(lambda: on_its_image(page, "#pic-1", known), what="post 1's badge")

    badge(page, known).focus()
    page.keyboard.press("Enter")
    until(lambda: focused_in_panel(page), what="the focus in the panel")
    page.evaluate("document.getElementById('pic-3').scrollIntoView()")
    page.wait_for_timeout(500)  # long enough for the observer to see post 1 far away
    press_escape_in_panel(page)
    expect(page.locator("fakescope-overlay")).to_have_count(0)
    assert focused(page) == "badge known.png"
