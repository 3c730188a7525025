"""Two API replicas sharing one log and one vault: an erasure on one reaches the other's cache."""

from __future__ import annotations

from api.present import Opener
from domain.user import UserKind
from ticketlog.config import Settings
from ticketlog.erasures import ErasureWatcher
from ticketlog.runtime import Runtime


def test_another_replicas_erasure_evicts_this_replicas_cached_keys(settings: Settings) -> None:
    first, second = Runtime.open(settings), Runtime.open(settings)
    try:
        user = first.desk.register_user(UserKind.CUSTOMER, "Rhoda Replica", "rhoda@rep.example")
        other = first.desk.register_user(UserKind.CUSTOMER, "Otto Other", "otto@rep.example")
        second.runner.catch_up()
        watcher = ErasureWatcher(second.desk.recorder, second.vault)

        def profile(uid: object) -> dict[str, object]:
            row = second.queries.user(str(uid))
            assert row is not None
            return Opener(second.vault).user(row)

        assert profile(user)["name"] == "Rhoda Replica"  # keys now cached in the second replica
        assert profile(other)["name"] == "Otto Other"
        assert watcher.poll_once() == 0

        first.desk.erase_subject(user)  # the first replica destroys the keys
        # Within the cache's lifetime the second replica could still open the profile ...
        view_row = second.queries.user(str(user))
        assert view_row is not None
        assert Opener(second.vault).value(view_row["name"]) == "Rhoda Replica"
        # ... until the watcher sees the erasure in the log.
        assert watcher.poll_once() == 1
        assert Opener(second.vault).value(view_row["name"]) is None
        assert profile(other)["name"] == "Otto Other"  # nobody else's keys were dropped
        assert watcher.poll_once() == 0
    finally:
        second.close()
        first.close()
