"""HTTP handlers: each turns one request into a call of a feature's use cases (``farmsync.<feature>.service``).

A handler reads what the caller sent through :class:`farmsync.web.call.Call` and returns what the use case
returned; the route table (farmsync.web.app) says which path reaches it and who may call it. Use cases are
imported inside each handler, so a function target answers ``/health`` without loading a feature it does not
serve (cold start, #17).
"""
