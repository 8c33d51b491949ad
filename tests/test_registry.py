"""The Registry behind every extension point."""
import pytest

from prag.errors import PragError
from prag.registry import Registry


def test_register_get_and_decorator():
    reg = Registry("widget")
    reg.register("a", 1)

    @reg.register("b")
    def b():
        return 2

    assert reg.get("a") == 1 and reg.get("b") is b and reg.names() == ["a", "b"] and "a" in reg
    assert reg.check("b") == "b"
    reg.unregister("b")
    assert "b" not in reg


@pytest.mark.parametrize("name", ["c", "", None, ["a"]])
def test_unknown_names_list_the_known_ones(name):
    reg = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(PragError, match=r"unknown widget .*: use a$"):
        reg.get(name)


def test_a_name_is_registered_once():
    reg = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
