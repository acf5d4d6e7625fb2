"""The agent's local state: the services and checks this node owns, and what the catalog lacks."""
