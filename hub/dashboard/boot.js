// The dashboard's loader: a classic script (CSP 'self' allows it; no inline code) that imports the
// app's modules. A browser gives up on a module graph when one request of it fails, and then the
// page stays blank: Chromium cancels every request in flight when the machine's network
// interfaces change (net::ERR_NETWORK_CHANGED), which the Docker Engine does each time it starts a
// container — so a dashboard opened on the hub's machine while pods start could come up empty.
// A failed import reloads the page (a failed module stays failed in the page's module map, so
// importing it again would not help), up to RETRIES times in a row; then the page says so.
(() => {
  const KEY = 'orchard.dashboard.bootRetries';
  const RETRIES = 3;
  const tries = Number(sessionStorage.getItem(KEY) ?? '0') || 0;
  import('./app.js').then(
    () => sessionStorage.removeItem(KEY),
    (err) => {
      if (tries < RETRIES) {
        sessionStorage.setItem(KEY, String(tries + 1));
        setTimeout(() => location.reload(), 250 * (tries + 1));
        return;
      }
      sessionStorage.removeItem(KEY);
      const box = document.getElementById('boot-error');
      if (box === null) return;
      box.hidden = false;
      box.querySelector('.reason').textContent = String(err?.message ?? err);
      box.querySelector('button').addEventListener('click', () => location.reload());
    },
  );
})();
