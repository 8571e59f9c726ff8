"""Commission plans: their validation and versions, and worked examples of every computation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from eventsourcing.application import Application

from domain.commission_config import (
    BinaryConfig,
    Carryover,
    InvalidCommissionPlan,
    UnilevelConfig,
    parse_commission_config,
)
from domain.commission_plan import CommissionPlan, InvalidEffectiveFrom
from domain.commission_rules import (
    Accrual,
    InvalidCommissionInput,
    Leg,
    UnknownRank,
    UplineMember,
    affiliate_accrual,
    binary_payout,
    clawback,
    evaluate_rank,
    unilevel_accruals,
    unilevel_depth_for,
)
from domain.money import InvalidAmount

HUNDRED_DOLLARS_MINOR = 10_000
JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
UNILEVEL = {"type": "unilevel", "levels_bps": [2000, 500, 400]}


def unilevel(**fields: object) -> UnilevelConfig:
    config = parse_commission_config({**UNILEVEL, **fields})
    assert isinstance(config, UnilevelConfig)
    return config


def chain(inactive: frozenset[str] = frozenset(), **depths: int) -> list[UplineMember]:
    """The seller S's upline: A sponsored S, B sponsored A, then C, then D."""
    return [
        UplineMember(name, active=name not in inactive, rank_depth=depths.get(name))
        for name in "ABCD"
    ]


def paid(accruals: list[Accrual]) -> dict[str, tuple[int, int]]:
    return {a.distributor_id: (a.level, a.amount_minor) for a in accruals}


# The worked examples -----------------------------------------------------------------


def test_a_hundred_dollar_sale_pays_the_sponsor_20_then_5_then_4_dollars_up_the_chain() -> None:
    accruals = unilevel_accruals(HUNDRED_DOLLARS_MINOR, chain(), unilevel())

    assert paid(accruals) == {"A": (1, 2000), "B": (2, 500), "C": (3, 400)}
    assert [(a.basis_minor, a.rate_bps) for a in accruals] == [
        (10_000, 2000),
        (10_000, 500),
        (10_000, 400),
    ]


def test_with_b_inactive_dynamic_compression_pays_a_20_c_5_and_d_4_dollars() -> None:
    accruals = unilevel_accruals(
        HUNDRED_DOLLARS_MINOR, chain(inactive=frozenset("B")), unilevel(compression="dynamic")
    )

    assert paid(accruals) == {"A": (1, 2000), "C": (2, 500), "D": (3, 400)}


def test_with_b_inactive_and_no_compression_b_s_5_dollars_are_not_paid() -> None:
    accruals = unilevel_accruals(
        HUNDRED_DOLLARS_MINOR, chain(inactive=frozenset("B")), unilevel(compression="none")
    )

    assert paid(accruals) == {"A": (1, 2000), "C": (3, 400)}
    assert sum(a.amount_minor for a in accruals) == 2400


# Unilevel -------------------------------------------------------------------------------------


def test_a_rank_too_shallow_for_a_level_passes_it_up_under_dynamic_compression() -> None:
    accruals = unilevel_accruals(HUNDRED_DOLLARS_MINOR, chain(C=2), unilevel(compression="dynamic"))

    assert paid(accruals) == {"A": (1, 2000), "B": (2, 500), "D": (3, 400)}


def test_a_rank_too_shallow_for_a_level_leaves_it_unpaid_without_compression() -> None:
    accruals = unilevel_accruals(HUNDRED_DOLLARS_MINOR, chain(C=2), unilevel())

    assert paid(accruals) == {"A": (1, 2000), "B": (2, 500)}


def test_level_zero_pays_an_active_seller_and_never_an_inactive_one() -> None:
    config = unilevel(level0_bps=1000)
    seller = UplineMember("S", active=True)

    with_seller = unilevel_accruals(HUNDRED_DOLLARS_MINOR, chain(), config, seller=seller)
    inactive_seller = unilevel_accruals(
        HUNDRED_DOLLARS_MINOR, chain(), config, seller=UplineMember("S", active=False)
    )

    assert paid(with_seller) == {"S": (0, 1000), "A": (1, 2000), "B": (2, 500), "C": (3, 400)}
    assert "S" not in paid(inactive_seller)


def test_a_short_upline_pays_only_the_levels_it_has() -> None:
    accruals = unilevel_accruals(HUNDRED_DOLLARS_MINOR, chain()[:1], unilevel())

    assert paid(accruals) == {"A": (1, 2000)}


def test_each_accrual_is_rounded_half_to_even() -> None:
    config = unilevel(levels_bps=[1000])

    amounts = [
        unilevel_accruals(volume_minor, chain(), config)[0].amount_minor
        for volume_minor in (15, 25, 35, 36)
    ]

    # 1.5 -> 2, 2.5 -> 2, 3.5 -> 4, 3.6 -> 4
    assert amounts == [2, 2, 4, 4]


