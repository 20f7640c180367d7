"""The database: the store (SQLite or Postgres), its schema and migrations, hourly rollups and
retention (rollups, upkeep), the one writer, and the pushed heartbeats and throttle pauses kept
across restarts."""
