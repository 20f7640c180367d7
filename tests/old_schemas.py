"""Schemas of earlier intmon versions, as raw SQL: databases to upgrade in tests.

Written for SQLite, as those versions created them; `for_postgres` gives the same schema as they
created it on Postgres (a serial id, no WITHOUT ROWID). Booleans are written '1' and '0', which
both read as true and false."""

VERSION_1 = """
CREATE TABLE runs (id INTEGER NOT NULL PRIMARY KEY, "check" VARCHAR NOT NULL, ts FLOAT NOT NULL,
    ok BOOLEAN NOT NULL, error_class VARCHAR, status INTEGER, latency FLOAT,
    reason VARCHAR NOT NULL, signals VARCHAR NOT NULL);
CREATE INDEX ix_runs_check_ts ON runs ("check", ts);
CREATE TABLE deprecations ("check" VARCHAR NOT NULL PRIMARY KEY, first_seen FLOAT NOT NULL,
    last_seen FLOAT NOT NULL, deprecated_at FLOAT, sunset_at FLOAT, links VARCHAR NOT NULL,
    sunset_links VARCHAR NOT NULL, message VARCHAR, active BOOLEAN NOT NULL);
CREATE TABLE meta ("key" VARCHAR NOT NULL PRIMARY KEY, value VARCHAR NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
"""

VERSION_2 = (
    VERSION_1.replace("'1');", "'2');")
    + """
CREATE TABLE rollups ("check" VARCHAR NOT NULL, hour INTEGER NOT NULL, count INTEGER NOT NULL,
    failures INTEGER NOT NULL, rate_limited INTEGER NOT NULL, timed INTEGER NOT NULL,
    p50 FLOAT, p95 FLOAT, p99 FLOAT, p95_ok FLOAT, PRIMARY KEY ("check", hour)) WITHOUT ROWID;
INSERT INTO rollups VALUES ('api', 3600, 60, 1, 0, 59, 0.1, 0.2, 0.3, 0.19);
INSERT INTO rollups VALUES ('old-api', 0, 2, 0, 0, 2, 0.5, 0.5, 0.5, 0.5);
INSERT INTO meta VALUES ('rolled_up_until', '7200');
"""
)

# Check names interned, runs clustered by (check_id, ts); no request ids yet.
VERSION_3 = """
CREATE TABLE checks (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR NOT NULL UNIQUE);
CREATE TABLE runs (check_id INTEGER NOT NULL, ts FLOAT NOT NULL, seq INTEGER DEFAULT '0' NOT NULL,
    ok BOOLEAN NOT NULL, error_class VARCHAR, status INTEGER, latency FLOAT, reason VARCHAR,
    signals VARCHAR, PRIMARY KEY (check_id, ts, seq)) WITHOUT ROWID;
CREATE TABLE deprecations ("check" VARCHAR NOT NULL PRIMARY KEY, first_seen FLOAT NOT NULL,
    last_seen FLOAT NOT NULL, deprecated_at FLOAT, sunset_at FLOAT, links VARCHAR NOT NULL,
    sunset_links VARCHAR NOT NULL, message VARCHAR, active BOOLEAN NOT NULL);
CREATE TABLE rollups (check_id INTEGER NOT NULL, hour INTEGER NOT NULL, count INTEGER NOT NULL,
    failures INTEGER NOT NULL, rate_limited INTEGER NOT NULL, timed INTEGER NOT NULL,
    p50 FLOAT, p95 FLOAT, p99 FLOAT, p95_ok FLOAT, PRIMARY KEY (check_id, hour)) WITHOUT ROWID;
CREATE TABLE meta ("key" VARCHAR NOT NULL PRIMARY KEY, value VARCHAR NOT NULL);
INSERT INTO meta VALUES ('schema_version', '3');
INSERT INTO checks VALUES (1, 'api');
INSERT INTO runs VALUES (1, 7300.0, 0, '1', NULL, 200, 0.05, NULL, NULL);
INSERT INTO runs VALUES (1, 7360.0, 0, '0', 'http_5xx', 503, 0.5, 'HTTP 503 (expected 2xx)', NULL);
"""

# Runs carry the request id of a failure; no learned response shapes yet (alert states, with
# their cause since version 5, are made on open when missing).
VERSION_5 = (
    VERSION_3.replace("'3');", "'5');")
    + """
ALTER TABLE runs ADD COLUMN request_id VARCHAR;
CREATE TABLE heartbeats ("check" VARCHAR NOT NULL PRIMARY KEY, last_success FLOAT,
    count INTEGER, last_failure FLOAT, message VARCHAR);
"""
)


def for_postgres(script: str) -> str:
    return script.replace(" WITHOUT ROWID", "").replace(
        "id INTEGER NOT NULL PRIMARY KEY", "id SERIAL PRIMARY KEY"
    )
