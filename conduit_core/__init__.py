"""The sans-I/O protocol core: SignalR framing, handshake, negotiate and sessions.

No I/O, and no import of any other package of this project.
"""
