"""The REST surface: task creation, status and cancel routes, and the realtime-token route.

:mod:`simulator.rest.tasks` holds the route table the application mounts; :mod:`.views` turns a
task into each route's JSON shape; :mod:`.validation` checks create bodies; :mod:`.errors` builds
the error bodies (OpenAI-style, ProblemDetails, Conduit's ErrorResponseDto).
"""
