//! The file-system backend: an archive directory on a mounted file system,
//! served by the modules that always served it (docs/FORMAT.md's layout,
//! write order and checks, unchanged). Each method hands its request to
//! the module that owns it.

use crate::backend::{Backend, Input};
use crate::dedup::ops::Deduped;
use crate::error::Result;
use crate::open_archive::Archive;
use crate::prune_apply::{Pruned, Use};
use crate::store::{Put, StoreStats};
use crate::{dedup, delete, digests, legacy, prune_apply, read, read_meta, resume, store};
use sparsebak_common::legacy::LegacyVolName;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::Response;
use std::io::{Read, Write};

impl Backend for Archive {
    fn header_json(&self) -> Option<String> {
        self.header
            .as_ref()
            .map(|h| serde_json::to_string(h).expect("header serialises"))
    }

    fn is_legacy(&self) -> bool {
        self.legacy
    }

    fn settle(&self, vol: &VolName, why: Use) -> Result<()> {
        prune_apply::settle(self, vol, why)
    }

    fn init(&mut self, header_json: &str) -> Result<()> {
        Archive::init(self, header_json)
    }

    fn rewrap_key(&mut self, header_json: &str) -> Result<()> {
        Archive::rewrap_key(self, header_json)
    }

    fn list_volumes(&self) -> Result<(Vec<VolName>, Vec<String>)> {
        Archive::list_volumes(self)
    }

    fn list_sessions(&self, vol: &VolName) -> Result<(Vec<SessionName>, Vec<String>)> {
        Archive::list_sessions(self, vol)
    }

    fn session_digests(&self, vol: &VolName, after: Option<&SessionName>) -> Result<Response> {
        digests::session_digests(self, vol, after)
    }

    fn put_session(&self, p: &Put<'_>, stream: &mut dyn Read) -> Result<StoreStats> {
        store::put_session(self, p, stream)
    }

    fn resume_check(
        &self,
        vol: &VolName,
        session: &SessionName,
        after: Option<u64>,
    ) -> Result<(u64, bool, Vec<u8>)> {
        resume::check(self, vol, session, after)
    }

    fn commit(&self, vol: &VolName, session: &SessionName, volume_info: &str) -> Result<()> {
        store::commit(self, vol, session, volume_info)
    }

    fn read_files(
        &self,
        ours: Option<&VolName>,
        vol: &LegacyVolName,
        r: &mut Input<'_>,
        mut w: &mut dyn Write,
    ) -> Result<()> {
        match ours {
            Some(vol) => read::read_files(self, vol, r, &mut w),
            None => legacy::read_files(self, vol, r, &mut w),
        }
    }

    fn read_meta(&self, vol: &VolName, path: &str, offset: u64) -> Result<(u64, Vec<u8>)> {
        read_meta::read_meta(self, vol, path, offset)
    }

    fn delete_volume(&self, vol: &VolName) -> Result<()> {
        Archive::delete_volume(self, vol)
    }

    fn prune_part(&self, vol: &VolName, file: &str, offset: u64, data: &str) -> Result<()> {
        prune_apply::put_part(self, vol, file, offset, data)
    }

    fn prune(&self, vol: &VolName, target: &SessionName, pruned: &[SessionName]) -> Result<Pruned> {
        prune_apply::prune(self, vol, target, pruned)
    }

    fn delete_archive(&self, uuid: &str) -> Result<()> {
        delete::delete_archive(self, uuid)
    }

    fn check_hardlinks(&self) -> Result<()> {
        dedup::check_hardlinks(self)
    }

    fn dedup(&self, stream: &mut dyn Read) -> Result<Deduped> {
        dedup::ops::dedup(self, stream)
    }
}
