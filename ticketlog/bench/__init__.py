"""`ticketlog bench`: each cost measured beside a baseline in the same run, as a ratio."""

# Row groups, for `ticketlog bench --only GROUP`.
GROUPS = ("append", "http", "rebuild", "erase", "relay", "sla", "audit", "keys")
