// Loads the wasm UI. A separate file (not an inline script) so the page's CSP can forbid inline scripts.
import init from './frontend.js';

init({ module_or_path: new URL('./frontend_bg.wasm', import.meta.url) })
  .then((wasm) => {
    // The wasm's linear memory, for the browser tests' memory figures.
    window.__hookbinWasmMemory = wasm.memory;
  })
  .catch((err) => {
    document.body.textContent = 'Hookbin failed to start: ' + err;
  });
