// Loads the wasm UI. A separate file (not an inline script) so the page's CSP can forbid inline scripts.
import init from './frontend.js';

init({ module_or_path: new URL('./frontend_bg.wasm', import.meta.url) }).catch((err) => {
  document.body.textContent = 'Hookbin failed to start: ' + err;
});
