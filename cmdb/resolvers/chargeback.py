"""Root fields for chargeback. Permissions and the caller's cost scope are applied by the
service with the request's principal."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, TypeVar

import strawberry
from strawberry import Info

from cmdb.chargeback.models import BillingMode as BillingModeModel
from cmdb.chargeback.models import CalculationResult as CalculationResultModel
from cmdb.chargeback.models import CostPool as CostPoolModel
from cmdb.chargeback.models import ReportDimension
from cmdb.chargeback.service import ChargebackService
from cmdb.core.models import DomainError
from cmdb.resolvers.payloads import errors_in
from cmdb.schema.chargeback import (
    AdjustmentInput,
    AdjustmentPayload,
    BillingMode,
    BillingModePayload,
    CalculationPayload,
    CalculationResult,
    ChargeLine,
    ChargeLineFilter,
    ChargeLinePage,
    ChargePeriod,
    CostPool,
    CostPoolPayload,
    CostReport,
    CostReportDimension,
    DefineCostPoolInput,
    DefineMeterInput,
    Meter,
    MeterPayload,
    PublishRateCardInput,
    RateCard,
    RateCardPayload,
    ServiceRecovery,
    UsageIngestPayload,
    UsageRecordInput,
)
from cmdb.schema.context import Context
from cmdb.schema.inputs import to_dict

MAX_GRAPHQL_USAGE = 1000


T = TypeVar("T")
P = TypeVar("P")


def _svc(info: Info[Context, None]) -> ChargebackService:
    return info.context.services.chargeback


def _calculated(result: CalculationResultModel) -> CalculationPayload:
    return CalculationPayload(result=CalculationResult.from_model(result))


def _pool_payload(pool: CostPoolModel) -> CostPoolPayload:
    return CostPoolPayload(pool=CostPool.from_model(pool))


@strawberry.type
class ChargebackQuery:
    @strawberry.field(description="Meters usage is recorded against.")
    async def meters(self, info: Info[Context, None]) -> list[Meter]:
        return [Meter.from_model(x) for x in await _svc(info).meters()]

    @strawberry.field(description="Rate card versions, by meter and version.")
    async def rate_cards(self, info: Info[Context, None], meter: str | None = None
                         ) -> list[RateCard]:
        return [RateCard.from_model(x) for x in await _svc(info).rate_cards(meter)]

    @strawberry.field(description="Shared cost pools and their cost per period.")
    async def cost_pools(self, info: Info[Context, None]) -> list[CostPool]:
        return [CostPool.from_model(x) for x in await _svc(info).pools()]

    @strawberry.field(description="Charge periods, newest first.")
    async def charge_periods(self, info: Info[Context, None]) -> list[ChargePeriod]:
        return [ChargePeriod.from_model(x) for x in await _svc(info).periods()]

    @strawberry.field(description="Cost of a period by cost centre (with the hierarchy rolled "
                      "up), user, service, catalogue item, meter or kind. Finance sees their "
                      "cost centres, finance_all everything, anyone else their own cost.")
    async def cost_report(self, info: Info[Context, None], period: str,
                          by: CostReportDimension = ReportDimension.COST_CENTRE,  # type: ignore[valid-type]
                          ) -> CostReport:
        report = await _svc(info).report(info.context.principal, period, ReportDimension(by))
        return CostReport.from_model(report)

    @strawberry.field(description="Over/under-recovery per period of each service recovered "
                      "through the prices of its catalogue items (costRecovery PRICES): "
                      "the cost booked to it against its subscriptions' fees. Finance sees "
                      "the services of their cost centres, finance_all everything; others "
                      "are refused.")
    async def charge_recovery(self, info: Info[Context, None], period: str
                              ) -> list[ServiceRecovery]:
        rows = await _svc(info).recovery(info.context.principal, period)
        return [ServiceRecovery.from_model(x) for x in rows]

    @strawberry.field(description="The same report for each period from `from` to `to` "
                      "(YYYY-MM, at most 24; periods never calculated are left out).")
    async def cost_trend(self, info: Info[Context, None],
                         from_: Annotated[str, strawberry.argument(name="from")], to: str,
                         by: CostReportDimension = ReportDimension.COST_CENTRE,  # type: ignore[valid-type]
                         ) -> list[CostReport]:
        reports = await _svc(info).trend(info.context.principal, from_, to,
                                         ReportDimension(by))
        return [CostReport.from_model(r) for r in reports]

    @strawberry.field(description="Drill-down: the lines of a period, filtered, in order "
                      "(at most 1000 per page; pass endCursor as after).")
    async def charge_lines(self, info: Info[Context, None], period: str,
                           filter: ChargeLineFilter | None = None, first: int = 100,
                           after: str | None = None) -> ChargeLinePage:
        f = filter or ChargeLineFilter()
        filters: dict[str, Any] = {
            "costCentres": f.cost_centres, "forUser": f.user,
            "service": f.service_id, "item": f.catalogue_item_id, "meter": f.meter,
            "kind": None if f.kind is None else f.kind.value,
        }
        lines, more = await _svc(info).lines(info.context.principal, period, filters, first,
                                             after)
        end = f"{lines[-1].seq}|{lines[-1].id}" if lines else None
        return ChargeLinePage(lines=[ChargeLine.from_model(x) for x in lines], end_cursor=end,
                              has_next_page=more)

    @strawberry.field(description="One charge line, if the caller may see it.")
    async def charge_line(self, info: Info[Context, None], id: strawberry.ID) -> ChargeLine | None:
        found = await _svc(info).line(info.context.principal, str(id))
        return ChargeLine.from_model(found) if found else None


@strawberry.type
class ChargebackMutation:
    @strawberry.mutation(description="Define a meter (idempotent by code).")
    @errors_in(MeterPayload)
    async def define_meter(self, info: Info[Context, None], input: DefineMeterInput
                           ) -> MeterPayload:
        meter, created = await _svc(info).define_meter(info.context.principal, to_dict(input))
        return MeterPayload(meter=Meter.from_model(meter), created=created)

    @strawberry.mutation(description="Publish the next version of a meter's rate card, in "
                         "force from effectiveFrom; the previous version ends there.")
    @errors_in(RateCardPayload)
    async def publish_rate_card(self, info: Info[Context, None], input: PublishRateCardInput
                                ) -> RateCardPayload:
        card = await _svc(info).publish_rate_card(info.context.principal, {
            "meter": input.meter, "effective_from": input.effective_from,
            "currency": input.currency,
            "tiers": [{"upTo": t.up_to, "rate": t.rate} for t in input.tiers]})
        return RateCardPayload(rate_card=RateCard.from_model(card))

    @strawberry.mutation(description="Define or change a shared cost pool (by code).")
    @errors_in(CostPoolPayload)
    async def define_cost_pool(self, info: Info[Context, None], input: DefineCostPoolInput
                               ) -> CostPoolPayload:
        return _pool_payload(await _svc(info).define_pool(info.context.principal,
                                                          to_dict(input)))

    @strawberry.mutation(description="Set what a pool costs in a period (not a closed one).")
    @errors_in(CostPoolPayload)
    async def set_cost_pool_amount(self, info: Info[Context, None], code: str, period: str,
                                   amount: Decimal) -> CostPoolPayload:
        return _pool_payload(await _svc(info).set_pool_cost(info.context.principal, code, period,
                                                            amount))

    @strawberry.mutation(description="Invoice a cost centre (CHARGEBACK) or only show it its "
                         "cost (SHOWBACK). Applies from the next calculation.")
    @errors_in(BillingModePayload)
    async def set_billing_mode(self, info: Info[Context, None], cost_centre: str,
                               mode: BillingMode) -> BillingModePayload:  # type: ignore[valid-type]
        out = await _svc(info).set_billing_mode(info.context.principal, cost_centre,
                                                BillingModeModel(mode))
        return BillingModePayload(cost_centre=cost_centre, billing_mode=out)

    @strawberry.mutation(description="Record a few usage records (at most 1000; POST "
                         "/api/chargeback/usage takes files). Idempotent by recordId.")
    @errors_in(UsageIngestPayload)
    async def record_usage(self, info: Info[Context, None], records: list[UsageRecordInput]
                           ) -> UsageIngestPayload:
        if len(records) > MAX_GRAPHQL_USAGE:
            raise DomainError.single("records", f"at most {MAX_GRAPHQL_USAGE} records; use POST "
                                     "/api/chargeback/usage for more")
        raw = [{"recordId": r.record_id, "ciId": str(r.ci_id), "meter": r.meter,
                "quantity": r.quantity, "at": r.at, "source": r.source} for r in records]
        return UsageIngestPayload.from_model(
            await _svc(info).ingest_usage(info.context.principal, raw))

    @strawberry.mutation(description="Recalculate an open period from the graph (a closed "
                         "period is left exactly as it is).")
    @errors_in(CalculationPayload)
    async def calculate_charge_period(self, info: Info[Context, None], period: str
                                      ) -> CalculationPayload:
        return _calculated(await _svc(info).calculate(info.context.principal, period))

    @strawberry.mutation(description="Calculate a period one last time and freeze it.")
    @errors_in(CalculationPayload)
    async def close_charge_period(self, info: Info[Context, None], period: str
                                  ) -> CalculationPayload:
        return _calculated(await _svc(info).close(info.context.principal, period))

    @strawberry.mutation(description="Book a correction in an open period, referencing the "
                         "line it corrects.")
    @errors_in(AdjustmentPayload)
    async def book_adjustment(self, info: Info[Context, None], input: AdjustmentInput
                              ) -> AdjustmentPayload:
        line = await _svc(info).adjust(info.context.principal, to_dict(input))
        return AdjustmentPayload(line=ChargeLine.from_model(line))
