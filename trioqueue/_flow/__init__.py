"""Workflows: ``Workflow`` (sequential steps) and ``DagFlow`` (a DAG), run as tasks."""
