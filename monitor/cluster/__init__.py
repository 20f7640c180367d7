"""Several `intmon run` processes on one Postgres database as one monitor: replicas, leases,
the division of the checks between them, and slot claims."""
