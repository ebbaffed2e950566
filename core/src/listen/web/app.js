// tolk listener page. Plain JS, no build step. Flow: fetch the language list, let the listener
// pick one, and on the Listen tap (browsers start audio only after a gesture) open the
// AudioContext, the jitter-buffer worklet and the WebSocket. Opus packets are decoded with
// WebCodecs' AudioDecoder; a browser without it asks the server for 16-bit PCM instead. A
// dropped socket is reopened by itself (backoff 250 ms doubling to 5 s) while the listener
// still wants to listen. Counters for tests and the indicator live in window.tolkStats.
"use strict";

const $ = (id) => document.getElementById(id);
const stats = {
  codec: null, connected: false, connects: 0, reconnects: 0, packets: 0, decoded: 0, decodeErrors: 0,
  lastSeq: -1, gaps: 0, underruns: 0, played: 0, skipped: 0, bufferedMs: 0, playing: false, rms: 0, peakRms: 0,
  rttMs: null, transitMs: null, delayMs: null, outputLatencyMs: 0, captions: [], closeCodes: [],
};
window.tolkStats = stats;

const code = new URLSearchParams(location.search).get("code") || "";
let eventCode = code;
let title = document.title;
let languages = [];
let selected = null;
let wanted = false;
let ctx = null, node = null, gain = null, analyser = null;
let ws = null, decoder = null, retry = 250, retryTimer = null, pingTimer = null;
const utterances = new Map();

function query(extra) {
  const p = new URLSearchParams(extra || {});
  if (eventCode) p.set("code", eventCode);
  const s = p.toString();
  return s ? "?" + s : "";
}

function setStatus(text, state) {
  $("status-text").textContent = text;
  $("dot").className = state || "";
}

async function loadLanguages() {
  let r;
  try {
    r = await fetch("/api/languages" + query());
  } catch (e) {
    setStatus("Cannot reach the server; retrying…", "bad");
    setTimeout(loadLanguages, 2000);
    return;
  }
  if (r.status === 401) {
    $("code-box").hidden = false;
    setStatus("This event needs its code", "bad");
    return;
  }
  const data = await r.json();
  title = data.title || title;
  languages = data.languages || [];
  $("code-box").hidden = true;
  const list = $("language-list");
  list.textContent = "";
  for (const l of languages) {
    const label = document.createElement("label");
    label.className = "lang";
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "lang";
    input.value = l.code;
    input.setAttribute("data-code", l.code);
    input.addEventListener("change", () => choose(l.code));
    const span = document.createElement("span");
    span.textContent = l.name;
    span.lang = l.spoken || l.code;
    label.append(input, span);
    list.append(label);
  }
  setStatus("Choose a language", "");
  // A language chosen by the link (the printable page's QR codes): pre-selected; the listener
  // still taps Listen (browsers start audio only after a gesture).
  const pre = new URLSearchParams(location.search).get("lang");
  const input = pre && list.querySelector(`input[value="${CSS.escape(pre)}"]`);
  if (input) {
    input.checked = true;
    choose(pre);
  }
}

function choose(codeSel) {
  const changed = selected !== codeSel;
  selected = codeSel;
  $("listen").disabled = false;
  if (changed && wanted) {
    clearCaptions();
    reconnectNow();
  }
}

function clearCaptions() {
  utterances.clear();
  $("caption-final").textContent = "";
  $("caption-delta").textContent = "";
  $("caption-source").textContent = "";
}

async function startAudio() {
  if (!ctx) {
    try {
      ctx = new AudioContext({ sampleRate: 24000, latencyHint: "interactive" });
    } catch (e) {
      ctx = new AudioContext({ latencyHint: "interactive" });
    }
    await ctx.audioWorklet.addModule("/worklet.js");
    node = new AudioWorkletNode(ctx, "tolk-jitter", { numberOfInputs: 0, outputChannelCount: [2] });
    gain = ctx.createGain();
    gain.gain.value = Number($("volume").value);
    analyser = ctx.createAnalyser();
    analyser.fftSize = 2048;
    node.connect(gain).connect(analyser).connect(ctx.destination);
    node.port.onmessage = (e) => {
      const d = e.data;
      stats.underruns = d.underruns;
      stats.played = d.played;
      stats.skipped = d.skipped;
      stats.bufferedMs = d.buffered_ms;
      stats.playing = d.playing;
      indicator();
    };
    setInterval(meter, 200);
  }
  // Keep playing with the screen locked (Safari 17+).
  if (navigator.audioSession) {
    try { navigator.audioSession.type = "playback"; } catch (e) { /* not supported */ }
  }
  await ctx.resume();
}

