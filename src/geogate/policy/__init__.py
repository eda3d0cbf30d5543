"""Policy: compile the policy file once, then answer `decide()` in microseconds.

`decide` is pure: the same principal, connection and request facts always give the same
`Decision`, with no I/O. The gateway and `geogate policy explain` call the very same function,
so what an operator is told is what the data path does.
"""

from geogate.policy.decide import (
    CompiledPolicy,
    Decision,
    Hop,
    RequestFacts,
    compile_policy,
)

__all__ = ["CompiledPolicy", "Decision", "Hop", "RequestFacts", "compile_policy"]
