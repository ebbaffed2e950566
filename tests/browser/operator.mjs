// The operator console in real headless Chromium, with two listener pages open. Run by the
// integration test tests/integration/listen.rs against a `tolk run` with a [listen] section
// that has an operator_token:
//
//   node operator.mjs URL TOKEN MUTE OTHER SCREENSHOT
//
// URL the listener page, TOKEN the operator token, MUTE the language to mute (and then switch
// to the floor), OTHER another offered language that must go on meanwhile, SCREENSHOT where
// the 390×844 picture of the console goes.
//
// Proves from inside the pages: the console without its token gets 401 and no page; with it,
// it shows a card per route with its state ("running") and live levels; both listener pages
// play (AnalyserNode level above silence) and caption; the console's Mute button silences
// MUTE's page (its level stays at silence, no caption arrives) while OTHER's page goes on
// (audible, captioned); Unmute brings MUTE back; "Floor only" gives MUTE's listeners the
// original (audible, captions are the source's transcript "[en] utterance N", no translation);
// a typed announcement reaches every language (each listener page gets a caption "[xx] …" that
// carries the typed words: the local engine's response to the text item).
// Prints one JSON line of figures; exits 1 with the reason on the first failed check.
import { check, launch, result, sleep, stats } from "./common.mjs";

const [url, token, mute, other, screenshot] = process.argv.slice(2);
const SILENCE_RMS = 0.003;


const op = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.tolkOperator)));

async function waitFor(page, what, pred, ms, get = stats) {
  const end = Date.now() + ms;
  for (;;) {
    const s = await get(page);
    if (pred(s)) return s;
    check(Date.now() < end, `${what} within ${ms} ms`);
    await sleep(100);
  }
}

/// Clears a listener page's peak level and captions, waits `ms`, returns what came meanwhile.
async function window_(page, ms) {
  await page.evaluate(() => { window.tolkStats.peakRms = 0; window.tolkStats.captions = []; });
  await sleep(ms);
  const s = await stats(page);
  return { peak_rms: s.peakRms, captions: s.captions.filter((c) => c.final).map((c) => `${c.role}:${c.text}`) };
}

/// Opens a listener page on `lang` and starts playing.
async function listener(browser, lang) {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`listener page error: ${e.message}`));
  await page.goto(`${url}?lang=${lang}`);
  await page.waitForSelector("#language-list input");
  await page.click("#listen");
  await waitFor(page, `${lang}: audible playback`, (s) => s.playing && s.peakRms > SILENCE_RMS, 10000);
  await waitFor(page, `${lang}: a caption`, (s) => s.captions.some((c) => c.role === "translation" && c.final), 15000);
  return page;
}

const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  const console_ = await ctx.newPage();
  console_.on("pageerror", (e) => console.error(`operator page error: ${e.message}`));
  // No token, a wrong one: 401 and nothing of the console.
  for (const q of ["", "?token=", `?token=${token}x`, `?token=${token.slice(0, -1)}`]) {
    const res = await console_.goto(`${url}operator${q}`);
    const body = await res.text();
    check(res.status() === 401 && !body.includes("<html"), `operator${q ? " with a wrong token" : " without a token"}: 401, no page (got ${res.status()})`);
  }
  result.wrong_token = 401;
  const res = await console_.goto(`${url}operator?token=${encodeURIComponent(token)}`);
  check(res.status() === 200, `the console with its token: 200 (got ${res.status()})`);
  // Its cards: one per route, each running, with live levels.
  await waitFor(console_, "route cards running with an input level",
    (s) => s.last && s.last.routes.length === 2 && s.last.routes.every((r) => r.state === "running" && r.level_in_dbfs !== null), 15000, op);
  const cards = await console_.$$eval(".route", (els) => els.map((e) => ({ language: e.dataset.language, state: e.querySelector(".badge").textContent })));
  result.cards = cards;
  check(cards.length === 2 && cards.every((c) => c.state === "running"), `the console shows both routes running (${JSON.stringify(cards)})`);

  const mutePage = await listener(browser, mute);
  const otherPage = await listener(browser, other);
  await waitFor(console_, "listeners counted per language",
    (s) => s.last.routes.every((r) => r.listen && r.listen.listeners >= 1), 5000, op);

  // Mute from the console.
  await console_.click(`.route[data-language="${mute}"] button.mute`);
  await waitFor(console_, `${mute} shown muted`, (s) => s.last.routes.find((r) => r.language === mute).listen.muted, 3000, op);
  check((await console_.textContent(`.route[data-language="${mute}"] button.mute`)) === "Unmute", "the button says Unmute");
  await console_.screenshot({ path: screenshot });
  await sleep(1000); // what the jitter buffer still held plays out
  const [muted, going] = await Promise.all([window_(mutePage, 6000), window_(otherPage, 6000)]);
  result.muted = muted;
  result.other_while_muted = going;
  check(muted.peak_rms < SILENCE_RMS, `${mute} is silent while muted (peak RMS ${muted.peak_rms})`);
  check(muted.captions.length === 0, `no ${mute} caption while muted (${muted.captions})`);
  check(going.peak_rms > SILENCE_RMS, `${other} goes on while ${mute} is muted (peak RMS ${going.peak_rms})`);
  check(going.captions.some((c) => c.startsWith(`translation:[${other}] utterance`)), `${other} captions go on (${going.captions})`);

  // Unmute: the language plays again.
  await console_.click(`.route[data-language="${mute}"] button.mute`);
  await waitFor(mutePage, `${mute} audible again after unmuting`, (s) => s.peakRms > SILENCE_RMS && s.captions.some((c) => c.final && c.role === "translation"), 15000);

  // Floor only: the original, with its transcript, instead of the translation.
  await console_.click(`.route[data-language="${mute}"] button.floor`);
  await waitFor(console_, `${mute} shown on the floor`, (s) => s.last.routes.find((r) => r.language === mute).listen.floor_only, 3000, op);
  await sleep(1000);
  const floor = await window_(mutePage, 6000);
  result.floor_only = floor;
  check(floor.peak_rms > SILENCE_RMS, `the floor is audible (peak RMS ${floor.peak_rms})`);
  check(floor.captions.length > 0 && floor.captions.every((c) => c.startsWith("source:[en] utterance")), `only the original's captions on the floor (${floor.captions})`);
  await console_.click(`.route[data-language="${mute}"] button.floor`);
  await waitFor(mutePage, `${mute} translated again`, (s) => s.captions.some((c) => c.final && c.role === "translation"), 15000);
  // A typed announcement: spoken and captioned in every language.
  const words = `Lunch is served in hall B ${Date.now() % 1000}`;
  await Promise.all([mutePage, otherPage].map((p) => p.evaluate(() => { window.tolkStats.captions = []; })));
  await console_.fill("#announce-text", words);
  await console_.click("#announce");
  await console_.waitForFunction(() => document.getElementById("announce-status").textContent.startsWith("Sent to 2 routes"), null, { timeout: 3000 });
  result.announcement = {};
  for (const [lang, page] of [[mute, mutePage], [other, otherPage]]) {
    const s = await waitFor(page, `the announcement captioned in ${lang}`,
      (s) => s.captions.some((c) => c.final && c.role === "translation" && c.text.includes(words)), 15000);
    const c = s.captions.find((c) => c.final && c.role === "translation" && c.text.includes(words));
    result.announcement[lang] = c.text;
    check(c.text.startsWith(`[${lang}] `), `the ${lang} announcement is in ${lang} (${c.text})`);
  }
  result.status = (await op(console_)).last;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
