"""Control plane, host and CORS guards, and poison inputs."""
