/**
 * The FakeScope HTTP API client (v1). Used only by the service worker: content
 * scripts never talk to the server themselves. `fetch` is injected so unit
 * tests can answer with canned Responses.
 */

import { ApiError, parseRetryAfter } from './problem.js';
import { SseParser } from './sse.js';

export const ANALYZE_TIMEOUT_MS = 150_000;
export const DEFAULT_TIMEOUT_MS = 15_000;

export class ApiClient {
  /**
   * @param {{baseUrl: string, token?: string, fetch?: typeof fetch}} options
   */
  constructor({ baseUrl, token = '', fetch: fetchImpl = (...args) => globalThis.fetch(...args) }) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.token = token;
    this.fetch = fetchImpl;
  }

  #headers(extra = {}) {
    const headers = { Accept: 'application/json', ...extra };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    return headers;
  }

  async #request(path, init, timeoutMs) {
    const controller = new AbortController();
    const outer = init.signal;
    const onAbort = () => controller.abort(outer.reason);
    if (outer) outer.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => controller.abort(new DOMException('timeout', 'TimeoutError')), timeoutMs);
    let response;
    try {
      response = await this.fetch(`${this.baseUrl}${path}`, { ...init, signal: controller.signal });
    } catch (cause) {
      const timedOut = controller.signal.reason?.name === 'TimeoutError';
      throw new ApiError(timedOut ? 'timeout' : 'network', timedOut ? 'timed out' : String(cause?.message ?? cause), {
        serverUrl: this.baseUrl,
        cause,
      });
    } finally {
      clearTimeout(timer);
      if (outer) outer.removeEventListener('abort', onAbort);
    }
    if (!response.ok) throw await this.#httpError(response, path);
    return response;
  }

  async #httpError(response, path) {
    let problem = null;
    try {
      const text = await response.text();
      problem = text ? JSON.parse(text) : null;
    } catch {
      problem = null;
    }
    const retryAfterSeconds = parseRetryAfter(response.headers.get('Retry-After'));
    // A FakeScope server answers every error with problem+json. A bare 404/405/501 (an HTML
    // page, a web server's default) means the address points at something else: say that,
    // not "the server does not know this image".
    const isProblem = Boolean(problem) && typeof problem === 'object'
      && (typeof problem.detail === 'string' || typeof problem.title === 'string');
    if (!isProblem && [404, 405, 501].includes(response.status)) {
      return new ApiError(
        'protocol',
        `${this.baseUrl} answered HTTP ${response.status} for ${path.split('?')[0]}: it does not look like a FakeScope server.`,
        { status: response.status, serverUrl: this.baseUrl },
      );
    }
    const detail = problem?.detail ?? problem?.title ?? response.statusText;
    return new ApiError('http', `HTTP ${response.status}: ${detail}`, {
      status: response.status,
      problem: problem && typeof problem === 'object' ? problem : null,
      retryAfterSeconds,
      serverUrl: this.baseUrl,
    });
  }

  async #json(response) {
    try {
      return await response.json();
    } catch (cause) {
      throw new ApiError('protocol', 'The server did not answer with JSON.', { serverUrl: this.baseUrl, cause });
    }
  }

  /** POST /v1/analyze with the image bytes (multipart field `file`). */
  async analyze(bytes, { explain = true, filename = 'image', contentType = 'application/octet-stream', signal } = {}) {
    const form = new FormData();
    form.append('file', new Blob([bytes], { type: contentType }), filename);
    const query = explain ? '?explain=true' : '';
    const response = await this.#request(
      `/v1/analyze${query}`,
      { method: 'POST', body: form, headers: this.#headers(), signal },
      ANALYZE_TIMEOUT_MS,
    );
    return this.#json(response);
  }

  /** POST /v1/lookup: cached analyses only, never runs the model. */
  async lookup(sha256s, { pdqs = [], signal } = {}) {
    const response = await this.#request(
      '/v1/lookup',
      {
        method: 'POST',
        body: JSON.stringify({ sha256: sha256s, pdq: pdqs }),
        headers: this.#headers({ 'Content-Type': 'application/json' }),
        signal,
      },
      DEFAULT_TIMEOUT_MS,
    );
    const body = await this.#json(response);
    if (!body || typeof body.results !== 'object') {
      throw new ApiError('protocol', 'The lookup answer has no "results".', { serverUrl: this.baseUrl });
    }
    return body;
  }

  /**
   * POST /v1/ask, streaming: `onText` receives answer pieces as they arrive.
   * Resolves to the whole answer. Accepts a plain JSON answer too.
   */
  async ask(body, { onText = () => {}, signal } = {}) {
    const response = await this.#request(
      '/v1/ask',
      {
        method: 'POST',
        body: JSON.stringify(body),
        headers: this.#headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
        signal,
      },
      ANALYZE_TIMEOUT_MS,
    );
    const type = response.headers.get('Content-Type') ?? '';
    if (!type.includes('text/event-stream')) {
      const json = await this.#json(response);
      const answer = String(json?.answer ?? '');
      onText(answer);
      return answer;
    }
    return readAnswerStream(response.body, onText, this.baseUrl);
  }

  /** POST /v1/reports: the user says the verdict is wrong. */
  async report({ sha256, reason, suggestedLabel = null }, { signal } = {}) {
    const response = await this.#request(
      '/v1/reports',
      {
        method: 'POST',
        body: JSON.stringify({ sha256, reason, suggested_label: suggestedLabel }),
        headers: this.#headers({ 'Content-Type': 'application/json' }),
        signal,
      },
      DEFAULT_TIMEOUT_MS,
    );
    return this.#json(response);
  }

  /** GET /readyz: resolves to its JSON when the server is ready, throws ApiError otherwise. */
  async ready({ signal } = {}) {
    const response = await this.#request('/readyz', { method: 'GET', headers: this.#headers(), signal }, 5_000);
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    // A web page at that address (a login portal, another app) is not a ready FakeScope server.
    if (!body || typeof body !== 'object') {
      throw new ApiError('protocol', `${this.baseUrl}/readyz did not answer with JSON: it does not look like a FakeScope server.`, {
        status: response.status,
        serverUrl: this.baseUrl,
      });
    }
    return body;
  }
}

