"""Schedules: cron expressions and intervals that push one task per tick.

``_tick`` (the tick a handler reads), ``_record`` (what storage keeps of a
schedule), ``_policy`` (which ticks are due and which of them to push: pure
functions) and ``_scheduler`` (the loop a worker runs: reads and writes
storage, pushes). Nothing is imported here, so that the driver protocol can
import ``_record`` without pulling in the backend.
"""