def test_rounding_never_pays_more_than_the_sum_of_the_level_rates() -> None:
    # Each 25% of 6 is 1.5, rounded to 2; three of them would pay 6 of a 4.5 share.
    accruals = unilevel_accruals(6, chain(), unilevel(levels_bps=[2500, 2500, 2500]))

    assert [(a.level, a.amount_minor, a.cap_reduction_minor) for a in accruals] == [
        (1, 2, 0),
        (2, 2, 0),
    ]


def test_max_payout_cuts_the_highest_levels_and_states_the_reduction() -> None:
    config = unilevel(levels_bps=[6000, 3000, 3000], max_payout_bps=8000)

    accruals = unilevel_accruals(HUNDRED_DOLLARS_MINOR, chain(), config)

    assert [(a.level, a.amount_minor, a.cap_reduction_minor) for a in accruals] == [
        (1, 6000, 0),
        (2, 2000, 1000),
    ]


def test_an_order_without_volume_pays_nothing_and_a_negative_one_is_refused() -> None:
    assert unilevel_accruals(0, chain(), unilevel()) == []
    with pytest.raises(InvalidAmount):
        unilevel_accruals(-1, chain(), unilevel())


def test_a_rank_s_unilevel_depth_is_looked_up_and_no_rank_means_level_zero_only() -> None:
    ranks = parse_commission_config(
        {"type": "ranks", "ranks": [{"code": "bronze", "unilevel_depth": 2}, {"code": "gold"}]}
    )

    assert unilevel_depth_for("bronze", ranks) == 2
    assert unilevel_depth_for("gold", ranks) is None
    assert unilevel_depth_for(None, ranks) == 0
    with pytest.raises(UnknownRank):
        unilevel_depth_for("diamond", ranks)


# Binary ---------------------------------------------------------------------------------------


def test_binary_pays_the_rate_of_the_weaker_leg_and_carries_the_stronger_remainder() -> None:
    result = binary_payout(1000, 300, 0, 100, BinaryConfig(rate_bps=1000))

    assert result.amount_minor == 40
    assert result.basis_minor == 400
    assert result.weaker_leg is Leg.RIGHT
    assert (result.new_carry_left_minor, result.new_carry_right_minor) == (600, 0)
    assert not result.capped


def test_the_period_cap_cuts_the_binary_amount_but_the_matched_volume_is_spent() -> None:
    result = binary_payout(5000, 8000, 0, 0, BinaryConfig(rate_bps=1000, cap_minor=300))

    assert (result.amount_minor, result.capped, result.weaker_leg) == (300, True, Leg.LEFT)
    assert (result.new_carry_left_minor, result.new_carry_right_minor) == (0, 3000)


def test_flush_carries_nothing_and_the_carryover_cap_limits_what_is_carried() -> None:
    flushed = binary_payout(1000, 300, 0, 0, BinaryConfig(1000, carryover=Carryover.FLUSH))
    limited = binary_payout(1000, 300, 0, 0, BinaryConfig(1000, carryover_cap_minor=500))

    assert (flushed.new_carry_left_minor, flushed.new_carry_right_minor) == (0, 0)
    assert (limited.new_carry_left_minor, limited.new_carry_right_minor) == (500, 0)
    assert flushed.amount_minor == limited.amount_minor == 30


def test_equal_legs_are_matched_entirely_and_name_the_left_leg_weaker() -> None:
    result = binary_payout(500, 500, 0, 0, BinaryConfig(rate_bps=1000))

    assert (result.amount_minor, result.weaker_leg) == (50, Leg.LEFT)
    assert (result.new_carry_left_minor, result.new_carry_right_minor) == (0, 0)


def test_a_negative_leg_volume_is_refused() -> None:
    with pytest.raises(InvalidCommissionInput) as error:
        binary_payout(0, 0, -1, 0, BinaryConfig(rate_bps=1000))
    assert error.value.param == "carry_left_minor"


# Affiliate ------------------------------------------------------------------------------------


def test_an_affiliate_earns_a_fixed_cpa_or_a_rounded_rate_of_the_order() -> None:
    cpa = parse_commission_config({"type": "affiliate", "cpa_minor": 500})
    rate = parse_commission_config({"type": "affiliate", "rate_bps": 750})

    assert affiliate_accrual(12_345, cpa).amount_minor == 500
    by_rate = affiliate_accrual(12_345, rate)
    # 925.875 rounds to 926.
    assert (by_rate.basis_minor, by_rate.rate_bps, by_rate.amount_minor) == (12_345, 750, 926)


