"""Contracts shared by every workload and by the infrastructure: one source of truth for names and shapes."""
