"""Capacity and cost planning: nodes, run time and monthly cost of scoring a fleet, from measured costs."""
