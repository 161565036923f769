// The webhooks' health page: lists /v1/webhooks with the key from the URL fragment
// (`#key=...`) or local storage, every 5 s. Plain JavaScript, no build step.
'use strict';

const KEY_STORE = 'landport.apiKey'; // the live map's: one key for both pages
let key = null;

function fragmentKey() {
  for (const part of location.hash.slice(1).split('&')) {
    const [k, v] = part.split('=');
    if (k === 'key' && v) return decodeURIComponent(v);
  }
  return null;
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text == null ? '' : String(text);
  if (cls) td.className = cls;
  return td;
}

function ago(ts) {
  if (!ts) return 'never';
  const s = Math.round((Date.now() - Date.parse(ts)) / 1000);
  if (s < 120) return s + ' s ago';
  if (s < 7200) return Math.round(s / 60) + ' min ago';
  return new Date(ts).toISOString().replace('.000Z', 'Z');
}

function row(w) {
  const h = w.health || {};
  const tr = document.createElement('tr');
  tr.appendChild(cell(w.id + (w.description ? ' — ' + w.description : '')));
  tr.appendChild(cell(w.url));
  tr.appendChild(cell((w.events || []).join(', ')));
  tr.appendChild(w.enabled ? cell('enabled', 'ok') : cell('disabled: ' + (w.disabled_reason || ''), 'bad'));
  tr.appendChild(cell(h.pending, h.pending > 0 ? 'warn' : ''));
  tr.appendChild(cell(h.failed, h.failed > 0 ? 'bad' : ''));
  tr.appendChild(cell(ago(h.last_success), h.last_success ? 'ok' : 'muted'));
  tr.appendChild(cell(h.last_failure ? ago(h.last_failure) + ' (' + h.failures + ' in a row)' : 'never',
    h.failures > 0 ? 'bad' : 'muted'));
  tr.appendChild(cell((h.last_status == null ? '' : h.last_status + ' ') + (h.last_error || '')));
  return tr;
}

async function refresh() {
  const status = document.getElementById('status');
  if (!key) { status.textContent = 'No key yet.'; return; }
  const rows = [];
  let next = null;
  try {
    do {
      const url = '/v1/webhooks?limit=1000' + (next ? '&next=' + encodeURIComponent(next) : '');
      const res = await fetch(url, { headers: { Authorization: 'Bearer ' + key } });
      const body = await res.json();
      if (!res.ok) { status.textContent = (body.error && body.error.message) || res.statusText; return; }
      rows.push(...body.webhooks);
      next = body.next;
    } while (next);
  } catch (e) {
    status.textContent = 'Cannot reach the API: ' + e;
    return;
  }
  const tbody = document.getElementById('rows');
  tbody.replaceChildren(...rows.map(row));
  status.textContent = rows.length + ' webhook(s), as of ' + new Date().toLocaleTimeString();
}

document.getElementById('key-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  key = document.getElementById('key').value.trim() || null;
  if (key) localStorage.setItem(KEY_STORE, key);
  refresh();
});

key = fragmentKey() || localStorage.getItem(KEY_STORE);
if (fragmentKey()) {
  localStorage.setItem(KEY_STORE, key);
  history.replaceState(null, '', location.pathname);
}
refresh();
setInterval(refresh, 5000);
