"""Commission plan configurations: their JSON shape, their strict validation and typed form.

A tenant's commission plan is one of four types, each a JSON object as ``PUT
/v1/commission-plans/{code}`` receives it:

- ``unilevel``: ``{"type": "unilevel", "levels_bps": [2000, 500, 400], "level0_bps": 0,
  "compression": "dynamic" | "none", "active_min_pv_minor": N, "max_payout_bps": N}``. Only
  ``levels_bps`` is required; ``compression`` defaults to ``"none"``, ``level0_bps`` and
  ``active_min_pv_minor`` to 0. The level rates (with level 0) may add up to more than 100% only
  when ``max_payout_bps`` caps what one order pays in all.
- ``binary``: ``{"type": "binary", "rate_bps": N, "cap_minor": N, "carryover": "carry" |
  "flush", "carryover_cap_minor": N}``. Only ``rate_bps`` is required; no cap means no cap, and
  ``carryover`` defaults to ``"carry"``.
- ``affiliate``: ``{"type": "affiliate", "cpa_minor": N}`` or ``{"type": "affiliate",
  "rate_bps": N}``: exactly one of the two.
- ``ranks``: ``{"type": "ranks", "ranks": [{"code", "min_pv_minor", "min_gv_minor",
  "min_active_legs", "max_leg_share_bps", "unilevel_depth"}, ...]}`` from the lowest rank to the
  highest. Only ``code`` is required in a rank; thresholds default to 0, the leg share to 100%
  and the depth to unlimited (``null``). A higher rank never asks less than a lower one.

Amounts are minor units of the tenant's ledger currency. Every error is ``InvalidCommissionPlan``
(code ``invalid_commission_plan``) with ``param`` the path of the offending field in the JSON
object (``levels_bps[1]``, ``ranks[0].min_gv_minor``). A parsed configuration's ``as_dict()`` is
its canonical JSON form, defaults filled in: that is what a plan version records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain.errors import InvalidInput
from domain.money import AMOUNT_MINOR_MAX

BPS = 10_000
LEVELS_MAX = 50
RANKS_MAX = 50
ACTIVE_LEGS_MAX = 10_000
_RANK_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class InvalidCommissionPlan(InvalidInput):
    code = "invalid_commission_plan"


class Compression(StrEnum):
    DYNAMIC = "dynamic"  # a level skipped for an unqualified upline passes up to the next one
    NONE = "none"  # a level skipped is not paid


class Carryover(StrEnum):
    CARRY = "carry"  # the stronger leg's unmatched volume counts again next period
    FLUSH = "flush"  # unmatched volume is lost at period close


@dataclass(frozen=True, slots=True)
class UnilevelConfig:
    levels_bps: tuple[int, ...]
    level0_bps: int = 0
    compression: Compression = Compression.NONE
    active_min_pv_minor: int = 0
    max_payout_bps: int | None = None

    @property
    def max_share_bps(self) -> int:
        """The most one order pays in all, as a share of its volume."""
        rates_bps = self.level0_bps + sum(self.levels_bps)
        return rates_bps if self.max_payout_bps is None else min(rates_bps, self.max_payout_bps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": "unilevel",
            "levels_bps": list(self.levels_bps),
            "level0_bps": self.level0_bps,
            "compression": self.compression.value,
            "active_min_pv_minor": self.active_min_pv_minor,
            "max_payout_bps": self.max_payout_bps,
        }


@dataclass(frozen=True, slots=True)
class BinaryConfig:
    rate_bps: int
    cap_minor: int | None = None
    carryover: Carryover = Carryover.CARRY
    carryover_cap_minor: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": "binary",
            "rate_bps": self.rate_bps,
            "cap_minor": self.cap_minor,
            "carryover": self.carryover.value,
            "carryover_cap_minor": self.carryover_cap_minor,
        }


@dataclass(frozen=True, slots=True)
class AffiliateConfig:
    """A fixed amount per attributed order (``cpa_minor``) or a rate of it (``rate_bps``)."""

    cpa_minor: int | None = None
    rate_bps: int | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.cpa_minor is not None:
            return {"type": "affiliate", "cpa_minor": self.cpa_minor}
        return {"type": "affiliate", "rate_bps": self.rate_bps}


@dataclass(frozen=True, slots=True)
class RankRule:
    code: str
    min_pv_minor: int = 0
    min_gv_minor: int = 0
    min_active_legs: int = 0
    max_leg_share_bps: int = BPS
    unilevel_depth: int | None = None  # None: every level of the unilevel plan

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "min_pv_minor": self.min_pv_minor,
            "min_gv_minor": self.min_gv_minor,
            "min_active_legs": self.min_active_legs,
            "max_leg_share_bps": self.max_leg_share_bps,
            "unilevel_depth": self.unilevel_depth,
        }


@dataclass(frozen=True, slots=True)
class RanksConfig:
    ranks: tuple[RankRule, ...]  # lowest first

    def as_dict(self) -> dict[str, Any]:
        return {"type": "ranks", "ranks": [rank.as_dict() for rank in self.ranks]}


CommissionConfig = UnilevelConfig | BinaryConfig | AffiliateConfig | RanksConfig


def parse_commission_config(raw: Any) -> CommissionConfig:
    """The typed form of a plan's JSON configuration. Raises ``InvalidCommissionPlan``."""
    if not isinstance(raw, dict):
        raise InvalidCommissionPlan("a commission plan is a JSON object", param="type")
    parsers = {
        "unilevel": _parse_unilevel,
        "binary": _parse_binary,
        "affiliate": _parse_affiliate,
        "ranks": _parse_ranks,
    }
    parser = parsers.get(raw.get("type"))  # type: ignore[arg-type]
    if parser is None:
        raise InvalidCommissionPlan(
            "the type is 'unilevel', 'binary', 'affiliate' or 'ranks'", param="type"
        )
    return parser(raw)


