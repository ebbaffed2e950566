//! Small real-time-safe signal helpers for sinks: the [`Ducker`] that mixes the floor (the
//! original speech) under a translation, and [`db_to_gain`].
//!
//! Nothing here allocates after construction, locks or blocks, so it may run inside a sound
//! card callback. Plain Rust: no ABI types are involved.
//!
//! # The ducking model
//!
//! The floor plays at `floor_db` while the translation is silent and at `duck_db` while it
//! speaks. "Speaks" means the translation's peak envelope is above `threshold_db`; a `hold_ms`
//! keeps the floor down across the short gaps between words, so it does not pump. The gain
//! moves between the two levels **linearly in decibels** (an exponential curve in amplitude,
//! which the ear hears as an even fade): down over `attack_ms`, back up over `release_ms`.
//! Every sample the gain changes by at most one step of that ramp, so a level change is never
//! a click.

/// Converts decibels to a linear gain (`-6.02 dB → 0.5`). `-inf` gives 0.
pub fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// Converts a linear gain or level to decibels (`0.5 → -6.02 dB`); 0 gives `-inf`.
pub fn gain_to_db(gain: f32) -> f32 {
    20.0 * gain.abs().log10()
}

/// Settings of a [`Ducker`], in the units a config file uses. The defaults suit speech:
/// floor at full level in pauses, 18 dB under the translation, a 60 ms duck and a 600 ms
/// recovery after 400 ms of translation silence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DuckerSettings {
    /// Floor level while the translation speaks, dB (e.g. -18).
    pub duck_db: f32,
    /// Floor level in the translation's pauses, dB (0 = unchanged, -6 = half amplitude).
    pub floor_db: f32,
    /// Time to go from `floor_db` down to `duck_db`, ms.
    pub attack_ms: f32,
    /// Time to come back up from `duck_db` to `floor_db`, ms.
    pub release_ms: f32,
    /// How long the translation must stay silent before the floor comes back, ms.
    pub hold_ms: f32,
    /// Translation level above which it counts as speaking, dBFS.
    pub threshold_db: f32,
}

impl Default for DuckerSettings {
    fn default() -> Self {
        DuckerSettings {
            duck_db: -18.0,
            floor_db: 0.0,
            attack_ms: 60.0,
            release_ms: 600.0,
            hold_ms: 400.0,
            threshold_db: -45.0,
        }
    }
}

impl DuckerSettings {
    /// Checks the values; the error names the offending setting as a config key.
    pub fn validate(&self) -> Result<(), String> {
        let finite = [
            ("duck_db", self.duck_db),
            ("floor_db", self.floor_db),
            ("attack_ms", self.attack_ms),
            ("release_ms", self.release_ms),
            ("hold_ms", self.hold_ms),
            ("threshold_db", self.threshold_db),
        ];
        for (key, v) in finite {
            if !v.is_finite() {
                return Err(format!("{key}: must be a finite number"));
            }
        }
        if !(-96.0..=12.0).contains(&self.floor_db) {
            return Err(format!("floor_db: {} is outside -96..=12", self.floor_db));
        }
        if !(-96.0..=12.0).contains(&self.duck_db) {
            return Err(format!("duck_db: {} is outside -96..=12", self.duck_db));
        }
        if self.duck_db > self.floor_db {
            return Err(format!(
                "duck_db: {} is above floor_db ({}); ducking lowers the floor",
                self.duck_db, self.floor_db
            ));
        }
        for (key, v) in [("attack_ms", self.attack_ms), ("release_ms", self.release_ms)] {
            if !(1.0..=10_000.0).contains(&v) {
                return Err(format!("{key}: {v} is outside 1..=10000 (a shorter ramp clicks)"));
            }
        }
        if !(0.0..=10_000.0).contains(&self.hold_ms) {
            return Err(format!("hold_ms: {} is outside 0..=10000", self.hold_ms));
        }
        if !(-96.0..=0.0).contains(&self.threshold_db) {
            return Err(format!("threshold_db: {} is outside -96..=0", self.threshold_db));
        }
        Ok(())
    }
}

/// Mixes the floor under a translation with ducking (see the [module docs](self)).
///
/// One instance per output stream, fed sample by sample (mono; for several channels, feed
/// the frame's translation peak and apply [`gain`](Self::gain) yourself). Real-time safe.
#[derive(Debug, Clone)]
pub struct Ducker {
    settings: DuckerSettings,
    /// Current floor gain, in dB.
    level_db: f32,
    /// dB per sample while going down / up.
    attack_step: f32,
    release_step: f32,
    /// The speaking threshold, linear, and the hold time in samples.
    threshold: f32,
    hold_samples: u32,
    /// Samples since the translation was last above the threshold (saturating).
    quiet_for: u32,
}