function meter() {
  if (!analyser) return;
  const buf = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(buf);
  let sum = 0;
  for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
  stats.rms = Math.sqrt(sum / buf.length);
  stats.peakRms = Math.max(stats.peakRms, stats.rms);
}

function mediaSession(name) {
  if (!("mediaSession" in navigator)) return;
  try {
    navigator.mediaSession.metadata = new MediaMetadata({ title: name, artist: title, album: "tolk" });
    navigator.mediaSession.setActionHandler("play", () => { if (!wanted) toggle(); });
    navigator.mediaSession.setActionHandler("pause", () => { if (wanted) toggle(); });
    navigator.mediaSession.playbackState = wanted ? "playing" : "paused";
  } catch (e) { /* partial support */ }
}

async function toggle() {
  if (!selected) return;
  wanted = !wanted;
  $("listen").textContent = wanted ? "Stop" : "Listen";
  $("listen").setAttribute("aria-pressed", String(wanted));
  if (wanted) {
    await startAudio();
    connect();
  } else {
    disconnect();
    setStatus("Stopped", "");
  }
  const l = languages.find((x) => x.code === selected);
  mediaSession(l ? l.name : selected);
}

function disconnect() {
  clearTimeout(retryTimer);
  clearInterval(pingTimer);
  if (ws) {
    ws.onclose = null;
    ws.close();
    ws = null;
  }
  if (decoder && decoder.state !== "closed") decoder.close();
  decoder = null;
  stats.connected = false;
  if (node) node.port.postMessage({ reset: true });
}

function reconnectNow() {
  disconnect();
  connect();
}

function connect() {
  if (!wanted || !selected) return;
  const opus = typeof window.AudioDecoder === "function";
  stats.codec = opus ? "opus" : "pcm";
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${proto}//${location.host}/ws${query({ lang: selected, codec: stats.codec })}`;
  setStatus("Connecting…", "");
  const sock = new WebSocket(url);
  sock.binaryType = "arraybuffer";
  ws = sock;
  sock.onopen = () => {
    stats.connected = true;
    stats.connects++;
    stats.lastSeq = -1;
    retry = 250;
    if (opus) {
      decoder = new AudioDecoder({ output: decoded, error: () => { stats.decodeErrors++; } });
      decoder.configure({ codec: "opus", sampleRate: 24000, numberOfChannels: 1 });
    }
    pingTimer = setInterval(() => {
      if (sock.readyState === 1) sock.send(JSON.stringify({ type: "ping", t: performance.now() }));
    }, 2000);
  };
  sock.onmessage = (e) => (typeof e.data === "string" ? onText(e.data) : onPacket(e.data));
  sock.onclose = (e) => {
    stats.closeCodes.push(e.code);
    stats.connected = false;
    clearInterval(pingTimer);
    if (decoder && decoder.state !== "closed") decoder.close();
    decoder = null;
    if (node) node.port.postMessage({ reset: true });
    if (!wanted || ws !== sock) return;
    setStatus("Reconnecting…", "bad");
    stats.reconnects++;
    retryTimer = setTimeout(connect, retry);
    retry = Math.min(retry * 2, 5000);
  };
}

