"""Budgets for agents, teams, users and the organization, fed by agent usage events."""