/**
 * Reads the /v1/ask event stream. Text arrives as `data:` of unnamed/"message"/
 * "token"/"delta" events (JSON {"text"|"delta"|"token": ...} or plain text);
 * "done"/"end" closes it; "error" carries a problem+json body.
 */
export async function readAnswerStream(stream, onText, serverUrl = '') {
  let answer = '';
  let failure = null;
  let finished = false;
  const parser = new SseParser(({ event, data }) => {
    if (finished) return;
    if (event === 'error') {
      let problem = null;
      try {
        problem = JSON.parse(data);
      } catch {
        problem = { detail: data };
      }
      failure = new ApiError('http', problem?.detail ?? 'The answer failed.', {
        status: problem?.status ?? 500,
        problem,
        serverUrl,
      });
      finished = true;
      return;
    }
    if (event === 'done' || event === 'end') {
      finished = true;
      return;
    }
    let piece = data;
    try {
      const parsed = JSON.parse(data);
      if (parsed && typeof parsed === 'object') {
        if (typeof parsed.answer === 'string' && parsed.done) {
          finished = true;
          if (!answer) {
            answer = parsed.answer;
            onText(parsed.answer);
          }
          return;
        }
        piece = parsed.text ?? parsed.delta ?? parsed.token ?? parsed.content ?? '';
      } else if (typeof parsed === 'string') {
        piece = parsed;
      }
    } catch {
      // Plain-text data: the piece is the text itself.
    }
    if (piece) {
      answer += piece;
      onText(piece);
    }
  });
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  const cutOff = (cause) => new ApiError('interrupted', 'The answer stopped before it was complete.', { serverUrl, cause });
  try {
    while (!finished) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (cause) {
        if (cause?.name === 'AbortError') throw cause; // the panel closed: nobody reads it
        throw cutOff(cause); // the connection broke (the server stopped, the network went)
      }
      if (chunk.done) break;
      parser.push(decoder.decode(chunk.value, { stream: true }));
    }
    parser.push(decoder.decode());
    parser.end();
  } finally {
    if (finished) await reader.cancel().catch(() => {});
  }
  if (failure) throw failure;
  // The server ends every answer with a "done" (or "error") event: a stream that stops
  // without one was cut off, and what arrived is only the beginning of the answer.
  if (!finished) throw cutOff();
  return answer;
}