def _parse_unilevel(raw: dict) -> UnilevelConfig:
    _no_unknown_fields(
        raw,
        {
            "type",
            "levels_bps",
            "level0_bps",
            "compression",
            "active_min_pv_minor",
            "max_payout_bps",
        },
    )
    levels = raw.get("levels_bps")
    if not isinstance(levels, list) or not 1 <= len(levels) <= LEVELS_MAX:
        raise InvalidCommissionPlan(
            f"levels_bps lists 1 to {LEVELS_MAX} rates in basis points", param="levels_bps"
        )
    levels_bps = tuple(_bps(rate, f"levels_bps[{i}]") for i, rate in enumerate(levels))
    config = UnilevelConfig(
        levels_bps=levels_bps,
        level0_bps=_bps(raw.get("level0_bps", 0), "level0_bps"),
        compression=_choice(raw.get("compression", "none"), Compression, "compression"),
        active_min_pv_minor=_amount(raw.get("active_min_pv_minor", 0), "active_min_pv_minor"),
        max_payout_bps=_optional(raw.get("max_payout_bps"), _bps, "max_payout_bps"),
    )
    if config.max_payout_bps is None and config.level0_bps + sum(levels_bps) > BPS:
        raise InvalidCommissionPlan(
            "the level rates add up to more than 100% of the volume: lower them or set "
            "max_payout_bps",
            param="levels_bps",
        )
    return config


def _parse_binary(raw: dict) -> BinaryConfig:
    _no_unknown_fields(raw, {"type", "rate_bps", "cap_minor", "carryover", "carryover_cap_minor"})
    if "rate_bps" not in raw:
        raise InvalidCommissionPlan("a binary plan states its rate_bps", param="rate_bps")
    config = BinaryConfig(
        rate_bps=_bps(raw["rate_bps"], "rate_bps"),
        cap_minor=_optional(raw.get("cap_minor"), _amount, "cap_minor"),
        carryover=_choice(raw.get("carryover", "carry"), Carryover, "carryover"),
        carryover_cap_minor=_optional(
            raw.get("carryover_cap_minor"), _amount, "carryover_cap_minor"
        ),
    )
    if config.carryover is Carryover.FLUSH and config.carryover_cap_minor is not None:
        raise InvalidCommissionPlan(
            "a flushed plan carries nothing over, so it has no carryover cap",
            param="carryover_cap_minor",
        )
    return config


def _parse_affiliate(raw: dict) -> AffiliateConfig:
    _no_unknown_fields(raw, {"type", "cpa_minor", "rate_bps"})
    if ("cpa_minor" in raw) == ("rate_bps" in raw):
        raise InvalidCommissionPlan(
            "an affiliate plan states either cpa_minor or rate_bps", param="cpa_minor"
        )
    if "cpa_minor" in raw:
        return AffiliateConfig(cpa_minor=_amount(raw["cpa_minor"], "cpa_minor"))
    return AffiliateConfig(rate_bps=_bps(raw["rate_bps"], "rate_bps"))


