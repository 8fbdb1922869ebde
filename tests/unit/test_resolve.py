import pytest

from shared.domain.devices import choose
from shared.errors import InvalidRequest


def machine(mid: str, health: str = "Active", onboarding: str = "Onboarded") -> dict[str, str]:
    return {
        "id": mid * 40,
        "computerDnsName": "pc.contoso.com",
        "healthStatus": health,
        "onboardingStatus": onboarding,
    }


def test_one_candidate_is_the_machine() -> None:
    assert choose([machine("a")], "x") == (machine("a"), None)


def test_the_only_active_onboarded_record_beats_stale_ones_and_says_so() -> None:
    picked, note = choose([machine("a", "Inactive"), machine("b"), machine("c", "Inactive")], "x")
    assert picked["id"] == "b" * 40
    assert note is not None and "a" * 40 in note and "c" * 40 in note


@pytest.mark.parametrize(
    "candidates",
    [
        [machine("a"), machine("b")],  # two live records
        [machine("a"), machine("b", onboarding="CanBeOnboarded")],  # the other is Active too
        [machine("a", "Inactive"), machine("b", "Inactive")],  # none live
    ],
)
def test_otherwise_several_candidates_are_ambiguous(candidates: list[dict[str, str]]) -> None:
    with pytest.raises(InvalidRequest, match="AmbiguousDevice"):
        choose(candidates, "x")


def test_no_candidate_is_device_not_found() -> None:
    with pytest.raises(InvalidRequest, match="DeviceNotFound"):
        choose([], "x")
