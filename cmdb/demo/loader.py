"""Load the demo enterprise through the domain services, idempotently.

Every write goes through the service layer (validation, reference and rule checks, one
transaction each). Before writing, one read per kind finds what is already there:

- org units by kind and name (cost centres by code),
- services by name and kind, CIs by name and class (the oldest live one wins),
- live relationships by (source, type, target) among those items.

Only what is missing is created, so a second run writes nothing, and a run that stopped half
way is completed by the next one. Items that someone has retired since are left alone, and so
are the relationships that would touch them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, OperationalState, OrgKind
from cmdb.db.driver import Database
from cmdb.demo import data, people
from cmdb.demo.repository import DemoRepository
from cmdb.demo.specs import CISpec, OrgSpec, RelSpec, RoleSpec, ServiceSpec, UserSpec
from cmdb.identity.principal import Principal
from cmdb.identity.service import IdentityService
from cmdb.items.models import SERVICE, RelationType, rule_violation
from cmdb.services import Services
from cmdb.settings import Settings

Echo = Callable[[str], None]
Spec = TypeVar("Spec", ServiceSpec, CISpec)
Named = TypeVar("Named", RoleSpec, UserSpec)

class DemoDataError(RuntimeError):
    """The demo data is inconsistent, or the graph holds something that clashes with it."""


@dataclass
class Tally:
    created: int = 0
    present: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.created + self.present + self.skipped

    def add(self, section: Tally, echo: Echo, title: str) -> None:
        """Count a section in, and report it."""
        self.created += section.created
        self.present += section.present
        self.skipped += section.skipped
        echo(f"  {title}: {section.total} ({section.note()})")

    def note(self) -> str:
        text = f"{self.created} created, {self.present} already present"
        return text + (f", {self.skipped} skipped" if self.skipped else "")


@dataclass
class DemoReport:
    org_units: Tally = field(default_factory=Tally)
    services: Tally = field(default_factory=Tally)
    cis: Tally = field(default_factory=Tally)
    relationships: Tally = field(default_factory=Tally)
    catalogue: Tally = field(default_factory=Tally)  # items; reported on its own line
    # People are reported on their own lines, not in the summary.
    users: Tally = field(default_factory=Tally)
    roles: Tally = field(default_factory=Tally)
    sessions: Tally = field(default_factory=Tally)

    @property
    def created(self) -> int:
        return sum(t.created for t in self._tallies().values()) + self.catalogue.created

    def _tallies(self) -> dict[str, Tally]:
        return {"org units": self.org_units, "services": self.services, "CIs": self.cis,
                "relationships": self.relationships}

    def summary(self) -> str:
        tallies = self._tallies()
        created = ", ".join(f"{t.created} {name}" for name, t in tallies.items())
        present = ", ".join(f"{t.present} {name}" for name, t in tallies.items())
        text = f"demo data: created {created}; already present {present}"
        skipped = self.relationships.skipped
        if skipped:
            text += f"; skipped {skipped} relationships to retired items"
        return text


@dataclass(frozen=True)
class _Found:
    id: str
    retired: bool


async def load_demo(db: Database, settings: Settings, echo: Echo = print) -> str:
    """Load the demo enterprise (idempotent); returns a one-line summary with counts."""
    return (await load_demo_report(db, settings, echo)).summary()


async def load_demo_report(db: Database, settings: Settings, echo: Echo = print) -> DemoReport:
    problems = check_demo_data()
    if problems:
        raise DemoDataError("demo data is inconsistent: " + "; ".join(problems))
    services = Services(db, settings)
    repo = DemoRepository(db)
    report = DemoReport()
    org = await _load_org(services, repo, echo, report.org_units)
    items = await _load_services(services, repo, echo, report.services, org)
    items.update(await _load_cis(services, repo, echo, report.cis, org))
    await _load_relations(services, repo, echo, report.relationships, items)
    await _load_people(services, echo, report, org, items)
    await _load_catalogue(services, repo, echo, report.catalogue)
    await _register_discovery_sources(services, echo)
    await _load_chargeback(services, echo, items)
    await services.rollup.settle()  # the demo's health, rolled up before the command ends
    return report


async def _load_chargeback(services: Services, echo: Echo, items: dict[str, _Found]) -> None:
    from cmdb.demo.chargeback import load_chargeback

    sizes = {spec.name: int(spec.attributes["sizeGb"]) for spec in data.STORAGE}
    ids = {name: found.id for name, found in items.items() if not found.retired}
    await load_chargeback(services.chargeback, _LOADER, ids, sizes, echo)


# --- catalogue ---------------------------------------------------------------------------------


async def _load_catalogue(
    services: Services, repo: DemoRepository, echo: Echo, tally: Tally
) -> None:
    """The demo catalogue (categories and items), created through the catalogue service."""
    from cmdb.demo.catalogue import CATEGORIES, ITEMS
    from cmdb.identity.principal import Principal

    loader = Principal(user="demo-loader", roles=frozenset({"catalogue_admin"}))
    categories, present = await repo.catalogue()
    try:
        for name, description in CATEGORIES:
            if name.lower() not in categories:
                made = await services.catalog.create_category(
                    {"name": name, "description": description}, loader)
                categories[name.lower()] = made.id
        for spec in ITEMS:
            if spec["name"].lower() in present:
                tally.present += 1
                continue
            data = {k: v for k, v in spec.items() if k != "category"}
            data["category_id"] = categories[spec["category"].lower()]
            data["roles"] = ["requester"]
            await services.catalog.create_item(data, loader)
            tally.created += 1
    except DomainError as e:
        raise DemoDataError(f"cannot load the demo catalogue: {e}") from e
    echo(f"  catalogue items: {len(ITEMS)} ({tally.note()})")


# The sources of the files in cmdb/demo/discovery/ (see the README): re-registering is a no-op.
DEMO_SOURCES: tuple[dict[str, Any], ...] = (
    {"name": "nmap-lon", "kind": "SCANNER", "trust": 30,
     "description": "Weekly nmap -sS -sV -O scan of the London server subnet"},
    {"name": "asset-register", "kind": "SPREADSHEET", "trust": 80,
     "attribute_trust": {"attributes.osGuess": 0},
     "description": "Finance asset register export (CSV): serials, racks, warranties"},
    {"name": "k8s-trading", "kind": "CLOUD", "trust": 60,
     "description": "kubectl get nodes,pods -o json of the trading cluster"},
)


async def _register_discovery_sources(services: Services, echo: Echo) -> None:
    from cmdb.identity.principal import Principal

    loader = Principal(user="demo-loader", roles=frozenset({"admin"}))
    present = {s.name for s in await services.discovery.sources()}
    tally = Tally()
    for spec in DEMO_SOURCES:
        if spec["name"] in present:
            tally.present += 1
        else:
            await services.discovery.register_source(loader, spec)
            tally.created += 1
    echo(f"  discovery sources: {len(DEMO_SOURCES)} ({tally.note()})")


# --- organisation ------------------------------------------------------------------------------


async def _load_org(
    services: Services, repo: DemoRepository, echo: Echo, tally: Tally
) -> dict[tuple[OrgKind, str], str]:
    """Create the missing org units; returns (kind, key) -> id for all of them."""
    rows = await repo.org_units([u.name.lower() for u in data.ORG_UNITS],
                                [u.code for u in data.ORG_UNITS if u.code])
    ids: dict[tuple[OrgKind, str], str] = {}
    for title, units in (("locations", data.LOCATIONS), ("cost centres", data.COST_CENTRES),
                         ("owner groups", data.OWNER_GROUPS)):
        section = Tally()
        for unit in units:  # parents come before their children
            found = _find_org(rows, unit)
            if found is not None:
                section.present += 1
            else:
                found = await _create_org(services, unit, ids)
                section.created += 1
            ids[(unit.kind, unit.key)] = found
        tally.add(section, echo, title)
    return ids


def _find_org(rows: list[dict[str, Any]], unit: OrgSpec) -> str | None:
    for row in rows:
        if unit.kind.value not in row["labels"]:
            continue
        if unit.kind is OrgKind.COST_CENTRE:
            if row["code"] == unit.code:
                return str(row["id"])
        elif row["nameLower"] == unit.name.lower():
            return str(row["id"])
    return None


async def _create_org(
    services: Services, unit: OrgSpec, ids: dict[tuple[OrgKind, str], str]
) -> str:
    payload: dict[str, Any] = {"name": unit.name}
    for key, value in (("code", unit.code), ("email", unit.email),
                       ("description", unit.description)):
        if value is not None:
            payload[key] = value
    if unit.parent is not None:
        payload["parent_id"] = ids[(unit.kind, unit.parent)]
    try:
        created = await services.org.create(unit.kind, payload)
    except DomainError as e:
        raise DemoDataError(f"cannot create {unit.kind.value} {unit.name!r}: {e}") from e
    return created.id


def _refs(spec: ServiceSpec | CISpec, org: dict[tuple[OrgKind, str], str]) -> dict[str, Any]:
    return {
        "owner_group_id": org[(OrgKind.OWNER_GROUP, spec.owner)],
        "cost_centre_id": org[(OrgKind.COST_CENTRE, spec.cost_centre)],
        "location_id": org[(OrgKind.LOCATION, spec.location)],
    }


# --- services and configuration items ----------------------------------------------------------


def _find_item(rows: list[dict[str, Any]], name: str, key: str, value: str) -> _Found | None:
    for row in rows:
        if row["nameLower"] == name.lower() and row[key] == value:
            return _Found(str(row["id"]), bool(row["retired"]))
    return None


async def _load_items(
    echo: Echo, tally: Tally, rows: list[dict[str, Any]],
    sections: Sequence[tuple[str, Sequence[Spec]]], key: str,
    class_of: Callable[[Spec], str], create: Callable[[Spec], Awaitable[Any]], what: str,
) -> dict[str, _Found]:
    """Create the missing items of ``sections`` (``rows``: those stored, ``key``: the
    property holding their class); returns name -> item for all of them."""
    found: dict[str, _Found] = {}
    for title, specs in sections:
        section = Tally()
        for spec in specs:
            hit = _find_item(rows, spec.name, key, class_of(spec))
            if hit is None:
                try:
                    created = await create(spec)
                except DomainError as e:
                    raise DemoDataError(f"cannot create {what} {spec.name!r}: {e}") from e
                hit = _Found(created.id, retired=False)
                section.created += 1
            else:
                section.present += 1
            found[spec.name] = hit
        tally.add(section, echo, title)
    return found


async def _load_services(
    services: Services, repo: DemoRepository, echo: Echo, tally: Tally,
    org: dict[tuple[OrgKind, str], str],
) -> dict[str, _Found]:
    def create(spec: ServiceSpec) -> Awaitable[Any]:
        return services.service_records.create({
            "name": spec.name, "kind": spec.kind, "description": spec.description,
            "criticality": spec.criticality, "operational_state": OperationalState.UP,
            "sla": dict(spec.sla), "business_value": dict(spec.business_value),
            "attributes": dict(spec.attributes), **_refs(spec, org),
        })

    sections = (("business services", data.BUSINESS_SERVICES),
                ("technical services", data.TECHNICAL_SERVICES))
    rows = await repo.items(s.name for s in data.SERVICES)
    return await _load_items(echo, tally, rows, sections, "serviceKind",
                             lambda spec: spec.kind.value, create, "service")


async def _load_cis(
    services: Services, repo: DemoRepository, echo: Echo, tally: Tally,
    org: dict[tuple[OrgKind, str], str],
) -> dict[str, _Found]:
    def create(spec: CISpec) -> Awaitable[Any]:
        payload: dict[str, Any] = {
            "name": spec.name, "ci_class": spec.ci_class,
            "criticality": spec.criticality, "operational_state": OperationalState.UP,
            "identifiers": dict(spec.identifiers), "attributes": dict(spec.attributes),
            **_refs(spec, org),
        }
        if spec.description is not None:
            payload["description"] = spec.description
        return services.inventory.create(payload)

    rows = await repo.items(c.name for c in data.CIS)
    return await _load_items(echo, tally, rows, data.CI_SECTIONS, "ciClass",
                             lambda spec: spec.ci_class.value, create, "CI")


# --- relationships -----------------------------------------------------------------------------


async def _load_relations(
    services: Services, repo: DemoRepository, echo: Echo, tally: Tally,
    items: dict[str, _Found],
) -> None:
    live = await repo.live_relations(f.id for f in items.values())
    for title, specs in data.RELATION_SECTIONS:
        section = Tally()
        for rel in specs:
            source, target = items[rel.source], items[rel.target]
            if (source.id, rel.type.value, target.id) in live:
                section.present += 1
            elif source.retired or target.retired:
                section.skipped += 1
            else:
                try:
                    await services.relations.relate(
                        source.id, target.id, rel.type, dict(rel.properties)
                    )
                except DomainError as e:
                    raise DemoDataError(
                        f"cannot relate {rel.source!r} {rel.type.value} {rel.target!r}: {e}"
                    ) from e
                section.created += 1
        tally.add(section, echo, f"relationships, {title}")


# --- people --------------------------------------------------------------------------------------

# The loader administers people as an admin would.
_LOADER = Principal(user="demo-loader", roles=frozenset({"admin"}))


async def _load_people(
    services: Services, echo: Echo, report: DemoReport,
    org: dict[tuple[OrgKind, str], str], items: dict[str, _Found],
) -> None:
    """Roles and their entitlements, users with managers, cost centres and memberships, and
    a few days of desktop sessions through the broker feed. Only what is missing is written.
    """
    await _load_roles(services.identity, report.roles, items)
    await _load_users(services.identity, report.users, org)
    echo(f"  roles: {len(people.ROLES)} ({report.roles.note()})")
    echo(f"  users: {len(people.USERS)} ({report.users.note()})")

    result = await services.vdi.ingest(people.demo_session_events(utcnow()), _LOADER)
    counts = result.counts
    report.sessions.created = counts["stored"]
    report.sessions.present = counts["duplicate"]
    if counts["rejected"]:
        reasons = "; ".join(f"{r.event_id}: {r.reason}" for r in result.rejections[:3])
        raise DemoDataError(f"demo desktop sessions rejected: {reasons}")
    echo(f"  desktop session events: {len(result.results)} ({report.sessions.note()})")


def _missing(specs: Sequence[Named], present: Collection[str], tally: Tally) -> list[Named]:
    """The specs whose name is not ``present`` (the others are counted present)."""
    out = [s for s in specs if _name(s) not in present]
    tally.present += len(specs) - len(out)
    return out


def _name(spec: RoleSpec | UserSpec) -> str:
    return spec.name if isinstance(spec, RoleSpec) else spec.user_name


async def _load_roles(identity: IdentityService, tally: Tally, items: dict[str, _Found]
                      ) -> None:
    roles = await identity.repo.roles_by_name([r.name for r in people.ROLES])
    for spec in _missing(people.ROLES, roles, tally):
        roles[spec.name] = await identity.create_role(
            {"name": spec.name, "description": spec.description}, _LOADER)
        tally.created += 1
    entitled = await identity.repo.role_entitlements([r.id for r in roles.values()])
    for spec in people.ROLES:
        have = {e.target_id for e in entitled.get(roles[spec.name].id, [])}
        for package in spec.entitled_to:
            target = items[package]
            if target.id not in have and not target.retired:
                await identity.entitle(spec.name, target.id, _LOADER)


async def _load_users(identity: IdentityService, tally: Tally,
                      org: dict[tuple[OrgKind, str], str]) -> None:
    users = await identity.repo.users_by_name([u.user_name for u in people.USERS])
    for person in _missing(people.USERS, users, tally):
        users[person.user_name] = await identity.create_user(
            {"user_name": person.user_name, "display_name": person.display_name,
             "email": person.email}, _LOADER)
        tally.created += 1
    by_id = {u.id: name for name, u in users.items()}
    user_ids = [u.id for u in users.values()]
    memberships = await identity.repo.memberships_of_users(user_ids, include_ended=False)
    owned = await identity.repo.managed_cost_centre_ids(user_ids)
    groups = await identity.repo.owner_group_ids(user_ids)
    since = datetime.fromisoformat(people.MEMBERSHIP_SINCE)
    for person in people.USERS:
        user = users[person.user_name]
        cc_id = org[(OrgKind.COST_CENTRE, person.cost_centre)]
        if user.cost_centre_id != cc_id:
            await identity.set_cost_centre(person.user_name, person.cost_centre, _LOADER)
        if person.manager and by_id.get(user.manager_id or "") != person.manager:
            await identity.set_manager(person.user_name, person.manager, _LOADER)
        for code in person.owns:
            if org[(OrgKind.COST_CENTRE, code)] not in owned.get(user.id, []):
                await identity.set_cost_centre_manager(code, person.user_name, _LOADER)
        wanted_groups = [org[(OrgKind.OWNER_GROUP, g)] for g in person.owner_groups]
        if wanted_groups and sorted(groups.get(user.id, [])) != sorted(wanted_groups):
            await identity.set_owner_groups(person.user_name, wanted_groups, _LOADER)
        current = {m.role_name for m in memberships.get(user.id, [])}
        for role in person.roles:
            if role not in current:
                await identity.add_membership(person.user_name, role, since, _LOADER)


# --- consistency of the data itself ------------------------------------------------------------


def check_demo_data() -> list[str]:
    """Problems in the declarative data: duplicate keys, dangling references, rule breaks."""
    problems: list[str] = []
    org_keys: set[tuple[OrgKind, str]] = set()
    for unit in data.ORG_UNITS:
        k = (unit.kind, unit.key)
        if k in org_keys:
            problems.append(f"duplicate {unit.kind.value} {unit.key!r}")
        if unit.parent is not None and (unit.kind, unit.parent) not in org_keys:
            problems.append(f"{unit.key!r} names parent {unit.parent!r} before it is defined")
        org_keys.add(k)

    classes: dict[str, str] = {}
    specs: list[ServiceSpec | CISpec] = [*data.SERVICES, *data.CIS]
    for spec in specs:
        if spec.name.lower() in {n.lower() for n in classes}:
            problems.append(f"duplicate item name {spec.name!r}")
        classes[spec.name] = SERVICE if isinstance(spec, ServiceSpec) else spec.ci_class.value
        for kind, key in ((OrgKind.OWNER_GROUP, spec.owner),
                          (OrgKind.COST_CENTRE, spec.cost_centre),
                          (OrgKind.LOCATION, spec.location)):
            if (kind, key) not in org_keys:
                problems.append(f"{spec.name!r} refers to unknown {kind.value} {key!r}")

    seen: set[tuple[str, RelationType, str]] = set()
    for rel in data.RELATIONS:
        problems.extend(_relation_problems(rel, classes, seen))
    return problems


def _relation_problems(
    rel: RelSpec, classes: dict[str, str], seen: set[tuple[str, RelationType, str]]
) -> list[str]:
    text = f"{rel.source!r} {rel.type.value} {rel.target!r}"
    missing = [n for n in (rel.source, rel.target) if n not in classes]
    if missing:
        return [f"{text}: unknown item {missing[0]!r}"]
    out = []
    if (rel.source, rel.type, rel.target) in seen:
        out.append(f"{text}: listed twice")
    seen.add((rel.source, rel.type, rel.target))
    if rel.source == rel.target:
        out.append(f"{text}: relates an item to itself")
    why = rule_violation(rel.type, classes[rel.source], classes[rel.target])
    if why:
        out.append(f"{text}: {why}")
    return out
