"""`make bench`: what the gateway adds to a call, measured against direct calls in the same run."""
