// tolk listener: the jitter buffer. Decoded audio (Float32, the context's rate) arrives from the
// page through the port; playback starts once START_MS are buffered, and each time the buffer
// runs dry after that counts one underrun (then it refills to START_MS before playing again).
// A buffer grown past MAX_MS (a burst after a stall) is cut back to START_MS, oldest first,
// so the delay stays small. Every ~250 ms the counters are posted back to the page.
const START_MS = 60;
const MAX_MS = 400;

class Jitter extends AudioWorkletProcessor {
  constructor() {
    super();
    this.cap = Math.round(sampleRate * 2);
    this.ring = new Float32Array(this.cap);
    this.r = 0;
    this.n = 0;
    this.start = Math.round((sampleRate * START_MS) / 1000);
    this.max = Math.round((sampleRate * MAX_MS) / 1000);
    this.playing = false;
    this.underruns = 0;
    this.played = 0;
    this.skipped = 0;
    this.lastReport = 0;
    this.port.onmessage = (e) => {
      const d = e.data;
      if (d.reset) {
        this.n = 0;
        this.playing = false;
      } else if (d.samples) {
        this.push(d.samples);
      }
    };
  }

  push(s) {
    for (let i = 0; i < s.length; i++) {
      if (this.n === this.cap) {
        this.r = (this.r + 1) % this.cap;
        this.n--;
        this.skipped++;
      }
      this.ring[(this.r + this.n) % this.cap] = s[i];
      this.n++;
    }
    if (this.n > this.max) {
      const cut = this.n - this.start;
      this.r = (this.r + cut) % this.cap;
      this.n -= cut;
      this.skipped += cut;
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.n >= this.start) this.playing = true;
    if (this.playing) {
      for (let i = 0; i < out.length; i++) {
        if (this.n > 0) {
          out[i] = this.ring[this.r];
          this.r = (this.r + 1) % this.cap;
          this.n--;
          this.played++;
        } else {
          out[i] = 0;
          if (this.playing) {
            this.playing = false;
            this.underruns++;
          }
        }
      }
    } else {
      out.fill(0);
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (currentTime - this.lastReport >= 0.25) {
      this.lastReport = currentTime;
      this.port.postMessage({
        buffered_ms: (this.n * 1000) / sampleRate,
        underruns: this.underruns,
        played: this.played,
        skipped: this.skipped,
        playing: this.playing,
      });
    }
    return true;
  }
}

registerProcessor("tolk-jitter", Jitter);
