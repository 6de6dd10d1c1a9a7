// crossroute control panel. Everything shown is set with textContent or created as elements:
// no HTML from data is ever parsed. The management key lives in sessionStorage (this tab only).
"use strict";

(function () {
  const API = "/v0/management/";
  const KEY = "crossroute-management-key";
  const COLORS = ["#2f6fde", "#1f8a4c", "#c07a00", "#c62f2f", "#7b4fd0", "#168a8a", "#a4508b", "#5d6676"];
  const $ = (id) => document.getElementById(id);
  let loginState = null;
  let loginTimer = null;
  let currentTrace = null;

  function el(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === "text") node.textContent = v;
        else if (k === "cls") node.className = v;
        else if (k.startsWith("data-")) node.setAttribute(k, v);
        else node[k] = v;
      }
    }
    for (const c of children || []) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  class ApiError extends Error {
    constructor(status, body) {
      const err = body && body.error;
      let text = (body && body.message) || (err && typeof err === "object" ? err.message : err) || ("HTTP " + status);
      if (status === 403 && String(text).includes("allowed-origins")) {
        text += " — add " + window.location.origin + " to allowed-origins in config.yaml to save from this page";
      }
      super(text);
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, path, body, raw) {
    const headers = { "Authorization": "Bearer " + (sessionStorage.getItem(KEY) || "") };
    let payload;
    if (body !== undefined) {
      if (raw) { payload = body; if (typeof body === "string") headers["Content-Type"] = "application/yaml"; }
      else { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
    }
    const resp = await fetch(API + path, { method, headers, body: payload, credentials: "omit", cache: "no-store" });
    const type = resp.headers.get("content-type") || "";
    const data = type.includes("json") ? await resp.json().catch(() => null) : await resp.text();
    if (resp.status === 401 || (resp.status === 403 && data && String(data.error).includes("banned"))) {
      if (path !== "credentials") signOut(data && data.error);
    }
    if (!resp.ok) throw new ApiError(resp.status, typeof data === "string" ? { error: data } : data);
    return data;
  }

  function fmtNum(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n * 100) / 100);
  }
  function fmtTime(epoch) {
    if (!epoch) return "–";
    return new Date(epoch * 1000).toLocaleString();
  }
  function pct(x) { return x === null || x === undefined ? "–" : (x * 100).toFixed(1) + "%"; }

  // ------------------------------------------------------------------ sign in
  async function signIn(key) {
    sessionStorage.setItem(KEY, key);
    try {
      await api("GET", "credentials");
    } catch (e) {
      sessionStorage.removeItem(KEY);
      $("login-error").textContent = e.status === 404 ? "Management is not enabled on this gateway."
        : "Not signed in: " + e.message;
      return false;
    }
    $("login-error").textContent = "";
    $("login").hidden = true;
    $("tabs").hidden = false;
    show("accounts");
    return true;
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    for (const s of document.querySelectorAll(".tab")) s.hidden = true;
    $("tabs").hidden = true;
    $("login").hidden = false;
    if (message) $("login-error").textContent = String(message);
  }

  function show(tab) {
    for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== tab;
    for (const b of document.querySelectorAll("nav button[data-tab]")) b.classList.toggle("active", b.dataset.tab === tab);
    const load = { accounts: loadAccounts, usage: loadUsage, requests: loadRequests, config: loadConfig }[tab];
    if (load) load().catch((e) => report(tab, e));
  }

  function report(tab, e) {
    const target = $(tab + "-message");
    if (target) target.textContent = "Error: " + e.message;
  }

  // ------------------------------------------------------------------ accounts
  function quotaBars(quota) {
    const box = el("div");
    if (!quota || !quota.windows || !quota.windows.length) {
      box.appendChild(el("p", { cls: "meta", text: "quota: nothing known yet" }));
      return box;
    }
    for (const w of quota.windows) {
      const left = Math.max(0, Math.min(1, 1 - (w.used || 0)));
      const fill = el("div", { cls: "fill" + (left < 0.05 ? " empty" : left < 0.25 ? " low" : "") });
      fill.style.width = (left * 100).toFixed(1) + "%";
      const reset = w.reset_at ? "resets " + fmtTime(w.reset_at) : "";
      box.appendChild(el("div", { cls: "quota", "data-window": String(w.name) }, [
        el("div", { cls: "label" }, [el("span", { text: w.name + ": " + (left * 100).toFixed(0) + "% left" }),
          el("span", { text: reset })]),
        el("div", { cls: "bar", title: w.name }, [fill]),
      ]));
    }
    if (quota.summary) box.appendChild(el("p", { cls: "meta", text: quota.summary }));
    return box;
  }

  async function loadAccounts() {
    const [creds, cache] = await Promise.all([
      api("GET", "credentials"),
      api("GET", "usage/cache-hit-ratio?by=credential").catch(() => ({ rows: [] })),
    ]);
    const ratios = {};
    for (const r of cache.rows || []) ratios[r.key] = r;
    const list = $("account-list");
    clear(list);
    $("accounts-message").textContent = creds.credentials.length ? "" : "No accounts or keys configured yet.";
    for (const c of creds.credentials) {
      const cooling = c.cooldowns && c.cooldowns.length;
      const badge = el("span", { cls: "badge " + (cooling ? "cooling" : c.status), text: cooling ? "cooling" : c.status });
      const card = el("div", { cls: "card", "data-credential": c.credential_id }, [
        el("h3", {}, [el("span", { text: c.email || c.name || c.label }), " ", badge]),
        el("p", { cls: "meta", text: c.provider + " · " + (c.source === "file" ? c.name : c.label) }),
      ]);
      if (c.status_message) card.appendChild(el("p", { cls: "meta", text: c.status_message }));
      if (c.expired) card.appendChild(el("p", { cls: "meta", text: "token expires " + new Date(c.expired).toLocaleString() }));
      for (const cd of c.cooldowns || []) {
        card.appendChild(el("p", { cls: "meta", text: "cooling for " + cd.model + " until " +
          new Date(cd.until).toLocaleTimeString() + " (" + Math.round(cd.seconds_left) + " s, level " + cd.level + ")" }));
      }
      card.appendChild(quotaBars(c.quota));
      const r = ratios[c.credential_id];
      card.appendChild(el("p", { cls: "meta", text: "bound sessions: " + c.bound_sessions +
        " · cache hit: " + (r ? pct(r.ratio) + " of " + fmtNum(r.input_tokens) + " input tokens" : "–") }));
      if (c.source === "file") {
        const toggle = el("button", { type: "button", text: c.disabled ? "Enable" : "Disable" });
        toggle.addEventListener("click", () => act(() => api("PATCH", "auth-files/status", { name: c.name, disabled: !c.disabled })));
        const del = el("button", { type: "button", cls: "danger", text: "Delete" });
        del.addEventListener("click", () => {
          if (window.confirm("Delete the account file " + c.name + "?")) {
            act(() => api("DELETE", "auth-files?name=" + encodeURIComponent(c.name)));
          }
        });
        card.appendChild(el("div", { cls: "actions" }, [toggle, del]));
      }
      list.appendChild(card);
    }
  }

  async function act(fn) {
    try { await fn(); await loadAccounts(); } catch (e) { report("accounts", e); }
  }

  async function upload(files) {
    for (const f of files) {
      const form = new FormData();
      form.append("file", f, f.name);
      const resp = await fetch(API + "auth-files", { method: "POST", body: form, credentials: "omit",
        headers: { "Authorization": "Bearer " + (sessionStorage.getItem(KEY) || "") } });
      const data = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new ApiError(resp.status, data);
    }
    $("accounts-message").textContent = "Uploaded " + files.length + " file(s).";
    await loadAccounts();
  }

  // ------------------------------------------------------------------ usage
  async function loadUsage() {
    const by = $("usage-by").value;
    const range = Number($("usage-range").value);
    const metric = $("usage-metric").value;
    const since = Math.floor(Date.now() / 1000) - range;
    const bucket = range <= 86400 ? 3600 : range <= 604800 ? 6 * 3600 : 86400;
    const [series, totals] = await Promise.all([
      api("GET", "usage/series?by=" + by + "&bucket=" + bucket + "&since=" + since),
      api("GET", "usage/totals?by=" + by + "&since=" + since),
    ]);
    $("usage-message").textContent = series.available ? "" : (series.message || "Usage statistics are off.");
    drawChart(series.rows || [], metric, since, bucket);
    const body = $("usage-totals").querySelector("tbody");
    clear(body);
    for (const r of totals.rows || []) {
      body.appendChild(el("tr", {}, [r.key, r.requests, r.failures, r.input_tokens, r.output_tokens, r.cached_tokens]
        .map((v) => el("td", { text: typeof v === "number" ? fmtNum(v) : String(v === null ? "–" : v) }))
        .concat([el("td", { text: pct(r.cache_hit_ratio) })])));
    }
  }

  function drawChart(rows, metric, since, bucket) {
    const box = $("usage-chart");
    const legend = $("usage-legend");
    clear(box);
    clear(legend);
    const W = 720, H = 260, L = 48, B = 26, T = 10, R = 10;
    const start = Math.floor(since / bucket) * bucket;
    const end = Math.floor(Date.now() / 1000 / bucket) * bucket;
    const n = Math.max(1, Math.round((end - start) / bucket) + 1);
    const keys = [];
    const byKey = {};
    for (const r of rows) {
      const k = r.key === null || r.key === undefined ? "all" : String(r.key);
      if (!(k in byKey)) { byKey[k] = new Array(n).fill(0); keys.push(k); }
      const i = Math.round((r.t - start) / bucket);
      if (i >= 0 && i < n) byKey[k][i] += Number(r[metric] || 0);
    }
    const top = keys.slice(0, COLORS.length);
    const stacks = new Array(n).fill(0);
    for (const k of top) byKey[k].forEach((v, i) => { stacks[i] += v; });
    const max = Math.max(1, ...stacks);
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "usage over time" });
    root.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    root.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    for (const f of [0, 0.5, 1]) {
      const y = H - B - f * (H - B - T);
      const t = svg("text", { x: L - 4, y: y + 4, "text-anchor": "end" });
      t.textContent = fmtNum(max * f);
      root.appendChild(t);
    }
    const bw = (W - L - R) / n;
    const base = new Array(n).fill(0);
    top.forEach((k, ki) => {
      byKey[k].forEach((v, i) => {
        if (!v) return;
        const h = (v / max) * (H - B - T);
        const y = H - B - base[i] / max * (H - B - T) - h;
        const rect = svg("rect", { x: L + i * bw + 1, y: y, width: Math.max(1, bw - 2), height: h, fill: COLORS[ki],
          class: "bar-rect", "data-key": k });
        const tip = svg("title");
        tip.textContent = k + ": " + fmtNum(v) + " at " + fmtTime(start + i * bucket);
        rect.appendChild(tip);
        root.appendChild(rect);
        base[i] += v;
      });
    });
    for (const i of Array.from(new Set([0, Math.floor(n / 2), n - 1]))) {
      const anchor = i === 0 ? "start" : i === n - 1 ? "end" : "middle";
      const x = i === 0 ? L : i === n - 1 ? W - R : L + i * bw + bw / 2;
      const t = svg("text", { x: x, y: H - 8, "text-anchor": anchor });
      const d = new Date((start + i * bucket) * 1000);
      t.textContent = bucket >= 86400 ? d.toLocaleDateString() : d.toLocaleDateString() + " " + d.getHours() + ":00";
      root.appendChild(t);
    }
    box.appendChild(root);
    top.forEach((k, ki) => {
      const sw = el("span", { cls: "swatch" });
      sw.style.background = COLORS[ki];
      legend.appendChild(el("span", {}, [sw, k]));
    });
    if (!rows.length) legend.appendChild(el("span", { cls: "note", text: "no usage recorded in this range" }));
  }

  // ------------------------------------------------------------------ requests, traces, logs
  async function loadRequests() {
    const [traces, logs] = await Promise.all([api("GET", "traces?limit=200"), api("GET", "request-logs")]);
    $("requests-message").textContent = traces.available ? (traces.traces.length ? "" : "No requests yet.")
      : "Routing traces are not kept by this build.";
    const body = $("trace-list").querySelector("tbody");
    clear(body);
    for (const t of traces.traces) {
      const row = el("tr", { "data-request": t.request_id }, [fmtTime(t.ts), t.request_id, t.method + " " + t.path, t.model,
        t.credential, t.status, t.duration_ms].map((v) => el("td", { text: v === null || v === undefined ? "–" : String(v) })));
      row.addEventListener("click", () => openTrace(t.request_id).catch((e) => report("requests", e)));
      body.appendChild(row);
    }
    const list = $("log-files");
    clear(list);
    for (const f of logs.files || []) {
      const link = el("button", { type: "button", text: f.name + " (" + fmtNum(f.size) + " B)" });
      link.addEventListener("click", async () => {
        try {
          const text = await api("GET", "request-logs/" + encodeURIComponent(f.name));
          $("log-view").textContent = text;
          $("log-view").hidden = false;
        } catch (e) { report("requests", e); }
      });
      list.appendChild(el("li", {}, [link]));
    }
  }

  async function openTrace(id) {
    const t = await api("GET", "traces/" + encodeURIComponent(id));
    currentTrace = id;
    $("trace-detail").hidden = false;
    $("trace-log").hidden = true;
    $("trace-title").textContent = "Request " + t.request_id + " · " + (t.model || "") + " · status " + t.status;
    const steps = $("trace-steps");
    clear(steps);
    for (const s of (t.trace && t.trace.steps) || []) {
      const parts = [];
      for (const [k, v] of Object.entries(s)) if (k !== "step" && k !== "t") parts.push(k + "=" + (typeof v === "object" ? JSON.stringify(v) : v));
      steps.appendChild(el("li", { text: "+" + s.t + " ms " + (s.step || "") + " " + parts.join(" ") }));
    }
    const attempts = $("trace-attempts");
    clear(attempts);
    for (const a of (t.trace && t.trace.attempts) || []) {
      attempts.appendChild(el("li", { text: a.credential + " → " + a.upstream_model + " (" + a.wire + "): " +
        (a.status === null ? "no answer" : a.status) + (a.error ? " " + a.error : "") + ", " + a.ms + " ms" }));
    }
  }

  async function showLog() {
    if (!currentTrace) return;
    const pre = $("trace-log");
    try {
      pre.textContent = await api("GET", "request-log-by-id/" + encodeURIComponent(currentTrace));
    } catch (e) {
      pre.textContent = e.status === 404 ? "No log file for this request (request-log is off and it did not fail)." : e.message;
    }
    pre.hidden = false;
  }

  // ------------------------------------------------------------------ config
  async function loadConfig() {
    $("config-text").value = await api("GET", "config.yaml");
    clear($("config-errors"));
    $("config-message").textContent = "";
  }

  function gotoLine(line) {
    const ta = $("config-text");
    const lines = ta.value.split("\n");
    let pos = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) pos += lines[i].length + 1;
    ta.focus();
    ta.setSelectionRange(pos, pos + (lines[line - 1] || "").length);
  }

  async function saveConfig() {
    const errors = $("config-errors");
    clear(errors);
    $("config-message").textContent = "Saving…";
    try {
      const res = await api("PUT", "config.yaml", $("config-text").value, true);
      $("config-message").textContent = !(res.changed && res.changed.length) ? "No change."
        : res.applied ? "Saved and applied." : "Saved; the running gateway has not applied it yet (see its log).";
    } catch (e) {
      $("config-message").textContent = "Not saved: the config has problems.";
      const problems = (e.body && e.body.problems) || [];
      if (!problems.length) errors.appendChild(el("li", { text: e.message }));
      for (const p of problems) {
        const li = el("li", { text: (p.line ? "line " + p.line + ": " : "") + (p.field ? p.field + ": " : "") + p.message });
        if (p.line) li.addEventListener("click", () => gotoLine(p.line));
        errors.appendChild(li);
      }
    }
  }

  // ------------------------------------------------------------------ logins
  async function startLogin(provider, device) {
    stopPolling();
    $("login-status").textContent = "Starting…";
    $("login-flow").hidden = false;
    try {
      const res = await api("POST", "oauth-login", { provider, device });
      loginState = res.state;
      const a = $("login-url");
      a.textContent = res.url;
      a.href = /^https?:\/\//.test(res.url) ? res.url : "#";
      $("login-code-line").hidden = !res.user_code;
      $("login-code").textContent = res.user_code || "";
      $("paste-form").hidden = !!device;
      $("login-status").textContent = "Waiting for you to sign in…";
      loginTimer = window.setInterval(pollLogin, 2000);
    } catch (e) {
      $("login-status").textContent = "Could not start: " + e.message;
    }
  }

  async function pollLogin() {
    if (!loginState) return;
    try {
      const res = await api("GET", "get-auth-status?state=" + encodeURIComponent(loginState));
      if (res.status === "ok") { $("login-status").textContent = "Signed in: " + (res.account || "account saved"); stopPolling(); }
      else if (res.status === "error") { $("login-status").textContent = "Failed: " + res.error; stopPolling(); }
    } catch (e) {
      $("login-status").textContent = "Failed: " + e.message;
      stopPolling();
    }
  }

  function stopPolling() { if (loginTimer) window.clearInterval(loginTimer); loginTimer = null; }

  // ------------------------------------------------------------------ wiring
  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("key").value); });
    $("logout").addEventListener("click", () => signOut(""));
    for (const b of document.querySelectorAll("nav button[data-tab]")) b.addEventListener("click", () => show(b.dataset.tab));
    $("refresh-accounts").addEventListener("click", () => loadAccounts().catch((e) => report("accounts", e)));
    $("upload").addEventListener("change", (ev) => {
      const files = Array.from(ev.target.files || []);
      if (files.length) upload(files).catch((e) => report("accounts", e)).finally(() => { ev.target.value = ""; });
    });
    for (const id of ["usage-by", "usage-range", "usage-metric"]) {
      $(id).addEventListener("change", () => loadUsage().catch((e) => report("usage", e)));
    }
    $("refresh-requests").addEventListener("click", () => loadRequests().catch((e) => report("requests", e)));
    $("show-log").addEventListener("click", showLog);
    $("reload-config").addEventListener("click", () => loadConfig().catch((e) => report("config", e)));
    $("save-config").addEventListener("click", saveConfig);
    for (const b of document.querySelectorAll("button[data-login]")) {
      b.addEventListener("click", () => startLogin(b.dataset.login, b.dataset.device === "1"));
    }
    $("paste-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api("POST", "oauth-callback", { state: loginState, redirect_url: $("paste-url").value });
        $("login-status").textContent = "Sent; finishing the login…";
      } catch (e) { $("login-status").textContent = "Not accepted: " + e.message; }
    });
    $("cancel-login").addEventListener("click", async () => {
      stopPolling();
      if (loginState) await api("DELETE", "oauth-session?state=" + encodeURIComponent(loginState)).catch(() => null);
      $("login-flow").hidden = true;
      loginState = null;
    });
    const saved = sessionStorage.getItem(KEY);
    if (saved) signIn(saved);
  });
})();
