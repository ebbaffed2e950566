// The operator console: polls /api/operator/status twice a second and draws one card per
// route (state, input and output levels, ear-voice span, system-added latency, reconnects,
// rotations, losses, cost, listeners); its buttons are the documented HTTP controls
// (POST /api/operator/mute|floor?lang=…&on=…, /api/operator/announce?text=…). The token comes from the page's own URL
// (?token=…) and goes in an Authorization header; it is never written anywhere else.
// window.tolkOperator holds the latest status and counters for tests.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const auth = { Authorization: `Bearer ${token}` };
const state = { polls: 0, errors: 0, last: null };
window.tolkOperator = state;

const $ = (id) => document.getElementById(id);
const fmt = {
  usd: (v) => (v == null ? "–" : `$${v.toFixed(v < 10 ? 4 : 2)}`),
  ms: (v) => (v == null ? "–" : `${Math.round(v)} ms`),
  db: (v) => (v == null ? "no audio" : v <= -120 ? "silence" : `${v.toFixed(1)} dBFS`),
  s: (v) => `${v.toFixed(1)} s`,
  time: (s) => {
    const t = Math.floor(s);
    const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
    return `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`;
  },
};

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

/// One card per route, made once and updated in place (keeps focus on the buttons).
const cards = new Map();

function card(r) {
  let c = cards.get(r.route);
  if (c) return c;
  const meter = (label) => {
    const m = el("meter", { min: "-60", max: "0", low: "-30", high: "-6", optimum: "-18", value: "-60", "aria-label": label });
    const v = el("span", { class: "level-text" });
    return { row: el("div", { class: "level" }, el("span", { class: "level-label", text: label }), m, v), m, v };
  };
  const lin = meter("In"), lout = meter("Out");
  const figures = el("dl", { class: "figures" });
  const mute = el("button", { type: "button", class: "mute", "aria-pressed": "false", text: "Mute" });
  const floor = el("button", { type: "button", class: "floor", "aria-pressed": "false", text: "Floor only" });
  const controls = el("div", { class: "route-controls" });
  const title = el("h2", {}, el("span", { class: "route-name", text: r.route }), " ", el("span", { class: "badge", text: r.state }));
  const root = el("section", { class: "route", "data-route": r.route, "data-language": r.language }, title, lin.row, lout.row, figures, controls);
  if (r.listen) {
    controls.append(mute);
    if (!r.listen.floor) controls.append(floor);
    mute.addEventListener("click", () => control("mute", r.listen.language, mute.getAttribute("aria-pressed") !== "true"));
    floor.addEventListener("click", () => control("floor", r.listen.language, floor.getAttribute("aria-pressed") !== "true"));
  }
  $("routes").append(root);
  c = { root, title, lin, lout, figures, mute, floor };
  cards.set(r.route, c);
  return c;
}

function figure(dl, name, value) {
  let dd = dl.querySelector(`dd[data-k="${name}"]`);
  if (!dd) {
    dl.append(el("div", {}, el("dt", { text: name }), (dd = el("dd", { "data-k": name }))));
  }
  dd.textContent = value;
}

function draw(s) {
  $("elapsed").textContent = s.elapsed_s == null ? "–" : fmt.time(s.elapsed_s);
  $("cost").textContent = fmt.usd(s.cost_usd);
  $("per-hour").textContent = s.cost_per_hour_usd == null ? "–" : `${fmt.usd(s.cost_per_hour_usd)}/h`;
  $("budget").textContent = s.budget_usd == null ? "none" : fmt.usd(s.budget_usd);
  for (const r of s.routes) {
    const c = card(r);
    c.title.querySelector(".badge").textContent = r.state;
    c.root.dataset.state = r.state;
    for (const [m, v] of [[c.lin, r.level_in_dbfs], [c.lout, r.level_out_dbfs]]) {
      m.m.value = v == null ? -60 : Math.max(-60, v);
      m.v.textContent = fmt.db(v);
    }
    const translated = r.language !== "floor";
    if (translated) {
      figure(c.figures, "Ear-voice", fmt.ms(r.ear_voice_ms.p50));
      figure(c.figures, "Responses", String(r.responses));
      figure(c.figures, "Reconnects", String(r.reconnects));
      figure(c.figures, "Rotations", String(r.rotations));
    }
    figure(c.figures, "System p50/p99", `${fmt.ms(r.system_ms.p50)} / ${fmt.ms(r.system_ms.p99)}`);
    const dropped = r.input_gap_s + r.sink_dropped_s + (r.listen ? r.listen.audio_dropped_s : 0);
    figure(c.figures, "Dropped", `${fmt.s(dropped)}${r.listen ? ` · ${r.listen.packets_skipped} pkts` : ""}`);
    if (translated) figure(c.figures, "Cost", `${fmt.usd(r.cost_usd)} · ${fmt.usd(r.cost_per_hour_usd)}/h`);
    if (r.listen) {
      figure(c.figures, "Listeners", `${r.listen.listeners} (peak ${r.listen.peak_listeners})`);
      c.mute.setAttribute("aria-pressed", String(r.listen.muted));
      c.mute.textContent = r.listen.muted ? "Unmute" : "Mute";
      c.floor.setAttribute("aria-pressed", String(r.listen.floor_only));
      c.floor.textContent = r.listen.floor_only ? "Back to translation" : "Floor only";
      c.root.classList.toggle("muted", r.listen.muted);
    }
    if (r.lost) c.root.classList.add("lossy");
  }
}

async function control(kind, lang, on) {
  const res = await fetch(`/api/operator/${kind}?lang=${encodeURIComponent(lang)}&on=${on}`, { method: "POST", headers: auth });
  if (!res.ok) {
    $("status-text").textContent = `${kind} ${lang}: ${res.status} ${await res.text()}`;
    return;
  }
  poll();
}

async function poll() {
  try {
    const res = await fetch("/api/operator/status", { headers: auth, cache: "no-store" });
    if (!res.ok) throw new Error(`${res.status}`);
    const s = await res.json();
    state.polls += 1;
    state.last = s;
    draw(s);
    $("dot").className = "ok";
    $("status-text").textContent = `Live · ${s.routes.length} route${s.routes.length === 1 ? "" : "s"}`;
  } catch (e) {
    state.errors += 1;
    $("dot").className = "bad";
    $("status-text").textContent = `No status (${e.message}); retrying`;
  }
}

$("announce-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("announce-text").value.trim();
  if (!text) return;
  const res = await fetch(`/api/operator/announce?text=${encodeURIComponent(text)}`, { method: "POST", headers: auth });
  if (res.ok) {
    const a = await res.json();
    state.announced = (state.announced || 0) + 1;
    $("announce-status").textContent = `Sent to ${a.routes} route${a.routes === 1 ? "" : "s"}: “${text}”`;
    $("announce-text").value = "";
  } else {
    $("announce-status").textContent = `Not sent: ${res.status} ${await res.text()}`;
  }
});

poll();
setInterval(poll, 500);
