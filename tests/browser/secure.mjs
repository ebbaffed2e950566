// The listener page over HTTPS with tolk's self-signed trial certificate, opened by a name that
// is not loopback (tolk.test, mapped to 127.0.0.1 inside Chromium), as a phone on the room's
// network would: run by tests/integration/listen.rs.
//
//   node secure.mjs PORT LANG
//
// Proves the page is a secure context there (so WebCodecs and AudioWorklet exist; over plain
// HTTP on such a name they do not) and that it plays LANG through wss:// once the certificate
// is accepted (Playwright's ignoreHTTPSErrors stands in for the listener's "proceed anyway").
// Prints one JSON line; exits 1 on the first failed check.
import { check, launch, result } from "./common.mjs";

const [port, lang] = process.argv.slice(2);
const browser = await launch(["--host-resolver-rules=MAP tolk.test 127.0.0.1"]);
try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 390, height: 844 } });
  const page = await ctx.newPage();
  await page.goto(`https://tolk.test:${port}/`);
  Object.assign(result, await page.evaluate(() => ({
    secure: window.isSecureContext,
    audio_decoder: typeof window.AudioDecoder === "function",
    worklet: typeof AudioWorkletNode === "function",
  })));
  check(result.secure && result.audio_decoder && result.worklet, "a secure context with WebCodecs and AudioWorklet");
  await page.waitForSelector("#language-list input");
  await page.click(`#language-list input[value="${lang}"] + span`);
  await page.click("#listen");
  await page.waitForFunction(() => window.tolkStats.decoded > 25 && window.tolkStats.playing, null, { timeout: 10000 });
  const s = await page.evaluate(() => window.tolkStats);
  result.codec = s.codec;
  result.decoded = s.decoded;
  check(s.codec === "opus", "Opus over wss://");
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