# Ranks ----------------------------------------------------------------------------------------

RANKS = parse_commission_config(
    {
        "type": "ranks",
        "ranks": [
            {"code": "bronze", "min_pv_minor": 100, "unilevel_depth": 1},
            {
                "code": "silver",
                "min_pv_minor": 100,
                "min_gv_minor": 1000,
                "min_active_legs": 2,
                "max_leg_share_bps": 5000,
                "unilevel_depth": 3,
            },
        ],
    }
)


def test_the_highest_rank_whose_rules_are_all_met_is_reached() -> None:
    assert evaluate_rank(100, 1200, [500, 500], 2, RANKS) == "silver"
    assert evaluate_rank(100, 1200, [500, 500], 1, RANKS) == "bronze"
    assert evaluate_rank(99, 1200, [500, 500], 2, RANKS) is None


def test_no_leg_counts_for_more_than_its_share_of_the_rank_s_required_group_volume() -> None:
    # Silver caps each leg at 50% of 1000: the 900 leg counts 500, leaving 1200 - 400 = 800.
    assert evaluate_rank(100, 1200, [900, 300], 2, RANKS) == "bronze"
    # One enormous leg does not qualify alone, however large the group volume it brings.
    assert evaluate_rank(100, 10**9, [10**9 - 200, 100], 2, RANKS) == "bronze"


def test_legs_adding_up_to_more_than_the_group_volume_are_refused() -> None:
    with pytest.raises(InvalidCommissionInput):
        evaluate_rank(0, 100, [60, 60], 2, RANKS)


# Clawbacks ------------------------------------------------------------------------------------


def test_partial_refunds_claw_back_proportionally_and_the_last_takes_exactly_the_rest() -> None:
    first = clawback(2000, 3333, 10_000)
    second = clawback(2000, 3333, 10_000, already_refunded_minor=3333)
    last = clawback(2000, 3334, 10_000, already_refunded_minor=6666)

    # 666.6 -> 667; 1333.2 in all -> 1333, so 666; the whole order -> 2000, so 667.
    assert (first, second, last) == (667, 666, 667)
    assert first + second + last == 2000


def test_a_full_refund_claws_back_the_whole_accrual() -> None:
    assert clawback(2001, 10_000, 10_000) == 2001


def test_a_clawback_makes_up_for_what_earlier_refunds_did_not_claw_back() -> None:
    # Half the order was refunded before the accrual's clawbacks were recorded: the refund of
    # the other half claws back the whole accrual.
    taken_minor = clawback(
        2000, 5000, 10_000, already_refunded_minor=5000, already_clawed_back_minor=0
    )

    assert taken_minor == 2000


def test_refunds_beyond_the_order_total_are_refused() -> None:
    with pytest.raises(InvalidCommissionInput) as error:
        clawback(2000, 6000, 10_000, already_refunded_minor=5000)
    assert error.value.param == "refunded_minor"


# Configurations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "param"),
    [
        ({"type": "multilevel"}, "type"),
        ({"type": "unilevel"}, "levels_bps"),
        ({"type": "unilevel", "levels_bps": []}, "levels_bps"),
        ({"type": "unilevel", "levels_bps": [2000, -5]}, "levels_bps[1]"),
        ({"type": "unilevel", "levels_bps": [2000, 10_001]}, "levels_bps[1]"),
        ({"type": "unilevel", "levels_bps": [2000, True]}, "levels_bps[1]"),
        ({"type": "unilevel", "levels_bps": [6000, 5000]}, "levels_bps"),
        ({**UNILEVEL, "compression": "static"}, "compression"),
        ({**UNILEVEL, "active_min_pv_minor": 1.5}, "active_min_pv_minor"),
        ({**UNILEVEL, "levels": [1]}, "levels"),
        ({"type": "binary"}, "rate_bps"),
        ({"type": "binary", "rate_bps": 1000, "cap_minor": -1}, "cap_minor"),
        ({"type": "binary", "rate_bps": 1000, "carryover": "keep"}, "carryover"),
        (
            {"type": "binary", "rate_bps": 1, "carryover": "flush", "carryover_cap_minor": 1},
            "carryover_cap_minor",
        ),
        ({"type": "affiliate"}, "cpa_minor"),
        ({"type": "affiliate", "cpa_minor": 1, "rate_bps": 1}, "cpa_minor"),
        ({"type": "affiliate", "rate_bps": 20_000}, "rate_bps"),
        ({"type": "ranks", "ranks": []}, "ranks"),
        ({"type": "ranks", "ranks": ["gold"]}, "ranks[0]"),
        ({"type": "ranks", "ranks": [{"code": ""}]}, "ranks[0].code"),
        ({"type": "ranks", "ranks": [{"code": "a"}, {"code": "a"}]}, "ranks[1].code"),
        ({"type": "ranks", "ranks": [{"code": "a", "colour": 1}]}, "ranks[0].colour"),
        (
            {"type": "ranks", "ranks": [{"code": "a", "min_gv_minor": 5}, {"code": "b"}]},
            "ranks[1].min_gv_minor",
        ),
        (
            {"type": "ranks", "ranks": [{"code": "a"}, {"code": "b", "unilevel_depth": 3}]},
            "ranks[1].unilevel_depth",
        ),
        (
            {"type": "ranks", "ranks": [{"code": "a", "max_leg_share_bps": 0}]},
            "ranks[0].max_leg_share_bps",
        ),
    ],
)
def test_an_invalid_configuration_is_refused_naming_the_offending_field(
    config: dict, param: str
) -> None:
    with pytest.raises(InvalidCommissionPlan) as error:
        parse_commission_config(config)

    assert error.value.code == "invalid_commission_plan"
    assert error.value.param == param


