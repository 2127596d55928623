"""The rules of a call, without LiveKit or Flask: phone numbers (`numbers.py`), calling hours
(`hours.py`), the do-not-call list (`dnc.py`), outbound calls and their gates (`outbound.py`),
what a SIP dial or transfer came to (`sip_results.py`), carrier callbacks (`carrier.py`) and
call leases (`leases.py`). Reached through the backend functions (`backend/backend_agent.py`)."""
