//! Partition pruning from time predicates: the Parquet part of each table is a
//! [`TimePrunedParquet`], which keeps only the hour partitions a query's `timestamp`
//! predicates can match before DataFusion opens any file. Row-group and page pruning inside
//! the files that remain is DataFusion's own (statistics and page index, see
//! [`crate::segment`]).
//!
//! Predicates on `timestamp` are the ones the optimizer pushes down to the scan, already
//! split at `AND` and with constant expressions folded: `timestamp >= '2026-11-25T09:00:00Z'`,
//! `timestamp < now() - interval '1 hour'`, `timestamp BETWEEN … AND …`, `timestamp = …`.
//! Anything else keeps every partition (pruning is an optimisation, never a filter: DataFusion
//! still applies every predicate to the rows).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::ExecutionPlan;

use crate::segment::Segment;
use crate::storage::Storage;

/// The Parquet segments of one table, pruned by time at scan.
#[derive(Debug)]
pub(crate) struct TimePrunedParquet {
    schema: SchemaRef,
    storage: Arc<Storage>,
    segments: Vec<Segment>,
}

impl TimePrunedParquet {
    pub(crate) fn new(
        schema: SchemaRef,
        storage: Arc<Storage>,
        segments: Vec<Segment>,
    ) -> TimePrunedParquet {
        TimePrunedParquet {
            schema,
            storage,
            segments,
        }
    }

    /// The segments a scan with these filters must read.
    pub(crate) fn segments_for(&self, filters: &[Expr]) -> Vec<&Segment> {
        let (lower, upper) = time_bounds(filters);
        self.segments
            .iter()
            .filter(|segment| segment.may_hold(lower, upper))
            .collect()
    }
}

#[async_trait]
impl TableProvider for TimePrunedParquet {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Inexact: we see them (to prune) and DataFusion still applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let segments = self.segments_for(filters);
        if segments.is_empty() {
            let empty = MemTable::try_new(self.schema.clone(), vec![vec![]])?;
            return empty.scan(state, projection, filters, limit).await;
        }
        let urls = segments
            .iter()
            .map(|segment| ListingTableUrl::parse(self.storage.scan_url(&segment.key)))
            .collect::<DfResult<Vec<_>>>()?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(self.schema.clone());
        ListingTable::try_new(config)?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// The tightest `[lower, upper]` (microseconds, inclusive) the `timestamp` predicates among
/// `filters` allow; `None` where a side is open.
pub(crate) fn time_bounds(filters: &[Expr]) -> (Option<i64>, Option<i64>) {
    let mut lower: Option<i64> = None;
    let mut upper: Option<i64> = None;
    let mut raise = |bound: i64| lower = Some(lower.map_or(bound, |known| known.max(bound)));
    let mut lower_to = |bound: i64| upper = Some(upper.map_or(bound, |known| known.min(bound)));
    for filter in filters {
        match filter {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, value) = match (is_timestamp(left), is_timestamp(right)) {
                    (true, false) => (*op, micros(right)),
                    // `'…' < timestamp` is `timestamp > '…'`.
                    (false, true) => match op.swap() {
                        Some(swapped) => (swapped, micros(left)),
                        None => continue,
                    },
                    _ => continue,
                };
                let Some(value) = value else { continue };
                let value: Micros = value;
                match op {
                    // Stored times are whole microseconds: strict bounds exclude the
                    // instant itself (`timestamp < '02:00'` does not open hour 02), and a
                    // finer literal rounds inward only where no stored time can be lost.
                    Operator::Gt => raise(value.floor.saturating_add(1)),
                    Operator::GtEq if value.exact => raise(value.floor),
                    Operator::GtEq => raise(value.floor.saturating_add(1)),
                    Operator::Lt if value.exact => lower_to(value.floor.saturating_sub(1)),
                    Operator::Lt | Operator::LtEq => lower_to(value.floor),
                    Operator::Eq => {
                        raise(value.floor);
                        lower_to(value.floor);
                    }
                    _ => {}
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_timestamp(expr) => {
                if let Some(low) = micros(low) {
                    raise(low.floor + i64::from(!low.exact));
                }
                if let Some(high) = micros(high) {
                    lower_to(high.floor);
                }
            }
            _ => {}
        }
    }
    (lower, upper)
}

fn is_timestamp(expr: &Expr) -> bool {
    match expr {
        Expr::Column(column) => column.name == "timestamp",
        // A cast of the column keeps its order for the casts the planner inserts here.
        Expr::Cast(cast) => is_timestamp(&cast.expr),
        Expr::TryCast(cast) => is_timestamp(&cast.expr),
        _ => false,
    }
}

/// A literal point in time in whole microseconds: rounded down, and whether that was exact.
#[derive(Debug, Clone, Copy)]
struct Micros {
    floor: i64,
    exact: bool,
}

fn micros(expr: &Expr) -> Option<Micros> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    let exact = |floor: Option<i64>| floor.map(|floor| Micros { floor, exact: true });
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => exact(v.checked_mul(1_000_000)),
        ScalarValue::TimestampMillisecond(Some(v), _) => exact(v.checked_mul(1_000)),
        ScalarValue::TimestampMicrosecond(Some(v), _) => exact(Some(*v)),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(Micros {
            floor: v.div_euclid(1_000),
            exact: v.rem_euclid(1_000) == 0,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
