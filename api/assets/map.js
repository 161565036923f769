// The live map (GET /): devices, geofences, shipments and events of the key's tenant,
// updated over the /v1/stream server-sent events. EventSource cannot send the
// Authorization header, so the stream is read with fetch and parsed here.
'use strict';
(function () {
  const LP = window.Landport;
  const KEY_STORE = 'landport.apiKey';
  const MAX_EVENTS = 50;
  const RESYNC_MS = 30000;

  const map = LP.makeMap('map', { center: [30, 10], zoom: 2 });
  const fenceLayer = L.layerGroup().addTo(map);
  const deviceLayer = L.layerGroup().addTo(map);
  /** "tenant/id" -> {marker, device}. */
  const devices = new Map();
  let events = [];
  let key = null;
  /** Bumped when the key changes: an older stream loop stops. */
  let generation = 0;
  let fitted = false;

  // ---- the key --------------------------------------------------------------------------
  function keyFromFragment() {
    const m = /(?:^|&)key=([^&]*)/.exec(location.hash.slice(1));
    return m ? decodeURIComponent(m[1]) : null;
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
  }

  // ---- API ------------------------------------------------------------------------------
  class Unauthorized extends Error {}

  async function api(path) {
    const res = await fetch(path, { headers: { Authorization: 'Bearer ' + key }, cache: 'no-store' });
    if (res.status === 401) throw new Unauthorized();
    if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
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

  function showGeofences(features) {
    fenceLayer.clearLayers();
    for (const f of features) {
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
      const label = (props.name || f.id) + (props.kind ? ' (' + props.kind + ')' : '');
      layer.eachLayer ? layer.eachLayer(function (l) { l.bindTooltip(LP.el('span', null, label)); })
        : layer.bindTooltip(LP.el('span', null, label));
      layer.addTo(fenceLayer);
    }
  }

  // ---- panel ----------------------------------------------------------------------------
  function showShipments(list) {
    const ul = document.getElementById('shipments');
    ul.replaceChildren();
    if (!list.length) ul.append(LP.el('li', 'muted', 'No shipments.'));
    for (const s of list) {
      const li = LP.el('li');
      li.setAttribute('data-shipment-id', s.id);
      const title = LP.el('div', 'title', s.reference || s.id);
      title.append(LP.el('span', 'badge ' + s.status, String(s.status).replace('_', ' ')));
      li.append(title, LP.el('div', 'muted', 'Device ' + s.device));
      if (s.status !== 'delivered' && s.status !== 'cancelled') {
        li.append(LP.el('div', null, 'ETA ' + LP.etaWindow(s.eta)));
      }
      if (s.deadline) li.append(LP.el('div', 'muted', 'Deadline ' + LP.time(s.deadline)));
      ul.append(li);
    }
  }

  function showEvents() {
    const ul = document.getElementById('events');
    ul.replaceChildren();
    if (!events.length) ul.append(LP.el('li', 'muted', 'No events yet.'));
    for (const e of events) {
      const li = LP.el('li');
      li.append(LP.el('div', 'title', e.type),
        LP.el('div', 'muted', [e.device, e.shipment, e.geofence].filter(Boolean).join(' · ')
          + ' · ' + LP.time(e.ts)));
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
    showGeofences(fences);
    showShipments(ships);
    events = [];
    for (const e of evs.events || []) addEvent(e);
    showEvents();
    if (!fitted) {
      const b = L.latLngBounds([]);
      deviceLayer.eachLayer(function (m) { b.extend(m.getLatLng()); });
      fenceLayer.eachLayer(function (l) { if (l.getBounds) b.extend(l.getBounds()); });
      if (b.isValid()) map.fitBounds(b.pad(0.2), { maxZoom: 13 });
      fitted = true;
    }
  }

  let shipmentsTimer = null;
  function refreshShipmentsSoon() {
    if (shipmentsTimer) return;
    shipmentsTimer = setTimeout(function () {
      shipmentsTimer = null;
      apiAll('/v1/shipments', 'shipments').then(showShipments, function () {});
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

  const fromUrl = keyFromFragment();
  if (fromUrl) {
    // Keep the key out of the address bar and the history.
    history.replaceState(null, '', location.pathname + location.search);
    useKey(fromUrl);
  } else if (localStorage.getItem(KEY_STORE)) {
    useKey(localStorage.getItem(KEY_STORE));
  } else {
    askKey();
  }
})();
