// What the browser test scripts share: the Chromium they drive (Debian's, with the flags this
// machine needs: no sandbox as root, and no background networking, whose connections the
// closed network refuses), the figures they print, and their checks.
import { chromium } from "playwright-core";

/// Figures printed as one JSON line at the end (or with the failure).
export const result = {};

/// Ends the script with exit 1 and the reason when `ok` is false.
export function check(ok, what) {
  if (!ok) {
    console.error(`FAILED: ${what}`);
    console.log(JSON.stringify(result));
    process.exit(1);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// The listener page's own figures (`window.tolkStats`).
export const stats = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.tolkStats)));

/// Headless Debian Chromium, with `extra` command-line flags.
export function launch(extra = []) {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extra,
    ],
  });
}
