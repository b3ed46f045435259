//! API keys: where they come from, how they are kept and how a presented token is checked.
//!
//! A key is a random token (`kiln_` and 48 hex digits from a CSPRNG) with a [`Scope`]: `read`
//! keys may look (every `GET`, and generating text, which changes nothing), `write` keys may
//! also submit, cancel, delete and upload. The server keeps only SHA-256 hashes of keys and
//! compares a presented token's hash with every key's in constant time.
//!
//! [`Access::resolve`] decides at start-up, from the configuration and the address the server
//! is bound to:
//! - `--no-auth` (`KILN_NO_AUTH=1`): open, explicitly;
//! - `KILN_API_KEY` (one `write` key) and/or `--api-keys-file` (lines `<scope> sha256:<hex>
//!   [label]`, `#` comments): those keys;
//! - neither, bound to a loopback address: open, for development on one machine;
//! - neither, bound to any other address: a generated `write` key, kept in `<data-dir>/api-key`
//!   (mode 0600, created once and reused by later starts), and a log line saying where it is.
//!   A kept file that others may read or write is tightened to 0600 before it is used, with a
//!   warning; if it cannot be, the server does not start.

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, Secret};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read jobs, metrics, checkpoints, data sets; generate text.
    Read,
    /// Everything `Read` may, and submit, cancel, delete, upload.
    Write,
}

impl Scope {
    fn parse(word: &str) -> Option<Self> {
        match word {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }

    /// The name used in key files and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// One key the server accepts: the hash of its token, its scope and a label for logs.
#[derive(Debug, Clone)]
pub struct ApiKey {
    hash: [u8; 32],
    pub scope: Scope,
    pub label: String,
}

/// Shortest token accepted from `KILN_API_KEY`: a guessable key is refused at start.
pub const MIN_KEY_CHARS: usize = 16;

/// The SHA-256 of a token.
fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("kiln_{}", hex(&bytes))
}

/// The line of an `--api-keys-file` that accepts `token` with `scope`.
pub fn key_file_line(token: &str, scope: Scope, label: &str) -> String {
    format!("{} sha256:{} {label}", scope.as_str(), hex(&hash(token))).trim_end().to_string()
}

/// Who may call the API.
#[derive(Debug, Clone)]
pub enum Access {
    /// Anyone who reaches the port.
    Open,
    /// Callers presenting one of these keys.
    Keys(Vec<ApiKey>),
}

/// Why the keys could not be set up; the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("--api-keys-file {path}, line {line}: {message}")]
    File { path: String, line: usize, message: String },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("KILN_API_KEY is shorter than {MIN_KEY_CHARS} characters; use `kiln new-api-key` to make one")]
    WeakKey,
}

impl Access {
    /// The access the configuration asks for, for a server bound to `ip` (see the module doc).
    pub fn resolve(config: &Config, ip: IpAddr) -> Result<Self, KeysError> {
        if config.no_auth {
            if !ip.is_loopback() {
                tracing::warn!(%ip, "--no-auth: anyone who reaches this address may use the whole API");
            }
            return Ok(Self::Open);
        }
        let mut keys = Vec::new();
        if let Some(Secret(token)) = &config.api_key {
            if token.trim().chars().count() < MIN_KEY_CHARS {
                return Err(KeysError::WeakKey);
            }
            keys.push(ApiKey { hash: hash(token.trim()), scope: Scope::Write, label: "KILN_API_KEY".into() });
        }
        if let Some(path) = &config.api_keys_file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| KeysError::Io { what: format!("reading {}", path.display()), source })?;
            keys.extend(parse_key_file(&text, path)?);
        }
        if !keys.is_empty() {
            tracing::info!(
                keys = keys.len(),
                "API keys required on every route but health and the API document"
            );
            return Ok(Self::Keys(keys));
        }
        if ip.is_loopback() {
            tracing::info!("no API key configured and bound to a loopback address: the API is open");
            return Ok(Self::Open);
        }
        let path = generated_key_path(&config.data_dir);
        let token = generated_key(&path)?;
        tracing::warn!(
            path = %path.display(),
            "no API key configured and bound to {ip}: every request needs `Authorization: Bearer <key>`, \
             with the key kept in this file"
        );
        Ok(Self::Keys(vec![ApiKey { hash: hash(&token), scope: Scope::Write, label: "api-key file".into() }]))
    }

    /// The scope of `token`, or `None` if it is no key of this server. Every key is compared,
    /// each in constant time, so the time taken says nothing about which key came close.
    pub fn scope_of(keys: &[ApiKey], token: &str) -> Option<Scope> {
        let presented = hash(token);
        let mut found = None;
        for key in keys {
            if bool::from(key.hash[..].ct_eq(&presented[..])) {
                found = found.max(Some(key.scope));
            }
        }
        found
    }
}

/// Where a generated key is kept.
pub fn generated_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("api-key")
}

/// The key in `path`, made and written there (mode 0600) if the file does not exist yet.
fn generated_key(path: &Path) -> Result<String, KeysError> {
    let io_error = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| KeysError::Io { what, source }
    };
    owner_only(path)?;
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().chars().count() >= MIN_KEY_CHARS => return Ok(text.trim().to_string()),
        Ok(_) => {
            return Err(KeysError::Io {
                what: format!("reading {}", path.display()),
                source: io::Error::new(io::ErrorKind::InvalidData, "the key in it is too short"),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("reading")(e)),
    }
    let token = generate_token();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_error("creating"))?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error("writing"))?;
    Ok(token)
}

