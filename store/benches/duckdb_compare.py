"""DuckDB's side of the store benchmark: the same ten analyst queries over the same Parquet
files tunnelwatch wrote (read as is, Hive partitions and all). Prints a JSON list of the best
of three runs per query, in milliseconds, after one warm-up run.

Usage: python3 duckdb_compare.py DATA_DIR QUERIES_JSON (needs `pip install duckdb`)."""

import json
import sys
import time

import duckdb

data_dir, queries = sys.argv[1], json.loads(sys.argv[2])
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
for table in ("flows", "auth_events"):
    con.execute(
        f"CREATE VIEW {table} AS SELECT * FROM read_parquet("
        f"'{data_dir}/tables/{table}/*/*/*.parquet', hive_partitioning = true)"
    )
times = []
for query in queries:
    sql = query["sql"].replace("{flows}", "flows").replace("{auth}", "auth_events")
    con.execute(sql).fetchall()
    best = None
    for _ in range(3):
        started = time.perf_counter()
        con.execute(sql).fetchall()
        elapsed = (time.perf_counter() - started) * 1000.0
        best = elapsed if best is None else min(best, elapsed)
    times.append(best)
print(json.dumps(times))
