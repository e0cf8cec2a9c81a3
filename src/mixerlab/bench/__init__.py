"""The testbed: sweeps (compare), the results store, cost measurements and the report.

Submodules import their heavy dependencies (SQLAlchemy, matplotlib) only when used.
"""
