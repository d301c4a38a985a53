/**
 * An incremental parser for text/event-stream (the WHATWG "server-sent events"
 * format) fed with decoded text pieces as they arrive from fetch(): events may
 * be split anywhere, even inside a line.
 */

export class SseParser {
  /** @param {(event: {event: string, data: string, id: string|null}) => void} onEvent */
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = '';
    this.reset();
  }

  reset() {
    this.eventName = '';
    this.dataLines = [];
    this.id = null;
  }

  push(text) {
    this.buffer += text;
    let match;
    // A line ends at \r\n, \n or \r; a lone \r at the end may be half of \r\n, so wait for more.
    while ((match = /\r\n|\n|\r(?=[^\n])/.exec(this.buffer)) !== null) {
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.#line(line);
    }
  }

  /** Call at the end of the stream: a final event without its blank line is still delivered. */
  end() {
    if (this.buffer) this.#line(this.buffer.replace(/\r$/, ''));
    this.buffer = '';
    this.#dispatch();
  }

  #line(line) {
    if (line === '') {
      this.#dispatch();
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.dataLines.push(value);
    else if (field === 'event') this.eventName = value;
    else if (field === 'id') this.id = value;
  }

  #dispatch() {
    if (this.dataLines.length) {
      this.onEvent({ event: this.eventName || 'message', data: this.dataLines.join('\n'), id: this.id });
    }
    this.reset();
  }
}
