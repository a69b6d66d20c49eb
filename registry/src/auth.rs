//! Bearer tokens and roles.
//!
//! Tokens live in the metadata store as sha256 hashes, never in clear
//! (`store::tokens`): an admin makes, lists and revokes them live through
//! `/api/v1/tokens`, each with an optional expiry. A TOML file bootstraps
//! them, read at every start (`--tokens-file`):
//!
//! ```toml
//! [[tokens]]
//! actor = "alice"
//! role = "approver"
//! sha256 = "9f86d08..."
//! ```
//!
//! Without a tokens file the registry keeps its own under the data dir and,
//! on first start, creates an admin token there (owner-only permissions), so
//! the API is never open, whatever address it listens on.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sluice_common::files;
use sluice_common::secrets::{generate_token, hash_token};
use sluice_registry_client::types::TokenInfo;

use crate::error::Error;

/// What a token may do. Each role names the permissions it grants; `admin`
/// grants all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Reads; registers models, versions and documents; requests stage
    /// transitions; moves aliases and traffic.
    Deployer,
    /// Reads; approves or rejects stage transitions.
    Approver,
    /// What a gateway needs: reads, reports its statistics, and reports
    /// a canary its local guard stopped.
    Gateway,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Deployer,
        Role::Approver,
        Role::Gateway,
        Role::Admin,
    ];

    /// A role by its name; the error lists the names.
    pub fn parse(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                format!("unknown role '{text}': expected viewer, deployer, approver, gateway or admin")
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Approver => "approver",
            Role::Gateway => "gateway",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Read,
    /// Models, artifacts, versions, documents, transition requests.
    Register,
    /// Traffic and aliases.
    Deploy,
    /// Approving or rejecting transitions.
    Review,
    /// Traffic statistics and guard trips from gateways.
    Report,
    /// Tokens: who may call at all.
    ManageTokens,
}

impl Permission {
    fn roles(self) -> &'static [Role] {
        match self {
            Permission::Read => &[
                Role::Viewer,
                Role::Deployer,
                Role::Approver,
                Role::Gateway,
                Role::Admin,
            ],
            Permission::Register | Permission::Deploy => &[Role::Deployer, Role::Admin],
            Permission::Review => &[Role::Approver, Role::Admin],
            Permission::Report => &[Role::Gateway, Role::Admin],
            Permission::ManageTokens => &[Role::Admin],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Register => "register models and versions",
            Permission::Deploy => "change traffic or aliases",
            Permission::Review => "approve or reject transitions",
            Permission::Report => "report gateway statistics",
            Permission::ManageTokens => "create, list or revoke tokens",
        }
    }
}

/// Who is calling, as their token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub actor: String,
    pub role: Role,
}

impl Caller {
    pub fn require(&self, permission: Permission) -> Result<(), Error> {
        let allowed = permission.roles();
        if allowed.contains(&self.role) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|role| role.as_str()).collect();
        Err(Error::Forbidden(format!(
            "{} has role {}, which may not {}: needs {}",
            self.actor,
            self.role,
            permission.describe(),
            names.join(" or ")
        )))
    }
}

/// One token of a tokens file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileToken {
    pub actor: String,
    pub role: Role,
    pub sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<FileToken>,
}

/// The tokens a registry starts with: its tokens file's, which it brings
/// into the store (`store::tokens::import`), and the ones known to this
/// process only (the embedded gateway's), which never reach the store.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    file: Vec<FileToken>,
    process: HashMap<String, Caller>,
}

/// Where the registry keeps its tokens when it is given no tokens file.
pub const DATA_DIR_TOKENS: &str = "tokens.toml";
/// The admin token created on first start, in clear, readable by its owner only.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
        let file: TokensFile = toml::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))?;
        let mut tokens = Tokens::default();
        for mut entry in file.tokens {
            if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "{}: token of {} has sha256 '{}': expected 64 hex digits",
                    path.display(),
                    entry.actor,
                    entry.sha256
                ));
            }
            entry.sha256.make_ascii_lowercase();
            tokens.file.push(entry);
        }
        Ok(tokens)
    }

    /// The tokens under `data_dir`; on first start, creates them with one
    /// admin token and says where that token is (`Some(path)`).
    pub fn load_or_bootstrap(data_dir: &Path) -> Result<(Tokens, Option<PathBuf>), String> {
        let path = data_dir.join(DATA_DIR_TOKENS);
        if path.exists() {
            return Ok((Tokens::load(&path)?, None));
        }
        let token = generate_token()?;
        let admin_path = data_dir.join(ADMIN_TOKEN_FILE);
        // An admin.token without tokens.toml holds a token nothing accepts.
        let _ = std::fs::remove_file(&admin_path);
        files::create_new(&admin_path, &format!("{token}\n"))?;
        let file = TokensFile {
            tokens: vec![FileToken {
                actor: "admin".into(),
                role: Role::Admin,
                sha256: hash_token(&token),
            }],
        };
        let text = toml::to_string(&file).map_err(|err| format!("encoding the tokens file: {err}"))?;
        files::create_new(&path, &text)?;
        Ok((Tokens::load(&path)?, Some(admin_path)))
    }

    /// Adds a token known only to this process (the embedded gateway's).
    pub fn insert(&mut self, token: &str, caller: Caller) {
        self.process.insert(hash_token(token), caller);
    }

    /// The tokens file's tokens, for the store.
    pub fn file_tokens(&self) -> &[FileToken] {
        &self.file
    }

    /// The caller behind a token known only to this process.
    pub fn process_caller(&self, token: &str) -> Option<Caller> {
        self.process.get(&hash_token(token)).cloned()
    }
}

