"""Service-level agreements: schedules, policies and the metrics they target.

Pure domain code: the calculator (`schedule`, `metrics`) does no I/O and reads no clock; the
policy and schedule aggregates (`policy`) are event-sourced like tickets.
"""
