//! The field dictionary: every field name tunnelwatch stores, its ECS (or `vpn.*`) name and
//! the OCSF attribute it corresponds to. Storage column names are derived from it with
//! [`column_name`], so SQL users can rely on `source.ip` being the column `source_ip`.

/// One field of the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The dotted name: ECS where ECS has the field, `vpn.*` where it has none.
    pub name: &'static str,
    /// The OCSF attribute path (classes 3002 Authentication, 4001 Network Activity, 4002
    /// HTTP Activity), or "" where OCSF has none.
    pub ocsf: &'static str,
    pub description: &'static str,
}

/// The storage column name of a field: dots become underscores, `@timestamp` is `timestamp`.
pub fn column_name(field_name: &str) -> String {
    field_name.trim_start_matches('@').replace('.', "_")
}

/// Looks a field up by its column name (`source_ip` → `source.ip`).
pub fn by_column(column: &str) -> Option<&'static Field> {
    FIELDS
        .iter()
        .find(|field| column_name(field.name) == column)
}

macro_rules! fields {
    ($($name:literal, $ocsf:literal, $description:literal;)*) => {
        /// Every field, in the order the documentation lists them.
        pub const FIELDS: &[Field] = &[$(Field { name: $name, ocsf: $ocsf, description: $description }),*];
    };
}

