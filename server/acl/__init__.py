"""ACLs: rules, policies -> authorizers, tokens and auth methods, their state and FSM handlers."""
