import pytest

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.registry import Registry


def test_unknown_name_lists_what_is_registered():
    with pytest.raises(ConfigError, match="registered names are") as info:
        mixerlab.create_token_mixer("attenton", dim=8)
    assert "attention" in str(info.value) and "'attenton'" in str(info.value)


def test_missing_required_option():
    with pytest.raises(ConfigError, match="dim"):
        mixerlab.create_token_mixer("attention")


def test_list_with_pattern():
    assert mixerlab.list_norms("rms*") == ["rmsnorm"]
    assert set(mixerlab.list_channel_mixers("*glu")) == {"swiglu", "geglu", "reglu"}


def test_duplicate_registration_is_refused():
    reg = Registry("thing")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: 2)


def test_create_validates_against_signature():
    reg = Registry("thing")

    @reg.register("f")
    def f(x: int, y: int = 2):
        return x + y

    assert reg.create("f", x=1) == 3
    with pytest.raises(ConfigError, match="z=5"):
        reg.create("f", x=1, z=5)
