// The listener page in real headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core; tests/browser/setup.sh installs both). Run by the integration test
// tests/integration/listen.rs against a `tolk run` with a [listen] section:
//
//   node listener.mjs URL LANGS PLAY OTHER SCREENSHOT MAX_LISTENER_S
//
// URL the listener page, LANGS the codes it must list (comma-separated), PLAY the language to
// listen to, OTHER another offered language (its captions must not show up), SCREENSHOT where
// the 390×844 picture goes, MAX_LISTENER_S the server's connection lifetime (it closes each
// listener's socket after that; the page must reconnect by itself). The PCM page is also
// shot, in dark mode, next to SCREENSHOT (`-dark-pcm.png`).
//
// Proves from inside the page: the languages listed; after the click, Opus packets decoded
// through WebCodecs and played (decoded frames counted, AnalyserNode RMS above silence), no
// worklet underrun in steady state, captions of that route only (the test engine's text carries
// "[es] utterance N"); the server-side close followed by a reconnect and playback again; and
// with `AudioDecoder` deleted, the PCM fallback playing. Prints one JSON line of figures;
// exits 1 with the reason on the first failed check.
import { check, launch, result, sleep, stats } from "./common.mjs";

const [url, langsArg, play, other, screenshot, maxListenerS] = process.argv.slice(2);
const expected = langsArg.split(",");
const lifetimeMs = Number(maxListenerS) * 1000;
const SILENCE_RMS = 0.003;



/// Waits `ms`, then returns the stats.
async function watch(page, ms) {
  await sleep(ms);
  return { s: await stats(page) };
}

async function waitFor(page, what, pred, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const s = await stats(page);
    if (pred(s)) return s;
    check(Date.now() < end, `${what} within ${ms} ms (stats: ${JSON.stringify({ ...s, captions: s.captions.length })})`);
    await sleep(50);
  }
}

