"""Where a study lives: Optuna's RDB storages, heartbeats, and which trials count.

- ``rdb``: SQLite, PostgreSQL and MySQL storages with heartbeats; URLs, outages in one line
- ``heartbeats``: trials whose worker stopped beating, waited out and retried; live ones left alone;
  the beats of this process's own trials
- ``optuna_private``: the only module that uses Optuna's private API, each name with why
- ``trial_states``: finished trials and those underway, as --trials counts them

May import the root modules; nothing above (no training, no search).
"""
