"""The CommissionPlan aggregate: one tenant's commission plan of one code, version after version.

``PUT /v1/commission-plans/{code}`` defines a plan, then revises it. A revision never edits a
version: it adds one, in force from its ``effective_from`` until the next version's. A period is
computed with the versions in force during it (``versions_during``), an order with the version
in force when it was paid (``version_in_force``). A revision may not reach back before the end
of the last closed period (the caller passes it as ``not_before``), so a closed period's
versions never change. The plan's type is fixed at definition: the accrual policy finds a plan
by its code and relies on what it computes.

The configurations and their validation are in ``domain.commission_config``; the computations in
``domain.commission_rules``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.commission_config import (
    CommissionConfig,
    InvalidCommissionPlan,
    parse_commission_config,
)
from domain.errors import InvalidInput

_NAMESPACE = uuid5(NAMESPACE_URL, "https://commerce-ledger/commission-plans")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class InvalidEffectiveFrom(InvalidInput):
    """The instant is not an aware datetime, is not after the latest version's, or falls in a
    closed period."""

    code = "invalid_effective_from"


@dataclass(frozen=True, slots=True)
class PlanVersion:
    """One version of a plan: its canonical configuration, in force over
    [``effective_from``, ``effective_until``) (``None``: until further notice)."""

    number: int
    config: dict[str, Any]
    effective_from: datetime
    effective_until: datetime | None

    @property
    def rules(self) -> CommissionConfig:
        return parse_commission_config(self.config)

    def in_force_at(self, at: datetime) -> bool:
        return self.effective_from <= at and (
            self.effective_until is None or at < self.effective_until
        )


def commission_plan_id_for(tenant_id: str, code: str) -> UUID:
    return uuid5(_NAMESPACE, f"{tenant_id}:{code}")


class CommissionPlan(Aggregate):
    """A tenant's commission plan of one code and type, with its versions in order."""

    @classmethod
    def define(
        cls, *, tenant_id: str, code: str, config: dict[str, Any], effective_from: datetime
    ) -> CommissionPlan:
        """Version 1 of a plan. Raises ``InvalidCommissionPlan``, ``InvalidEffectiveFrom``."""
        if not isinstance(code, str) or not _CODE.match(code):
            raise InvalidCommissionPlan(
                "a plan code has 1 to 64 letters, digits, '_', '.' or '-'", param="code"
            )
        canonical = parse_commission_config(config).as_dict()
        _check_aware(effective_from)
        return cls(tenant_id=tenant_id, code=code, config=canonical, effective_from=effective_from)

    @staticmethod
    def create_id(*, tenant_id: str, code: str, **_: object) -> UUID:
        return commission_plan_id_for(tenant_id, code)

    @event("Defined")
    def __init__(
        self, *, tenant_id: str, code: str, config: dict[str, Any], effective_from: datetime
    ) -> None:
        self.tenant_id = tenant_id
        self.code = code
        self.plan_type: str = config["type"]
        # Each entry is (config, effective_from), in order of effective_from.
        self._versions: list[tuple[dict[str, Any], datetime]] = [(config, effective_from)]

    def revise(
        self,
        config: dict[str, Any],
        effective_from: datetime,
        *,
        not_before: datetime | None = None,
    ) -> int:
        """Add a version in force from ``effective_from``; return its number.

        Revising with a configuration and instant a version already has is an idempotent
        replay: nothing is recorded and that version's number is returned. Otherwise
        ``effective_from`` must be after the latest version's and not before ``not_before`` (the
        end of the last closed period). Raises ``InvalidCommissionPlan`` (also for a change of
        type, param ``type``), ``InvalidEffectiveFrom``.
        """
        canonical = parse_commission_config(config).as_dict()
        _check_aware(effective_from)
        for number, (known, known_from) in enumerate(self._versions, start=1):
            if known == canonical and known_from == effective_from:
                return number
        if canonical["type"] != self.plan_type:
            raise InvalidCommissionPlan(
                f"this plan is a {self.plan_type} plan: a plan's type never changes", param="type"
            )
        latest_from = self._versions[-1][1]
        if effective_from <= latest_from:
            raise InvalidEffectiveFrom(
                f"a new version takes effect after the latest one ({latest_from.isoformat()})",
                param="effective_from",
            )
        if not_before is not None and effective_from < not_before:
            raise InvalidEffectiveFrom(
                f"a new version may not take effect in a closed period (before "
                f"{not_before.isoformat()})",
                param="effective_from",
            )
        self._revised(config=canonical, effective_from=effective_from)
        return len(self._versions)

    @event("Revised")
    def _revised(self, *, config: dict[str, Any], effective_from: datetime) -> None:
        self._versions.append((config, effective_from))

    @property
    def versions(self) -> list[PlanVersion]:
        """Every version, oldest first."""
        untils = [effective_from for _, effective_from in self._versions[1:]] + [None]
        return [
            PlanVersion(number, config, effective_from, until)
            for number, ((config, effective_from), until) in enumerate(
                zip(self._versions, untils, strict=True), start=1
            )
        ]

    def version_in_force(self, at: datetime) -> PlanVersion | None:
        """The version in force at ``at``; ``None`` before the first takes effect."""
        _check_aware(at, param="at")
        return next((v for v in self.versions if v.in_force_at(at)), None)

    def versions_during(self, start: datetime, end: datetime) -> list[PlanVersion]:
        """The versions in force at some instant of [``start``, ``end``), oldest first."""
        _check_aware(start, param="start")
        _check_aware(end, param="end")
        return [
            version
            for version in self.versions
            if version.effective_from < end
            and (version.effective_until is None or version.effective_until > start)
        ]


def _check_aware(moment: Any, *, param: str = "effective_from") -> None:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise InvalidEffectiveFrom("an instant is a datetime with a time zone", param=param)
