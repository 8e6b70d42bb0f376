//! Where an address is: [`Geo`], filled by the collector's enrichment.

use serde::{Deserialize, Serialize};

/// ECS `*.geo.*` and `*.as.*` for one address. Every field is optional: a private address or
/// a missing database gives an empty `Geo`, never an error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Geo {
    /// `source.geo.country_iso_code`, e.g. `DE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_iso_code: Option<String>,
    /// `source.geo.country_name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_name: Option<String>,
    /// `source.geo.city_name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city_name: Option<String>,
    /// `source.geo.location.lat` / `.lon`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    /// `source.as.number`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// `source.as.organization.name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_organization: Option<String>,
}
