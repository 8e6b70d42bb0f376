//! `GET /healthz`, `GET /api/v1/health` (with details), `GET /metrics` and `GET /api/v1/stats`.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;

use crate::{ApiError, AppState};

pub async fn healthz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let stats = state.store.stats()?;
    let collector_problems = state
        .collector
        .as_ref()
        .map_or(0, |collector| collector.problems().len());
    Ok(Json(serde_json::json!({
        "status": if collector_problems > 0 { "degraded" } else { status(&stats) },
        "quarantined_segments": stats.quarantined_segments,
        "corrupt_wal_records": stats.corrupt_wal_records,
    })))
}

/// "degraded" when something was set aside or could not be indexed, else "ok".
fn status(stats: &store::StoreStats) -> &'static str {
    let degraded = stats.quarantined_segments > 0
        || stats.corrupt_wal_records > 0
        || stats.index_failures > 0
        || stats.quarantined_index;
    if degraded { "degraded" } else { "ok" }
}

/// `GET /api/v1/health`: the status with every detail behind it and what to do about it.
pub async fn detail(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let stats = state.store.stats()?;
    let mut problems = Vec::new();
    if stats.quarantined_segments > 0 {
        problems.push(format!(
            "{} unreadable Parquet segment(s) were moved to DATA/quarantine/ (their rows are not queried); see the server log, then `tunnelwatch store verify`",
            stats.quarantined_segments
        ));
    }
    if stats.corrupt_wal_records > 0 {
        problems.push(format!(
            "{} torn or corrupt write-ahead log record(s) were skipped at start (never acknowledged, so the gateways resent them)",
            stats.corrupt_wal_records
        ));
    }
    if stats.index_failures > 0 {
        problems.push(format!(
            "{} flushed segment(s) could not be indexed: they are searchable after a restart or `tunnelwatch store rebuild-index`",
            stats.index_failures
        ));
    }
    if stats.quarantined_index {
        problems.push(
            "the search index was unreadable: it was moved to DATA/quarantine/ and rebuilt from Parquet".to_owned(),
        );
    }
    let collector = state.collector.as_ref().map(|collector| {
        problems.extend(collector.problems());
        collector.detail()
    });
    let alerting = state.alerting.as_ref().map(|alerting| {
        let stats = alerting.stats();
        if let Some(error) = &stats.query_error {
            problems.push(format!("a query rule fails: {error}"));
        }
        if let Some(error) = &stats.rules_reload_error {
            problems.push(format!(
                "the changed alert rules were refused, the previous ones stay in force: {error}"
            ));
        }
        serde_json::json!({
            "rules": stats.rules,
            "rules_loaded_at": stats.rules_loaded_at,
            "rules_reload_error": stats.rules_reload_error,
            "query_runs": stats.query_runs,
            "query_failures": stats.query_failures,
            "query_error": stats.query_error,
            "open_alerts": stats.open_alerts,
            "events_shed": stats.events_shed,
            "lag_ms": stats.lag_ms,
            "rows_pending": stats.rows_pending,
        })
    });
    let store_status = status(&stats);
    let status = if problems.is_empty() {
        store_status
    } else {
        "degraded"
    };
    Ok(Json(serde_json::json!({
        "status": status,
        "problems": problems,
        "collector": collector,
        "alerting": alerting,
        "store": {
            "segments": stats.segments,
            "buffered_events": stats.buffered_events,
            "buffered_sessions": stats.buffered_sessions,
            "open_sessions": stats.open_sessions,
            "indexed_events": stats.indexed_events,
            "quarantined_segments": stats.quarantined_segments,
            "corrupt_wal_records": stats.corrupt_wal_records,
            "index_failures": stats.index_failures,
            "quarantined_index": stats.quarantined_index,
            "running_queries": stats.running_queries,
            "refused_queries": stats.refused_queries,
        },
    })))
}

