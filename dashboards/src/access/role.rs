//! Roles, each including the one before: what an operator may do.

use serde::{Deserialize, Serialize};

/// An operator's role. The order is the order of privilege: a route that needs `Analyst`
/// lets `Responder` and `Admin` in too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The console, sessions and users' activity.
    Viewer,
    /// + search, SQL, exports, acknowledging alerts.
    Analyst,
    /// + silences, playbook runs, revocation, approvals.
    Responder,
    /// + accounts and tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Analyst, Role::Responder, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(name: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "unknown role {:?}: one of viewer, analyst, responder, admin",
                    name.chars().take(64).collect::<String>()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_by_privilege_and_unknown_names_are_refused() {
        assert!(Role::Viewer < Role::Analyst && Role::Analyst < Role::Responder);
        assert!(Role::Responder < Role::Admin);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        for bad in ["Admin", "root", "", "admin ", "superuser"] {
            let error = bad.parse::<Role>().unwrap_err();
            assert!(error.starts_with("unknown role"), "{error}");
        }
        // In TOML and JSON too.
        let parsed: Result<Role, _> = serde_json::from_str("\"owner\"");
        assert!(parsed.is_err());
    }
}