def _parse_ranks(raw: dict) -> RanksConfig:
    _no_unknown_fields(raw, {"type", "ranks"})
    entries = raw.get("ranks")
    if not isinstance(entries, list) or not 1 <= len(entries) <= RANKS_MAX:
        raise InvalidCommissionPlan(
            f"ranks lists 1 to {RANKS_MAX} ranks, lowest first", param="ranks"
        )
    ranks = tuple(_parse_rank(entry, f"ranks[{i}]") for i, entry in enumerate(entries))
    codes = [rank.code for rank in ranks]
    for i, (lower, higher) in enumerate(zip(ranks, ranks[1:], strict=False), start=1):
        if higher.code in codes[:i]:
            raise InvalidCommissionPlan("rank codes are unique", param=f"ranks[{i}].code")
        _check_rank_order(lower, higher, f"ranks[{i}]")
    return RanksConfig(ranks=ranks)


def _parse_rank(raw: Any, path: str) -> RankRule:
    if not isinstance(raw, dict):
        raise InvalidCommissionPlan("a rank is a JSON object", param=path)
    _no_unknown_fields(raw, set(RankRule.__slots__), path=path)
    code = raw.get("code")
    if not isinstance(code, str) or not _RANK_CODE.match(code):
        raise InvalidCommissionPlan(
            "a rank code has 1 to 64 letters, digits, '_', '.' or '-'", param=f"{path}.code"
        )
    depth = _optional(raw.get("unilevel_depth"), _count, f"{path}.unilevel_depth")
    if depth is not None and depth > LEVELS_MAX:
        raise InvalidCommissionPlan(
            f"a rank's unilevel depth is 0 to {LEVELS_MAX}, or null for every level",
            param=f"{path}.unilevel_depth",
        )
    share_bps = _bps(raw.get("max_leg_share_bps", BPS), f"{path}.max_leg_share_bps")
    if share_bps == 0:
        raise InvalidCommissionPlan(
            "a leg may count for at least some of the group volume",
            param=f"{path}.max_leg_share_bps",
        )
    legs = _count(raw.get("min_active_legs", 0), f"{path}.min_active_legs")
    if legs > ACTIVE_LEGS_MAX:
        raise InvalidCommissionPlan(
            f"min_active_legs is at most {ACTIVE_LEGS_MAX}", param=f"{path}.min_active_legs"
        )
    return RankRule(
        code=code,
        min_pv_minor=_amount(raw.get("min_pv_minor", 0), f"{path}.min_pv_minor"),
        min_gv_minor=_amount(raw.get("min_gv_minor", 0), f"{path}.min_gv_minor"),
        min_active_legs=legs,
        max_leg_share_bps=share_bps,
        unilevel_depth=depth,
    )


def _check_rank_order(lower: RankRule, higher: RankRule, path: str) -> None:
    """A higher rank asks at least what the one below it asks, so that the ranks a distributor
    meets (leg share aside) are the lowest ones, and its depth is at least the lower one's."""
    for field in ("min_pv_minor", "min_gv_minor", "min_active_legs"):
        if getattr(higher, field) < getattr(lower, field):
            raise InvalidCommissionPlan(
                f"a higher rank may not ask less {field} than the rank below it",
                param=f"{path}.{field}",
            )
    if higher.max_leg_share_bps > lower.max_leg_share_bps:
        raise InvalidCommissionPlan(
            "a higher rank may not allow a larger share from one leg than the rank below it",
            param=f"{path}.max_leg_share_bps",
        )
    lower_depth = LEVELS_MAX + 1 if lower.unilevel_depth is None else lower.unilevel_depth
    higher_depth = LEVELS_MAX + 1 if higher.unilevel_depth is None else higher.unilevel_depth
    if higher_depth < lower_depth:
        raise InvalidCommissionPlan(
            "a higher rank may not pay fewer unilevel levels than the rank below it",
            param=f"{path}.unilevel_depth",
        )


def _no_unknown_fields(raw: dict, known: set[str], *, path: str = "") -> None:
    for key in raw:
        if key not in known:
            param = f"{path}.{key}" if path else str(key)
            raise InvalidCommissionPlan("this field is not part of the plan", param=param)


def _integer(value: Any, param: str, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidCommissionPlan(f"{what} is an integer from {low} to {high}", param=param)
    return value


def _bps(value: Any, param: str) -> int:
    return _integer(value, param, 0, BPS, "a rate in basis points")


def _amount(value: Any, param: str) -> int:
    return _integer(value, param, 0, AMOUNT_MINOR_MAX, "an amount in minor units")


def _count(value: Any, param: str) -> int:
    return _integer(value, param, 0, AMOUNT_MINOR_MAX, "a count")


def _optional(value: Any, parse: Any, param: str) -> Any:
    return None if value is None else parse(value, param)


def _choice(value: Any, choices: type[StrEnum], param: str) -> Any:
    allowed = [choice.value for choice in choices]
    if value not in allowed:
        raise InvalidCommissionPlan(f"{param} is one of {allowed}", param=param)
    return choices(value)
