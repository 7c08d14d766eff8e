"""`freshet`: the operators' command-line tool (talks to the gateway over HTTP)."""
