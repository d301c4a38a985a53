/**
 * The panel page's questions: a runtime Port named ASK_PORT_NAME carries one question in and
 * the streamed answer from /v1/ask out, piece by piece. Closing the port (the panel closed
 * or moved on) aborts the request.
 */

import { InvalidQuestionError, askBody } from '../lib/aspects.js';
import { whileKeepingAlive } from './keep-alive.js';
import { describeFailure } from '../lib/problem.js';
import { clientFor, currentSettings } from './server-client.js';

export const ASK_PORT_NAME = 'fakescope-ask';

/** Streams an answer from /v1/ask to the overlay through a Port, piece by piece. */
export function relayAnswer(port) {
  const controller = new AbortController();
  port.onDisconnect.addListener(() => controller.abort());
  port.onMessage.addListener(async (request) => {
    try {
      const body = askBody(request?.sha256, request);
      const settings = await currentSettings();
      const answer = await whileKeepingAlive(
        clientFor(settings).ask(body, {
          signal: controller.signal,
          onText: (text) => port.postMessage({ type: 'text', text }),
        }),
      );
      port.postMessage({ type: 'done', answer });
    } catch (error) {
      if (controller.signal.aborted) return;
      const failure = error instanceof InvalidQuestionError
        ? { title: 'Cannot ask that', message: error.message, guidance: '' }
        : describeFailure(error);
      port.postMessage({ type: 'error', failure });
    }
  });
}
