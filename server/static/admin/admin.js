// FakeScope review page: keyboard shortcuts (which the reviewer may turn off). The page works
// without JavaScript; this only maps keys to the buttons and links already on the page.
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

  // Single-key shortcuts can be turned off (WCAG 2.1.4): speech input types letters, and a
  // stray f or r would post a decision. The choice is kept in this browser.
  const SHORTCUTS_KEY = "fakescope-review-shortcuts";
  const readChoice = () => {
    try {
      return window.localStorage.getItem(SHORTCUTS_KEY) !== "off";
    } catch {
      return true; // storage blocked: the default, on
    }
  };
  let shortcutsOn = readChoice();

  function applyShortcuts() {
    document.documentElement.classList.toggle("shortcuts-off", !shortcutsOn);
    // What assistive technology is told matches what the keys do.
    document.querySelectorAll("[aria-keyshortcuts], [data-keyshortcuts]").forEach((el) => {
      const keys = el.getAttribute("aria-keyshortcuts") ?? el.dataset.keyshortcuts;
      el.dataset.keyshortcuts = keys;
      if (shortcutsOn) el.setAttribute("aria-keyshortcuts", keys);
      else el.removeAttribute("aria-keyshortcuts");
    });
  }

  const toggle = document.getElementById("shortcuts-on");
  if (toggle) {
    toggle.checked = shortcutsOn;
    toggle.closest(".shortcuts-switch").hidden = false;
    toggle.addEventListener("change", () => {
      shortcutsOn = toggle.checked;
      try {
        window.localStorage.setItem(SHORTCUTS_KEY, shortcutsOn ? "on" : "off");
      } catch {
        // Not kept: it holds for this page.
      }
      applyShortcuts();
    });
  }
  applyShortcuts();

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (typingTarget(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (!shortcutsOn) return;
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
