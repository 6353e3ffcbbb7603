// The amiproxy operator console: read-only views of /console/api/state (polled each
// second) and a live event tail over /console/api/events. No framework, no CDN.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const COLORS = ["#4fb3ff", "#3ecf8e", "#f5b945", "#ff6b6b", "#b18cff", "#5ee3e3", "#ff9f5a"];
  const HISTORY = 120; // seconds on the chart
  const TAIL_ROWS = 500;
  let poll = null, ws = null, paused = false;
  const history = new Map(); // server -> [{t, total}]
  const rates = new Map();   // server -> [{t, rate}]
  window.amiConsole = { rates }; // for the browser tests and the curious

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function td(text, cls) { return el("td", cls ? { class: cls } : {}, text); }
  function fmtSecs(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
  }
  function fmtNum(n) { return n >= 1e6 ? (n / 1e6).toFixed(2) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(Math.round(n)); }

  async function api(path, body) {
    const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts));
    let data = {};
    try { data = await r.json(); } catch (_) { /* not JSON */ }
    return { status: r.status, data };
  }

  function showLogin(message) {
    stop();
    $("app").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message || "";
    $("login-user").focus();
  }

  function stop() {
    if (poll) clearInterval(poll);
    poll = null;
    if (ws) ws.close();
    ws = null;
  }

  async function start() {
    const first = await api("/console/api/state");
    if (first.status !== 200) return showLogin("");
    $("login-view").hidden = true;
    $("app").hidden = false;
    render(first.data);
    poll = setInterval(async () => {
      const s = await api("/console/api/state").catch(() => ({ status: 0 }));
      if (s.status === 401) return showLogin("Your console login has ended.");
      if (s.status === 200) render(s.data);
    }, 1000);
    openTail();
  }

  function render(s) {
    $("proxy-name").textContent = `${s.proxy.name} ${s.proxy.version}`;
    $("uptime").textContent = "up " + fmtSecs(s.proxy.uptime_secs);
    $("whoami").textContent = s.user;
    $("draining").hidden = !s.proxy.draining;
    const now = Date.now() / 1000;
    let total = 0;
    const ub = $("upstreams").tBodies[0];
    ub.replaceChildren();
    s.upstreams.forEach((u) => {
      const h = history.get(u.name) || [];
      h.push({ t: now, total: u.events_total });
      while (h.length > 2 && h[0].t < now - 3) h.shift();
      history.set(u.name, h);
      const a = h[0], b = h[h.length - 1];
      const rate = b.t > a.t ? Math.max(0, (b.total - a.total) / (b.t - a.t)) : 0;
      const r = rates.get(u.name) || [];
      r.push({ t: now, rate });
      while (r.length && r[0].t < now - HISTORY) r.shift();
      rates.set(u.name, r);
      total += rate;
      const tr = el("tr", { "data-server": u.name });
      tr.append(td(u.name), td(u.connected ? "up" : "down", "state " + (u.connected ? "up" : "down")),
        td(u.version ? `${u.version} (${u.generation})` : "—"),
        td(u.rtt_ms == null ? "—" : u.rtt_ms.toFixed(2) + " ms", "num"), td(String(u.reconnects), "num"),
        td(fmtNum(rate), "num rate"), td(String(u.in_flight), "num"));
      ub.append(tr);
    });
    $("rate-now").textContent = fmtNum(total) + "/s";
    $("rate-now").dataset.rate = String(total);
    drawChart(now);

    const sb = $("sessions").tBodies[0];
    sb.replaceChildren();
    $("session-count").textContent = String(s.sessions.length);
    s.sessions.forEach((x) => {
      const tr = el("tr", { "data-user": x.user, "data-transport": x.transport });
      if (x.dropped > 0) tr.className = "hot";
      tr.append(td(x.user), td(x.peer), td(x.transport), td(x.listener),
        td(fmtSecs(Math.max(0, Math.round(now - x.since_unix)))), td(fmtNum(x.queued_events), "num"),
        td(fmtNum(x.dropped), "num"), td(fmtNum(x.delivered), "num"));
      sb.append(tr);
    });

    const rb = $("refusals").tBodies[0];
    rb.replaceChildren();
    $("refusal-count").textContent = String(s.refusals.length);
    s.refusals.slice(0, 20).forEach((x) => {
      const tr = el("tr", { "data-action": x.action });
      tr.append(td(new Date(x.at_unix_ms).toLocaleTimeString()), td(x.user), td(x.peer), td(x.action),
        td(x.server || "—"), td(x.reason));
      tr.title = x.reason;
      rb.append(tr);
    });
  }

  function drawChart(now) {
    const c = $("rates");
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth || 900, h = c.clientHeight || 200;
    if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    let max = 10;
    for (const r of rates.values()) for (const p of r) max = Math.max(max, p.rate);
    max *= 1.15;
    const left = 48, bottom = h - 18;
    g.strokeStyle = "#263140"; g.fillStyle = "#8593a3"; g.font = "11px system-ui"; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = bottom - (bottom - 8) * i / 4;
      g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
      g.fillText(fmtNum(max * i / 4), 4, y + 4);
    }
    g.fillText("-2m", left, h - 4); g.fillText("now", w - 24, h - 4);
    const legend = $("rates-legend");
    legend.replaceChildren();
    let i = 0;
    for (const [name, r] of rates) {
      const color = COLORS[i++ % COLORS.length];
      g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
      r.forEach((p, j) => {
        const x = left + (w - left) * (1 - (now - p.t) / HISTORY);
        const y = bottom - (bottom - 8) * p.rate / max;
        j ? g.lineTo(x, y) : g.moveTo(x, y);
      });
      g.stroke();
      const item = el("span");
      const sw = el("i"); sw.style.background = color;
      item.append(sw, document.createTextNode(name));
      legend.append(item);
    }
  }

  function openTail() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/console/api/events`);
    ws.onopen = () => { $("tail-status").textContent = "live"; sendFilter(); };
    ws.onclose = () => {
      $("tail-status").textContent = "disconnected";
      if (poll) setTimeout(() => { if (poll && (!ws || ws.readyState === WebSocket.CLOSED)) openTail(); }, 2000);
    };
    ws.onmessage = (m) => {
      if (paused) return;
      let data;
      try { data = JSON.parse(m.data); } catch (_) { return; }
      const tail = $("tail");
      const atBottom = tail.scrollTop + tail.clientHeight >= tail.scrollHeight - 4;
      for (const item of data.events || []) tail.append(row(item));
      if (data.skipped) tail.append(el("div", { class: "tail-note" }, `… ${data.skipped} more not shown (rate or lag)`));
      while (tail.childElementCount > TAIL_ROWS) tail.firstElementChild.remove();
      if (atBottom) tail.scrollTop = tail.scrollHeight;
    };
  }

  function row(item) {
    const ev = item.event || {};
    const name = ev.Event || "?";
    const r = el("div", { class: "tail-row", "data-event": name, "data-server": item.server || "" });
    const rest = Object.entries(ev).filter(([k]) => k !== "Event" && k !== "Privilege")
      .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("|") : v}`).join("  ");
    r.append(el("span", { class: "t" }, new Date().toLocaleTimeString() + " "),
      el("span", { class: "s" }, (item.server || "proxy") + " "), el("span", { class: "e" }, name + " "),
      document.createTextNode(rest));
    r.addEventListener("click", () => {
      r.classList.toggle("open");
      if (r.classList.contains("open")) r.title = JSON.stringify(ev, null, 2);
    });
    return r;
  }

  function sendFilter() {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ filter: $("tail-filter").value.trim() }));
  }

  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    const r = await api("/console/login", { username: $("login-user").value, secret: $("login-secret").value })
      .catch(() => ({ status: 0, data: { error: "the proxy did not answer" } }));
    if (r.status === 200) { $("login-secret").value = ""; start(); }
    else $("login-error").textContent = r.data.error || `login failed (${r.status})`;
  });
  $("logout").addEventListener("click", async () => { await api("/console/logout", {}); showLogin("Logged out."); });
  let filterTimer = null;
  $("tail-filter").addEventListener("input", () => { clearTimeout(filterTimer); filterTimer = setTimeout(sendFilter, 250); });
  $("tail-pause").addEventListener("click", () => { paused = !paused; $("tail-pause").textContent = paused ? "Resume" : "Pause"; });
  $("tail-clear").addEventListener("click", () => $("tail").replaceChildren());
  start();
})();
