//! Device-mapper names. dm joins VG and LV with a hyphen and doubles every
//! hyphen inside the names, so `my-vg`/`pool-a` is `my--vg-pool--a`.
//! sparsebak 0.2 concatenated without doubling and broke on such names.

/// dm name of LV `lv` in VG `vg`.
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// The thin-pool target that takes `reserve_metadata_snap` messages.
pub fn pool_device(vg: &str, pool: &str) -> String {
    format!("{}-tpool", dm_name(vg, pool))
}

/// The pool's metadata device, which thin_delta reads.
pub fn tmeta_path(vg: &str, pool: &str) -> String {
    format!("/dev/mapper/{}", dm_name(vg, &format!("{pool}_tmeta")))
}

/// Device node of an LV.
pub fn lv_path(vg: &str, lv: &str) -> String {
    format!("/dev/mapper/{}", dm_name(vg, lv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyphens_are_doubled() {
        assert_eq!(
            dm_name("qubes_dom0", "vm-work-private"),
            "qubes_dom0-vm--work--private"
        );
        assert_eq!(pool_device("test-vg", "my-pool"), "test--vg-my--pool-tpool");
        assert_eq!(
            tmeta_path("test-vg", "my-pool"),
            "/dev/mapper/test--vg-my--pool_tmeta"
        );
        assert_eq!(lv_path("vg", "v.tick"), "/dev/mapper/vg-v.tick");
    }
}
