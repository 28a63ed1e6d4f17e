// Applies the theme the user chose (light or dark) before the first paint; without a choice the
// stylesheet follows the system's `prefers-color-scheme`.
try {
  var t = localStorage.getItem('hookbin-theme');
  if (t === 'light' || t === 'dark') document.documentElement.dataset.theme = t;
} catch (_) {}