impl Ducker {
    /// A ducker for a stream at `sample_rate`, starting at the floor level (not ducked).
    /// The settings are taken as given; check user input with [`DuckerSettings::validate`].
    pub fn new(settings: DuckerSettings, sample_rate: u32) -> Self {
        let rate = sample_rate.max(1) as f32;
        let range = (settings.floor_db - settings.duck_db).max(0.0);
        let samples = |ms: f32| (ms.max(0.001) * rate / 1000.0).max(1.0);
        let hold_samples = (settings.hold_ms.max(0.0) * rate / 1000.0) as u32;
        Ducker {
            settings,
            level_db: settings.floor_db,
            attack_step: range / samples(settings.attack_ms),
            release_step: range / samples(settings.release_ms),
            threshold: db_to_gain(settings.threshold_db),
            hold_samples,
            quiet_for: hold_samples,
        }
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &DuckerSettings {
        &self.settings
    }

    /// The floor gain that the next sample would get, linear.
    pub fn gain(&self) -> f32 {
        db_to_gain(self.level_db)
    }

    /// The floor gain in dB.
    pub fn gain_db(&self) -> f32 {
        self.level_db
    }

    /// True while the translation counts as speaking (including the hold time).
    pub fn is_ducking(&self) -> bool {
        self.quiet_for < self.hold_samples
    }

    /// Advances by one sample: `translation_peak` is the translation's absolute level at this
    /// sample (for several channels, the largest). Returns the floor gain to apply to this
    /// sample, linear.
    #[inline]
    pub fn next_gain(&mut self, translation_peak: f32) -> f32 {
        // NaN compares false: a broken sample counts as silence.
        if translation_peak.abs() > self.threshold {
            self.quiet_for = 0;
        } else if self.quiet_for < self.hold_samples {
            self.quiet_for += 1;
        }
        let (target, step) = if self.is_ducking() {
            (self.settings.duck_db, self.attack_step)
        } else {
            (self.settings.floor_db, self.release_step)
        };
        if self.level_db > target {
            self.level_db = (self.level_db - step).max(target);
        } else if self.level_db < target {
            self.level_db = (self.level_db + step).min(target);
        }
        db_to_gain(self.level_db)
    }

    /// Mixes one mono sample: `translation + floor × gain`, clipped to `-1.0..=1.0`.
    #[inline]
    pub fn mix_sample(&mut self, translation: f32, floor: f32) -> f32 {
        let t = if translation.is_finite() { translation } else { 0.0 };
        let f = if floor.is_finite() { floor } else { 0.0 };
        let g = self.next_gain(t);
        (t + f * g).clamp(-1.0, 1.0)
    }

    /// Mixes mono buffers: `out[i] = translation[i] + floor[i] × gain` (clipped). The three
    /// slices are used up to the shortest one's length; returns that length.
    pub fn mix(&mut self, translation: &[f32], floor: &[f32], out: &mut [f32]) -> usize {
        let n = translation.len().min(floor.len()).min(out.len());
        for i in 0..n {
            out[i] = self.mix_sample(translation[i], floor[i]);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    fn settings() -> DuckerSettings {
        DuckerSettings {
            duck_db: -18.0,
            floor_db: -6.0,
            attack_ms: 50.0,
            release_ms: 500.0,
            hold_ms: 200.0,
            ..Default::default()
        }
    }

    fn ms(n: f32) -> usize {
        (n * RATE as f32 / 1000.0) as usize
    }

    /// Runs `n` samples with the translation at `t`, returning the gains.
    fn run(d: &mut Ducker, t: f32, n: usize) -> Vec<f32> {
        (0..n).map(|_| d.next_gain(t)).collect()
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn levels_in_speech_and_in_pauses() {
        let s = settings();
        let mut d = Ducker::new(s, RATE);
        // Silence: the floor stays at floor_db.
        let g = run(&mut d, 0.0, ms(300.0));
        assert!(g.iter().all(|&g| close(g, db_to_gain(-6.0))));
        // Translation speaks: after the attack, the floor sits at duck_db.
        let g = run(&mut d, 0.3, ms(100.0));
        assert!(close(*g.last().unwrap(), db_to_gain(-18.0)), "{}", gain_to_db(*g.last().unwrap()));
        // Still ducked through the hold time of a pause…
        let g = run(&mut d, 0.0, ms(150.0));
        assert!(g.iter().all(|&g| close(g, db_to_gain(-18.0))));
        // …then restored after the release.
        let g = run(&mut d, 0.0, ms(50.0) + ms(500.0) + 10);
        assert!(close(*g.last().unwrap(), db_to_gain(-6.0)));
    }

    #[test]
    fn ramps_take_attack_and_release_time() {
        let s = settings();
        let mut d = Ducker::new(s, RATE);
        let down = run(&mut d, 0.5, ms(60.0));
        let reached = down.iter().position(|&g| close(g, db_to_gain(-18.0))).unwrap();
        assert!((ms(49.0)..=ms(51.0)).contains(&reached), "attack took {reached} samples");
        run(&mut d, 0.5, 100);
        let up = run(&mut d, 0.0, ms(200.0) + ms(600.0));
        let hold_end = up.iter().position(|&g| g > db_to_gain(-18.0) + 1e-6).unwrap();
        assert!((ms(199.0)..=ms(201.0)).contains(&hold_end), "hold lasted {hold_end}");
        let reached = up.iter().position(|&g| close(g, db_to_gain(-6.0))).unwrap() - hold_end;
        assert!((ms(495.0)..=ms(505.0)).contains(&reached), "release took {reached} samples");
    }

    #[test]
    fn ramps_are_monotonic_and_click_free() {
        let s = DuckerSettings { floor_db: 0.0, ..settings() };
        let mut d = Ducker::new(s, RATE);
        let down = run(&mut d, 0.5, ms(80.0));
        let up = run(&mut d, 0.0, ms(800.0));
        assert!(down.windows(2).all(|w| w[1] <= w[0]), "attack not monotonic");
        assert!(up.windows(2).all(|w| w[1] >= w[0]), "release not monotonic");
        // The largest step per sample is that of the dB ramp at full gain: 18 dB over the ramp.
        let max_step = |g: &[f32]| g.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0f32, f32::max);
        let attack_bound = 1.0 - db_to_gain(-18.0 / ms(50.0) as f32) + 1e-6;
        let release_bound = 1.0 - db_to_gain(-18.0 / ms(500.0) as f32) + 1e-6;
        assert!(max_step(&down) <= attack_bound, "{} > {attack_bound}", max_step(&down));
        assert!(max_step(&up) <= release_bound, "{} > {release_bound}", max_step(&up));
        // Bounded: never above the floor level nor below the duck level.
        assert!(down.iter().chain(&up).all(|&g| (db_to_gain(-18.0) - 1e-6..=1.0 + 1e-6).contains(&g)));
    }

    #[test]
    fn a_direction_change_mid_ramp_does_not_jump() {
        let mut d = Ducker::new(DuckerSettings { hold_ms: 0.0, ..settings() }, RATE);
        let mut gains = run(&mut d, 0.5, ms(20.0));
        gains.extend(run(&mut d, 0.0, ms(20.0)));
        gains.extend(run(&mut d, 0.5, ms(20.0)));
        let max = gains.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0f32, f32::max);
        assert!(max <= 1.0 - db_to_gain(-12.0 / ms(50.0) as f32) + 1e-6, "jump of {max}");
    }

    #[test]
    fn mixing_adds_the_ducked_floor_and_clips() {
        let mut d = Ducker::new(DuckerSettings { floor_db: 0.0, ..settings() }, RATE);
        let floor = vec![0.25f32; 8];
        let trans = vec![0.0f32; 8];
        let mut out = vec![0.0f32; 8];
        assert_eq!(d.mix(&trans, &floor, &mut out), 8);
        assert!(out.iter().all(|&s| close(s, 0.25)), "{out:?}");
        // Loud translation on a full floor clips instead of wrapping; NaN counts as silence.
        assert_eq!(d.mix_sample(0.95, 0.9), 1.0);
        assert!(d.mix_sample(f32::NAN, f32::NAN).abs() < 1e-6);
        assert_eq!(d.mix(&[0.0; 3], &[0.0; 5], &mut out), 3);
    }

    #[test]
    fn settings_are_validated_by_key() {
        assert!(DuckerSettings::default().validate().is_ok());
        let e = DuckerSettings { duck_db: 3.0, ..Default::default() }.validate().unwrap_err();
        assert_eq!(e, "duck_db: 3 is above floor_db (0); ducking lowers the floor");
        let e = DuckerSettings { attack_ms: 0.0, ..Default::default() }.validate().unwrap_err();
        assert!(e.starts_with("attack_ms: 0 is outside"), "{e}");
        let e = DuckerSettings { threshold_db: f32::NAN, ..Default::default() }.validate().unwrap_err();
        assert_eq!(e, "threshold_db: must be a finite number");
    }

    #[test]
    fn db_conversions() {
        assert!(close(db_to_gain(0.0), 1.0));
        assert!((db_to_gain(-6.0206) - 0.5).abs() < 1e-4);
        assert!((gain_to_db(0.1) + 20.0).abs() < 1e-4);
        assert_eq!(gain_to_db(0.0), f32::NEG_INFINITY);
    }
}
