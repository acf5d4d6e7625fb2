"""Consul's HTTP API for the agent: route table, handlers per area, ACL enforcement (see base.py)."""
