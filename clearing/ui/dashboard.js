// Faregate clearing's live dashboard: polls GET /v1/dashboard every two
// seconds with the auditor token this tab holds and renders it. No
// framework, no network beyond this clearing house; every value is put on
// the page as text, never as markup.
"use strict";

(function () {
  const POLL_MS = 2000;
  const TOKEN_KEY = "faregate.dashboard.token";
  const API = new URL("../v1/dashboard", location.href).toString();
  const $ = (id) => document.getElementById(id);
  let timer = null;

  // takeToken moves a #token=... fragment into sessionStorage and out of the
  // address bar (and history), then returns the tab's token, if any.
  function takeToken() {
    const frag = new URLSearchParams(location.hash.replace(/^#/, ""));
    const t = frag.get("token");
    if (t) {
      sessionStorage.setItem(TOKEN_KEY, t.trim());
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  // el builds an element: attributes (class, data-*, title...) and children
  // (strings become text nodes).
  function el(tag, attrs, ...children) {
    const ns = ["svg", "rect", "text", "title"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
    const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function setText(id, v) { $(id).textContent = String(v); }
  function fill(tableId, rows) { $(tableId).querySelector("tbody").replaceChildren(...rows); }
  function money(m) { return el("span", { class: "money", "data-minor": m.minor }, m.decimal + " " + m.currency); }
  function short(hex) { return hex.length > 12 ? hex.slice(0, 10) + "…" : hex; }
  function ms(v) { return v.toFixed(v >= 100 ? 0 : 1); }
  function clock(iso) { return new Date(iso).toLocaleTimeString([], { hour12: false }); }
  function ago(iso, now) {
    const s = Math.max(0, Math.round((now - new Date(iso)) / 1000));
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }

  function showLogin(message) {
    stop();
    $("board").hidden = true;
    $("login").hidden = false;
    $("forget").hidden = true;
    const err = $("error");
    err.hidden = !message;
    err.textContent = message || "";
    const badge = $("ready");
    badge.className = "badge unknown";
    badge.textContent = "no token";
    $("token-input").focus();
  }

  function stop() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  async function poll() {
    stop();
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return showLogin("");
    let resp, body;
    try {
      resp = await fetch(API, { headers: { Authorization: "Bearer " + token, Accept: "application/json" }, cache: "no-store" });
      body = await resp.json();
    } catch (e) {
      showError("clearing does not answer: " + e.message);
      timer = setTimeout(poll, POLL_MS);
      return;
    }
    if (resp.status === 401 || resp.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      return showLogin((body && body.error) || "token refused (" + resp.status + ")");
    }
    if (!resp.ok) {
      showError((body && body.error) || "HTTP " + resp.status);
    } else {
      $("error").hidden = true;
      render(body);
    }
    timer = setTimeout(poll, POLL_MS);
  }

  function showError(message) {
    const err = $("error");
    err.hidden = false;
    err.textContent = message;
    const badge = $("ready");
    badge.className = "badge bad";
    badge.textContent = "unreachable";
  }

  function render(v) {
    const now = new Date(v.at);
    $("login").hidden = true;
    $("board").hidden = false;
    $("forget").hidden = false;
    const badge = $("ready");
    badge.className = "badge " + (v.ready ? "ok" : "bad");
    badge.textContent = v.ready ? "ready" : "not ready";
    const nr = $("not-ready");
    nr.hidden = v.ready;
    nr.textContent = v.not_ready || "";
    setText("updated", "updated " + clock(v.at));

    const s = v.stats;
    setText("applied", s.applied);
    setText("duplicates", s.duplicates);
    setText("rejected", s.rejected);
    setText("quarantined", s.quarantined);
    setText("committed", s.batches_committed);
    setText("sealed", s.batches_sealed);
    setText("pending", v.consumer_pending);
    setText("gaps", v.terminals_with_gap);
    setText("rate", v.tap_rate.per_second.toFixed(1));
    setText("rate-last", v.tap_rate.last_second);
    setText("rate-window", v.tap_rate.window_seconds);
    const l = v.confirmation_latency;
    setText("lat-samples", l.samples);
    for (const [id, val] of [["lat-p50", l.p50_ms], ["lat-p90", l.p90_ms], ["lat-p99", l.p99_ms], ["lat-max", l.max_ms]]) {
      setText(id, l.samples ? ms(val) : "–");
    }
    setText("currency", "(" + v.currency + ")");
    setText("contract", v.contract);
    drawRate(v.tap_rate);

    const qmax = Math.max(1, ...v.quarantine.map((q) => q.count));
    fill("quarantine", v.quarantine.map((q) => el("tr", { "data-reason": q.reason },
      el("td", null, q.reason),
      el("td", { class: "num" }, q.count),
      el("td", null, el("svg", { class: "meter", viewBox: "0 0 100 10", preserveAspectRatio: "none" },
        el("rect", { x: 0, y: 0, height: 10, width: (100 * q.count) / qmax }))))));

    fill("operators", v.operators.map((o) => el("tr", { "data-operator": o.operator },
      el("td", { title: o.operator }, o.name + " (" + o.operator + ")"),
      el("td", { class: "num" }, o.terminals),
      el("td", { class: "num position" }, money(o.position)),
      el("td", { class: "num" }, o.on_chain ? money(o.on_chain) : el("span", { class: "muted" }, "–")))));

    fill("batches", v.batches.map((b) => {
      const nets = (b.amounts || []).map((a) => a.operator + " " + a.net.decimal).join(", ");
      const chain = b.committed
        ? el("span", { title: b.commit && b.commit.tx_hash ? "tx " + b.commit.tx_hash : "" },
          "committed" + (b.commit && b.commit.block_number ? " in block " + b.commit.block_number : ""))
        : el("span", { class: "pending" }, "pending");
      const answers = el("span", null);
      for (const a of b.answers || []) {
        answers.append(el("span", { class: "answer-" + a.answer, "data-operator": a.operator }, a.operator + ": " + a.answer), " ");
      }
      if (!b.committed) answers.append(el("span", { class: "muted" }, "after the commit"));
      return el("tr", { "data-batch": b.id },
        el("td", { class: "num" }, b.id),
        el("td", null, clock(b.period_start) + " – " + clock(b.period_end)),
        el("td", { class: "num" }, b.event_count),
        el("td", { class: "mono root", title: b.root }, short(b.root)),
        el("td", null, nets),
        el("td", null, chain),
        el("td", null, answers));
    }));

    const parts = v.verifier_partitions || [];
    $("partitions-section").hidden = parts.length === 0;
    fill("partitions", parts.map((p) => el("tr", { "data-partition": p.partition },
      el("td", { class: "num" }, p.partition),
      el("td", { class: "mono" }, p.consumer),
      el("td", p.error ? { class: "gap" } : { class: "num" }, p.error ? p.error : p.pending),
      el("td", { class: "num" }, p.ack_pending),
      el("td", p.fetchers_waiting === 0 && p.pending > 0 ? { class: "num gap" } : { class: "num" }, p.fetchers_waiting),
      el("td", { class: "num" }, p.delivered))));

    setText("terminals-shown", v.terminals.length < v.terminals_total
      ? "(" + v.terminals.length + " of " + v.terminals_total + ", those with a gap first)" : "(" + v.terminals_total + ")");
    fill("terminals", v.terminals.map((t) => el("tr", { "data-terminal": t.id },
      el("td", { class: "mono" }, t.id + (t.revoked_block ? " (revoked)" : "")),
      el("td", null, t.operator),
      el("td", null, t.stop),
      el("td", { class: "num watermark" }, t.watermark),
      el("td", { class: "num" }, t.highest_sequence),
      el("td", t.gap ? { class: "gap" } : null, t.gap ? "gap after " + t.watermark : "none"),
      el("td", t.last_contact ? { title: t.last_contact } : { class: "muted" }, t.last_contact ? ago(t.last_contact, now) : "not since start"))));
  }

  // drawRate draws the last minute's applied (and quarantined) events per
  // second as bars.
  function drawRate(r) {
    const svg = $("rate-chart");
    const n = r.applied.length;
    const top = Math.max(1, ...r.applied.map((a, i) => a + r.quarantined[i]));
    const w = 600 / n, h = 105;
    const bars = [];
    for (let i = 0; i < n; i++) {
      const ah = (h * r.applied[i]) / top, qh = (h * r.quarantined[i]) / top;
      const x = i * w + 1;
      bars.push(el("rect", { class: "applied", x: x, y: 118 - ah, width: w - 2, height: ah },
        el("title", null, (n - i) + " s ago: " + r.applied[i] + " applied, " + r.quarantined[i] + " quarantined")));
      if (qh > 0) bars.push(el("rect", { class: "quarantined", x: x, y: 118 - ah - qh, width: w - 2, height: qh }));
    }
    bars.push(el("text", { class: "axis", x: 4, y: 11 }, top + "/s"));
    svg.replaceChildren(...bars);
  }

  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("token-input").value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $("token-input").value = "";
    poll();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  });

  if (takeToken()) poll(); else showLogin("");
})();
