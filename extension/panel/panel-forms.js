/**
 * The result panel's two forms under a verdict, which send the user's words to the server
 * through the service worker. **Ask about this image** streams the answer in over a runtime Port
 * (`fakescope-ask`); **Report a wrong verdict** sends `fakescope:report`. Only the user's own
 * clicks and keys send anything.
 *
 * Each form works on the panel (panel/panel.js) it is part of: `overlay.view` (the verdict
 * shown), `overlay.panel` (to keep the focus in it) and `overlay.askPort` (the answer streaming
 * now; the panel closes it when it shows something else).
 *
 * A classic script of the panel page (panel/frame-panel.html loads it after
 * content/overlay-dom.js and before panel/panel.js); it leaves the forms on
 * `globalThis.__fakescopeOverlayForms`.
 */
(() => {
  // Own properties only: a page element named like a part is not one (content/overlay-dom.js).
  if (Object.hasOwn(globalThis, '__fakescopeOverlayForms') || !Object.hasOwn(globalThis, '__fakescopeOverlayDom')) return;
  const { h, uid } = globalThis.__fakescopeOverlayDom;

  /** The ask form: one of the aspects, or the user's own question; the answer streams in below. */
  function askSection(overlay, aspects) {
    const aspectId = uid('aspect');
    const questionId = uid('question');
    const answer = h('div', { className: 'answer', 'aria-live': 'polite' });
    const status = h('p', { className: 'status muted', role: 'status' });
    const select = h('select', { id: aspectId }, (aspects ?? []).map((a) => h('option', { value: a.name }, a.label)));
    const input = h('input', { id: questionId, type: 'text', maxlength: '500', placeholder: 'e.g. Are the shadows consistent?' });
    const buttons = [];
    // Questions and reports go to the server under the user's token: only the user's own
    // clicks and keys send them, never a script's.
    const ask = (request, event) => {
      if (event.isTrusted) streamAnswer(overlay, request, answer, status, buttons);
    };
    // Two buttons read "Ask": their accessible names say which question each sends.
    const aspectButton = h('button', { type: 'button', 'aria-label': 'Ask about the aspect', onclick: (event) => ask({ aspect: select.value }, event) }, 'Ask');
    const questionButton = h('button', { type: 'button', 'aria-label': 'Ask your question', onclick: (event) => ask({ question: input.value }, event) }, 'Ask');
    buttons.push(aspectButton, questionButton);
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') ask({ question: input.value }, event);
    });
    return h('section', { 'aria-label': 'Ask about this image' },
      h('h3', {}, 'Ask about this image'),
      h('label', { for: aspectId }, 'An aspect'),
      h('div', { className: 'row' }, select, aspectButton),
      h('label', { for: questionId }, 'Or your own question'),
      h('div', { className: 'row' }, input, questionButton),
      status, answer);
  }

  /** Streams the answer from the service worker (which reads the server's SSE) into the panel. */
  function streamAnswer(overlay, request, answer, status, buttons) {
    overlay.askPort?.disconnect();
    answer.textContent = '';
    // Busy while it streams: a screen reader reads the answer once, whole, not piece by piece.
    answer.setAttribute('aria-busy', 'true');
    status.textContent = 'Waiting for the answer…';
    buttons.forEach((b) => { b.disabled = true; });
    const port = chrome.runtime.connect({ name: 'fakescope-ask' });
    overlay.askPort = port;
    const finish = (text) => {
      answer.removeAttribute('aria-busy');
      status.textContent = text;
      buttons.forEach((b) => { b.disabled = false; });
      if (overlay.askPort === port) {
        port.disconnect();
        overlay.askPort = null;
      }
    };
    port.onMessage.addListener((message) => {
      if (message.type === 'text') {
        status.textContent = 'Answering…';
        answer.append(message.text);
      } else if (message.type === 'done') {
        if (!answer.textContent && message.answer) answer.textContent = message.answer;
        finish('Answer complete.');
      } else if (message.type === 'error') {
        const f = message.failure ?? {};
        finish(`${f.title ?? 'Failed'}: ${f.message ?? ''} ${f.guidance ?? ''}`.trim());
      }
    });
    port.onDisconnect.addListener(() => {
      if (overlay.askPort === port) finish('The connection to FakeScope closed.');
    });
    port.postMessage({ sha256: overlay.view.sha256, ...request });
  }

  /** The report form (folded until asked for): the verdict it should be, and why. */
  function reportSection(overlay) {
    const formId = uid('report');
    const reasonId = uid('reason');
    const statusId = uid('report-status');
    const status = h('p', { id: statusId, className: 'status report-status', role: 'status' });
    const choices = [['fake', 'AI-generated'], ['real', 'Authentic'], ['uncertain', 'Not sure']]
      .filter(([value]) => value !== overlay.view.label);
    const radios = choices.map(([value, text], i) =>
      h('label', { className: 'row' }, h('input', { type: 'radio', name: formId, value, checked: i === 0 }), text));
    // The status under the form says what is wrong with it: read with the field.
    const reason = h('textarea', { id: reasonId, maxlength: '2000', 'aria-required': 'true', 'aria-describedby': statusId });
    const submit = h('button', { type: 'submit' }, 'Send report');
    const form = h('form', { id: formId, hidden: true },
      h('fieldset', {}, h('legend', {}, 'What should the verdict be?'), radios),
      h('label', { for: reasonId }, 'Why is the verdict wrong?'),
      reason,
      h('div', { className: 'row' }, submit));
    const toggle = h('button', { type: 'button', className: 'secondary', 'aria-expanded': 'false', 'aria-controls': formId }, 'Report a wrong verdict');
    toggle.addEventListener('click', () => {
      form.hidden = !form.hidden;
      toggle.setAttribute('aria-expanded', String(!form.hidden));
      if (!form.hidden) reason.focus();
    });
    // A report goes out under the user's token: only a submission the user made counts.
    // A submit event cannot tell (requestSubmit() fires a trusted one), so the button's
    // click, which every user path goes through (Enter too), is what is checked.
    let byUser = false;
    submit.addEventListener('click', (event) => {
      byUser = event.isTrusted;
    });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const submittedByUser = byUser;
      byUser = false;
      if (!submittedByUser) return;
      if (!reason.value.trim()) {
        status.textContent = 'Please say why the verdict is wrong.';
        reason.setAttribute('aria-invalid', 'true');
        reason.focus();
        return;
      }
      reason.removeAttribute('aria-invalid');
      submit.disabled = true;
      status.textContent = 'Sending…';
      const suggestedLabel = form.querySelector('input[type=radio]:checked')?.value ?? null;
      const reply = await chrome.runtime.sendMessage({
        type: 'fakescope:report', sha256: overlay.view.sha256, reason: reason.value, suggestedLabel,
      }).catch((error) => ({ ok: false, failure: { title: 'FakeScope is unavailable', message: String(error.message ?? error) } }));
      submit.disabled = false;
      if (reply?.ok) {
        form.hidden = true;
        toggle.hidden = true;
        status.textContent = 'Thank you: the image was sent to human review.';
        overlay.panel.focus({ preventScroll: true }); // the focused button was hidden
      } else {
        const f = reply?.failure ?? {};
        status.textContent = `${f.title ?? 'The report failed'}: ${f.message ?? ''} ${f.guidance ?? ''}`.trim();
      }
    });
    return h('section', { 'aria-label': 'Report a wrong verdict' }, h('h3', {}, 'Wrong verdict?'), toggle, form, status);
  }

  globalThis.__fakescopeOverlayForms = { askSection, reportSection };
})();
