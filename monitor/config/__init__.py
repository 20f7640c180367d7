"""The config file: loading and one-pass validation (loader, yamlsrc), the models of alert
rules and of the alerting and silences sections (rules, alerting), and reload planning."""
