"""Provisioning of the SIP lines: `python -m backend.provision [--dry-run]`.

Sets up the Twilio Elastic SIP trunk and LiveKit's SIP trunks and dispatch rule, finding each
resource by name before creating it. Nothing here imports Flask or the agent.
"""