function onPacket(buf) {
  const view = new DataView(buf);
  const seq = view.getUint32(0);
  if (stats.lastSeq >= 0 && seq !== (stats.lastSeq + 1) >>> 0) stats.gaps++;
  stats.lastSeq = seq;
  stats.packets++;
  // Send time (µs since the epoch, the server's clock): the transit is exact on one machine
  // and includes the clock offset elsewhere, so the indicator shows it only when plausible.
  const sentMs = Number(view.getBigUint64(4)) / 1000;
  stats.transitMs = performance.timeOrigin + performance.now() - sentMs;
  const payload = new Uint8Array(buf, 12);
  if (decoder) {
    decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: seq * 20000, data: payload }));
  } else if (stats.codec === "pcm") {
    const pcm = new Int16Array(buf.slice(12));
    const f = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) f[i] = pcm[i] / 32768;
    stats.decoded++;
    play(f, 24000);
  }
}

function decoded(data) {
  const n = data.numberOfFrames;
  const f = new Float32Array(n);
  data.copyTo(f, { planeIndex: 0, format: "f32-planar" });
  const rate = data.sampleRate;
  data.close();
  stats.decoded++;
  play(f, rate);
}

// Linear resampling to the context's rate when the decoder's differs.
function play(f, rate) {
  if (!node) return;
  let out = f;
  if (rate !== ctx.sampleRate) {
    const n = Math.round((f.length * ctx.sampleRate) / rate);
    out = new Float32Array(n);
    const step = rate / ctx.sampleRate;
    for (let i = 0; i < n; i++) {
      const x = i * step;
      const j = Math.floor(x);
      const a = f[Math.min(j, f.length - 1)];
      const b = f[Math.min(j + 1, f.length - 1)];
      out[i] = a + (b - a) * (x - j);
    }
  }
  node.port.postMessage({ samples: out }, [out.buffer]);
}

function onText(text) {
  let m;
  try { m = JSON.parse(text); } catch (e) { return; }
  if (m.type === "hello") {
    setStatus(`Live · ${m.name}`, "ok");
  } else if (m.type === "pong") {
    stats.rttMs = performance.now() - m.t;
  } else if (m.type === "caption") {
    caption(m);
  }
}

function caption(m) {
  stats.captions.push({ role: m.role, final: m.final, text: m.text, language: m.language });
  if (stats.captions.length > 200) stats.captions.shift();
  if (m.role === "source") {
    if (m.final) $("caption-source").textContent = m.text;
    return;
  }
  if (m.final) {
    utterances.delete(m.utterance);
    $("caption-final").textContent = m.text;
    $("caption-delta").textContent = "";
  } else {
    const t = (utterances.get(m.utterance) || "") + m.text;
    utterances.set(m.utterance, t);
    $("caption-delta").textContent = t;
  }
}

function indicator() {
  const parts = [];
  if (stats.connected) parts.push(`${stats.codec}`);
  // From the server sending a packet to its sound leaving the speaker: transit + the jitter
  // buffer + the audio output's own latency.
  const output = ctx ? ((ctx.baseLatency || 0) + (ctx.outputLatency || 0)) * 1000 : 0;
  stats.outputLatencyMs = output;
  if (stats.transitMs !== null && stats.transitMs >= 0 && stats.transitMs < 10000) {
    stats.delayMs = stats.transitMs + stats.bufferedMs + output;
    parts.push(`delay ${Math.round(stats.delayMs)} ms`);
  }
  parts.push(`buffer ${Math.round(stats.bufferedMs)} ms`);
  if (stats.rttMs !== null) parts.push(`network ${Math.round(stats.rttMs)} ms`);
  if (stats.reconnects) parts.push(`reconnects ${stats.reconnects}`);
  $("latency").textContent = parts.join(" · ");
}

document.addEventListener("DOMContentLoaded", () => {
  $("listen").addEventListener("click", toggle);
  $("volume").addEventListener("input", (e) => { if (gain) gain.gain.value = Number(e.target.value); });
  $("show-source").addEventListener("change", (e) => { $("caption-source").hidden = !e.target.checked; });
  $("code-go").addEventListener("click", () => { eventCode = $("code").value.trim(); loadLanguages(); });
  document.addEventListener("visibilitychange", () => { if (ctx && wanted && ctx.state !== "running") ctx.resume(); });
  loadLanguages();
});
