use datafusion::logical_expr::{col, lit};
use model::Outcome;

use super::*;
use crate::tests::{auth_event, config, count};
use crate::{Store, segment};

fn ts(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some("UTC".into()),
    ))
}

#[test]
fn bounds_come_from_timestamp_predicates_only() {
    let t = col("timestamp");
    assert_eq!(time_bounds(&[]), (None, None));
    assert_eq!(time_bounds(&[t.clone().gt_eq(ts(10))]), (Some(10), None));
    // Strict bounds exclude the instant (stored times are whole microseconds).
    assert_eq!(time_bounds(&[t.clone().lt(ts(20))]), (None, Some(19)));
    assert_eq!(
        time_bounds(&[
            t.clone().gt(ts(10)),
            t.clone().lt_eq(ts(20)),
            t.clone().gt(ts(15))
        ]),
        (Some(16), Some(20))
    );
    assert_eq!(time_bounds(&[t.clone().eq(ts(7))]), (Some(7), Some(7)));
    // The literal on the left.
    assert_eq!(time_bounds(&[ts(30).gt(t.clone())]), (None, Some(29)));
    assert_eq!(
        time_bounds(&[t.clone().between(ts(1), ts(2))]),
        (Some(1), Some(2))
    );
    // Other units.
    assert_eq!(
        time_bounds(&[t
            .clone()
            .gt_eq(lit(ScalarValue::TimestampSecond(Some(3), None)))]),
        (Some(3_000_000), None)
    );
    // Nanoseconds between two microseconds round inward only where no stored time is lost:
    // a row at 1 µs is < 1.5 µs and <= 1.5 µs; one at 2 µs is > and >= 1.5 µs.
    let nanos = |v: i64| lit(ScalarValue::TimestampNanosecond(Some(v), None));
    assert_eq!(time_bounds(&[t.clone().lt(nanos(1_500))]), (None, Some(1)));
    assert_eq!(
        time_bounds(&[t.clone().lt_eq(nanos(1_500))]),
        (None, Some(1))
    );
    assert_eq!(time_bounds(&[t.clone().gt(nanos(1_500))]), (Some(2), None));
    assert_eq!(
        time_bounds(&[t.clone().gt_eq(nanos(1_500))]),
        (Some(2), None)
    );
    assert_eq!(time_bounds(&[t.clone().lt(nanos(2_000))]), (None, Some(1)));
    assert_eq!(
        time_bounds(&[t.clone().between(nanos(1_500), nanos(2_500))]),
        (Some(2), Some(2))
    );
    // What cannot bound time: other columns, OR, NOT BETWEEN, non-literals, nulls.
    assert_eq!(time_bounds(&[col("event_start").gt(ts(10))]), (None, None));
    assert_eq!(
        time_bounds(&[t.clone().gt(ts(10)).or(t.clone().lt(ts(5)))]),
        (None, None)
    );
    assert_eq!(
        time_bounds(&[t.clone().not_between(ts(1), ts(2))]),
        (None, None)
    );
    assert_eq!(
        time_bounds(&[t.clone().gt(col("event_start"))]),
        (None, None)
    );
    assert_eq!(
        time_bounds(&[t.gt(lit(ScalarValue::TimestampMicrosecond(None, None)))]),
        (None, None)
    );
}

#[test]
fn a_segment_may_hold_what_overlaps_its_hour() {
    let hour = 5 * segment::HOUR_MICROS;
    let partitioned = Segment {
        hour: Some(hour),
        key: "x".into(),
    };
    assert!(partitioned.may_hold(None, None));
    assert!(partitioned.may_hold(Some(hour), Some(hour)));
    assert!(partitioned.may_hold(Some(hour + segment::HOUR_MICROS - 1), None));
    assert!(!partitioned.may_hold(Some(hour + segment::HOUR_MICROS), None));
    assert!(!partitioned.may_hold(None, Some(hour - 1)));
    let legacy = Segment {
        hour: None,
        key: "y".into(),
    };
    assert!(legacy.may_hold(Some(i64::MAX), Some(i64::MIN)));
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).unwrap().to_string()
}

/// The parquet files the plan of `sql` reads.
async fn files_read(store: &Store, sql: &str) -> usize {
    let plan = store.query(&format!("EXPLAIN {sql}")).await.unwrap();
    plan.render(crate::OutputFormat::Csv)
        .unwrap()
        .matches(".parquet")
        .count()
}

#[tokio::test]
async fn a_time_predicate_reads_only_the_hours_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    // auth_event(seq) happens at 1_795_000_000 + seq seconds: three different hours.
    let base = 1_795_000_000;
    store
        .append(
            vec![
                auth_event(0, "a", Outcome::Success),
                auth_event(3_600, "b", Outcome::Success),
                auth_event(7_200, "c", Outcome::Failure),
            ],
            vec![],
        )
        .unwrap();
    store.flush().unwrap();
    let hours: Vec<_> = segment::list_local(dir.path(), "auth_events")
        .unwrap()
        .into_iter()
        .map(|found| {
            found
                .path
                .strip_prefix(dir.path().join("tables/auth_events"))
                .unwrap()
                .parent()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        hours,
        [
            "date=2026-11-18/hour=11",
            "date=2026-11-18/hour=12",
            "date=2026-11-18/hour=13"
        ]
    );
    // Rows arriving after the flush are in memory, and still seen.
    store
        .append(vec![auth_event(7_300, "d", Outcome::Success)], vec![])
        .unwrap();

    let from_second = format!(
        "SELECT count(*) FROM auth_events WHERE timestamp >= TIMESTAMP '{}'",
        rfc3339(base + 3_600)
    );
    assert_eq!(count(&store, &from_second).await, 3);
    assert_eq!(files_read(&store, &from_second).await, 2);
    let last_hour = format!(
        "SELECT count(*) FROM auth_events WHERE timestamp BETWEEN TIMESTAMP '{}' AND TIMESTAMP '{}'",
        rfc3339(base + 7_200),
        rfc3339(base + 7_300)
    );
    assert_eq!(count(&store, &last_hour).await, 2);
    assert_eq!(files_read(&store, &last_hour).await, 1);
    let before_everything = format!(
        "SELECT count(*) FROM auth_events WHERE TIMESTAMP '{}' > timestamp",
        rfc3339(base - 7_200)
    );
    assert_eq!(count(&store, &before_everything).await, 0);
    assert_eq!(files_read(&store, &before_everything).await, 0);
    let all = "SELECT count(*) FROM auth_events WHERE user_name <> 'nobody'";
    assert_eq!(count(&store, all).await, 4);
    assert_eq!(files_read(&store, all).await, 3);
}