def test_level_rates_above_100_percent_are_allowed_under_a_max_payout() -> None:
    config = unilevel(levels_bps=[6000, 5000], max_payout_bps=5000)

    assert config.max_share_bps == 5000


def test_a_configuration_s_canonical_form_fills_in_the_defaults() -> None:
    assert unilevel().as_dict() == {
        "type": "unilevel",
        "levels_bps": [2000, 500, 400],
        "level0_bps": 0,
        "compression": "none",
        "active_min_pv_minor": 0,
        "max_payout_bps": None,
    }


# The aggregate and its versions ---------------------------------------------------------------


def define_plan() -> CommissionPlan:
    return CommissionPlan.define(tenant_id="t1", code="uni", config=UNILEVEL, effective_from=JAN)


def test_a_revision_is_a_new_version_in_force_from_its_date() -> None:
    plan = define_plan()

    number = plan.revise({**UNILEVEL, "levels_bps": [2500]}, FEB)

    assert number == 2
    assert plan.version_in_force(datetime(2025, 12, 31, tzinfo=UTC)) is None
    january = plan.version_in_force(datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    february = plan.version_in_force(FEB)
    assert january is not None and january.number == 1 and january.effective_until == FEB
    assert february is not None and february.rules.levels_bps == (2500,)


def test_a_period_spanning_a_revision_is_computed_with_both_versions() -> None:
    plan = define_plan()
    plan.revise({**UNILEVEL, "levels_bps": [2500]}, datetime(2026, 2, 15, tzinfo=UTC))

    assert [v.number for v in plan.versions_during(JAN, FEB)] == [1]
    assert [v.number for v in plan.versions_during(FEB, MAR)] == [1, 2]
    assert [v.number for v in plan.versions_during(MAR, datetime(2026, 4, 1, tzinfo=UTC))] == [2]


def test_repeating_a_revision_is_an_idempotent_replay() -> None:
    plan = define_plan()
    plan.revise({**UNILEVEL, "levels_bps": [2500]}, FEB)
    version = plan.version

    assert plan.revise({**UNILEVEL, "levels_bps": [2500]}, FEB) == 2
    assert plan.revise(UNILEVEL, JAN) == 1
    assert plan.version == version


def test_a_revision_may_not_take_effect_before_the_latest_version_or_in_a_closed_period() -> None:
    plan = define_plan()
    plan.revise({**UNILEVEL, "levels_bps": [2500]}, FEB)

    with pytest.raises(InvalidEffectiveFrom):
        plan.revise({**UNILEVEL, "levels_bps": [3000]}, FEB)
    with pytest.raises(InvalidEffectiveFrom):
        plan.revise(
            {**UNILEVEL, "levels_bps": [3000]}, datetime(2026, 2, 20, tzinfo=UTC), not_before=MAR
        )
    with pytest.raises(InvalidEffectiveFrom):
        plan.revise({**UNILEVEL, "levels_bps": [3000]}, datetime(2026, 3, 1))


def test_a_plan_s_type_never_changes() -> None:
    plan = define_plan()

    with pytest.raises(InvalidCommissionPlan) as error:
        plan.revise({"type": "binary", "rate_bps": 1000}, FEB)
    assert error.value.param == "type"


def test_a_plan_is_identified_by_tenant_and_code_and_survives_storage() -> None:
    plan = define_plan()
    plan.revise({**UNILEVEL, "compression": "dynamic"}, FEB)
    application = Application()
    application.save(plan)

    stored = application.repository.get(plan.id)

    assert (
        plan.id
        == define_plan().id
        != CommissionPlan.define(tenant_id="t2", code="uni", config=UNILEVEL, effective_from=JAN).id
    )
    assert stored.versions == plan.versions
    assert stored.plan_type == "unilevel"
