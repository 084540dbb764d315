"""The self-service catalogue: categories, versioned items, orders, approvals, subscriptions.

An item's content (form, price plan, approval policy, recipe, who may order it) lives in
numbered *versions*; an order and the subscription it becomes point at the version they were
made with, so a later change of the item or its price never changes them.

Order lifecycle; every move is recorded as a transition (who, when, why)::

    SUBMITTED -> AWAITING_APPROVAL -> APPROVED -> FULFILLING -> FULFILLED -> DECOMMISSIONED
        |                 |                           |
        |                 +-> REJECTED                +-> FAILED -> FULFILLING (retry)
        +-> APPROVED (automatic policy)
    SUBMITTED, AWAITING_APPROVAL, APPROVED, FAILED -> CANCELLED

Money is ``Decimal`` and is stored as strings.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from cmdb.chargeback.models import MAX_QUANTITY, PricePlan, Tier
from cmdb.core.models import Criticality, FrozenModel, OperationalState
from cmdb.core.validation import NonBlankName
from cmdb.items.models import SERVICE, CIClass, RelationType, rule_violation

# --- orders ----------------------------------------------------------------------------------


class OrderStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    FULFILLING = "FULFILLING"
    FULFILLED = "FULFILLED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    DECOMMISSIONED = "DECOMMISSIONED"


S = OrderStatus
# Status -> the statuses it may move to. AWAITING_APPROVAL -> AWAITING_APPROVAL is one step of
# several approved. Anything not listed is forbidden.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.SUBMITTED: frozenset({S.AWAITING_APPROVAL, S.APPROVED, S.CANCELLED}),
    S.AWAITING_APPROVAL: frozenset({S.AWAITING_APPROVAL, S.APPROVED, S.REJECTED, S.CANCELLED}),
    S.APPROVED: frozenset({S.FULFILLING, S.CANCELLED}),
    S.FULFILLING: frozenset({S.FULFILLED, S.FAILED}),
    S.FAILED: frozenset({S.FULFILLING, S.CANCELLED}),
    S.FULFILLED: frozenset({S.DECOMMISSIONED}),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.DECOMMISSIONED: frozenset(),
}


def sources_of(target: OrderStatus) -> list[str]:
    """The statuses from which an order may move to ``target``."""
    return sorted(s.value for s, nexts in TRANSITIONS.items() if target in nexts)


class StepKind(StrEnum):
    MANAGER = "MANAGER"  # the requester's manager (REPORTS_TO)
    COST_CENTRE_OWNER = "COST_CENTRE_OWNER"  # who the order's cost centre is MANAGED_BY
    ROLE = "ROLE"  # anyone holding the given access role (not the requester)


class StepOrigin(StrEnum):
    POLICY = "POLICY"  # a step of the item's approval policy
    # Added because the order is charged to a cost centre that is not the requester's own:
    # the consent of that cost centre's owner, whatever the policy and the price.
    CROSS_CHARGE = "CROSS_CHARGE"


class StepStatus(StrEnum):
    WAITING = "WAITING"  # a later step
    PENDING = "PENDING"  # the step that decides now
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    SKIPPED = "SKIPPED"  # below its price threshold
    CANCELLED = "CANCELLED"


class ItemStatus(StrEnum):
    ACTIVE = "ACTIVE"
    RETIRED = "RETIRED"


class SubscriptionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    ENDED = "ENDED"


class TaskStatus(StrEnum):
    OPEN = "OPEN"
    DONE = "DONE"
    FAILED = "FAILED"


# --- item content ----------------------------------------------------------------------------

# Documents given as JSON (recipes) take camelCase keys, like the rest of the API.
_DOC = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, validate_by_name=True,
                  validate_by_alias=True, serialize_by_alias=True)
_MONEY = Field(default=Decimal("0"), ge=0, max_digits=14, decimal_places=2)
_SLUG = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Placeholders every recipe may use besides the form's fields.
BUILTINS = ("order", "user", "costCentre")


# --- prices at order time and estimates ------------------------------------------------------


class QuotedRate(FrozenModel):
    """How a meter of an item's price plan is billed: the plan's listed rate, and the rate card
    version in force (none when the meter has none; ``note`` then says so, as it does when the
    listed rate is not what the rate card charges)."""

    meter: str
    unit: str
    listed_rate: Decimal
    rate_card_id: str | None = None
    rate_card_version: int | None = None
    tiers: list[Tier] = []
    note: str | None = None


class Quote(FrozenModel):
    """The price an order was placed at, recorded when it was submitted: its fees (what its
    subscription is billed) and the rate card in force for each meter of the plan then."""

    currency: str
    one_off: Decimal
    monthly: Decimal
    usage: list[QuotedRate] = []
    notes: list[str] = []
    quoted_at: datetime


class EstimateQuantity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    meter: str = Field(min_length=1, max_length=100)
    quantity: Decimal = Field(ge=0, le=MAX_QUANTITY, decimal_places=6)


class EstimateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quantities: list[EstimateQuantity] = Field(default=[], max_length=50)

    @field_validator("quantities")
    @classmethod
    def _once(cls, v: list[EstimateQuantity]) -> list[EstimateQuantity]:
        seen: set[str] = set()
        for q in v:
            if q.meter in seen:
                raise ValueError(f"meter {q.meter!r} is given twice")
            seen.add(q.meter)
        return v


class EstimateLine(FrozenModel):
    """A meter of the plan: its quantity (None: not given), the rate card it is billed at and
    the amount (None without a quantity or a rate card)."""

    meter: str
    unit: str
    quantity: Decimal | None
    rate_card_id: str | None
    rate_card_version: int | None
    tiers: list[Tier]
    amount: Decimal | None


class Estimate(FrozenModel):
    """What an order of an item made now would be billed, by the bill's own rules."""

    currency: str
    one_off: Decimal
    monthly: Decimal
    usage: list[EstimateLine]
    monthly_total: Decimal  # monthly fee + usage amounts
    first_month: Decimal  # one-off fee + monthly fee + usage amounts
    notes: list[str]
    rates_on: date  # the day whose rate cards price the usage


class ApprovalStepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: StepKind
    above: Decimal | None = Field(
        default=None, ge=0, description="Only when the first-year cost is above this.")
    role: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _role(self) -> ApprovalStepSpec:
        if self.kind is StepKind.ROLE and not self.role:
            raise ValueError("a ROLE step needs a role")
        if self.kind is not StepKind.ROLE and self.role:
            raise ValueError("only a ROLE step has a role")
        return self


class ApprovalPolicy(BaseModel):
    """Steps decided in order; no steps is automatic approval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[ApprovalStepSpec] = Field(default=[], max_length=10)


class RecipeCI(BaseModel):
    """A CI the recipe creates. ``name``, ``hostName`` and string attributes may hold
    ``{field}`` placeholders: form fields, ``{order}`` (short order id), ``{user}``,
    ``{costCentre}``."""

    model_config = _DOC

    key: str
    ci_class: CIClass
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=4000)
    host_name: str | None = Field(None, max_length=200)
    domain: str | None = Field(None, max_length=253)
    criticality: Criticality = Criticality.LOW
    operational_state: OperationalState = OperationalState.UP
    attributes: dict[str, str | int | float | bool] = {}

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not _SLUG.match(v):
            raise ValueError("key must be lower-case letters, digits, '-' or '_'")
        return v


class RecipeRelation(BaseModel):
    """``source`` (consumer) and ``target`` (provider) are ``ci:<key>`` (made by this recipe),
    ``service:<name>`` or ``item:<name>`` (an existing live service or CI)."""

    model_config = _DOC

    source: str
    type: RelationType
    target: str
    properties: dict[str, str | int | float | bool] = {}

    @field_validator("source", "target")
    @classmethod
    def _ref(cls, v: str) -> str:
        kind, _, name = v.partition(":")
        if kind not in ("ci", "service", "item") or not name.strip():
            raise ValueError("must be ci:<key>, service:<name> or item:<name>")
        return f"{kind}:{name.strip()}"


class RecipeTask(BaseModel):
    """A step a person does by hand; automatic fulfilment runs once all are done."""

    model_config = _DOC

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=4000)
    group: str | None = Field(None, max_length=200)


class Recipe(BaseModel):
    """What fulfilment makes: CIs, their relationships, and the subscription to ``service``."""

    model_config = _DOC

    service: str = Field(min_length=1, max_length=200,
                         description="Name of the technical or business service")
    cis: list[RecipeCI] = Field(default=[], max_length=50)
    relationships: list[RecipeRelation] = Field(default=[], max_length=200)
    tasks: list[RecipeTask] = Field(default=[], max_length=20)

    @model_validator(mode="after")
    def _refs(self) -> Recipe:
        classes = {c.key: c.ci_class.value for c in self.cis}
        if len(classes) != len(self.cis):
            raise ValueError("CI keys must be unique")
        for i, r in enumerate(self.relationships):
            ends = []
            for ref in (r.source, r.target):
                kind, _, name = ref.partition(":")
                if kind == "ci" and name not in classes:
                    raise ValueError(f"relationships[{i}]: no CI with key {name!r}")
                ends.append(classes.get(name) if kind == "ci" else
                            SERVICE if kind == "service" else None)
            if ends[0] is not None and ends[1] is not None:
                why = rule_violation(r.type, ends[0], ends[1])
                if why:
                    raise ValueError(f"relationships[{i}]: {why}")
        return self

    def placeholders(self) -> set[str]:
        found: set[str] = set()
        for c in self.cis:
            texts = [c.name, c.host_name or "", c.description or "",
                     *(v for v in c.attributes.values() if isinstance(v, str))]
            for t in texts:
                found.update(PLACEHOLDER.findall(t))
        return found


class ItemWrite(BaseModel):
    """A catalogue item's content; each create or change stores a new version of it."""

    model_config = ConfigDict(extra="forbid")

    name: NonBlankName = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    category_id: str | None = None
    form_schema: dict[str, Any] = {"type": "object", "properties": {}}
    roles: list[str] = Field(min_length=1, max_length=50)
    approval_policy: ApprovalPolicy = ApprovalPolicy()
    price_plan: PricePlan = PricePlan()
    recipe: Recipe

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: list[str]) -> list[str]:
        out = sorted({r.strip().lower() for r in v if r.strip()})
        if not out:
            raise ValueError("give at least one role that may order the item")
        return out


class CategoryWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)


class OrderSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1)
    form: dict[str, Any] = {}
    idempotency_key: str = Field(min_length=8, max_length=200)
    cost_centre_code: str | None = Field(None, min_length=1, max_length=50)
    comment: str | None = Field(None, max_length=4000)


# --- what is read back -----------------------------------------------------------------------


class Category(FrozenModel):
    id: str
    name: str
    description: str


class ItemVersion(FrozenModel):
    id: str
    item_id: str
    version: int
    name: str
    description: str
    form_schema: dict[str, Any]
    roles: list[str]
    approval_policy: ApprovalPolicy
    price_plan: PricePlan
    recipe: Recipe
    created_at: datetime
    created_by: str | None


class CatalogueItem(FrozenModel):
    id: str
    status: ItemStatus
    category: Category | None
    current: ItemVersion
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None = None


class ApprovalStep(FrozenModel):
    id: str
    index: int
    kind: StepKind
    role: str | None
    above: Decimal | None
    approvers: list[str]
    status: StepStatus
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    origin: StepOrigin = StepOrigin.POLICY
    # Why the order has this step (steps stored before this was kept have none).
    why: str | None = None
    # Only the named approvers may decide it; a catalogue admin cannot stand in. True for the
    # step that is a cost centre owner's consent to an order charged from outside it.
    approvers_only: bool = False


class Transition(FrozenModel):
    seq: int
    from_status: OrderStatus | None
    to_status: OrderStatus
    by: str
    at: datetime
    reason: str | None


class FulfilmentTask(FrozenModel):
    id: str
    order_id: str
    index: int
    name: str
    description: str | None
    group: str | None
    status: TaskStatus
    done_by: str | None = None
    done_at: datetime | None = None
    note: str | None = None


class Order(FrozenModel):
    id: str
    item_id: str
    version_id: str
    item_version: int
    item_name: str
    requester: str
    cost_centre_code: str
    form: dict[str, Any]
    status: OrderStatus
    currency: str
    one_off_fee: Decimal
    monthly_fee: Decimal
    comment: str | None
    submitted_at: datetime
    updated_at: datetime
    revision: int
    step_index: int
    attempts: int
    last_error: str | None = None
    subscription_id: str | None = None
    quote: Quote | None = None  # None for orders placed before quotes were recorded


class OrderChange(FrozenModel):
    """A recorded transition of an order (its id and stamp), with the order as read then."""

    id: str
    at: datetime
    order: Order


class Subscription(FrozenModel):
    id: str
    order_id: str
    item_id: str
    version_id: str
    item_version: int
    item_name: str
    consumer: str
    cost_centre_code: str
    service_id: str | None
    ci_ids: list[str]
    status: SubscriptionStatus
    start_at: datetime
    end_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str | None = None
