//! The real [`RestoreBackend`]: the configured archive under the meta dir's
//! lock (not waited for), Qubes through [`QvmTools`], restores through
//! `restore-qube`'s library function.

use super::{Holding, RestoreBackend};
use crate::dest::DestKind;
use crate::local_meta::Meta;
use crate::ops::context::Ctx;
use crate::ops::restore_qube::{restore_qube, RestoreQubeOptions};
use crate::ops::Quiet;
use crate::qubes::query::{is_running, list_qubes};
use crate::qubes::{archive_volume, QvmTools};
use anyhow::Result;
use sparsebak_common::names::{SessionName, VolName};
use std::fs::File;

pub struct LocalBackend<'a> {
    ctx: Ctx<'a>,
    qvm: &'a dyn QvmTools,
    _lock: nix::fcntl::Flock<File>,
}

impl<'a> LocalBackend<'a> {
    /// Take the lock first: while another sparsebak runs, nothing is read.
    pub fn open(
        meta: Meta,
        connector: &'a dyn crate::ops::context::Connector,
        lvm: &'a dyn crate::lvm::Lvm,
        qvm: &'a dyn QvmTools,
    ) -> Result<Self> {
        // The lock's own message names dom0 paths and options: not for the VM.
        let lock = meta.lock().map_err(|_| {
            anyhow::anyhow!(
                "another sparsebak is running (a backup, or another request): ask again later"
            )
        })?;
        let config = crate::config::Config::load(&meta.root)?;
        Ok(LocalBackend {
            ctx: Ctx {
                config,
                meta,
                connector,
                lvm,
            },
            qvm,
            _lock: lock,
        })
    }
}

impl RestoreBackend for LocalBackend<'_> {
    fn archive_vm(&self) -> Option<String> {
        match &self.ctx.config.dest.kind {
            DestKind::Qubes { vm } | DestKind::QubesSsh { vm, .. } => Some(vm.clone()),
            _ => None,
        }
    }

    fn holdings(&mut self) -> Result<Vec<Holding>> {
        let mut out = Vec::new();
        for (id, q) in &self.ctx.config.qubes {
            let vol = VolName::new(&archive_volume(id, "settings"))?;
            let sessions = self
                .ctx
                .meta
                .chain(&vol)?
                .into_iter()
                .map(|s| s.name)
                .collect();
            out.push(Holding {
                qube: q.name.clone(),
                sessions,
            });
        }
        out.sort_by(|a, b| a.qube.cmp(&b.qube));
        Ok(out)
    }

    fn exists(&mut self, qube: &str) -> Result<bool> {
        Ok(list_qubes(self.qvm)?.iter().any(|q| q.name == qube))
    }

    fn running(&mut self, qube: &str) -> Result<bool> {
        is_running(self.qvm, qube)
    }

    fn restore_qube(
        &mut self,
        qube: &str,
        session: Option<&SessionName>,
        as_name: Option<&str>,
    ) -> Result<String> {
        let o = RestoreQubeOptions {
            qubes: vec![qube.to_string()],
            session: session.map(|s| s.timestamp().to_string()),
            as_name: as_name.map(String::from),
            shutdown: false,
            ..Default::default()
        };
        let r = restore_qube(&mut self.ctx, self.qvm, &Quiet, &o)?;
        let from = r
            .records
            .iter()
            .map(|(q, s)| format!("{q} from session {}", s.timestamp()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = format!(
            "restored qube {}{} ({} steps)",
            from,
            as_name.map(|n| format!(" as {n}")).unwrap_or_default(),
            r.steps.len()
        );
        for w in &r.warnings {
            text.push_str(&format!("\nwarning: {w}"));
        }
        for u in &r.undo {
            text.push_str(&format!("\nto go back, in dom0: {u}"));
        }
        Ok(text)
    }
}
