"""Every metric intmon exports: `families` counts, `computed` derives at scrape time,
`values` holds the numbers and `exposition` writes them in the Prometheus text format."""

from monitor.metrics.computed import CHECK_STATES, Firing, SignalCollector
from monitor.metrics.families import Metrics

__all__ = ["CHECK_STATES", "Firing", "Metrics", "SignalCollector"]
