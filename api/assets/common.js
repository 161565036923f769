// Helpers shared by the Landport pages. Plain browser JavaScript, no build step.
'use strict';
window.Landport = (function () {
  /** The page's settings (tile URL, attribution), put in the page by the server. */
  function config() {
    return JSON.parse(document.getElementById('landport-config').textContent);
  }

  /** A Leaflet map with the configured tiles; the map works without them (offline). */
  function makeMap(id, options) {
    const cfg = config();
    const map = L.map(id, Object.assign({ worldCopyJump: true }, options || {}));
    map.attributionControl.setPrefix('');
    L.tileLayer(cfg.tile_url, { attribution: cfg.tile_attribution, maxZoom: 19 }).addTo(map);
    return map;
  }

  /** A time as local date and time; '' for null. */
  function time(s) {
    if (!s) return '';
    const d = new Date(s);
    return isNaN(d) ? s : d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
  }

  /** An ETA object ({eta, p10, p90}) as "p10 – p90 (likely eta)". */
  function etaWindow(e) {
    if (!e || !e.eta) return 'not known yet';
    const p10 = e.p10 ? time(e.p10) : '?';
    const p90 = e.p90 ? time(e.p90) : '?';
    return p10 + ' – ' + p90 + ' (most likely ' + time(e.eta) + ')';
  }

  /** Makes an element with text content (never HTML). */
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function sleep(ms) {
    return new Promise(function (r) { setTimeout(r, ms); });
  }

  return { config: config, makeMap: makeMap, time: time, etaWindow: etaWindow, el: el,
    sleep: sleep };
})();
