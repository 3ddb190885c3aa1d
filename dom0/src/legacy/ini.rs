//! sparsebak 0.2's `archive.ini` (Python configparser, case-preserving keys):
//! a small strict parser for exactly what 0.2 wrote. `[var]` and `[volumes]`
//! sections, `key = value` lines (configparser also accepts `:`), `#`/`;`
//! comments. Anything else (continuation lines, duplicate keys or sections,
//! keys outside a section, over-long lines) is an error naming the line,
//! rather than a guess.

use super::{Bounds, LegacyError};
use std::collections::{BTreeMap, HashSet};

/// Sections in file order, each with its keys in file order.
pub type Sections = Vec<(String, Vec<(String, String)>)>;

pub fn parse(text: &str, what: &str) -> Result<Sections, LegacyError> {
    let mut out: Sections = Vec::new();
    // Names seen so far, so a repeat is found in constant time: a hostile
    // file of 1 MiB holds ~250k keys, and scanning them all per key would
    // be quadratic.
    let mut sections: HashSet<String> = HashSet::new();
    let mut keys_seen: HashSet<String> = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let at = |why: String| LegacyError(format!("{what} line {}: {why}", i + 1));
        if raw.len() > Bounds::LINE {
            return Err(at("line too long".into()));
        }
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.len() != line.len() {
            return Err(at("continuation lines are not supported".into()));
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| at(format!("bad section header {line:?}")))?;
            if !sections.insert(name.to_string()) {
                return Err(at(format!("section [{name}] appears twice")));
            }
            keys_seen.clear();
            out.push((name.to_string(), Vec::new()));
            continue;
        }
        let sep = line
            .find(['=', ':'])
            .ok_or_else(|| at(format!("expected `key = value`, got {line:?}")))?;
        let (k, v) = (line[..sep].trim(), line[sep + 1..].trim());
        if k.is_empty() {
            return Err(at("empty key".into()));
        }
        let (_, keys) = out
            .last_mut()
            .ok_or_else(|| at("a key before any [section]".into()))?;
        if !keys_seen.insert(k.to_string()) {
            return Err(at(format!("key {k:?} appears twice")));
        }
        keys.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// The `key = value` map of one section (empty if absent).
pub fn section(s: &Sections, name: &str) -> BTreeMap<String, String> {
    s.iter()
        .find(|(n, _)| n == name)
        .map(|(_, kv)| kv.iter().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_0_2_writes() {
        let s = parse(
            "[var]\nchunksize = 65536\ncompression = zlib\ndestsys = qubes-ssh://vm|u@h\n\n[volumes]\nvm-a-private = enable\nvm-b = disable\n",
            "archive.ini",
        )
        .unwrap();
        let var = section(&s, "var");
        assert_eq!(var["chunksize"], "65536");
        assert_eq!(var["destsys"], "qubes-ssh://vm|u@h");
        assert_eq!(section(&s, "volumes")["vm-b"], "disable");
        assert!(section(&s, "nope").is_empty());
    }

    #[test]
    fn strictness() {
        for bad in [
            "key = v\n",
            "[var]\na = 1\na = 2\n",
            "[var]\n[var]\n",
            "[var]\njunk\n",
            "[var]\na = 1\n  more\n",
            "[var\n",
            "[var]\n = x\n",
        ] {
            assert!(parse(bad, "t").is_err(), "{bad:?}");
        }
        let long = format!("[var]\na = {}\n", "x".repeat(5000));
        assert!(parse(&long, "t").is_err());
    }

    /// Regression: duplicate sections and keys were found by scanning all
    /// earlier ones, so a 1 MiB archive.ini of distinct keys (or sections)
    /// took minutes. Now a repeat is a set look-up.
    #[test]
    fn many_keys_and_sections_parse_in_linear_time() {
        let t = std::time::Instant::now();
        let mut keys = String::from("[var]\n");
        let mut secs = String::new();
        for i in 0..120_000 {
            keys.push_str(&format!("k{i} = v\n"));
            secs.push_str(&format!("[s{i}]\n"));
        }
        assert_eq!(parse(&keys, "t").unwrap()[0].1.len(), 120_000);
        assert_eq!(parse(&secs, "t").unwrap().len(), 120_000);
        keys.push_str("k7 = again\n");
        let e = parse(&keys, "t").unwrap_err().to_string();
        assert!(e.contains("line 120002") && e.contains("twice"), "{e}");
        // The same key in two sections is fine.
        assert!(parse("[var]\na = 1\n[volumes]\na = 2\n", "t").is_ok());
        assert!(t.elapsed().as_secs() < 20, "took {:?}", t.elapsed());
    }
}
