"""Backend of the debt-relief telephony agent: the store, the backend functions and the API."""
