"""What every layer may use and that imports nothing else of intmon: clock, units, timestamps,
backoff, errors, redaction, the pydantic Model base and quantiles. Check types see only this
package."""
