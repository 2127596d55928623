"""Fakes at the network boundary only: a Gemini Live websocket server and a LiveKit server API
(Twirp) server, both on 127.0.0.1. Everything behind them in the tests is the real code."""
