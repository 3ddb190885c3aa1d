//! The few S3 XML replies the agent reads (error bodies, ListObjectsV2),
//! picked apart without an XML library: the shapes are fixed and flat, and
//! whatever is taken is bounded and unescaped strictly. The store is not
//! trusted: a reply that does not parse is an error, never a guess.

/// Text of every `<tag>…</tag>` in `s`, in order, unescaped.
pub fn all(s: &str, tag: &str) -> Result<Vec<String>, String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let j = after
            .find(&close)
            .ok_or_else(|| format!("<{tag}> is not closed"))?;
        out.push(unescape(&after[..j])?);
        rest = &after[j + close.len()..];
    }
    Ok(out)
}

/// Text of the first `<tag>…</tag>`, if any.
pub fn first(s: &str, tag: &str) -> Result<Option<String>, String> {
    Ok(all(s, tag)?.into_iter().next())
}

/// The blocks `<tag>…</tag>` (raw, for looking inside).
pub fn blocks<'a>(s: &'a str, tag: &str) -> Result<Vec<&'a str>, String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let j = after
            .find(&close)
            .ok_or_else(|| format!("<{tag}> is not closed"))?;
        if after[..j].contains(&open) {
            return Err(format!("<{tag}> inside <{tag}>"));
        }
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    Ok(out)
}

/// XML character data: the five named entities and numeric references.
pub fn unescape(s: &str) -> Result<String, String> {
    if s.contains('<') {
        return Err("unexpected markup inside a text element".into());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = after.find(';').ok_or("an entity without ';'")?;
        let ent = &after[..j];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let n = if let Some(h) = ent.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                n.and_then(char::from_u32).ok_or_else(|| {
                    format!(
                        "unknown entity &{};",
                        ent.chars().take(16).collect::<String>()
                    )
                })?
            }
        };
        out.push(c);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_reply_and_entities() {
        let x = "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>true</IsTruncated>\
            <Contents><Key>a&amp;b</Key><Size>3</Size></Contents>\
            <Contents><Key>c&#x2F;d&#47;e</Key><Size>40</Size></Contents>\
            <NextContinuationToken>t&lt;1</NextContinuationToken></ListBucketResult>";
        let c = blocks(x, "Contents").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(first(c[0], "Key").unwrap().unwrap(), "a&b");
        assert_eq!(first(c[1], "Key").unwrap().unwrap(), "c/d/e");
        assert_eq!(first(x, "NextContinuationToken").unwrap().unwrap(), "t<1");
        assert_eq!(first(x, "Missing").unwrap(), None);
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(all("<Key>open", "Key").is_err());
        assert!(unescape("a&bogus;").is_err());
        assert!(unescape("a&amp").is_err());
        assert!(unescape("&#xD800;").is_err());
        assert!(all("<Key>a<b/></Key>", "Key").is_err());
        assert!(blocks("<C><C><K>a</K></C>", "C").is_err());
    }
}
