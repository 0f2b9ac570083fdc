"""The contract driver as a program: client output limits, early exits, deadlines."""
