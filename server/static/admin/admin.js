// FakeScope review page: keyboard shortcuts. The page works without JavaScript;
// this only maps keys to the buttons and links already on the page.
"use strict";

(function () {
  const typingTarget = (el) =>
    el instanceof HTMLElement &&
    (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));

  function moveInQueue(step) {
    const links = Array.from(document.querySelectorAll("a[data-queue-link]"));
    if (links.length === 0) return;
    const current = links.findIndex((a) => a.getAttribute("aria-current") === "page");
    const next = current === -1 ? 0 : current + step;
    if (next >= 0 && next < links.length) window.location.assign(links[next].href);
    else if (next >= links.length) click("queue-next"); // past the page's end: the next page
    else if (next < 0) click("queue-prev"); // before the page's start: the previous page's end
  }

  function click(id) {
    const el = document.getElementById(id);
    if (el) el.click();
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (typingTarget(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const actions = {
      f: () => click("decide-fake"),
      r: () => click("decide-real"),
      s: () => click("skip"),
      j: () => moveInQueue(1),
      k: () => moveInQueue(-1),
      n: () => document.getElementById("note")?.focus(),
    };
    // Case-blind: with Caps Lock on, F still means fake.
    const action = actions[event.key.length === 1 ? event.key.toLowerCase() : event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  // When the queue list scrolls in its own box (narrow windows), show the current entry.
  const list = document.getElementById("queue-list");
  const current = list?.querySelector('a[aria-current="page"]');
  if (list && current && list.scrollHeight > list.clientHeight) {
    list.scrollTop = current.offsetTop - (list.clientHeight - current.offsetHeight) / 2;
  }

  // The outcome of the last decision came with this page (saved, or not saved because of a
  // conflict): a live region that is already there says it once the page has settled, as
  // screen readers do not announce a status that arrives with the page.
  const announcer = document.getElementById("announcer");
  const outcome = document.getElementById("conflict") || document.querySelector("main .notice");
  if (announcer && outcome) {
    setTimeout(() => {
      announcer.textContent = outcome.textContent.replace(/\s+/g, " ").trim();
    }, 250);
  }

  // A second press while the first decision is in flight would post twice.
  const form = document.getElementById("decide-form");
  if (form) {
    form.addEventListener("submit", () => {
      setTimeout(() => form.querySelectorAll("button").forEach((b) => (b.disabled = true)), 0);
    });
  }
})();
