//! Late session joins: the collector stamps each flow and API request with the VPN session
//! that held its client address, but sometimes learns better only after the row is stored
//! (the session's events arrived late, or a later session fits better). It then sends a
//! [`model::SessionJoinUpdate`], which the store keeps in the `session_joins` table like any
//! other row (WAL, Parquet in the hour of the corrected row, compaction, retention). The
//! sessionizer does the same for a VPN event (`events`, and `auth_events` for a login) it
//! stamped with a login that then became part of another session or no session at all; only
//! `session_id` is corrected there.
//!
//! Queries see the corrections through the views: while a snapshot holds corrections for
//! `flows` (or `api_requests`), that view is the table's rows outer-joined to the newest
//! correction per `event_id` (`event_created` descending, then `session_id`, `user_name`,
//! `vpn_session_join` ascending: the same whatever the arrival order, and a resent correction
//! changes nothing), with `session_id`, `user_name` and `vpn_session_join` taken from the
//! correction where there is one. The corrections are the hash table (small, read whole); the
//! rows stream past it, so `timestamp` predicates still prune the rows' hour partitions. The
//! join is on `event_id` alone (not also on `timestamp`, which would let the corrections be
//! pruned by time too): a correction whose time differed from its row's would otherwise be
//! silently ignored. Without corrections the view stays the plain union, at no cost.
//!
//! Which tables a `session_joins` segment corrects comes from its footer's column statistics
//! of `vpn_join_table` (at open) or from its rows (at flush and compaction), so deciding costs
//! no file read per query.

use std::collections::{BTreeSet, HashMap};

use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::parquet::file::metadata::ParquetMetaData;

use crate::schema::Table;
use crate::segment::Segment;

/// The tables a correction can apply to.
pub(crate) const CORRECTABLE: [Table; 4] = [
    Table::Flows,
    Table::ApiRequests,
    Table::Events,
    Table::AuthEvents,
];

/// The columns a correction replaces in `table`.
fn corrected_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Events | Table::AuthEvents => &["session_id"],
        _ => &["session_id", "user_name", "vpn_session_join"],
    }
}

/// The `vpn_join_table` value of the corrections that apply to `table` (`model::JoinTarget`):
/// a login is a row of both `events` and `auth_events`, and one correction serves both.
fn target_name(table: Table) -> &'static str {
    match table {
        Table::AuthEvents => Table::Events.name(),
        _ => table.name(),
    }
}

/// The column of `session_joins` that names the corrected table.
const TARGET_COLUMN: &str = "vpn_join_table";

fn all_correctable() -> BTreeSet<Table> {
    CORRECTABLE.into_iter().collect()
}

/// The tables the corrections in `batch` (rows of `session_joins`) apply to.
pub(crate) fn tables_in_batch(batch: &RecordBatch) -> BTreeSet<Table> {
    let Some(names) = batch
        .column_by_name(TARGET_COLUMN)
        .and_then(|column| column.as_any().downcast_ref::<StringArray>())
    else {
        return all_correctable();
    };
    CORRECTABLE
        .into_iter()
        .filter(|table| {
            names
                .iter()
                .flatten()
                .any(|name| name == target_name(*table))
        })
        .collect()
}

/// For a `session_joins` segment (one with a `vpn_join_table` column), the tables its
/// corrections may apply to, from the min/max statistics of that column: a table whose name
/// lies in some row group's range may be there. Without statistics, every table may.
pub(crate) fn tables_in_footer(parquet: &ParquetMetaData) -> Option<BTreeSet<Table>> {
    let column_idx = parquet
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|column| column.path().parts() == [TARGET_COLUMN])?;
    let mut tables = BTreeSet::new();
    for row_group in parquet.row_groups() {
        if row_group.num_rows() == 0 {
            continue;
        }
        let statistics = row_group.column(column_idx).statistics();
        let bounds = statistics.and_then(|stats| stats.min_bytes_opt().zip(stats.max_bytes_opt()));
        let Some((min, max)) = bounds else {
            return Some(all_correctable());
        };
        tables.extend(CORRECTABLE.into_iter().filter(|table| {
            let name = target_name(*table).as_bytes();
            min <= name && name <= max
        }));
    }
    Some(tables)
}

/// The tables that the corrections in `segments` apply to (a segment not in `known` may
/// correct any).
pub(crate) fn tables_in_segments<'a>(
    segments: impl IntoIterator<Item = &'a Segment>,
    known: &HashMap<String, BTreeSet<Table>>,
) -> BTreeSet<Table> {
    let mut tables = BTreeSet::new();
    for found in segments {
        match known.get(&found.key) {
            Some(found_tables) => tables.extend(found_tables),
            None => return all_correctable(),
        }
    }
    tables
}

/// The view of `table` with its corrections: `rows` is the SQL of the table's rows (the union
/// of Parquet and memory), `corrections` that of all `session_joins` rows.
pub(crate) fn corrected_view(table: Table, rows: &str, corrections: &str) -> String {
    let name = table.name();
    let target = target_name(table);
    let corrected = corrected_columns(table);
    let columns: Vec<String> = table
        .column_names()
        .into_iter()
        .map(|column| {
            if corrected.contains(&column) {
                format!(
                    "CASE WHEN _tw_fix.event_id IS NULL THEN _tw_row.{column} ELSE _tw_fix.{column} END AS {column}"
                )
            } else {
                format!("_tw_row.{column}")
            }
        })
        .collect();
    let columns = columns.join(", ");
    let fixes = corrected.join(", ");
    let order: Vec<String> = corrected
        .iter()
        .map(|column| format!("{column} ASC NULLS LAST"))
        .collect();
    let order = order.join(", ");
    // At most one correction per event: the join cannot multiply rows. The corrections are on
    // the left (the build side of the hash join), the rows on the right (streamed).
    let newest = format!(
        "SELECT event_id, {fixes} FROM (SELECT event_id, {fixes}, row_number() OVER (PARTITION BY event_id ORDER BY event_created DESC, {order}) AS _tw_rank FROM ({corrections}) WHERE {TARGET_COLUMN} = '{target}') WHERE _tw_rank = 1"
    );
    format!(
        "CREATE VIEW {name} AS SELECT {columns} FROM ({newest}) AS _tw_fix RIGHT JOIN ({rows}) AS _tw_row ON _tw_fix.event_id = _tw_row.event_id"
    )
}

#[cfg(test)]
mod tests;
