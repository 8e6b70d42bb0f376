//! Playbooks: response actions (terminate SAs, revoke certificates, disable accounts, block
//! addresses) planned, approved, executed and audited.
//!
//! Only the `[playbooks]` configuration section exists so far, so that configuration files
//! written today stay valid; the actions are the subject of their own issue. The `audit_log`
//! table is already in the store (empty).

use serde::Deserialize;

/// `[playbooks]` configuration. No keys are accepted yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}