const browser = await launch();
try {
  // ---- Opus through WebCodecs ----
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(url);
  await page.waitForSelector("#language-list input");
  const listed = await page.$$eval("#language-list input", (els) => els.map((e) => e.value));
  result.listed = listed;
  check(JSON.stringify(listed) === JSON.stringify(expected), `languages listed ${listed} = ${expected}`);
  const names = await page.$$eval("#language-list span", (els) => els.map((e) => e.textContent));
  result.names = names;
  check(await page.isDisabled("#listen"), "Listen is disabled before a language is chosen");
  check(await page.isHidden("#code-box"), "no event-code box when the event has no code");
  check(await page.isHidden("#caption-source"), "no source captions until asked for");
  await page.click(`#language-list input[value="${play}"] + span`);
  await page.click("#listen");
  const first = await waitFor(page, "first packets decoded", (s) => s.decoded > 10 && s.playing, 5000);
  const media = await page.evaluate(() => navigator.mediaSession.metadata && {
    title: navigator.mediaSession.metadata.title, artist: navigator.mediaSession.metadata.artist,
    state: navigator.mediaSession.playbackState });
  result.media_session = media;
  check(media && media.title === names[expected.indexOf(play)] && media.state === "playing", `Media Session metadata (${JSON.stringify(media)})`);
  result.codec = first.codec;
  check(first.codec === "opus", `codec is opus where WebCodecs exists (got ${first.codec})`);
  // Steady state: from 1 s after the start until just before the server closes the socket.
  await sleep(1000);
  const before = await stats(page);
  const steadyMs = Math.max(1000, lifetimeMs - 3000);
  const steady = await watch(page, steadyMs);
  result.opus = {
    decoded: steady.s.decoded,
    packets: steady.s.packets,
    decode_errors: steady.s.decodeErrors,
    underruns_steady: steady.s.underruns - before.underruns,
    buffered_ms: steady.s.bufferedMs,
    rtt_ms: steady.s.rttMs,
    transit_ms: steady.s.transitMs,
    output_latency_ms: steady.s.outputLatencyMs,
    send_to_speaker_ms: steady.s.delayMs,
    gaps: steady.s.gaps,
  };
  const framesPerSec = ((steady.s.decoded - before.decoded) * 1000) / steadyMs;
  result.opus.frames_per_s = framesPerSec;
  check(framesPerSec > 40 && framesPerSec < 60, `~50 frames/s decoded in steady state (got ${framesPerSec})`);
  check(steady.s.decodeErrors === 0, "no decode errors");
  // The figure is reported, not judged here (speed is for benchmarks, not test assertions).
  check(steady.s.delayMs > steady.s.bufferedMs, `the indicator's delay is computed (${steady.s.delayMs})`);
  check(steady.s.underruns === before.underruns, `no underrun in steady state (${result.opus.underruns_steady})`);
  await page.screenshot({ path: screenshot });
  // The server closes the socket after max_listener_s; the page reconnects and plays again.
  const back = await waitFor(page, "a reconnect after the server closed the socket", (s) => s.connects >= 2 && s.connected, lifetimeMs + 5000);
  result.close_codes = back.closeCodes;
  check(back.closeCodes.includes(4000), `the server's close (4000) was seen (${back.closeCodes})`);
  const decodedAtReconnect = back.decoded;
  await page.evaluate(() => { window.tolkStats.peakRms = 0; });
  const again = await waitFor(
    page,
    "audible playback after the reconnect (AnalyserNode RMS above silence)",
    (s) => s.decoded > decodedAtReconnect + 25 && s.playing && s.peakRms > SILENCE_RMS,
    10000,
  );
  result.after_reconnect = { decoded: again.decoded - decodedAtReconnect, peak_rms: again.peakRms };
  // Captions: this route's, none of the other's.
  const withCaptions = await waitFor(page, `a ${play} caption`, (s) => s.captions.some((c) => c.role === "translation" && c.final), 15000);
  const translations = withCaptions.captions.filter((c) => c.role === "translation" && c.final);
  result.captions = translations.slice(0, 3).map((c) => c.text);
  check(translations.every((c) => c.text.startsWith(`[${play}] utterance`)), `captions are the ${play} route's`);
  check(!withCaptions.captions.some((c) => c.text.includes(`[${other}]`)), `no ${other} caption`);
  const shown = await page.textContent("#caption-final");
  check(shown.startsWith(`[${play}] utterance`), `the caption is on screen (${shown})`);
  // The original's transcript, on request.
  await page.click("#show-source");
  check(await page.isVisible("#caption-source"), "source captions shown once asked for");
  await page.waitForFunction(() => document.getElementById("caption-source").textContent.startsWith("[en] utterance"), null, { timeout: 15000 });
  result.source_caption = await page.textContent("#caption-source");
  await page.screenshot({ path: screenshot });
  await ctx.close();

  // ---- PCM fallback: no WebCodecs ----
  const ctx2 = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, colorScheme: "dark" });
  await ctx2.addInitScript(() => {
    delete window.AudioDecoder;
  });
  const page2 = await ctx2.newPage();
  // Opened from its language's QR code: the language is chosen, Listen is one tap away.
  await page2.goto(`${url}?lang=${other}`);
  await page2.waitForSelector("#language-list input");
  check(await page2.isChecked(`#language-list input[value="${other}"]`), `?lang=${other} pre-selects it`);
  await page2.click("#listen");
  const p = await waitFor(page2, "PCM frames played", (s) => s.decoded > 10 && s.playing, 5000);
  check(p.codec === "pcm", `codec is pcm without AudioDecoder (got ${p.codec})`);
  await sleep(1000);
  const pcmBefore = await stats(page2);
  const pcm = await watch(page2, 2000);
  check(pcm.s.underruns === pcmBefore.underruns, "no PCM underrun in steady state");
  const loud = await waitFor(page2, "audible PCM playback", (s) => s.peakRms > SILENCE_RMS, 10000);
  const pcmCaptions = await waitFor(page2, `a ${other} caption`, (s) => s.captions.some((c) => c.role === "translation" && c.final), 15000);
  result.pcm = {
    decoded: pcm.s.decoded,
    underruns_steady: pcm.s.underruns - pcmBefore.underruns,
    peak_rms: loud.peakRms,
    caption: pcmCaptions.captions.find((c) => c.role === "translation" && c.final).text,
  };
  check(result.pcm.caption.startsWith(`[${other}] utterance`), `PCM page shows ${other} captions`);
  const bg = await page2.evaluate(() => getComputedStyle(document.body).backgroundColor);
  result.pcm.dark_background = bg;
  check(bg === "rgb(13, 17, 23)", `dark colours under prefers-color-scheme: dark (${bg})`);
  await page2.screenshot({ path: screenshot.replace(/\.png$/, "-dark-pcm.png") });
  check(!pcmCaptions.captions.some((c) => c.text.includes(`[${play}]`)), `no ${play} caption on the ${other} page`);
  await ctx2.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
