//! What the agent's S3 client reads from a store it does not trust
//! (`sparsebak_agent::s3`): ListObjectsV2 replies, XML character data, lease
//! records, the store's dates and the code and message of an error answer.
//! Never a panic; a listing parses only when it is whole (ends with its
//! root's end tag), with one entry per `<Contents>`; a lease record
//! survives its own writing; an error's code and message are clipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak_agent::fuzzing::{s3_dates, s3_error_fields, s3_lease_record, s3_list, s3_unescape};

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = s3_list(data) {
        let text = std::str::from_utf8(data).expect("a parsed listing is UTF-8");
        assert!(text.trim_end().ends_with("</ListBucketResult>"));
        assert_eq!(entries.len(), text.matches("<Contents>").count());
    }
    let _ = s3_lease_record(data);
    for status in [200, 403, 503] {
        let (code, message) = s3_error_fields(status, data);
        assert!(code.chars().count() <= 300 && message.chars().count() <= 300);
        assert!(status != 200 || (code.is_empty() && message.is_empty()));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = s3_unescape(s) {
            assert!(u.len() <= s.len() * 4);
        }
        let _ = s3_dates(s);
    }
});
