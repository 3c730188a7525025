"""`ticketlog bench`: each cost measured beside a baseline in the same run, as a ratio."""