/// Makes an existing key file `path` readable and writable by its owner only (0600), as it was
/// made: one that others may read was copied or restored carelessly, and its key may have leaked
/// already, so the change is logged as a warning. A file that does not exist is left to be made.
#[cfg(unix)]
fn owner_only(path: &Path) -> Result<(), KeysError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match std::fs::metadata(path) {
        Ok(metadata) => metadata.permissions().mode() & 0o777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(KeysError::Io { what: format!("reading {}", path.display()), source }),
    };
    if mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        KeysError::Io {
            what: format!("{} has mode {mode:04o}, readable by others; making it 0600", path.display()),
            source,
        }
    })?;
    tracing::warn!(
        path = %path.display(),
        was = %format_args!("{mode:04o}"),
        "the API key file was open to other users: it is now 0600 (owner only); if others could read it, \
         delete it and restart to get a new key"
    );
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_: &Path) -> Result<(), KeysError> {
    Ok(())
}

/// The keys of an `--api-keys-file`: one per line, `<read|write> sha256:<64 hex digits> [label]`;
/// blank lines and lines starting with `#` are skipped.
fn parse_key_file(text: &str, path: &Path) -> Result<Vec<ApiKey>, KeysError> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error =
            |message: String| KeysError::File { path: path.display().to_string(), line: n + 1, message };
        let mut words = line.split_whitespace();
        let scope = words.next().unwrap_or_default();
        let scope = Scope::parse(scope)
            .ok_or_else(|| error(format!("the scope must be `read` or `write`, not {scope:?}")))?;
        let digest = words.next().unwrap_or_default();
        let hash = digest
            .strip_prefix("sha256:")
            .and_then(parse_hex32)
            .ok_or_else(|| error("the second word must be sha256: and 64 hex digits".into()))?;
        let label = words.collect::<Vec<_>>().join(" ");
        let label = if label.is_empty() { format!("line {}", n + 1) } else { label };
        keys.push(ApiKey { hash, scope, label });
    }
    if keys.is_empty() {
        return Err(KeysError::File {
            path: path.display().to_string(),
            line: 0,
            message: "no key in the file".into(),
        });
    }
    Ok(keys)
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        Config::with_data_dir(dir)
    }

    #[test]
    fn a_key_file_gives_each_key_its_scope_and_refuses_bad_lines() {
        let (reader, writer) = (generate_token(), generate_token());
        let text = format!(
            "# kiln keys\n{}\n\n{}\n",
            key_file_line(&reader, Scope::Read, "dashboard"),
            key_file_line(&writer, Scope::Write, "")
        );
        let keys = parse_key_file(&text, Path::new("keys")).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].label, "dashboard");
        assert_eq!(Access::scope_of(&keys, &reader), Some(Scope::Read));
        assert_eq!(Access::scope_of(&keys, &writer), Some(Scope::Write));
        assert_eq!(Access::scope_of(&keys, "kiln_not-a-key"), None);
        assert_eq!(Access::scope_of(&keys, ""), None);

        let bad = parse_key_file("admin sha256:00\n", Path::new("keys")).unwrap_err().to_string();
        assert!(bad.contains("line 1") && bad.contains("`read` or `write`"), "{bad}");
        let bad = parse_key_file("# only\nread sha256:zz\n", Path::new("keys")).unwrap_err().to_string();
        assert!(bad.contains("line 2") && bad.contains("64 hex digits"), "{bad}");
        assert!(parse_key_file("# nothing\n", Path::new("keys")).is_err());
        // The file holds hashes only: the token itself appears nowhere in it.
        assert!(!text.contains(&reader) && !text.contains(&writer));
    }

    #[test]
    fn loopback_without_keys_is_open_and_any_other_address_gets_a_generated_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        assert!(matches!(Access::resolve(&config, IpAddr::from([127, 0, 0, 1])).unwrap(), Access::Open));
        assert!(!generated_key_path(dir.path()).exists());

        let exposed = IpAddr::from([0, 0, 0, 0]);
        let Access::Keys(keys) = Access::resolve(&config, exposed).unwrap() else { panic!("open") };
        let path = generated_key_path(dir.path());
        let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
        assert!(token.starts_with("kiln_") && token.len() == 53, "{token}");
        assert_eq!(Access::scope_of(&keys, &token), Some(Scope::Write));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // A restart keeps the same key.
        let Access::Keys(again) = Access::resolve(&config, exposed).unwrap() else { panic!("open") };
        assert_eq!(Access::scope_of(&again, &token), Some(Scope::Write));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let Access::Keys(again) = Access::resolve(&config, exposed).unwrap() else { panic!("open") };
            assert_eq!(Access::scope_of(&again, &token), Some(Scope::Write), "the same key");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "an open key file is tightened");
        }

        let mut open = config.clone();
        open.no_auth = true;
        assert!(matches!(Access::resolve(&open, exposed).unwrap(), Access::Open));
    }

    #[test]
    fn a_configured_key_wins_over_loopback_and_a_short_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.api_key = Some(Secret("0123456789abcdef".into()));
        let Access::Keys(keys) = Access::resolve(&config, IpAddr::from([127, 0, 0, 1])).unwrap() else {
            panic!("open")
        };
        assert_eq!(Access::scope_of(&keys, "0123456789abcdef"), Some(Scope::Write));
        config.api_key = Some(Secret("short".into()));
        assert!(matches!(Access::resolve(&config, IpAddr::from([127, 0, 0, 1])), Err(KeysError::WeakKey)));
        assert_eq!(format!("{:?}", Secret("hidden".into())), "Secret(…)");
    }
}