/// `GET /metrics`: the same figures in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    use crate::{Metric, MetricKind::Gauge};
    let stats = state.store.stats()?;
    let gauge = |name, help, value| Metric {
        name,
        help,
        kind: Gauge,
        value,
    };
    let mut metrics = vec![
        gauge(
            "tunnelwatch_store_segments",
            "Parquet segments in the store",
            stats.segments as u64,
        ),
        gauge(
            "tunnelwatch_store_buffered_events",
            "Events accepted and not yet in Parquet",
            stats.buffered_events as u64,
        ),
        gauge(
            "tunnelwatch_store_open_sessions",
            "VPN sessions open at the newest snapshot",
            stats.open_sessions as u64,
        ),
        gauge(
            "tunnelwatch_store_indexed_events",
            "Events in the full-text index",
            stats.indexed_events,
        ),
        gauge(
            "tunnelwatch_store_quarantined_segments",
            "Unreadable segments moved to quarantine",
            stats.quarantined_segments as u64,
        ),
        gauge(
            "tunnelwatch_store_corrupt_wal_records",
            "Corrupt WAL records skipped at start",
            stats.corrupt_wal_records,
        ),
        gauge(
            "tunnelwatch_store_index_failures",
            "Flushed segments that could not be indexed",
            stats.index_failures,
        ),
        gauge(
            "tunnelwatch_store_quarantined_index",
            "1 if the search index was quarantined and rebuilt",
            u64::from(stats.quarantined_index),
        ),
        gauge(
            "tunnelwatch_store_running_queries",
            "SQL queries running now",
            stats.running_queries as u64,
        ),
        Metric {
            name: "tunnelwatch_store_refused_queries_total",
            help: "SQL queries refused (503) because max_concurrent_queries ran already",
            kind: crate::MetricKind::Counter,
            value: stats.refused_queries,
        },
    ];
    metrics.extend(access_metrics(&state.access));
    if let Some(collector) = &state.collector {
        metrics.extend(collector.metrics());
    }
    let mut body = String::new();
    for Metric {
        name,
        help,
        kind,
        value,
    } in metrics
    {
        let kind = kind.as_str();
        body.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    if let Some(alerting) = &state.alerting {
        body.push_str(&alerting_metrics(&alerting.stats()));
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    ))
}

/// The alerting service's figures, with labels (severity, receiver).
fn alerting_metrics(stats: &alerting::Stats) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    let plain = |value: u64| vec![(String::new(), value)];
    family(
        "tunnelwatch_alerts_open",
        "gauge",
        "Alerts firing or acknowledged, by severity",
        stats
            .open_by_severity
            .iter()
            .map(|(severity, n)| (format!("{{severity=\"{severity}\"}}"), *n))
            .collect(),
    );
    family(
        "tunnelwatch_alerts_fired_total",
        "counter",
        "Alerts fired since the start",
        plain(stats.fired),
    );
    family(
        "tunnelwatch_alerting_events_total",
        "counter",
        "Events the rules evaluated",
        plain(stats.events),
    );
    family(
        "tunnelwatch_alerting_events_shed_total",
        "counter",
        "Events not evaluated because the engine's queue was full",
        plain(stats.events_shed),
    );
    family(
        "tunnelwatch_alerting_lag_milliseconds",
        "gauge",
        "How long the newest batch waited for the engine",
        plain(stats.lag_ms),
    );
    family(
        "tunnelwatch_alerting_rows_pending",
        "gauge",
        "Alert rows waiting to be stored again",
        plain(stats.rows_pending),
    );
    family(
        "tunnelwatch_alerting_evicted_groups_total",
        "counter",
        "Rule groups dropped from memory beyond max_groups_per_rule",
        plain(stats.evicted_groups),
    );
    family(
        "tunnelwatch_notifications_silenced_total",
        "counter",
        "Pages a silence muted",
        plain(stats.pages_silenced),
    );
    family(
        "tunnelwatch_notifications_inhibited_total",
        "counter",
        "Pages muted while an open alert that covers them fired (inhibition)",
        plain(stats.pages_inhibited),
    );
    family(
        "tunnelwatch_notifications_repeated_total",
        "counter",
        "Pages sent again for firing alerts nobody acknowledged (repeat_interval)",
        plain(stats.repeats),
    );
    family(
        "tunnelwatch_alerting_escalations_total",
        "counter",
        "Firing alerts not acknowledged in time, escalated to the next step's receivers",
        plain(stats.escalations),
    );
    family(
        "tunnelwatch_alerting_events_future_total",
        "counter",
        "Events dated over 5 minutes ahead of the wall clock, not evaluated",
        plain(stats.events_future),
    );
    family(
        "tunnelwatch_notifications_enqueue_failures_total",
        "counter",
        "Pages that could not be queued (the outbox full or failing)",
        plain(stats.enqueue_failures),
    );
    let per_receiver = |pick: fn(&alerting::notify::outbox::Counters) -> u64| {
        stats
            .notifications
            .iter()
            .map(|counters| {
                (
                    format!("{{receiver=\"{}\"}}", counters.receiver),
                    pick(counters),
                )
            })
            .collect::<Vec<_>>()
    };
    family(
        "tunnelwatch_notifications_sent_total",
        "counter",
        "Notifications delivered",
        per_receiver(|c| c.sent),
    );
    family(
        "tunnelwatch_notifications_failed_total",
        "counter",
        "Delivery attempts that failed and will be retried",
        per_receiver(|c| c.failed),
    );
    family(
        "tunnelwatch_notifications_dead_lettered_total",
        "counter",
        "Notifications refused for good, kept in the dead-letter file",
        per_receiver(|c| c.dead_lettered),
    );
    family(
        "tunnelwatch_notifications_queued",
        "gauge",
        "Notifications waiting in the outbox",
        per_receiver(|c| c.queued),
    );
    out
}

