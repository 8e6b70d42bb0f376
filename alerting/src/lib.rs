//! Alerting: rules over the event stream and the store, with deduplication, silences and
//! notifications (e-mail, webhooks).
//!
//! Only the `[alerting]` configuration section exists so far, so that configuration files
//! written today stay valid; the rule engine is the subject of its own issue. The `alerts`
//! table is already in the store (empty), so SQL and dashboards can rely on it.

pub mod notify;

use serde::Deserialize;

/// `[alerting]` configuration. No keys are accepted yet: an unknown key is an error, as
/// everywhere else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}
