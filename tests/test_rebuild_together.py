"""A rebuild reads the log once for all views, across many batches, and gives the same views."""

from __future__ import annotations

from ticketlog.config import Settings
from ticketlog.runtime import Runtime


def test_rebuild_in_small_batches_gives_the_views_catch_up_gave(settings: Settings) -> None:
    rt = Runtime.open(settings)
    try:
        customer = rt.desk.register_user("customer", "Ada Lovelace", "ada@example.com")
        tickets = [rt.desk.open_ticket(customer, f"Issue {i}", "It broke") for i in range(3)]
        for ticket in tickets:
            rt.desk.add_comment(ticket, customer, "Any news?", public=True)
        rt.runner.catch_up()
        before = [rt.queries.ticket(str(t)) for t in tickets], rt.queries.user(str(customer))

        rt.runner.rebuild_batch_size = 2  # 7 events: four batches, the last one short
        assert rt.runner.rebuild() == 7
        after = [rt.queries.ticket(str(t)) for t in tickets], rt.queries.user(str(customer))
        assert after == before
        assert all(s.position == s.head for s in rt.runner.status())
    finally:
        rt.close()