fn access_metrics(access: &crate::access::Access) -> Vec<crate::Metric> {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = access.counters();
    let counter = |name, help, value: &std::sync::atomic::AtomicU64| crate::Metric {
        name,
        help,
        kind: crate::MetricKind::Counter,
        value: value.load(Relaxed),
    };
    let (throttled_keys, evicted_keys) = access.n_throttled_keys();
    vec![
        counter(
            "tunnelwatch_logins_succeeded_total",
            "Operators signed in",
            &counters.logins_ok,
        ),
        counter(
            "tunnelwatch_logins_failed_total",
            "Sign-ins refused: wrong name, password or code, disabled account, missing second factor",
            &counters.logins_failed,
        ),
        counter(
            "tunnelwatch_logins_throttled_total",
            "Sign-ins refused without a check because of earlier failures (429)",
            &counters.logins_throttled,
        ),
        counter(
            "tunnelwatch_requests_denied_total",
            "Requests refused for want of a credential or a role (401, 403)",
            &counters.denied_requests,
        ),
        counter(
            "tunnelwatch_ingest_refused_identity_total",
            "Ingest batches refused: sent in another gateway's name or with its sources",
            &counters.ingest_refused_identity,
        ),
        counter(
            "tunnelwatch_ingest_refused_sequence_total",
            "Ingest batches refused: a sequence leaping far past what is stored",
            &counters.ingest_refused_sequence,
        ),
        crate::Metric {
            name: "tunnelwatch_console_sessions",
            help: "Signed-in console sessions",
            kind: crate::MetricKind::Gauge,
            value: access.n_sessions() as u64,
        },
        crate::Metric {
            name: "tunnelwatch_login_throttled_keys",
            help: "Accounts and addresses with failed sign-ins remembered",
            kind: crate::MetricKind::Gauge,
            value: throttled_keys as u64,
        },
        counter_value(
            "tunnelwatch_login_throttle_evicted_total",
            "Failed-sign-in records dropped to stay within memory",
            evicted_keys,
        ),
    ]
}

fn counter_value(name: &'static str, help: &'static str, value: u64) -> crate::Metric {
    crate::Metric {
        name,
        help,
        kind: crate::MetricKind::Counter,
        value,
    }
}

pub async fn stats(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let stats = state.store.stats()?;
    let counts = state
        .store
        .query_json(
            "SELECT \
               (SELECT count(*) FROM sessions WHERE vpn_state = 'active') AS active_sessions, \
               (SELECT count(*) FROM sessions) AS sessions, \
               (SELECT count(*) FROM auth_events WHERE event_outcome = 'failure') AS auth_failures, \
               (SELECT count(*) FROM auth_events WHERE event_outcome = 'success') AS auth_successes, \
               (SELECT count(*) FROM events WHERE event_kind = 'pipeline_error') AS rejected_lines",
        )
        .await?;
    let mut body = counts.into_iter().next().unwrap_or_default();
    body.insert("buffered_events".to_owned(), stats.buffered_events.into());
    body.insert("segments".to_owned(), stats.segments.into());
    Ok(Json(serde_json::Value::Object(body)))
}
