use super::*;

const MIB: u64 = 1 << 20;

/// A 1 MiB volume in 64 KiB blocks: 16 blocks.
const SAMPLE: &str = r#"<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="16384">
  <device dev_id="3" mapped_blocks="6" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="4" time="0"/>
    <single_mapping origin_block="10" data_block="20" time="0"/>
    <single_mapping origin_block="15" data_block="7" time="1"/>
  </device>
</superblock>
"#;

fn parsed(xml: &str, id: u64, size: u64) -> Result<Option<MappedBlocks>> {
    Ok(match parse(xml.as_bytes(), id, Bytes(size))? {
        Parsed::Map(m) => Some(m),
        Parsed::Unsupported(_) => None,
    })
}

#[test]
fn parses_range_and_single_mappings() {
    let m = parsed(SAMPLE, 3, MIB).unwrap().unwrap();
    assert_eq!(m.block_bytes(), 64 << 10);
    assert_eq!(m.mapped(), 6);
    let got: Vec<u64> = (0..16).filter(|&b| m.is_mapped(b)).collect();
    assert_eq!(got, [0, 1, 2, 3, 10, 15]);
    assert_eq!(m.run_at(0), (true, 4));
    assert_eq!(m.run_at(2), (true, 4));
    assert_eq!(m.run_at(4), (false, 10));
    assert_eq!(m.run_at(11), (false, 15));
    assert_eq!(m.run_at(15), (true, 16));
}

#[test]
fn a_device_without_mappings_and_a_partial_last_block() {
    let xml = r#"<superblock data_block_size="128"><device dev_id="4"/></superblock>"#;
    let m = parsed(xml, 4, MIB + 1).unwrap().unwrap();
    assert_eq!((m.mapped(), m.run_at(0)), (0, (false, 17)));
    let xml = r#"<superblock data_block_size="128"><device dev_id="4">
        <single_mapping origin_block="16" data_block="0" time="0"/></device></superblock>"#;
    let m = parsed(xml, 4, MIB + 1).unwrap().unwrap();
    assert_eq!(m.run_at(3), (false, 16));
}

#[test]
fn runs_skip_whole_words() {
    let size = 1000 * (64 << 10);
    let mut m = MappedBlocks::new(BlockSectors(128), Bytes(size)).unwrap();
    m.mark(3, 500).unwrap();
    m.mark(900, 1).unwrap();
    assert_eq!(m.run_at(0), (false, 3));
    assert_eq!(m.run_at(3), (true, 503));
    assert_eq!(m.run_at(503), (false, 900));
    assert_eq!(m.run_at(901), (false, 1000));
}

#[test]
fn a_volume_too_big_to_map_is_none() {
    let xml = r#"<superblock data_block_size="1"><device dev_id="1"/></superblock>"#;
    assert_eq!(parsed(xml, 1, (MAX_MAP_BLOCKS + 1) * 512).unwrap(), None);
    assert!(parsed(xml, 1, MAX_MAP_BLOCKS * 512).unwrap().is_some());
}

#[test]
fn shared_subtrees_give_no_map() {
    let xml = r#"<superblock data_block_size="128"><def name="7"><range_mapping origin_begin="0" data_begin="0" length="4" time="0"/></def>
        <device dev_id="3"><ref name="7"/></device></superblock>"#;
    let p = parse(xml.as_bytes(), 3, Bytes(MIB)).unwrap();
    assert!(
        matches!(p, Parsed::Unsupported(ref w) if w.contains("<def>")),
        "{p:?}"
    );
    let xml = r#"<superblock data_block_size="128"><device dev_id="3"><ref name="7"/></device></superblock>"#;
    let p = parse(xml.as_bytes(), 3, Bytes(MIB)).unwrap();
    assert!(
        matches!(p, Parsed::Unsupported(ref w) if w.contains("<ref>")),
        "{p:?}"
    );
}

#[test]
fn malformed_or_inconsistent_dumps_are_errors() {
    let sb = |inner: &str| {
        format!(
            r#"<superblock data_block_size="128"><device dev_id="3">{inner}</device></superblock>"#
        )
    };
    for (bad, want) in [
        ("".to_string(), "ended early"),
        (SAMPLE[..SAMPLE.find("    <single").unwrap()].to_string(), "ended early"),
        (SAMPLE[..SAMPLE.len() / 2].to_string(), "malformed"),
        (r#"<superblock data_block_size="128">"#.into(), "ended early"),
        (
            r#"<superblock><device dev_id="3"></device></superblock>"#.into(),
            "data_block_size",
        ),
        (
            r#"<superblock data_block_size="0"></superblock>"#.into(),
            "impossible",
        ),
        (
            r#"<superblock data_block_size="128"><device dev_id="4"></device></superblock>"#.into(),
            "not 3",
        ),
        (
            r#"<superblock data_block_size="128"></superblock>"#.into(),
            "does not list thin id 3",
        ),
        (sb(r#"<mapping origin="1"/>"#), "unexpected element <mapping>"),
        (sb(r#"<single_mapping origin_block="1"/>"#), "lacks the data_block"),
        (sb(r#"<range_mapping data_begin="1" length="2"/>"#), "lacks the origin_begin"),
        (sb(r#"<single_mapping origin_block="x" data_block="1"/>"#), "not a number"),
        (
            sb(r#"<single_mapping origin_block="99999999999999999999" data_block="1"/>"#),
            "not a number",
        ),
        (
            sb(r#"<range_mapping origin_begin="18446744073709551615" data_begin="0" length="2"/>"#),
            "outside the volume",
        ),
        (
            sb(r#"<range_mapping origin_begin="0" data_begin="18446744073709551615" length="2"/>"#),
            "overflows",
        ),
        (sb(r#"<single_mapping origin_block="16" data_block="1"/>"#), "outside the volume"),
        (sb(r#"<range_mapping origin_begin="15" data_begin="0" length="2"/>"#), "outside the volume"),
        (sb(r#"<range_mapping origin_begin="1" data_begin="0" length="0"/>"#), "outside the volume"),
        (
            sb(r#"<range_mapping origin_begin="0" data_begin="0" length="4"/><single_mapping origin_block="3" data_block="9"/>"#),
            "mapped twice",
        ),
        (
            r#"<superblock data_block_size="128"><device dev_id="3" mapped_blocks="2"><single_mapping origin_block="3" data_block="9"/></device></superblock>"#.into(),
            "has 2 mapped blocks but lists 1",
        ),
        (
            sb("").replace("</superblock>", "<device dev_id=\"3\"></device></superblock>"),
            "unexpected",
        ),
        (sb("<range_mapping>text</range_mapping>"), "unexpected"),
        (r#"<metadata data_block_size="128"></metadata>"#.into(), "unexpected"),
        ("not xml at all".into(), "unexpected"),
    ] {
        let e = format!("{:#}", parsed(&bad, 3, MIB).unwrap_err());
        assert!(e.contains(want), "{bad:?}: {e}");
    }
}
