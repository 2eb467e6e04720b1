"""The suite's own structure: every test has exactly one tier, and a shared server lives exactly as long as some
test still due to run uses it (tests/servers.py: ServerUsers)."""

from types import SimpleNamespace

from .conftest import TIERS
from .servers import ServerUsers


def test_every_selected_test_has_exactly_one_tier(request):
    for item in request.session.items:
        if item.nodeid.startswith("tests/"):
            tiers = [name for name in TIERS if item.get_closest_marker(name)]
            assert len(tiers) == 1, (item.nodeid, tiers)
    assert request.node.get_closest_marker("unit") and request.node.get_closest_marker("fast")


def _item(nodeid: str, *fixture_functions):
    defs = {f"f{i}": [SimpleNamespace(func=func)] for i, func in enumerate(fixture_functions)}
    return SimpleNamespace(nodeid=nodeid, _fixtureinfo=SimpleNamespace(name2fixturedefs=defs))


def test_a_shared_server_stops_after_its_last_user_and_not_before():
    def classifier():
        pass

    def other():
        pass

    classifier.shared_key = ("sequence_classification", ())
    key, undeclared = classifier.shared_key, ("minilm", ("--x",))
    a1, a2 = _item("tests/a.py::one", classifier), _item("tests/a.py::two", other)
    b1, c1 = _item("tests/b.py::one"), _item("tests/c.py::one", classifier)
    users = ServerUsers()
    users.collected([a1, a2, b1, c1])

    users.current = "tests/b.py"  # b starts one itself (a fixture of its own): the whole module is a user
    users.used(undeclared)
    for done, needed, needed_undeclared in ((a1, True, True), (a2, True, True), (b1, True, False),
                                            (c1, False, False)):
        users.torn_down(done)
        assert users.still_needed(key) is needed, done.nodeid
        assert users.still_needed(undeclared) is needed_undeclared, done.nodeid
