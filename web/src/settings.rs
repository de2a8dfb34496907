//! Generation settings, read from text exactly as `tools generate` reads its flags.

use core::fmt;

use runtime::SamplerConfig;

/// What to generate: `tools generate`'s `--tokens`, `--temperature`, `--top-k` and `--seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The sampler (temperature in thousandths, top-k, seed).
    pub sampler: SamplerConfig,
    /// Tokens to generate after the prompt.
    pub tokens: usize,
}

impl Default for Settings {
    /// `tools generate`'s defaults: `--tokens 100 --temperature 0.8 --top-k 0 --seed 0`.
    fn default() -> Self {
        Settings {
            sampler: SamplerConfig {
                temperature_milli: 800,
                top_k: 0,
                seed: 0,
            },
            tokens: 100,
        }
    }
}

/// A setting that does not parse, or is out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError(String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

/// Temperature in thousandths as `tools generate --temperature` computes it: a real number in
/// `0..=100`, times 1000, rounded half away from zero (`0.8` → 800, `0` = greedy).
pub fn temperature_milli(temperature: f64) -> Result<u32, SettingsError> {
    if !(temperature.is_finite() && (0.0..=100.0).contains(&temperature)) {
        return Err(SettingsError(format!(
            "temperature must be between 0 and 100, got {temperature}"
        )));
    }
    Ok((temperature * 1000.0).round() as u32)
}

impl Settings {
    /// Settings from `key=value` lines (`temperature`, `top_k`, `seed`, `tokens`; blank lines
    /// ignored; a missing key keeps its default). Each value parses as the flag's type does in
    /// `tools generate` (`f64`, `u32`, `u64`, `usize`), after trimming spaces.
    pub fn parse(text: &str) -> Result<Settings, SettingsError> {
        let mut s = Settings::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| SettingsError(format!("setting {line:?}: expected key=value")))?;
            let (key, value) = (key.trim(), value.trim());
            let bad = |what: &str| SettingsError(format!("{key}: {value:?} is not {what}"));
            match key {
                "temperature" => {
                    let t: f64 = value.parse().map_err(|_| bad("a number"))?;
                    s.sampler.temperature_milli = temperature_milli(t)?;
                }
                "top_k" => {
                    s.sampler.top_k = value
                        .parse()
                        .map_err(|_| bad("a whole number from 0 to 4294967295"))?
                }
                "seed" => {
                    s.sampler.seed = value
                        .parse()
                        .map_err(|_| bad("a whole number from 0 to 18446744073709551615"))?
                }
                "tokens" => {
                    s.tokens = value.parse().map_err(|_| bad("a whole number of tokens"))?
                }
                _ => {
                    return Err(SettingsError(format!(
                        "unknown setting {key:?} (temperature, top_k, seed, tokens)"
                    )))
                }
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        assert_eq!(Settings::parse("").unwrap(), Settings::default());
        let s =
            Settings::parse("temperature=0.25\n top_k = 7\nseed=18446744073709551615\n\ntokens=3")
                .unwrap();
        assert_eq!(s.sampler.temperature_milli, 250);
        assert_eq!(s.sampler.top_k, 7);
        assert_eq!(s.sampler.seed, u64::MAX);
        assert_eq!(s.tokens, 3);
    }

    #[test]
    fn bad_values_are_named() {
        for (text, says) in [
            ("temperature=-1", "between 0 and 100"),
            ("temperature=nan", "between 0 and 100"),
            ("temperature=inf", "between 0 and 100"),
            ("temperature=hot", "not a number"),
            ("top_k=-1", "top_k"),
            ("seed=1e3", "seed"),
            ("tokens=many", "tokens"),
            ("colour=red", "unknown setting"),
            ("temperature", "key=value"),
        ] {
            let e = Settings::parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
