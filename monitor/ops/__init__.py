"""Running under supervision: systemd readiness and watchdog, and the dead-man's switch."""
