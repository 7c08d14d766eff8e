"""The gateway's service functions. REST routes, GraphQL resolvers and the web UI call these,
never the tables directly, so every way in applies the same rules and error codes.

Each function takes a unit of work and a `Caller` (who asks, and how to stamp the events the
change implies) and commits its own transaction.
"""
