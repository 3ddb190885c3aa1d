//! Format 2 hides volume names from the destination: every request names a
//! volume by its keyed hash ([`ArchiveKeys::hidden_name`]), so the agent
//! stores `volumes/v<40 hex>/`. The mapping is applied here, on the way out
//! of [`super::AgentConn`], so no command builds hidden names itself.

use crate::crypto::ArchiveKeys;
use sparsebak_common::legacy::LegacyVolName;
use sparsebak_common::names::VolName;
use sparsebak_common::proto::Request;
use std::borrow::Cow;

/// `req` as the destination of an archive with `keys` must see it.
pub fn hide<'r>(req: &'r Request, keys: Option<&ArchiveKeys>) -> Cow<'r, Request> {
    let Some(k) = keys else {
        return Cow::Borrowed(req);
    };
    let h = |v: &VolName| k.hidden_name(v);
    let mut r = req.clone();
    // Exhaustive on purpose: a new request that names a volume must be
    // hidden here, or format 2 would leak the name (and miss the volume).
    match &mut r {
        Request::ListSessions { vol }
        | Request::SessionDigests { vol, .. }
        | Request::PutSession { vol, .. }
        | Request::ResumeCheck { vol, .. }
        | Request::Commit { vol, .. }
        | Request::ReadMeta { vol, .. }
        | Request::DeleteVolume { vol }
        | Request::PrunePart { vol, .. }
        | Request::Prune { vol, .. } => *vol = h(vol),
        Request::ReadFiles { vol } => {
            // Our volume names are always valid VolNames; 0.2 archives are
            // never encrypted.
            if let Ok(v) = VolName::new(vol.as_str()) {
                *vol = LegacyVolName::from(h(&v));
            }
        }
        Request::Hello { .. }
        | Request::Open { .. }
        | Request::OpenLegacy { .. }
        | Request::InitArchive { .. }
        | Request::RewrapKey { .. }
        | Request::ListVolumes
        | Request::DeleteArchive { .. }
        | Request::CheckHardlinks
        | Request::Dedup
        | Request::Bye => return Cow::Borrowed(req),
    }
    Cow::Owned(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn every_volume_request_is_hidden() {
        let k = ArchiveKeys::derive(&MasterKey::from_bytes([2; 32]), "u");
        let v = VolName::new("vm-work-private").unwrap();
        let hidden = k.hidden_name(&v);
        let reqs = [
            Request::ListSessions { vol: v.clone() },
            Request::DeleteVolume { vol: v.clone() },
            Request::ReadFiles {
                vol: v.clone().into(),
            },
        ];
        for r in &reqs {
            let out = serde_json::to_string(&*hide(r, Some(&k))).unwrap();
            assert!(!out.contains("vm-work"), "{out}");
            assert!(out.contains(hidden.as_str()), "{out}");
            assert_eq!(&*hide(r, None), r);
        }
        assert_eq!(
            &*hide(&Request::ListVolumes, Some(&k)),
            &Request::ListVolumes
        );
    }
}