fields! {
    "@timestamp", "time", "when the event happened (UTC)";
    "session_id", "session.uid", "the VPN session the row belongs to (tunnelwatch's own)";
    "event.id", "metadata.uid", "stable id: source id and sequence (`gw1/charon:42`)";
    "event.kind", "", "`event`, `state` or `pipeline_error`";
    "event.category", "category_uid", "`authentication`, `network`, `session`, `web`, `process`";
    "event.action", "activity_id", "what happened, e.g. `auth-failure`, `ike-sa-established`";
    "event.outcome", "status_id", "`success` or `failure`";
    "event.reason", "status_detail", "why, in the source's own words";
    "event.dataset", "metadata.log_name", "which parser produced it, e.g. `strongswan.charon`";
    "event.original", "raw_data", "the raw line or message";
    "event.start", "start_time", "start of a session or flow";
    "event.end", "end_time", "end of a session or flow (null while open)";
    "event.duration", "duration", "length in nanoseconds (ECS unit)";
    "event.created", "metadata.processed_time", "when tunnelwatch made a row (a session join correction: when it was decided; the newest wins)";
    "observer.hostname", "metadata.product.uid", "the gateway that saw it";
    "observer.product", "metadata.product.name", "e.g. `strongswan`";
    "user.name", "user.name", "the account: EAP/XAuth identity if any, else the IKE identity";
    "source.ip", "src_endpoint.ip", "the VPN client's public address (or a flow's initiator)";
    "source.port", "src_endpoint.port", "its port";
    "source.bytes", "traffic.bytes_out", "bytes the client sent";
    "source.packets", "traffic.packets_out", "packets the client sent";
    "source.geo.country_iso_code", "src_endpoint.location.country", "country of source.ip";
    "source.geo.country_name", "", "country name of source.ip";
    "source.geo.city_name", "src_endpoint.location.city", "city of source.ip";
    "source.geo.location.lat", "src_endpoint.location.lat", "latitude of source.ip (approximate)";
    "source.geo.location.lon", "src_endpoint.location.long", "longitude of source.ip (approximate)";
    "source.as.number", "src_endpoint.autonomous_system.number", "ASN of source.ip";
    "source.as.organization.name", "src_endpoint.autonomous_system.name", "AS organisation";
    "destination.ip", "dst_endpoint.ip", "the gateway address (or a flow's responder)";
    "destination.port", "dst_endpoint.port", "its port";
    "destination.bytes", "traffic.bytes_in", "bytes the client received";
    "destination.packets", "traffic.packets_in", "packets the client received";
    "network.transport", "connection_info.protocol_name", "`tcp`, `udp`, `icmp`";
    "network.bytes", "traffic.bytes", "source.bytes + destination.bytes";
    "http.request.method", "http_request.http_method", "HTTP method";
    "http.request.id", "http_request.uid", "request id from the access log";
    "http.response.status_code", "http_response.code", "HTTP status";
    "http.response.bytes", "http_response.length", "response size";
    "url.domain", "http_request.url.hostname", "Host of the request";
    "url.path", "http_request.url.path", "path of the request";
    "error.message", "status_detail", "what was wrong with a rejected input";
    "message", "message", "a human-readable summary (alerts, audit entries)";
    "rule.id", "finding_info.analytic.uid", "id of the alert rule that fired";
    "rule.name", "finding_info.analytic.name", "name of the alert rule that fired";
    "event.severity", "severity_id", "alert severity (higher is worse)";
    "user.target.name", "dst_user.name", "the user an action was aimed at (revocations)";
    "vpn.connection", "", "VPN connection (config) name, e.g. `rw-psk`";
    "vpn.ike_sa_id", "", "IKE_SA unique id on its gateway";
    "vpn.new_ike_sa_id", "", "for a rekey: the IKE_SA that replaces it";
    "vpn.child_sa", "", "CHILD_SA config name";
    "vpn.child_sa_id", "", "CHILD_SA unique id";
    "vpn.spi_in", "", "inbound SPI (hex)";
    "vpn.spi_out", "", "outbound SPI (hex)";
    "vpn.local_ts", "", "local traffic selector";
    "vpn.remote_ts", "", "remote traffic selector";
    "vpn.ike_id", "user.uid", "IKE identity (IDi) of the peer";
    "vpn.eap_id", "user.name", "EAP identity";
    "vpn.xauth_id", "user.name", "XAuth user (IKEv1)";
    "vpn.cert_subject", "certificate.subject", "peer certificate subject DN";
    "vpn.cert_serial", "certificate.serial_number", "peer certificate serial (hex)";
    "vpn.auth_method", "auth_protocol", "`psk`, `cert`, `eap-mschapv2`, `eap-radius`, `xauth`, `chap`, `pap`";
    "vpn.auth_failure", "status_code", "failure class, e.g. `psk_mismatch`, `radius_reject`";
    "vpn.virtual_ip", "src_endpoint.intermediate_ips", "the address the VPN handed the client";
    "vpn.accounting_id", "session.uid_alt", "RADIUS Acct-Session-Id";
    "vpn.state", "session.is_remote", "`active`, `closed`, `lost`";
    "vpn.terminate_cause", "", "`user_request`, `admin_reset`, `lost_service`, `timeout`, `lost` (ended while nobody listened), `other`";
    "vpn.rekey_count", "", "how many IKE rekeys the session had";
    "vpn.session_version", "", "snapshot version; the newest wins";
    "vpn.ike_sa_ids", "", "all IKE_SA unique ids of a session";
    "vpn.tcp_flags", "connection_info.tcp_flags", "TCP flags seen in a flow, either direction, OR-ed";
    "vpn.flow_end", "", "why a flow record was exported: `idle`, `active`, `tcp_end`, `evicted`, `forced`";
    "vpn.session_join", "", "how a flow or API request found its session: `matched`, `late`, `unmatched`, `not_vpn`";
    "vpn.join_table", "", "the table a session join correction applies to: `flows`, `api_requests`, or `events` (a VPN event, also in `auth_events`)";
    "vpn.audit_prev_hash", "", "hash of the previous audit entry (tamper-evident chain)";
    "vpn.audit_hash", "", "hash of this audit entry over its fields and vpn.audit_prev_hash";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for field in FIELDS {
            assert!(
                seen.insert(column_name(field.name)),
                "duplicate column for {}",
                field.name
            );
        }
    }

    #[test]
    fn crate_docs_list_every_field() {
        let docs = include_str!("lib.rs");
        for field in FIELDS {
            assert!(
                docs.contains(&format!("`{}`", field.name)),
                "lib.rs docs do not mention `{}`",
                field.name
            );
        }
    }

    #[test]
    fn column_name_examples() {
        assert_eq!(column_name("@timestamp"), "timestamp");
        assert_eq!(
            column_name("source.geo.country_iso_code"),
            "source_geo_country_iso_code"
        );
        assert_eq!(by_column("user_name").map(|f| f.name), Some("user.name"));
        assert!(by_column("nope").is_none());
    }
}