/// The token of an `Authorization: Bearer ...` header.
pub fn bearer(header_opt: Option<&str>) -> Result<&str, Error> {
    let Some(header) = header_opt else {
        return Err(Error::Unauthorized(
            "missing bearer token: send 'Authorization: Bearer TOKEN' (the CLI reads --token or SLUICE_TOKEN; a gateway, --token or SLUICE_SERVE_TOKEN)"
                .into(),
        ));
    };
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| Error::Unauthorized("the Authorization header must be 'Bearer TOKEN'".into()))
}

/// Whether a stored token works at `now`: not revoked, not expired.
pub fn is_live(token: &TokenInfo, now: SystemTime) -> bool {
    token.revoked_at.is_none() && !expired(token, now)
}

fn expired(token: &TokenInfo, now: SystemTime) -> bool {
    // An expiry that does not parse was not written by this registry: it
    // does not keep a token alive.
    token
        .expires_at
        .as_deref()
        .is_some_and(|at| humantime::parse_rfc3339(at).map_or(true, |at| at <= now))
}

/// The caller a stored token speaks for at `now`, or why it no longer does.
pub fn caller_of(found: Option<TokenInfo>, now: SystemTime) -> Result<Caller, Error> {
    let token = found.ok_or_else(|| Error::Unauthorized("unknown token".into()))?;
    if let Some(at) = &token.revoked_at {
        return Err(Error::Unauthorized(format!(
            "token {} was revoked at {at}",
            token.id
        )));
    }
    if expired(&token, now) {
        return Err(Error::Unauthorized(format!(
            "token {} expired at {}",
            token.id,
            token.expires_at.as_deref().unwrap_or_default()
        )));
    }
    let role = Role::parse(&token.role).map_err(Error::Internal)?;
    Ok(Caller {
        actor: token.actor,
        role,
    })
}

/// Appends a new token for `actor` to a tokens file (created if missing) and
/// returns the token, the only time it is seen in clear.
pub fn add_token(path: &Path, actor: &str, role: Role) -> Result<String, String> {
    let mut file: TokensFile = match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => TokensFile::default(),
        Err(err) => return Err(format!("{}: {err}", path.display())),
    };
    let token = generate_token()?;
    file.tokens.push(FileToken {
        actor: actor.to_string(),
        role,
        sha256: hash_token(&token),
    });
    let text = toml::to_string(&file).map_err(|err| format!("encoding the tokens file: {err}"))?;
    // A running registry reads the file at start; `sluice tokens create` adds one live.
    files::replace(path, &text)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_creates_a_private_admin_token_once() {
        let dir = std::env::temp_dir().join(format!("sluice-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (tokens, created) = Tokens::load_or_bootstrap(&dir).unwrap();
        let admin_path = created.expect("first start creates the admin token");
        let token = std::fs::read_to_string(&admin_path).unwrap();
        let [admin] = tokens.file_tokens() else {
            panic!("one token: {:?}", tokens.file_tokens())
        };
        assert_eq!(
            (admin.role, admin.sha256.as_str()),
            (Role::Admin, hash_token(token.trim()).as_str())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&admin_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let stored = std::fs::read_to_string(dir.join(DATA_DIR_TOKENS)).unwrap();
        assert!(!stored.contains(token.trim()), "tokens are stored hashed");
        let (_, again) = Tokens::load_or_bootstrap(&dir).unwrap();
        assert_eq!(again, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn roles_grant_what_they_say() {
        let viewer = Caller {
            actor: "v".into(),
            role: Role::Viewer,
        };
        assert!(viewer.require(Permission::Read).is_ok());
        let refusal = viewer.require(Permission::Deploy).unwrap_err().to_string();
        assert!(refusal.contains("needs deployer or admin"), "{refusal}");
        let approver = Caller {
            actor: "a".into(),
            role: Role::Approver,
        };
        assert!(approver.require(Permission::Review).is_ok());
        assert!(approver.require(Permission::Register).is_err());
        assert!(bearer(None).is_err());
        assert!(bearer(Some("Basic abc")).is_err());
        assert_eq!(bearer(Some("Bearer abc ")).unwrap(), "abc");
        assert!(approver.require(Permission::ManageTokens).is_err());
    }

    #[test]
    fn a_stored_token_works_until_it_expires_or_is_revoked() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let at = |offset_s: i64| {
            let time = if offset_s >= 0 {
                now + std::time::Duration::from_secs(offset_s as u64)
            } else {
                now - std::time::Duration::from_secs(offset_s.unsigned_abs())
            };
            humantime::format_rfc3339_millis(time).to_string()
        };
        let token = TokenInfo {
            id: 7,
            actor: "dora".into(),
            role: "deployer".into(),
            source: "api".into(),
            created_at: at(-60),
            created_by: "admin".into(),
            expires_at: Some(at(60)),
            revoked_at: None,
            revoked_by: None,
        };
        let caller = caller_of(Some(token.clone()), now).unwrap();
        assert_eq!((caller.actor.as_str(), caller.role), ("dora", Role::Deployer));
        assert!(is_live(&token, now));
        let later = now + std::time::Duration::from_secs(61);
        assert!(!is_live(&token, later));
        let refusal = caller_of(Some(token.clone()), later).unwrap_err().to_string();
        assert!(refusal.contains("token 7 expired at"), "{refusal}");
        let revoked = TokenInfo {
            revoked_at: Some(at(-1)),
            ..token
        };
        let refusal = caller_of(Some(revoked), now).unwrap_err().to_string();
        assert!(refusal.contains("token 7 was revoked at"), "{refusal}");
        assert!(
            caller_of(None, now)
                .unwrap_err()
                .to_string()
                .contains("unknown token")
        );
    }
}
