// The live map (GET /): devices, geofences (named), shipments (with their planned routes) and
// events of the key's tenant, updated over the /v1/stream server-sent events. EventSource
// cannot send the Authorization header, so the stream is read with fetch and parsed here.
//
// Track replay: pick a device in the searchable list (or a shipment) and a time range, or
// open `#key=K&device=ID&from=T&to=T` (T: RFC 3339 or epoch ms): the device's track
// (/v1/devices/{id}/track), its stops with their durations (/v1/devices/{id}/stops) and a
// slider (and play button) moving a marker along the track by time. The key is taken out of
// the address bar; the rest of the fragment stays, so a replay's address can be shared.
'use strict';
(function () {
  const LP = window.Landport;
  const KEY_STORE = 'landport.apiKey';
  const MAX_EVENTS = 50;
  const RESYNC_MS = 30000;
  /** Most rows the device list shows at once (a large fleet is searched, not scrolled). */
  const LIST_MAX = 200;
  /** Up to this many geofences (or stops) carry a permanent label; more get a tooltip. */
  const LABELS_MAX = 200;
  /** Points asked of the track endpoint (its maximum). */
  const TRACK_LIMIT = 100000;

  const map = LP.makeMap('map', { center: [30, 10], zoom: 2 });
  const fenceLayer = L.layerGroup().addTo(map);
  const routeLayer = L.layerGroup().addTo(map);
  const trackLayer = L.layerGroup().addTo(map);
  const deviceLayer = L.layerGroup().addTo(map);
  // Geofence labels only where they can be read.
  function labelZoom() {
    map.getContainer().classList.toggle('lp-zoomed-out', map.getZoom() < 7);
  }
  map.on('zoomend', labelZoom);
  labelZoom();
  /** "tenant/id" -> {marker, device}. */
  const devices = new Map();
  let events = [];
  let key = null;
  /** Bumped when the key changes: an older stream loop stops. */
  let generation = 0;
  let fitted = false;

  // ---- the key --------------------------------------------------------------------------
  /** The URL fragment's `name=value&...` pairs. */
  function fragment() {
    const out = {};
    for (const part of location.hash.slice(1).split('&')) {
      const i = part.indexOf('=');
      if (i > 0) out[decodeURIComponent(part.slice(0, i))] = decodeURIComponent(part.slice(i + 1));
    }
    return out;
  }

  /** Writes `pairs` (without the key) as the fragment, replacing the current history entry. */
  function setFragment(pairs) {
    const parts = [];
    for (const k of Object.keys(pairs)) {
      if (k !== 'key' && pairs[k] !== undefined && pairs[k] !== null) {
        parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(pairs[k]));
      }
    }
    history.replaceState(null, '', location.pathname + location.search
      + (parts.length ? '#' + parts.join('&') : ''));
  }

  function askKey(message) {
    const dlg = document.getElementById('key-dialog');
    const err = document.getElementById('key-error');
    err.hidden = !message;
    err.textContent = message || '';
    document.getElementById('key-input').value = '';
    if (!dlg.open) dlg.showModal();
  }

  document.getElementById('key-form').addEventListener('submit', function () {
    const v = document.getElementById('key-input').value.trim();
    if (v) useKey(v);
  });
  document.getElementById('key-forget').addEventListener('click', function () {
    localStorage.removeItem(KEY_STORE);
    key = null;
    generation++;
    askKey('Key forgotten.');
  });
  document.getElementById('change-key').addEventListener('click', function () { askKey(); });

  function useKey(k) {
    key = k;
    localStorage.setItem(KEY_STORE, k);
    generation++;
    start(generation);
    replayFromFragment();
  }

  // ---- API ------------------------------------------------------------------------------
  class Unauthorized extends Error {}

  async function api(path) {
    const res = await fetch(path, { headers: { Authorization: 'Bearer ' + key }, cache: 'no-store' });
    if (res.status === 401) throw new Unauthorized();
    if (!res.ok) {
      // The API says why in {"error": {"message"}}.
      let why = 'HTTP ' + res.status;
      try { why = (await res.json()).error.message || why; } catch (e) { /* not JSON */ }
      const err = new Error(why);
      err.status = res.status;
      throw err;
    }
    return res.json();
  }

  /** Every item of a paged list (`{name: [...], next}`), following `next` page by page. */
  async function apiAll(path, name) {
    const items = [];
    let next = null;
    do {
      const sep = path.indexOf('?') < 0 ? '?' : '&';
      const page = await api(path + sep + 'limit=1000' + (next ? '&next=' + encodeURIComponent(next) : ''));
      for (const x of page[name] || []) items.push(x);
      next = page.next || null;
    } while (next);
    return items;
  }

  // ---- devices --------------------------------------------------------------------------
  function deviceKey(tenant, id) { return (tenant || '') + '/' + id; }

  /** Creates or updates the marker of `d` ({id, tenant, name, online, position}). */
  function showDevice(d) {
    if (!d.position) return;
    const k = deviceKey(d.tenant, d.id);
    let entry = devices.get(k);
    const ll = [d.position.lat, d.position.lon];
    if (!entry) {
      const arrow = LP.el('div', 'lp-arrow');
      arrow.append(deviceSvg());
      const icon = L.divIcon({ className: 'lp-device', html: arrow, iconSize: [24, 24],
        iconAnchor: [12, 12], tooltipAnchor: [12, 0] });
      const marker = L.marker(ll, { icon: icon, keyboard: false }).addTo(deviceLayer);
      marker.bindTooltip('');
      entry = { marker: marker, device: {} };
      devices.set(k, entry);
    }
    entry.device = Object.assign(entry.device, d);
    entry.marker.setLatLng(ll);
    const elem = entry.marker.getElement();
    if (elem) {
      elem.setAttribute('data-device-id', d.id);
      if (d.tenant) elem.setAttribute('data-tenant', d.tenant);
      elem.classList.toggle('online', !!entry.device.online);
      elem.classList.toggle('offline', !entry.device.online);
      const h = d.position.heading_deg;
      elem.classList.toggle('no-heading', typeof h !== 'number');
      elem.firstChild.style.transform = typeof h === 'number' ? 'rotate(' + h + 'deg)' : '';
    }
    const p = d.position;
    let tip = (entry.device.name || d.id) + (entry.device.online ? '' : ' (offline)');
    if (typeof p.speed_kmh === 'number') tip += ' · ' + Math.round(p.speed_kmh) + ' km/h';
    if (p.ts) tip += ' · ' + LP.time(p.ts);
    entry.marker.setTooltipContent(LP.el('span', null, tip));
  }

  /** The marker's picture: a navigation arrow pointing north (rotated by the heading),
   * and a dot shown instead when the heading is unknown (CSS picks one). */
  function deviceSvg() {
    const NS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('width', '24');
    svg.setAttribute('height', '24');
    const arrow = document.createElementNS(NS, 'path');
    arrow.setAttribute('class', 'lp-shape lp-heading');
    arrow.setAttribute('d', 'M12 1 L21 22 L12 17 L3 22 Z');
    const dot = document.createElementNS(NS, 'circle');
    dot.setAttribute('class', 'lp-shape lp-dot');
    dot.setAttribute('cx', '12');
    dot.setAttribute('cy', '12');
    dot.setAttribute('r', '8');
    svg.append(arrow, dot);
    return svg;
  }

  function setOnline(tenant, id, online) {
    const entry = devices.get(deviceKey(tenant, id));
    if (entry) showDevice(Object.assign({}, entry.device, { online: online }));
  }

  // ---- geofences ------------------------------------------------------------------------
  const FENCE_COLORS = { warehouse: '#6a1b9a', customer: '#2e7d32', port: '#00838f',
    depot: '#ef6c00', restricted: '#c62828' };

  /** The polygon (as [lat, lon] pairs) `width_m` either side of a line of [lon, lat]
   * points: offsets in a local flat projection with mitred joins (limited at sharp turns). */
  function corridor(coords, width_m) {
    const lat0 = coords.reduce(function (s, c) { return s + c[1]; }, 0) / coords.length;
    const kx = 111320 * Math.cos(lat0 * Math.PI / 180);
    const ky = 110574;
    const pts = coords.map(function (c) { return [c[0] * kx, c[1] * ky]; });
    const left = [];
    const right = [];
    for (let i = 0; i < pts.length; i++) {
      const a = pts[Math.max(i - 1, 0)];
      const b = pts[Math.min(i + 1, pts.length - 1)];
      let dx = b[0] - a[0];
      let dy = b[1] - a[1];
      const len = Math.hypot(dx, dy) || 1;
      dx /= len; dy /= len;
      // Mitre: scale by 1/cos(half the turn), from the incoming segment's direction.
      let scale = 1;
      if (i > 0 && i < pts.length - 1) {
        const p = pts[i - 1];
        const q = pts[i];
        const l1 = Math.hypot(q[0] - p[0], q[1] - p[1]) || 1;
        const cos = ((q[0] - p[0]) * dx + (q[1] - p[1]) * dy) / l1;
        scale = Math.min(1 / Math.max(cos, 0.25), 4);
      }
      const nx = -dy * width_m * scale;
      const ny = dx * width_m * scale;
      left.push([(pts[i][1] + ny) / ky, (pts[i][0] + nx) / kx]);
      right.push([(pts[i][1] - ny) / ky, (pts[i][0] - nx) / kx]);
    }
    return left.concat(right.reverse());
  }

  /** Geofence id -> name, for stops and visits named by id. */
  const fenceNames = new Map();

  function showGeofences(features) {
    fenceLayer.clearLayers();
    fenceNames.clear();
    for (const f of features) {
      if (f.id !== undefined) fenceNames.set(String(f.id), (f.properties || {}).name || String(f.id));
      const props = f.properties || {};
      const g = f.geometry || {};
      const color = FENCE_COLORS[props.kind] || '#455a64';
      const style = { color: color, weight: 2, fillOpacity: 0.12 };
      let layer = null;
      if (g.type === 'Point' && typeof props.radius_m === 'number') {
        layer = L.circle([g.coordinates[1], g.coordinates[0]],
          Object.assign({ radius: props.radius_m }, style));
      } else if (g.type === 'LineString' && typeof props.corridor_m === 'number') {
        layer = L.layerGroup([
          L.polygon(corridor(g.coordinates, props.corridor_m), style),
          L.polyline(g.coordinates.map(function (c) { return [c[1], c[0]]; }),
            { color: color, weight: 1, dashArray: '4 4' }),
        ]);
      } else if (g.type === 'Polygon' || g.type === 'MultiPolygon') {
        layer = L.geoJSON(f, { style: function () { return style; } });
      }
      if (!layer) continue;
      // The name on the map (a permanent label while there are few fences), the kind too on
      // hover.
      const name = props.name || f.id;
      const label = name + (props.kind ? ' (' + props.kind + ')' : '');
      const few = features.length <= LABELS_MAX;
      const parts = layer.eachLayer && !layer.getBounds ? layer.getLayers() : [layer];
      parts.forEach(function (l, i) {
        if (few && i === 0) {
          l.bindTooltip(LP.el('span', null, name), { permanent: true, direction: 'center',
            className: 'lp-fence-label' });
        } else {
          l.bindTooltip(LP.el('span', null, label));
        }
      });
      layer.addTo(fenceLayer);
    }
  }

  // ---- the device list ------------------------------------------------------------------
  /** Every device of the last load ({id, tenant, name, kind, online}), for the list. */
  let allDevices = [];
  let listQuery = '';

  /** Shows the devices whose id or name contains the search text, at most LIST_MAX of them.
   * Rebuilt on a search or a reload, never per position update. */
  function showDeviceList() {
    const ul = document.getElementById('devices');
    const q = listQuery.trim().toLowerCase();
    const matches = q ? allDevices.filter(function (d) {
      return d.id.toLowerCase().includes(q) || String(d.name || '').toLowerCase().includes(q);
    }) : allDevices;
    document.getElementById('device-count').textContent = q
      ? matches.length + ' of ' + allDevices.length : String(allDevices.length);
    const rows = [];
    for (const d of matches.slice(0, LIST_MAX)) {
      const li = LP.el('li', 'device-row');
      li.setAttribute('data-device', d.id);
      li.tabIndex = 0;
      const title = LP.el('div', 'title');
      title.append(LP.el('span', 'dot ' + (d.online ? 'online' : 'offline')),
        LP.el('span', null, d.name && d.name !== d.id ? d.name + ' · ' + d.id : d.id));
      li.append(title);
      if (d.selected) li.classList.add('selected');
      rows.push(li);
    }
    if (!matches.length) rows.push(LP.el('li', 'muted', q ? 'No device matches.' : 'No devices.'));
    if (matches.length > LIST_MAX) {
      rows.push(LP.el('li', 'muted more', (matches.length - LIST_MAX) + ' more: refine the search.'));
    }
    ul.replaceChildren.apply(ul, rows);
  }

  let searchTimer = null;
  document.getElementById('device-search').addEventListener('input', function (ev) {
    clearTimeout(searchTimer);
    // Typing in a list of thousands: filter once the typing pauses.
    searchTimer = setTimeout(function () {
      listQuery = ev.target.value;
      showDeviceList();
    }, allDevices.length > 2000 ? 150 : 0);
  });
  function pickFromList(ev) {
    const li = ev.target.closest('li[data-device]');
    if (!li) return;
    if (ev.type === 'keydown' && ev.key !== 'Enter') return;
    const id = li.getAttribute('data-device');
    const live = devices.get(deviceKey(tenantOf(id), id));
    if (live && live.device.position) {
      map.panTo([live.device.position.lat, live.device.position.lon]);
    }
    openReplay(id, null, null, true);
  }
  document.getElementById('devices').addEventListener('click', pickFromList);
  document.getElementById('devices').addEventListener('keydown', pickFromList);

  function tenantOf(id) {
    const d = allDevices.find(function (x) { return x.id === id; });
    return d ? d.tenant : undefined;
  }

  // ---- planned routes -------------------------------------------------------------------
  let routesShown = '';
  /** Each shipment's planned route (a dashed line named after the shipment); redrawn only
   * when a route changes. */
  function showRoutes(list) {
    const isDone = function (s) {
      return s.status === 'delivered' || s.status === 'cancelled' || s.status === 'arrived';
    };
    // Shipments under way first; a tenant with thousands draws the first LIST_MAX * 2.
    const withRoute = list.filter(function (s) {
      return s.route && s.route.type === 'LineString' && s.route.coordinates.length > 1;
    }).sort(function (a, b) { return isDone(a) - isDone(b); }).slice(0, LIST_MAX * 2);
    const sig = JSON.stringify(withRoute.map(function (s) {
      return [s.id, s.status, s.route.coordinates.length, s.updated_at];
    }));
    if (sig === routesShown) return;
    routesShown = sig;
    routeLayer.clearLayers();
    for (const s of withRoute) {
      const done = isDone(s);
      const line = L.polyline(s.route.coordinates.map(function (c) { return [c[1], c[0]]; }), {
        className: 'lp-route' + (done ? ' done' : ''), color: done ? '#8a939c' : '#1565c0',
        weight: 3, opacity: 0.7, dashArray: '8 6' });
      line.bindTooltip(LP.el('span', null, (s.reference || s.id) + ' — planned route ('
        + String(s.status).replace('_', ' ') + ')'), { sticky: true });
      line.addTo(routeLayer);
      const path = line.getElement();
      if (path) path.setAttribute('data-shipment-id', s.id);
    }
  }

  // ---- track replay ---------------------------------------------------------------------
  const replay = {
    device: null, fromMs: 0, toMs: 0,
    /** The track: [lat, lon] per vertex and its time (epoch ms), oldest first. */
    latlngs: [], times: [], idx: 0, marker: null, timer: null,
    /** While playing: the device time shown, advanced every tick. */
    playT: 0,
  };
  const $ = function (id) { return document.getElementById(id); };

  /** A time (epoch ms) as a datetime-local input value, in local time. */
  function toInput(ms) {
    const d = new Date(ms);
    return new Date(ms - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  }

  /** `T` of the fragment: epoch ms or an RFC 3339 time; NaN when neither. */
  function parseTime(t) {
    if (t === undefined || t === null || t === '') return NaN;
    return /^-?\d+$/.test(t) ? Number(t) : Date.parse(t);
  }

  function duration(s) {
    s = Math.round(s);
    if (s < 60) return s + ' s';
    const h = Math.floor(s / 3600);
    const m = Math.round((s % 3600) / 60);
    return h ? h + ' h ' + String(m).padStart(2, '0') + ' min' : m + ' min';
  }

  /** Opens the replay panel for `device` over [fromMs, toMs] (default: the last 2 hours and
   * the next 2, device clocks may run ahead), and loads it when `load`. */
  function openReplay(device, fromMs, toMs, load) {
    const now = Date.now();
    replay.device = device;
    replay.fromMs = isNaN(fromMs) || fromMs === null ? now - 2 * 3600000 : fromMs;
    replay.toMs = isNaN(toMs) || toMs === null ? now + 2 * 3600000 : toMs;
    $('replay').hidden = false;
    $('replay-device').textContent = device;
    $('replay-from').value = toInput(replay.fromMs);
    $('replay-to').value = toInput(replay.toMs);
    for (const li of document.querySelectorAll('#devices li.selected')) li.classList.remove('selected');
    for (const d of allDevices) d.selected = d.id === device;
    const row = document.querySelector('#devices li[data-device="' + CSS.escape(device) + '"]');
    if (row) row.classList.add('selected');
    fitted = true;
    if (load) loadReplay();
  }

  $('replay-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    const from = new Date($('replay-from').value).getTime();
    const to = new Date($('replay-to').value).getTime();
    if (isNaN(from) || isNaN(to) || from > to) {
      $('replay-status').textContent = 'Pick a start before the end.';
      return;
    }
    replay.fromMs = from;
    replay.toMs = to;
    loadReplay();
  });
  $('replay-close').addEventListener('click', closeReplay);

  function closeReplay() {
    stopPlaying();
    replay.device = null;
    trackLayer.clearLayers();
    replay.marker = null;
    $('replay').hidden = true;
    setFragment({});
    for (const d of allDevices) d.selected = false;
    for (const li of document.querySelectorAll('#devices li.selected')) li.classList.remove('selected');
  }

  /** Loads the track and the stops of the chosen device and range and draws them. */
  async function loadReplay() {
    stopPlaying();
    const device = replay.device;
    const from = new Date(replay.fromMs).toISOString();
    const to = new Date(replay.toMs).toISOString();
    setFragment({ device: device, from: from, to: to });
    $('replay-status').textContent = 'Loading…';
    $('replay-controls').hidden = true;
    $('replay-stops').replaceChildren();
    trackLayer.clearLayers();
    replay.marker = null;
    const base = '/v1/devices/' + encodeURIComponent(device);
    const q = '?from=' + encodeURIComponent(from) + '&to=' + encodeURIComponent(to);
    let track;
    let stops = null;
    let trips = null;
    let stopsError = null;
    const optional = function (e) {
      if (e instanceof Unauthorized) throw e;
      stopsError = stopsError || e;
      return null;
    };
    try {
      const got = await Promise.all([
        api(base + '/track' + q + '&limit=' + TRACK_LIMIT),
        api(base + '/stops' + q).catch(optional),
        api(base + '/trips' + q).catch(optional),
      ]);
      track = got[0];
      stops = got[1];
      trips = got[2];
    } catch (e) {
      if (e instanceof Unauthorized) { askKey('That key was refused (401). Enter a valid API key.'); return false; }
      $('replay-status').textContent = 'Could not load the track: ' + e.message;
      return false;
    }
    if (replay.device !== device) return false;
    const coords = (track.geometry && track.geometry.coordinates) || [];
    replay.latlngs = coords.map(function (c) { return [c[1], c[0]]; });
    replay.times = ((track.properties && track.properties.times) || []).map(Date.parse);
    if (!replay.latlngs.length) {
      $('replay-status').textContent = 'No positions of ' + device + ' in this range.';
      return false;
    }
    const line = L.polyline(replay.latlngs, { className: 'lp-track', color: '#d81b60',
      weight: 4, opacity: 0.85 }).addTo(trackLayer);
    const stopList = (stops && stops.stops) || [];
    const tripList = (trips && trips.trips) || [];
    // Stops and trips in the panel, in time order.
    const rows = drawStops(stopList).concat(tripRows(tripList));
    rows.sort(function (a, b) { return a.t - b.t; });
    $('replay-stops').replaceChildren.apply($('replay-stops'), rows.map(function (r) { return r.li; }));
    const arrow = LP.el('div', 'lp-arrow');
    arrow.append(deviceSvg());
    replay.marker = L.marker(replay.latlngs[0], { icon: L.divIcon({ className: 'lp-device lp-replay',
      html: arrow, iconSize: [24, 24], iconAnchor: [12, 12] }), keyboard: false,
    zIndexOffset: 1000 }).addTo(trackLayer);
    const slider = $('replay-slider');
    slider.max = String(replay.latlngs.length - 1);
    slider.value = '0';
    $('replay-controls').hidden = false;
    setIndex(0);
    map.fitBounds(line.getBounds().pad(0.15), { maxZoom: 15 });
    let msg = replay.latlngs.length + ' positions';
    if (trips) {
      const km = tripList.reduce(function (a, t) { return a + (t.distance_m || 0); }, 0) / 1000;
      msg += ', ' + tripList.length + (tripList.length === 1 ? ' trip' : ' trips')
        + ' (' + km.toFixed(1) + ' km)';
    }
    if (stops) msg += ', ' + stopList.length + (stopList.length === 1 ? ' stop' : ' stops');
    if (track.properties && track.properties.truncated) msg += ' (the first ' + TRACK_LIMIT + ' only: shorten the range)';
    if (stopsError) msg += '; stops unavailable: ' + stopsError.message;
    $('replay-status').textContent = msg + '.';
    return true;
  }

  /** Panel rows ({t, li}) of the trips between the stops: when, how far, how fast. */
  function tripRows(list) {
    const rows = [];
    for (const t of list) {
      const li = LP.el('li', 'trip-row');
      const from = t.start.geofence ? fenceNames.get(t.start.geofence) || t.start.geofence : '';
      const to = t.end.geofence ? fenceNames.get(t.end.geofence) || t.end.geofence : '';
      li.append(LP.el('div', 'title', 'Trip · ' + (t.distance_m / 1000).toFixed(1) + ' km · '
        + duration(t.duration_s) + (from || to ? ' · ' + (from || '?') + ' → ' + (to || '?') : '')),
      LP.el('div', 'muted', LP.time(t.start.ts) + ' – ' + LP.time(t.end.ts) + ' · avg '
        + Math.round(t.avg_speed_kmh) + ' km/h, max ' + Math.round(t.max_speed_kmh) + ' km/h'));
      li.addEventListener('click', function () { seek(Date.parse(t.start.ts)); });
      rows.push({ t: Date.parse(t.start.ts), li: li });
    }
    return rows;
  }

  /** Draws a marker per stop (labelled with its duration while there are few); returns the
   * panel rows ({t, li}). */
  function drawStops(list) {
    const rows = [];
    const few = list.length <= LABELS_MAX;
    for (const s of list) {
      const label = duration(s.duration_s)
        + (s.geofence ? ' · ' + (fenceNames.get(s.geofence) || s.geofence) : '');
      const m = L.circleMarker([s.lat, s.lon], { radius: 8, className: 'lp-stop', color: '#fff',
        weight: 2, fillColor: '#ef6c00', fillOpacity: 1 }).addTo(trackLayer);
      // A permanent label with the duration while there are few; details in the panel.
      m.bindTooltip(few ? LP.el('span', null, duration(s.duration_s))
        : LP.el('span', null, 'Stop ' + label + ' · ' + LP.time(s.start) + ' – ' + LP.time(s.end)),
      few ? { permanent: true, direction: 'top', offset: [0, -8], className: 'lp-stop-label' } : {});
      const li = LP.el('li', 'stop-row');
      li.append(LP.el('div', 'title', 'Stop · ' + label),
        LP.el('div', 'muted', LP.time(s.start) + ' – ' + LP.time(s.end)));
      li.addEventListener('click', function () { seek(Date.parse(s.start)); });
      m.on('click', function () { seek(Date.parse(s.start)); });
      rows.push({ t: Date.parse(s.start), li: li });
    }
    return rows;
  }

  /** The first index whose time is at or after `t` (the last when none). */
  function indexAt(t) {
    let lo = 0;
    let hi = replay.times.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (replay.times[mid] < t) lo = mid + 1; else hi = mid;
    }
    return Math.max(lo, 0);
  }

  function seek(t) {
    const i = indexAt(t);
    $('replay-slider').value = String(i);
    setIndex(i);
  }

  /** Puts the replay marker on vertex `i`, heading towards the next one. */
  function setIndex(i) {
    if (!replay.marker) return;
    i = Math.max(0, Math.min(i, replay.latlngs.length - 1));
    replay.idx = i;
    const ll = replay.latlngs[i];
    replay.marker.setLatLng(ll);
    const el = replay.marker.getElement();
    if (el) {
      el.setAttribute('data-index', String(i));
      el.setAttribute('data-lat', String(ll[0]));
      el.setAttribute('data-lon', String(ll[1]));
      const n = replay.latlngs.length;
      const h = i + 1 < n ? bearing(ll, replay.latlngs[i + 1])
        : (i > 0 ? bearing(replay.latlngs[i - 1], ll) : null);
      el.classList.toggle('no-heading', h === null);
      if (h !== null) el.firstChild.style.transform = 'rotate(' + h + 'deg)';
    }
    const t = replay.times[i];
    $('replay-time').textContent = isNaN(t) ? '' : new Date(t).toLocaleString([],
      { dateStyle: 'short', timeStyle: 'medium' }) + '  (' + (i + 1) + ' / ' + replay.latlngs.length + ')';
  }

  /** Initial bearing from a to b ([lat, lon]), degrees; null when they coincide. */
  function bearing(a, b) {
    if (a[0] === b[0] && a[1] === b[1]) return null;
    const r = Math.PI / 180;
    const y = Math.sin((b[1] - a[1]) * r) * Math.cos(b[0] * r);
    const x = Math.cos(a[0] * r) * Math.sin(b[0] * r)
      - Math.sin(a[0] * r) * Math.cos(b[0] * r) * Math.cos((b[1] - a[1]) * r);
    return (Math.atan2(y, x) / r + 360) % 360;
  }

  $('replay-slider').addEventListener('input', function (ev) {
    setIndex(Number(ev.target.value));
    // Playing on from where the slider was put.
    replay.playT = replay.times[replay.idx];
  });

  const TICK_MS = 100;
  function stopPlaying() {
    if (replay.timer) clearInterval(replay.timer);
    replay.timer = null;
    $('replay-play').textContent = '▶';
    $('replay-play').setAttribute('aria-label', 'play');
  }
  $('replay-play').addEventListener('click', function () {
    if (replay.timer) { stopPlaying(); return; }
    if (replay.idx >= replay.latlngs.length - 1) seek(replay.times[0]);
    $('replay-play').textContent = '⏸';
    $('replay-play').setAttribute('aria-label', 'pause');
    // Device time advances `speed` times as fast as the wall clock.
    replay.playT = replay.times[replay.idx];
    replay.timer = setInterval(function () {
      replay.playT += Number($('replay-speed').value) * TICK_MS;
      const i = indexAt(replay.playT);
      $('replay-slider').value = String(i);
      setIndex(i);
      if (i >= replay.latlngs.length - 1) stopPlaying();
    }, TICK_MS);
  });

  /** The replay the fragment asks for (`device`, `from`, `to`), if any. */
  function replayFromFragment() {
    const f = fragment();
    if (!f.device) return false;
    openReplay(f.device, parseTime(f.from), parseTime(f.to), true);
    return true;
  }
  window.addEventListener('hashchange', function () { if (key) replayFromFragment(); });

  // ---- panel ----------------------------------------------------------------------------
  function showShipments(list) {
    const ul = document.getElementById('shipments');
    ul.replaceChildren();
    if (!list.length) ul.append(LP.el('li', 'muted', 'No shipments.'));
    for (const s of list.slice(0, LIST_MAX)) {
      const li = LP.el('li');
      li.setAttribute('data-shipment-id', s.id);
      const title = LP.el('div', 'title', s.reference || s.id);
      title.append(LP.el('span', 'badge ' + s.status, String(s.status).replace('_', ' ')));
      const late = s.eta && s.deadline && s.status === 'in_transit'
        && Date.parse(s.eta.eta) > Date.parse(s.deadline);
      if (late) title.append(LP.el('span', 'badge late', 'late risk'));
      li.append(title, LP.el('div', 'muted', 'Device ' + s.device));
      if (s.status !== 'delivered' && s.status !== 'cancelled') {
        li.append(LP.el('div', null, 'ETA ' + LP.etaWindow(s.eta)));
      }
      if (s.deadline) li.append(LP.el('div', 'muted', 'Deadline ' + LP.time(s.deadline)));
      const btn = LP.el('button', 'link', 'Replay track');
      btn.type = 'button';
      btn.addEventListener('click', function () {
        // From an hour before it left (or the last two hours) to its arrival (or now).
        const start = s.departed_at ? Date.parse(s.departed_at) - 3600000 : NaN;
        const end = s.arrived_at ? Date.parse(s.arrived_at) + 1800000 : NaN;
        openReplay(s.device, start, end, true);
      });
      const links = LP.el('div', 'links');
      links.append(btn);
      if (s.status !== 'planned' && s.status !== 'cancelled') {
        links.append(LP.el('span', 'muted', ' · Record '));
        for (const format of ['pdf', 'csv']) {
          const b = LP.el('button', 'link record', format.toUpperCase());
          b.type = 'button';
          b.setAttribute('data-format', format);
          b.addEventListener('click', function () { downloadRecord(s.id, format, b); });
          links.append(b, document.createTextNode(' '));
        }
      }
      li.append(links);
      ul.append(li);
    }
    if (list.length > LIST_MAX) {
      ul.append(LP.el('li', 'muted more', (list.length - LIST_MAX) + ' more shipments.'));
    }
  }

  /** Downloads a shipment's record (`/v1/shipments/{id}/report?format=pdf|csv`: it needs the
   * key, so it is fetched and handed to the browser as a file). The button notes what it got
   * (`data-got`: type and size). */
  async function downloadRecord(id, format, button) {
    button.disabled = true;
    try {
      const res = await fetch('/v1/shipments/' + encodeURIComponent(id) + '/report?format=' + format,
        { headers: { Authorization: 'Bearer ' + key }, cache: 'no-store' });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const blob = await res.blob();
      button.setAttribute('data-got', blob.type + ' ' + blob.size);
      const a = LP.el('a');
      a.href = URL.createObjectURL(blob);
      a.download = id + '-record.' + format;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(a.href); }, 60000);
    } catch (e) {
      button.setAttribute('data-got', 'error ' + e.message);
      button.title = 'Could not get the record: ' + e.message;
    } finally {
      button.disabled = false;
    }
  }

  function showEvents() {
    const ul = document.getElementById('events');
    ul.replaceChildren();
    if (!events.length) ul.append(LP.el('li', 'muted', 'No events yet.'));
    for (const e of events) {
      // Alerts stand out; an event of a device opens its replay at that moment.
      const li = LP.el('li', 'event ev-' + String(e.type).replace(/[^a-z_]/g, '-'));
      li.setAttribute('data-event-id', e.id);
      li.append(LP.el('div', 'title', e.type),
        LP.el('div', 'muted', [e.device, e.shipment, e.geofence].filter(Boolean).join(' · ')
          + ' · ' + LP.time(e.ts)));
      const ts = Date.parse(e.ts);
      if (e.device && !isNaN(ts)) {
        li.classList.add('clickable');
        li.title = 'Replay ' + e.device + ' around this moment';
        li.addEventListener('click', function () {
          openReplay(e.device, ts - 1800000, ts + 1800000, false);
          loadReplay().then(function (ok) { if (ok) seek(ts); });
        });
      }
      ul.append(li);
    }
  }

  function addEvent(e) {
    if (events.some(function (x) { return x.id === e.id; })) return;
    events.unshift(e);
    events.sort(function (a, b) { return String(b.ts).localeCompare(String(a.ts)); });
    events = events.slice(0, MAX_EVENTS);
    showEvents();
  }

  // ---- loading and the live stream --------------------------------------------------------
  async function loadAll() {
    const [devs, fences, ships, evs] = await Promise.all([
      apiAll('/v1/devices', 'devices'), apiAll('/v1/geofences', 'geofences'),
      apiAll('/v1/shipments', 'shipments'), api('/v1/events?limit=' + MAX_EVENTS),
    ]);
    for (const d of devs) showDevice(d);
    const selected = replay.device;
    allDevices = devs.map(function (d) {
      return { id: d.id, tenant: d.tenant, name: d.name, kind: d.kind, online: d.online,
        selected: d.id === selected };
    });
    showDeviceList();
    showGeofences(fences);
    showShipments(ships);
    showRoutes(ships);
    events = [];
    for (const e of evs.events || []) addEvent(e);
    showEvents();
    if (!fitted) {
      const b = L.latLngBounds([]);
      deviceLayer.eachLayer(function (m) { b.extend(m.getLatLng()); });
      fenceLayer.eachLayer(function (l) { if (l.getBounds) b.extend(l.getBounds()); });
      if (b.isValid()) map.fitBounds(b.pad(0.05), { maxZoom: 13 });
      fitted = true;
    }
  }

  let shipmentsTimer = null;
  function refreshShipmentsSoon() {
    if (shipmentsTimer) return;
    shipmentsTimer = setTimeout(function () {
      shipmentsTimer = null;
      apiAll('/v1/shipments', 'shipments').then(function (list) {
        showShipments(list);
        showRoutes(list);
      }, function () {});
    }, 1000);
  }

  function onSse(type, data) {
    if (type === 'positions') {
      for (const f of JSON.parse(data).features) {
        const p = f.properties || {};
        showDevice({ id: f.id, tenant: p.tenant, online: p.online, position: {
          lon: f.geometry.coordinates[0], lat: f.geometry.coordinates[1], ts: p.ts,
          speed_kmh: p.speed_kmh, heading_deg: p.heading_deg } });
      }
    } else if (type === 'event') {
      const e = JSON.parse(data);
      addEvent(e);
      if (e.type === 'device.offline') setOnline(e.tenant, e.device, false);
      if (e.type === 'device.online') setOnline(e.tenant, e.device, true);
      if (e.shipment) refreshShipmentsSoon();
    } else if (type === 'lagged') {
      api('/v1/events?limit=' + MAX_EVENTS).then(function (v) {
        for (const e of v.events) addEvent(e);
      }, function () {});
    }
  }

  function setLive(on) {
    const c = document.getElementById('conn');
    c.className = 'conn ' + (on ? 'on' : 'off');
    c.textContent = on ? 'live' : 'offline';
  }

  /** Reads the SSE stream until it ends, dispatching each event to onSse. */
  async function readStream(gen) {
    const res = await fetch('/v1/stream?topics=positions,events', {
      headers: { Authorization: 'Bearer ' + key, Accept: 'text/event-stream' }, cache: 'no-store',
    });
    if (res.status === 401) throw new Unauthorized();
    if (!res.ok || !res.body) throw new Error('stream: HTTP ' + res.status);
    setLive(true);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    while (gen === generation) {
      const chunk = await reader.read();
      if (chunk.done) break;
      buf = (buf + chunk.value).replace(/\r\n?/g, '\n');
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let type = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const i = line.indexOf(':');
          const field = i < 0 ? line : line.slice(0, i);
          let value = i < 0 ? '' : line.slice(i + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'event') type = value;
          else if (field === 'data') data.push(value);
        }
        if (data.length) {
          try { onSse(type, data.join('\n')); } catch (e) { console.warn('bad SSE item', e); }
        }
      }
    }
    reader.cancel().catch(function () {});
  }

  async function start(gen) {
    let delay = 1000;
    while (gen === generation) {
      try {
        await loadAll();
        await readStream(gen);
        delay = 1000;
      } catch (e) {
        if (e instanceof Unauthorized) {
          setLive(false);
          askKey('That key was refused (401). Enter a valid API key.');
          return;
        }
        console.warn(e);
      }
      setLive(false);
      await LP.sleep(delay);
      delay = Math.min(delay * 2, 30000);
    }
  }

  // Periodic resync: online flags and ETAs change without a position arriving.
  setInterval(function () {
    if (key) loadAll().catch(function () {});
  }, RESYNC_MS);

  const fromUrl = fragment().key;
  if (fromUrl) {
    // Keep the key out of the address bar and the history (the rest of the fragment stays).
    setFragment(fragment());
    useKey(fromUrl);
  } else if (localStorage.getItem(KEY_STORE)) {
    useKey(localStorage.getItem(KEY_STORE));
  } else {
    askKey();
  }
})();
