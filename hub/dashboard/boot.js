// The dashboard's loader: a classic script (CSP 'self' allows it; no inline code) that imports the
// app's modules. A browser gives up on a module graph when one request of it fails, and then the
// page stays blank: Chromium cancels every request in flight when the machine's network
// interfaces change (net::ERR_NETWORK_CHANGED), which the Docker Engine does each time it starts a
// container — so a dashboard opened on the hub's machine while pods start could come up empty.
// A module that could not be fetched reloads the page (a failed module stays failed in the page's
// module map, so importing it again would not help), up to RETRIES times in a row; then, or at
// once for an error thrown by the app's own code, the page says so.
(() => {
  const KEY = 'orchard.dashboard.bootRetries';
  const RETRIES = 3;
  // { n, at }: retries in a row, and when the last was asked for; an old count (a tab that was
  // navigated away during the wait) does not carry over to a later load.
  let tries = 0;
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) ?? 'null');
    if (saved !== null && Date.now() - Number(saved.at) < 10_000) tries = Number(saved.n) || 0;
  } catch {
    tries = 0;
  }
  import('./app.js').then(
    () => sessionStorage.removeItem(KEY),
    (err) => {
      // Chromium and Firefox: "Failed to fetch / error loading dynamically imported module"; Safari:
      // "Importing a module script failed". Anything else was thrown by the app's code.
      const lost = err instanceof TypeError && /dynamically imported module|Importing a module script failed/i.test(err.message);
      if (lost && tries < RETRIES) {
        sessionStorage.setItem(KEY, JSON.stringify({ n: tries + 1, at: Date.now() }));
        setTimeout(() => location.reload(), 250 * (tries + 1));
        return;
      }
      sessionStorage.removeItem(KEY);
      if (!lost) reportError(err);
      const box = document.getElementById('boot-error');
      if (box === null) return;
      box.hidden = false;
      box.querySelector('.reason').textContent = String(err?.message ?? err);
      box.querySelector('button').addEventListener('click', () => location.reload());
    },
  );
})();
