//! What the qube commands print (`add --qube`, `restore-qube`, the qubes
//! part of `list`).

use crate::ops::qube_add::AddedQube;

pub fn added_qube(a: &AddedQube) {
    if let Some(why) = &a.skipped {
        println!("Not added: {why}.");
        return;
    }
    println!(
        "Qube {} ({}) added; its archive volumes are named after its uuid {}:",
        a.name, a.class, a.id
    );
    for (v, av, lv) in &a.volumes {
        println!("  {v:<8} {av}  (read from LV {lv})");
    }
    println!(
        "  settings qube.{}.settings  (properties, features, tags, firewall; written at each send)",
        a.id
    );
}

/// The qubes among `list`'s rows, before the volumes.
pub fn qubes_of(rows: &[serde_json::Value]) {
    let mut qubes: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for r in rows {
        if let (Some(q), Some(part)) = (r["qube"].as_str(), r["qube_volume"].as_str()) {
            let last = r["last"].as_str().unwrap_or("never sent");
            qubes
                .entry(q)
                .or_default()
                .push(format!("{part} (last {last})"));
        }
    }
    if qubes.is_empty() {
        return;
    }
    println!("Qubes:");
    for (q, parts) in qubes {
        println!("  {q:<31} {}", parts.join(", "));
    }
}

/// `list QUBE`: the sessions of its settings record, each a point
/// `restore-qube --session` can restore.
pub fn qube_sessions(
    name: &str,
    id: &str,
    chain: &[crate::local_meta::SessionInfo],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(chain)?);
        return Ok(());
    }
    println!("Sessions of qube {name} (uuid {id}; oldest first, UTC; restore-qube --session=DT):");
    for s in chain {
        println!("  {}", s.name.timestamp());
    }
    if chain.is_empty() {
        println!("  (none yet)");
    }
    Ok(())
}

pub fn restored(r: &crate::ops::restore_qube::RestoreQubeReport) {
    for (q, s) in &r.records {
        println!("Qube {q}: settings record of {}.", s.timestamp());
    }
    println!(
        "{}",
        if r.dry_run {
            "Would do (--dry-run: nothing changed):"
        } else {
            "Done:"
        }
    );
    for s in &r.steps {
        println!("  {s}");
    }
    for w in &r.warnings {
        println!("Warning: {w}");
    }
    if !r.undo.is_empty() {
        println!("The replaced volumes are kept:");
        for u in &r.undo {
            println!("  {u}");
        }
    }
}
