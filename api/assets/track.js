// The end customer's page (GET /track/{token}): one shipment's position, status and ETA
// window, polled from the keyless /v1/public/{token}.
'use strict';
(function () {
  const LP = window.Landport;
  const POLL_MS = 5000;
  const token = decodeURIComponent(location.pathname.replace(/^\/track\//, '').split('/')[0]);
  const map = LP.makeMap('map', { center: [30, 10], zoom: 2 });
  let marker = null;
  const STATUS = { planned: 'Preparing', in_transit: 'On its way', arrived: 'Arrived',
    delivered: 'Delivered', cancelled: 'Cancelled' };

  function show(v) {
    document.getElementById('error').hidden = true;
    document.getElementById('reference').textContent = v.reference ? '(' + v.reference + ')' : '';
    document.getElementById('status').textContent = STATUS[v.status] || v.status;
    const done = v.status === 'delivered' || v.status === 'cancelled' || v.status === 'arrived';
    document.getElementById('eta-line').hidden = done;
    document.getElementById('eta').textContent = LP.etaWindow(v.eta);
    if (v.position) {
      const ll = [v.position.lat, v.position.lon];
      if (!marker) {
        marker = L.circleMarker(ll, { radius: 9, color: '#fff', weight: 2, fillColor: '#1565c0',
          fillOpacity: 1 }).addTo(map);
        map.setView(ll, 11);
      } else {
        marker.setLatLng(ll);
      }
      document.getElementById('updated').textContent = 'Position from ' + LP.time(v.position.ts);
    }
  }

  async function poll() {
    for (;;) {
      try {
        const res = await fetch('/v1/public/' + encodeURIComponent(token), { cache: 'no-store' });
        if (res.status === 404) {
          const e = document.getElementById('error');
          e.textContent = 'This shipment is no longer shared.';
          e.hidden = false;
          return;
        }
        if (res.ok) show(await res.json());
      } catch (e) {
        // Offline for a moment: try again at the next poll.
      }
      await LP.sleep(POLL_MS);
    }
  }
  poll();
})();
