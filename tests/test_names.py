"""`jaxsoc.names.suggest`: the one way every refusal suggests a name (hand-worked cases)."""
import pytest

from jaxsoc.names import suggest


@pytest.mark.parametrize("word, options, expected", [
    ("SOC-V2", ["hmarl-soc-v1", "soc-v2"], " (did you mean 'soc-v2'?)"),          # case ignored
    ("hosts", ["w_cost", "hosts_per_segment"], " (did you mean 'hosts_per_segment'?)"),  # a prefix first
    ("num_env", ["num_envs", "seed"], " (did you mean 'num_envs'?)"),
    ("rule_soar", ["rule-soar", "random"], " (did you mean 'rule-soar'?)"),       # spelling
    ("hy", ["hysteresis_window"], ""),                                            # under 3 letters: no prefix
    ("zzzz", ["rule-soar", "random"], ""),
    ("Ab", ["ab", "AB"], " (did you mean 'ab' or 'AB'?)"),                        # both spellings named
    (3, ["3", "4"], " (did you mean '3'?)"),                                       # non-strings are compared as text
])
def test_suggest(word, options, expected):
    assert suggest(word, options) == expected


def test_every_refusal_uses_the_one_format():
    """The env, the config and the registries say it the same way (they used three formats)."""
    import jaxsoc.env as soc
    from jaxsoc import algos

    messages = []
    for call in (lambda: soc.make("SOC-V2"), lambda: soc.make("soc-v2", stelth=0.1),
                 lambda: soc.make("cage4-like", max_step=9), lambda: soc.make("soc-hybrid", stelth=0.1),
                 lambda: soc.make("retail", num_warehouse=3), lambda: algos.family_of("MAPPO")):
        with pytest.raises(ValueError) as err:
            call()
        messages.append(str(err.value))
    for m in messages:
        assert "(did you mean '" in m and "Did you mean:" not in m, m
