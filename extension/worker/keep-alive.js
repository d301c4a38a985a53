/**
 * Chrome stops a service worker idle for 30 s even while a fetch is pending; a
 * model explanation can take longer. A cheap extension call every 20 s counts
 * as activity until the promise settles.
 */
export async function whileKeepingAlive(promise) {
  const timer = setInterval(() => chrome.runtime.getPlatformInfo(), 20_000);
  try {
    return await promise;
  } finally {
    clearInterval(timer);
  }
}
