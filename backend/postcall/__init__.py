"""After the call: durable jobs (`jobs.py`) that the call log starts — the summary and lead
(`summary.py`), the end-of-call webhook (`webhook.py`) — and the call's cost (`cost.py`).
Reached through the backend functions; no LiveKit, no Flask."""
