"""The HTTP surface: routes (server), the status page (statuspage) and the heartbeat push."""
