"""Every call to LiveKit's server API: dialing out and SIP transfers (`sip.py`), hanging up and
the call's room (`rooms.py`), the agent dispatch of outbound calls (`dispatch.py`).

Nothing under `backend/store/` or `backend/calls/` imports this package; the API loads it only
when a call is placed."""
