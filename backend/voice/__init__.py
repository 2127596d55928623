"""The voice agent's building blocks: the Gemini Live model, the call's tools and state, the call
script loader and the hang-up path. `telephony_agent.py` at the repository root wires them into a
LiveKit worker; nothing here touches the network or loads a model at import time."""
