"""Workflow definitions: parsing, validation, conditions and templates, and the step DAG (no I/O)."""
