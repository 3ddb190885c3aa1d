//! Where the agent's S3 keys come from: only from the machine the agent
//! runs on (the backup VM or the ssh host), never from dom0 and never from
//! a command line. In order:
//!
//! 1. a credentials file named in the store's configuration (readable by
//!    the agent's user), in the AWS shared-credentials format;
//! 2. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!    `AWS_SESSION_TOKEN` (optional);
//! 3. the AWS shared credentials file: `AWS_SHARED_CREDENTIALS_FILE`, else
//!    `~/.aws/credentials`, profile `AWS_PROFILE` (else `default`).

use std::path::{Path, PathBuf};

/// Longest credentials file read (it holds a few keys).
const MAX_FILE: u64 = 64 * 1024;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    /// Where they were found, for messages (never the secret).
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} from {})", self.access_key, self.source)
    }
}

/// What the lookup reads from its surroundings (a fake in tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    fn home(&self) -> Option<PathBuf>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    fn home(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from)
    }
}

/// Find the keys (see the module doc for the order); `file` is the
/// configured credentials file, which must then hold them.
pub fn find(file: Option<&Path>, env: &dyn Env) -> Result<Credentials, String> {
    let profile = env.var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    if let Some(f) = file {
        return from_file(f, &profile)?
            .ok_or_else(|| format!("{}: no [{profile}] keys in it", f.display()));
    }
    if let (Some(a), Some(s)) = (
        env.var("AWS_ACCESS_KEY_ID"),
        env.var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(Credentials {
            access_key: a,
            secret_key: s,
            session_token: env.var("AWS_SESSION_TOKEN"),
            source: "the environment (AWS_ACCESS_KEY_ID)".into(),
        });
    }
    let shared = env
        .var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env.home().map(|h| h.join(".aws/credentials")));
    if let Some(f) = shared.filter(|f| f.exists()) {
        if let Some(c) = from_file(&f, &profile)? {
            return Ok(c);
        }
    }
    Err("no S3 credentials: give the store a credentials file, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write ~/.aws/credentials where the agent runs".into())
}

fn from_file(f: &Path, profile: &str) -> Result<Option<Credentials>, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(f)
        .and_then(|h| h.take(MAX_FILE + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read S3 credentials file {}: {e}", f.display()))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!(
            "S3 credentials file {} is larger than {MAX_FILE} bytes",
            f.display()
        ));
    }
    let keys = section(&text, profile);
    let get = |k: &str| keys.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(a), Some(s)) => Ok(Some(Credentials {
            access_key: a,
            secret_key: s,
            session_token: get("aws_session_token"),
            source: format!("{} [{profile}]", f.display()),
        })),
        (None, None) => Ok(None),
        _ => Err(format!(
            "S3 credentials file {} [{profile}] has only one of aws_access_key_id and aws_secret_access_key",
            f.display()
        )),
    }
}

/// The `key = value` lines of INI section `[name]` (comments `#`/`;`).
fn section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = h.trim() == name;
        } else if let (true, Some((k, v))) = (inside, line.split_once('=')) {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake(HashMap<&'static str, String>, Option<PathBuf>);
    impl Env for Fake {
        fn var(&self, n: &str) -> Option<String> {
            self.0.get(n).cloned()
        }
        fn home(&self) -> Option<PathBuf> {
            self.1.clone()
        }
    }

    #[test]
    fn order_file_env_shared() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join(".aws")).unwrap();
        std::fs::write(
            t.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = SHARED\naws_secret_access_key = s1\n[other]\naws_access_key_id=O\naws_secret_access_key=s2\naws_session_token=tok\n",
        )
        .unwrap();
        let home = Some(t.path().to_path_buf());
        let mut env = Fake(HashMap::new(), home.clone());
        assert_eq!(find(None, &env).unwrap().access_key, "SHARED");
        env.0.insert("AWS_PROFILE", "other".into());
        let c = find(None, &env).unwrap();
        assert_eq!(
            (c.access_key.as_str(), c.session_token.as_deref()),
            ("O", Some("tok"))
        );
        env.0.insert("AWS_ACCESS_KEY_ID", "ENV".into());
        env.0.insert("AWS_SECRET_ACCESS_KEY", "s3".into());
        assert_eq!(find(None, &env).unwrap().access_key, "ENV");
        let own = t.path().join("store.creds");
        std::fs::write(
            &own,
            "[other]\naws_access_key_id=FILE\naws_secret_access_key=s4\n",
        )
        .unwrap();
        assert_eq!(find(Some(&own), &env).unwrap().access_key, "FILE");
        assert!(!format!("{:?}", find(Some(&own), &env).unwrap()).contains("s4"));
    }

    #[test]
    fn missing_and_half_keys_are_clear_errors() {
        let t = tempfile::tempdir().unwrap();
        let env = Fake(HashMap::new(), Some(t.path().to_path_buf()));
        assert!(find(None, &env).unwrap_err().contains("no S3 credentials"));
        let f = t.path().join("c");
        std::fs::write(&f, "[default]\naws_access_key_id=A\n").unwrap();
        assert!(find(Some(&f), &env).unwrap_err().contains("only one of"));
        let e = find(Some(&t.path().join("nope")), &env).unwrap_err();
        assert!(e.contains("cannot read S3 credentials file"), "{e}");
    }
}
