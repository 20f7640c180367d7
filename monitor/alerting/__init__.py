"""Alerts: rule evaluation (rules), the pure state machine (machine), the runtime that
drives them (runtime.Alerter), the durable outbox, delivery through Apprise (notify), silences."""
