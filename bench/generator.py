"""A synthetic enterprise for the benchmark, deterministic from a seed and streamed row by row.

Shape (per tier of N configuration items, relationships about 4 N):

- org: cost centres in a hierarchy (group, divisions, departments, teams), owner groups,
  locations (regions and their data-centre sites);
- business services DEPENDS_ON technical services; each technical service DEPENDS_ON 10 or
  more application instances (in redundancy groups), some also on a load balancer that
  DEPENDS_ON the same applications (a diamond);
- each application instance RUNS_ON 3 VMs (a 2-of-3 redundancy group) and DEPENDS_ON a
  database shared with about two other applications of its service (diamonds); some
  applications depend on an application of another service, and a few form DEPENDS_ON cycles;
- databases RUNS_ON a VM and USES a volume; VMs RUNS_ON hypervisor hosts, which are MEMBER_OF
  clusters of 3 to 16 hosts (redundancy groups), USES the cluster's datastore and CONNECTS_TO
  two access switches; access switches CONNECTS_TO distribution, distribution to core;
- virtual desktops are MEMBER_OF a desktop pool and RUNS_ON a VDI host; pools DEPENDS_ON their
  VDI cluster; software packages are INSTALLED_ON VMs, desktops, servers and hosts;
- mostly UP, some DEGRADED or DOWN; a spread of criticality; every CI has an owner group, a
  cost centre and a location; serial numbers, MACs, FQDNs and instance ids are unique.

Only small integer tables are kept in memory (which host a VM runs on, where a service's
applications start); rows are built when they are asked for.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import accumulate
from typing import Any

from cmdb.bulk import CIRow, OrgRow, RelationRow, ServiceRow
from cmdb.core.models import Criticality, LifecycleStatus, OperationalState, OrgKind
from cmdb.items.models import SLA, BusinessValue, CIClass, Identifiers, RelationType, ServiceKind

GENERATOR_VERSION = 1
TIERS: dict[str, int] = {"S": 10_000, "M": 100_000, "L": 1_000_000}
# owner groups, cost centres, data-centre sites
ORG_SIZES: dict[str, tuple[int, int, int]] = {
    "S": (20, 50, 8), "M": (80, 200, 20), "L": (250, 500, 50)}
REGIONS = ("EMEA", "Americas", "APAC", "India")
CITIES = ("London", "Frankfurt", "Paris", "Amsterdam", "Dublin", "Madrid", "Milan", "Zurich",
          "New York", "Chicago", "Dallas", "Toronto", "Sao Paulo", "Singapore", "Tokyo",
          "Sydney", "Hong Kong", "Mumbai", "Bangalore", "Chennai")
SYSTEMS = ("Payroll", "Billing", "CRM", "ERP", "Trading", "Messaging", "HR Portal", "Claims",
           "Logistics", "Risk", "Ledger", "Procurement", "Search", "Analytics", "Identity",
           "Payments", "Catalogue", "Reporting", "Scheduling", "Archive")
AREAS = ("Retail Banking", "Wealth", "Markets", "Insurance", "Corporate", "Operations",
         "Finance", "People", "Digital", "Supply Chain")
PRODUCTS = ("openssl", "nginx", "postgresql", "java-runtime", "python", "node", "dotnet",
            "tomcat", "redis", "kafka", "elastic-agent", "splunk-forwarder", "crowdstrike",
            "office", "chrome", "zoom", "teams", "adobe-reader", "7zip", "git")
TEAMS = ("Unix Ops", "Windows Ops", "Network", "Storage", "Database", "EUC", "Middleware",
         "Cloud", "Security", "App Support")

STATES = ((OperationalState.UP, 94.0), (OperationalState.DEGRADED, 4.0),
          (OperationalState.DOWN, 1.5), (OperationalState.UNKNOWN, 0.5))
CRITICALITY = ((Criticality.CRITICAL, 5.0), (Criticality.HIGH, 20.0),
               (Criticality.MEDIUM, 50.0), (Criticality.LOW, 25.0))
LIFECYCLE = ((LifecycleStatus.IN_SERVICE, 97.0), (LifecycleStatus.MAINTENANCE, 1.5),
             (LifecycleStatus.PLANNED, 1.0), (LifecycleStatus.ORDERED, 0.5))
# Packages installed on each kind of host.
INSTALLS = {CIClass.VIRTUAL_MACHINE: 5, CIClass.VIRTUAL_DESKTOP: 4, CIClass.SERVER: 3,
            CIClass.HYPERVISOR_HOST: 2}
# Order of the CI id blocks (ci-000001 ... in this order).
BLOCKS = (CIClass.NETWORK_DEVICE, CIClass.SERVER, CIClass.CLUSTER, CIClass.HYPERVISOR_HOST,
          CIClass.STORAGE_VOLUME, CIClass.VIRTUAL_MACHINE, CIClass.DATABASE,
          CIClass.APPLICATION_INSTANCE, CIClass.LOAD_BALANCER, CIClass.DESKTOP_POOL,
          CIClass.VIRTUAL_DESKTOP, CIClass.SOFTWARE_PACKAGE)

_REQUIRED: dict[str, Any] = {"required": True}
_ROLE_CODES = {"core": "core", "distribution": "dist", "access": "acc"}
_DEP, _RUN, _MEM = RelationType.DEPENDS_ON, RelationType.RUNS_ON, RelationType.MEMBER_OF
_CON, _USE, _INS = RelationType.CONNECTS_TO, RelationType.USES, RelationType.INSTALLED_ON


class Weighted:
    """Draws from a fixed weighted list with one ``random()`` per draw."""

    def __init__(self, pairs: Sequence[tuple[Any, float]]) -> None:
        self.values = [v for v, _ in pairs]
        self.cum = list(accumulate(w for _, w in pairs))

    def __call__(self, rng: random.Random) -> Any:
        return self.values[bisect_right(self.cum, rng.random() * self.cum[-1])]


_STATE, _CRIT, _LIFE = Weighted(STATES), Weighted(CRITICALITY), Weighted(LIFECYCLE)


def _partition(rng: random.Random, total: int, low: int, high: int) -> list[int]:
    """Sizes between ``low`` and ``high`` summing to ``total`` (``total >= low``)."""
    sizes: list[int] = []
    left = total
    while left > 0:
        size = min(rng.randint(low, high), left)
        if left - size < low and left <= high:
            size = left
        elif left - size < low:
            size = left - low
        sizes.append(size)
        left -= size
    return sizes


@dataclass
class Layout:
    """How many of everything, where each CI class's ids start, and the small tables that
    tie rows together (all derived from the tier and the seed)."""

    tier: str
    seed: int
    counts: dict[CIClass, int]
    start: dict[CIClass, int]  # global CI index (1-based) of each class's first CI
    owner_groups: int
    cost_centres: int
    sites: int
    business_services: int
    ts_apps: list[int]  # cumulative: apps of technical service t are [ts_apps[t], ts_apps[t+1])
    ts_dbs: list[int]  # cumulative, likewise for databases
    vm_clusters: list[int]  # cumulative host offsets of the VM clusters
    vdi_clusters: list[int]  # cumulative host offsets of the VDI clusters (after VM hosts)
    vm_host: array[int]  # host index of each VM
    net_sites: list[int]  # cumulative network-device offsets per site
    ts_owner: array[int] = field(default_factory=lambda: array("I"))
    ts_cc: array[int] = field(default_factory=lambda: array("I"))
    ts_crit: list[Criticality] = field(default_factory=list)

    @property
    def technical_services(self) -> int:
        return len(self.ts_apps) - 1

    @property
    def services(self) -> int:
        return self.business_services + self.technical_services

    @property
    def cis(self) -> int:
        return sum(self.counts.values())

    @property
    def clusters(self) -> int:
        return len(self.vm_clusters) + len(self.vdi_clusters) - 2

    def ci_id(self, cls: CIClass, i: int) -> str:
        return f"ci-{self.start[cls] + i:06d}"

    def ts_of_app(self, app: int) -> int:
        return bisect_right(self.ts_apps, app) - 1

    def cluster_of_host(self, host: int) -> tuple[int, int, int]:
        """(cluster index, first host, size) of a host index."""
        vm_hosts = self.vm_clusters[-1]
        table, base, offset = ((self.vm_clusters, 0, 0) if host < vm_hosts else
                               (self.vdi_clusters, len(self.vm_clusters) - 1, vm_hosts))
        c = bisect_right(table, host - offset) - 1
        return base + c, offset + table[c], table[c + 1] - table[c]

    def site_of_cluster(self, cluster: int) -> int:
        return cluster % self.sites


def plan(tier: str, seed: int = 42) -> Layout:
    """The layout of a tier: counts per class and the tables that place every CI."""
    n = TIERS[tier]
    rng = random.Random(f"{seed}:{tier}:plan")
    owner_groups, cost_centres, sites = ORG_SIZES[tier]
    apps = round(0.12 * n)
    n_ts = max(100, apps // 11)
    if apps < 10 * n_ts:
        raise ValueError(f"tier {tier} is too small for {n_ts} technical services")
    sizes = [10] * n_ts
    for _ in range(apps - 10 * n_ts):
        sizes[rng.randrange(n_ts)] += 1
    ts_apps = [0, *accumulate(sizes)]
    ts_dbs = [0, *accumulate(max(1, s // 3) for s in sizes)]
    dbs = ts_dbs[-1]
    vms = 2 * apps + dbs + round(0.04 * n)
    desktops = round(0.15 * n)
    vm_clusters = [0, *accumulate(_partition(rng, -(-vms // 12), 3, 16))]
    vdi_clusters = [0, *accumulate(_partition(rng, -(-desktops // 40), 3, 16))]
    hosts = vm_clusters[-1] + vdi_clusters[-1]
    clusters = len(vm_clusters) + len(vdi_clusters) - 2
    net = max(8 * sites, round(0.015 * n))
    per_site = [net // sites + (1 if s < net % sites else 0) for s in range(sites)]
    counts = {
        CIClass.NETWORK_DEVICE: net,
        CIClass.SERVER: round(0.01 * n),
        CIClass.CLUSTER: clusters,
        CIClass.HYPERVISOR_HOST: hosts,
        CIClass.STORAGE_VOLUME: max(round(0.2 * n), clusters + dbs),
        CIClass.VIRTUAL_MACHINE: vms,
        CIClass.DATABASE: dbs,
        CIClass.APPLICATION_INSTANCE: apps,
        CIClass.LOAD_BALANCER: min(n_ts, max(10, round(0.005 * n))),
        CIClass.DESKTOP_POOL: max(2, desktops // 250),
        CIClass.VIRTUAL_DESKTOP: desktops,
    }
    counts[CIClass.SOFTWARE_PACKAGE] = n - sum(counts.values())
    if counts[CIClass.SOFTWARE_PACKAGE] < 50:
        raise ValueError(f"tier {tier} leaves no room for software packages")
    start, g = {}, 1
    for cls in BLOCKS:
        start[cls], g = g, g + counts[cls]
    layout = Layout(
        tier=tier, seed=seed, counts=counts, start=start, owner_groups=owner_groups,
        cost_centres=cost_centres, sites=sites, business_services=max(5, n_ts // 6),
        ts_apps=ts_apps, ts_dbs=ts_dbs, vm_clusters=vm_clusters, vdi_clusters=vdi_clusters,
        vm_host=array("I", (rng.randrange(vm_clusters[-1]) for _ in range(vms))),
        net_sites=[0, *accumulate(per_site)],
    )
    app_groups = range(owner_groups // 5, owner_groups)  # the first fifth run infrastructure
    for _ in range(n_ts):
        layout.ts_owner.append(rng.choice(app_groups))
        layout.ts_cc.append(rng.randrange(cost_centres))
        layout.ts_crit.append(_CRIT(rng))
    return layout


class Enterprise:
    """The rows of one tier and seed, streamed: org units, services, CIs, relationships."""

    def __init__(self, tier: str, seed: int = 42) -> None:
        self.tier, self.seed = tier, seed
        self.layout = plan(tier, seed)

    def _rng(self, stream: str) -> random.Random:
        return random.Random(f"{self.seed}:{self.tier}:{stream}")

    # ------------------------------------------------------------------------ org

    def org_units(self, kind: OrgKind) -> Iterator[OrgRow]:
        """Parents come before their children."""
        lay = self.layout
        if kind is OrgKind.OWNER_GROUP:
            for i in range(lay.owner_groups):
                team = TEAMS[i % len(TEAMS)] if i < lay.owner_groups // 5 else (
                    f"{SYSTEMS[i % len(SYSTEMS)]} Support")
                yield OrgRow(id=f"og-{i + 1:04d}", name=f"{team} {i + 1:04d}",
                             email=f"og-{i + 1:04d}@corp.example")
        elif kind is OrgKind.COST_CENTRE:
            yield from self._cost_centres()
        else:
            for r, region in enumerate(REGIONS):
                yield OrgRow(id=f"loc-{r + 1:04d}", name=region)
            for s in range(lay.sites):
                yield OrgRow(id=self._site_id(s), name=self._site_name(s),
                             parent_id=f"loc-{s % len(REGIONS) + 1:04d}")

    def _cost_centres(self) -> Iterator[OrgRow]:
        rng = self._rng("cost-centres")
        n = self.layout.cost_centres
        divisions = min(len(AREAS), max(2, n // 10))
        departments = (n - 1 - divisions) // 4
        yield OrgRow(id="cc-0001", name="Group", code="CC-1000")
        for i in range(1, n):
            if i <= divisions:
                parent, name = 1, AREAS[i - 1]
            elif i <= divisions + departments:
                parent, name = rng.randint(2, divisions + 1), f"Department {i}"
            else:
                parent = rng.randint(divisions + 2, divisions + departments + 1)
                name = f"Team {i}"
            yield OrgRow(id=f"cc-{i + 1:04d}", name=name, code=f"CC-{1000 + i}",
                         parent_id=f"cc-{parent:04d}")

    def _site_id(self, site: int) -> str:
        return f"loc-{len(REGIONS) + site + 1:04d}"

    def _site_name(self, site: int) -> str:
        return f"{CITIES[site % len(CITIES)]} DC{site // len(CITIES) + 1}"

    def _site_domain(self, site: int) -> str:
        city = CITIES[site % len(CITIES)].lower().replace(" ", "")
        return f"{city}{site // len(CITIES) + 1}.corp.example"

    # ------------------------------------------------------------------------ services

    def ts_id(self, t: int) -> str:
        return f"svc-{self.layout.business_services + t + 1:06d}"

    def bs_id(self, b: int) -> str:
        return f"svc-{b + 1:06d}"

    def services(self) -> Iterator[ServiceRow]:
        lay, rng = self.layout, self._rng("services")
        for b in range(lay.business_services):
            crit = _CRIT(rng)
            yield ServiceRow(
                id=self.bs_id(b), name=f"{AREAS[b % len(AREAS)]} {SYSTEMS[b % len(SYSTEMS)]}"
                f" {b + 1}", kind=ServiceKind.BUSINESS, criticality=crit,
                operational_state=_STATE(rng), description="Business service",
                owner_group_id=self._og(rng.choice(range(lay.owner_groups // 5,
                                                         lay.owner_groups))),
                cost_centre_id=self._cc(rng.randrange(lay.cost_centres)),
                location_id=self._site_id(rng.randrange(lay.sites)),
                sla=SLA(availability_target=rng.choice(
                    (Decimal("99.0"), Decimal("99.5"), Decimal("99.9"), Decimal("99.95"))),
                    response_target_minutes=rng.choice((15, 30, 60)),
                    restore_target_minutes=rng.choice((120, 240, 480)),
                    maintenance_windows=[rng.choice(("Sun 02:00-04:00", "Sat 22:00-23:59"))]),
                business_value=BusinessValue(
                    revenue_per_hour=Decimal(rng.randrange(100_000, 50_000_000)) / 100,
                    users=rng.randrange(50, 20_000)),
            )
        for t in range(lay.technical_services):
            yield ServiceRow(
                id=self.ts_id(t), name=f"{SYSTEMS[t % len(SYSTEMS)]} Platform {t + 1}",
                kind=ServiceKind.TECHNICAL, criticality=lay.ts_crit[t],
                operational_state=_STATE(rng), owner_group_id=self._og(lay.ts_owner[t]),
                cost_centre_id=self._cc(lay.ts_cc[t]),
                location_id=self._site_id(t % lay.sites),
                sla=SLA(availability_target=Decimal("99.9"), restore_target_minutes=240),
            )

    # ------------------------------------------------------------------------ CIs

    def cis(self) -> Iterator[CIRow]:
        rng = self._rng("cis")
        yield from self._network(rng)
        yield from self._servers(rng)
        yield from self._clusters(rng)
        yield from self._hosts(rng)
        yield from self._volumes(rng)
        yield from self._vms(rng)
        yield from self._databases(rng)
        yield from self._apps(rng)
        yield from self._load_balancers(rng)
        yield from self._pools(rng)
        yield from self._desktops(rng)
        yield from self._packages(rng)

    def items(self) -> Iterator[ServiceRow | CIRow]:
        yield from self.services()
        yield from self.cis()

    def _og(self, i: int) -> str:
        return f"og-{i + 1:04d}"

    def _cc(self, i: int) -> str:
        return f"cc-{i + 1:04d}"

    def _ci(self, rng: random.Random, cls: CIClass, i: int, name: str, site: int, *,
            owner: int | None = None, cc: int | None = None, crit: Criticality | None = None,
            ids: Identifiers | None = None, attributes: dict[str, Any] | None = None) -> CIRow:
        lay = self.layout
        return CIRow(
            id=lay.ci_id(cls, i), name=name, ci_class=cls,
            lifecycle_status=_LIFE(rng), operational_state=_STATE(rng),
            criticality=crit or _CRIT(rng),
            owner_group_id=self._og(owner if owner is not None
                                    else rng.randrange(max(1, lay.owner_groups // 5))),
            cost_centre_id=self._cc(cc if cc is not None else rng.randrange(lay.cost_centres)),
            location_id=self._site_id(site),
            identifiers=ids or Identifiers(), attributes=attributes or {},
        )

    def _host_ids(self, cls: CIClass, i: int, host: str, site: int, oui: str,
                  serial: str | None = None) -> Identifiers:
        g = self.layout.start[cls] + i
        return Identifiers(
            host_name=host, domain=self._site_domain(site), serial_number=serial,
            mac_address=f"{oui}:{g >> 16 & 0xFF:02X}:{g >> 8 & 0xFF:02X}:{g & 0xFF:02X}")

    def _site_of_net(self, i: int) -> int:
        return bisect_right(self.layout.net_sites, i) - 1

    def _net_role(self, i: int) -> tuple[str, int, int]:
        """(role, site, position in the site) of network device ``i``."""
        site = self._site_of_net(i)
        pos = i - self.layout.net_sites[site]
        role = "core" if pos < 2 else "distribution" if pos < 6 else "access"
        return role, site, pos

    def _network(self, rng: random.Random) -> Iterator[CIRow]:
        for i in range(self.layout.counts[CIClass.NETWORK_DEVICE]):
            role, site, pos = self._net_role(i)
            host = f"{_ROLE_CODES[role]}-sw-{site + 1:02d}-{pos + 1:04d}"
            serial = f"FOC{self.layout.start[CIClass.NETWORK_DEVICE] + i:08d}"
            yield self._ci(rng, CIClass.NETWORK_DEVICE, i, host, site,
                           crit=Criticality.CRITICAL if role == "core" else None,
                           ids=self._host_ids(CIClass.NETWORK_DEVICE, i, host, site, "00:1B:54",
                                              serial),
                           attributes={"role": role, "vendor": "Cisco",
                                       "model": rng.choice(("C9300", "C9500", "N9K-C93180"))})

    def _servers(self, rng: random.Random) -> Iterator[CIRow]:
        lay = self.layout
        for i in range(lay.counts[CIClass.SERVER]):
            site = i % lay.sites
            host = f"srv-{site + 1:02d}-{i + 1:06d}"
            yield self._ci(rng, CIClass.SERVER, i, host, site,
                           ids=self._host_ids(CIClass.SERVER, i, host, site, "3C:FD:FE",
                                              f"CZJ{lay.start[CIClass.SERVER] + i:08d}"),
                           attributes={"vendor": "HPE", "model": "DL380 Gen10",
                                       "cpuCores": rng.choice((16, 32, 64)),
                                       "memoryGb": rng.choice((128, 256, 512)),
                                       "os": rng.choice(("RHEL 9", "Windows Server 2022"))})

    def _clusters(self, rng: random.Random) -> Iterator[CIRow]:
        lay = self.layout
        vm_clusters = len(lay.vm_clusters) - 1
        for c in range(lay.clusters):
            vdi = c >= vm_clusters
            table, k = (lay.vdi_clusters, c - vm_clusters) if vdi else (lay.vm_clusters, c)
            size = table[k + 1] - table[k]
            yield self._ci(rng, CIClass.CLUSTER, c, f"{'vdi' if vdi else 'esx'}-cluster-"
                           f"{c + 1:05d}", lay.site_of_cluster(c),
                           attributes={"hypervisor": "vSphere 8", "hosts": size,
                                       "minHostsUp": max(1, size - 1), "vdi": vdi})

    def _hosts(self, rng: random.Random) -> Iterator[CIRow]:
        lay = self.layout
        for h in range(lay.counts[CIClass.HYPERVISOR_HOST]):
            cluster, _, _ = lay.cluster_of_host(h)
            site = lay.site_of_cluster(cluster)
            host = f"esx-{site + 1:02d}-{h + 1:06d}"
            serial = f"MXQ{lay.start[CIClass.HYPERVISOR_HOST] + h:08d}"
            yield self._ci(rng, CIClass.HYPERVISOR_HOST, h, host, site,
                           ids=self._host_ids(CIClass.HYPERVISOR_HOST, h, host, site,
                                              "B4:96:91", serial),
                           attributes={"vendor": "Dell", "model": "PowerEdge R750",
                                       "cpuCores": 64, "memoryGb": rng.choice((512, 768, 1024)),
                                       "hypervisor": "ESXi 8.0"})

    def _volumes(self, rng: random.Random) -> Iterator[CIRow]:
        lay = self.layout
        g0 = lay.start[CIClass.STORAGE_VOLUME]
        for v in range(lay.counts[CIClass.STORAGE_VOLUME]):
            kind = "datastore" if v < lay.clusters else "data"
            yield self._ci(rng, CIClass.STORAGE_VOLUME, v, f"vol-{kind}-{v + 1:06d}",
                           rng.randrange(lay.sites),
                           ids=Identifiers(serial_number=f"naa.60060e80{g0 + v:024x}"),
                           attributes={"sizeGb": rng.choice((100, 250, 500, 1000, 4000)),
                                       "tier": rng.choice(("gold", "silver", "bronze")),
                                       "array": f"array-{rng.randrange(1, 40):02d}"})

    def _vm_site(self, v: int) -> int:
        lay = self.layout
        return lay.site_of_cluster(lay.cluster_of_host(lay.vm_host[v])[0])

    def _app_of_vm(self, v: int) -> int | None:
        """The application whose first VM is ``v`` (apps use VMs 2j, 2j+1, 2j+2)."""
        return v // 2 if v < 2 * self.layout.counts[CIClass.APPLICATION_INSTANCE] else None

    def _vms(self, rng: random.Random) -> Iterator[CIRow]:
        lay = self.layout
        g0 = lay.start[CIClass.VIRTUAL_MACHINE]
        salt = random.Random(f"{self.seed}:uuid").getrandbits(64)
        for v in range(lay.counts[CIClass.VIRTUAL_MACHINE]):
            site = self._vm_site(v)
            app = self._app_of_vm(v)
            t = lay.ts_of_app(app) if app is not None else None
            host = f"vm-{site + 1:02d}-{v + 1:07d}"
            ids = self._host_ids(CIClass.VIRTUAL_MACHINE, v, host, site, "00:50:56")
            lo = ((g0 + v) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
            uid = f"{salt:016x}{lo:016x}"
            yield self._ci(
                rng, CIClass.VIRTUAL_MACHINE, v, host, site,
                owner=lay.ts_owner[t] if t is not None else None,
                cc=lay.ts_cc[t] if t is not None else None,
                ids=ids.model_copy(update={"cloud_instance_id": f"{uid[:8]}-{uid[8:12]}-"
                                           f"{uid[12:16]}-{uid[16:20]}-{uid[20:]}"}),
                attributes={"os": rng.choice(("RHEL 9", "Ubuntu 22.04", "Windows Server 2022")),
                            "vcpus": rng.choice((2, 4, 8, 16)),
                            "memoryGb": rng.choice((4, 8, 16, 32, 64))})

    def _databases(self, rng: random.Random) -> Iterator[CIRow]:
        lay = self.layout
        db_vm0 = 2 * lay.counts[CIClass.APPLICATION_INSTANCE]
        for t in range(lay.technical_services):
            for d in range(lay.ts_dbs[t], lay.ts_dbs[t + 1]):
                system = SYSTEMS[t % len(SYSTEMS)].lower().replace(" ", "")
                yield self._ci(rng, CIClass.DATABASE, d, f"{system}-db-{d + 1:06d}",
                               self._vm_site(db_vm0 + d), owner=lay.ts_owner[t],
                               cc=lay.ts_cc[t], crit=lay.ts_crit[t],
                               attributes={"engine": rng.choice(("PostgreSQL", "Oracle",
                                                                 "SQL Server")),
                                           "sizeGb": rng.randrange(10, 5000)})

    def _apps(self, rng: random.Random) -> Iterator[CIRow]:
        lay = self.layout
        for t in range(lay.technical_services):
            system = SYSTEMS[t % len(SYSTEMS)].lower().replace(" ", "")
            for a in range(lay.ts_apps[t], lay.ts_apps[t + 1]):
                yield self._ci(rng, CIClass.APPLICATION_INSTANCE, a,
                               f"{system}-app-{a + 1:06d}", self._vm_site(2 * a),
                               owner=lay.ts_owner[t], cc=lay.ts_cc[t], crit=lay.ts_crit[t],
                               attributes={"runtime": rng.choice(("java", "dotnet", "node",
                                                                  "python")),
                                           "port": rng.choice((443, 8080, 8443))})

    def _load_balancers(self, rng: random.Random) -> Iterator[CIRow]:
        lay = self.layout
        for i in range(lay.counts[CIClass.LOAD_BALANCER]):
            site = i % lay.sites
            host = f"lb-{site + 1:02d}-{i + 1:05d}"
            yield self._ci(rng, CIClass.LOAD_BALANCER, i, host, site, owner=lay.ts_owner[i],
                           cc=lay.ts_cc[i], crit=lay.ts_crit[i],
                           ids=self._host_ids(CIClass.LOAD_BALANCER, i, host, site, "00:01:D7",
                                              f"F5{lay.start[CIClass.LOAD_BALANCER] + i:08d}"),
                           attributes={"vendor": "F5", "model": "BIG-IP i5800"})

    def _pools(self, rng: random.Random) -> Iterator[CIRow]:
        lay = self.layout
        for p in range(lay.counts[CIClass.DESKTOP_POOL]):
            yield self._ci(rng, CIClass.DESKTOP_POOL, p, f"pool-{p + 1:04d}",
                           lay.site_of_cluster(self._pool_cluster(p)),
                           attributes={"image": rng.choice(("win11-standard", "win11-dev",
                                                            "win11-trader"))})

    def _pool_cluster(self, p: int) -> int:
        lay = self.layout
        vdi = len(lay.vdi_clusters) - 1
        return len(lay.vm_clusters) - 1 + p % vdi

    def _desktop_pool(self, d: int) -> int:
        lay = self.layout
        return d * lay.counts[CIClass.DESKTOP_POOL] // lay.counts[CIClass.VIRTUAL_DESKTOP]

    def _desktop_host(self, d: int) -> int:
        lay = self.layout
        cluster = self._pool_cluster(self._desktop_pool(d)) - (len(lay.vm_clusters) - 1)
        first = lay.vm_clusters[-1] + lay.vdi_clusters[cluster]
        return first + d % (lay.vdi_clusters[cluster + 1] - lay.vdi_clusters[cluster])

    def _desktops(self, rng: random.Random) -> Iterator[CIRow]:
        lay = self.layout
        for d in range(lay.counts[CIClass.VIRTUAL_DESKTOP]):
            site = lay.site_of_cluster(self._pool_cluster(self._desktop_pool(d)))
            host = f"vd-{site + 1:02d}-{d + 1:07d}"
            yield self._ci(rng, CIClass.VIRTUAL_DESKTOP, d, host, site,
                           crit=Criticality.LOW,
                           ids=self._host_ids(CIClass.VIRTUAL_DESKTOP, d, host, site,
                                              "00:0C:29"),
                           attributes={"os": "Windows 11", "vcpus": 2, "memoryGb": 8})

    def _packages(self, rng: random.Random) -> Iterator[CIRow]:
        lay = self.layout
        for p in range(lay.counts[CIClass.SOFTWARE_PACKAGE]):
            product = PRODUCTS[p % len(PRODUCTS)]
            version = f"{p // len(PRODUCTS) // 100 + 1}.{p // len(PRODUCTS) % 100}"
            yield self._ci(rng, CIClass.SOFTWARE_PACKAGE, p, f"{product} {version}",
                           rng.randrange(lay.sites), crit=Criticality.LOW,
                           attributes={"product": product, "version": version})

    # ------------------------------------------------------------------------ relationships

    def relations(self) -> Iterator[RelationRow]:
        """Every relationship once; consumer (source) to provider (target)."""
        rng = self._rng("relations")
        for s, rel, t, props in self._relation_tuples(rng):
            yield RelationRow(source_id=s, target_id=t, type=rel, properties=props)

    def _relation_tuples(
        self, rng: random.Random
    ) -> Iterator[tuple[str, RelationType, str, dict[str, Any]]]:
        yield from self._service_relations()
        yield from self._app_relations()
        yield from self._infrastructure_relations()
        yield from self._installs(rng)

    def _service_relations(self) -> Iterator[tuple[str, RelationType, str, dict[str, Any]]]:
        lay = self.layout
        app, lb = CIClass.APPLICATION_INSTANCE, CIClass.LOAD_BALANCER
        for t in range(lay.technical_services):
            b = t % lay.business_services
            yield self.bs_id(b), _DEP, self.ts_id(t), _REQUIRED
            other = (t * 7 + 3) % lay.business_services
            if t % 5 == 0 and other != b:
                yield self.bs_id(other), _DEP, self.ts_id(t), {"required": False}
            first = lay.ts_apps[t]
            for a in range(first, lay.ts_apps[t + 1]):
                group = f"{self.ts_id(t)}-g{(a - first) // 3 + 1}"
                yield self.ts_id(t), _DEP, lay.ci_id(app, a), {"redundancyGroup": group}
            if t < lay.counts[lb]:
                yield self.ts_id(t), _DEP, lay.ci_id(lb, t), _REQUIRED
                for a in range(first, lay.ts_apps[t + 1]):
                    yield lay.ci_id(lb, t), _DEP, lay.ci_id(app, a), {
                        "redundancyGroup": f"{lay.ci_id(lb, t)}-pool"}

    def _app_relations(self) -> Iterator[tuple[str, RelationType, str, dict[str, Any]]]:
        lay = self.layout
        app, vm, db = CIClass.APPLICATION_INSTANCE, CIClass.VIRTUAL_MACHINE, CIClass.DATABASE
        apps, pool = lay.counts[app], 2 * lay.counts[app]
        for t in range(lay.technical_services):
            first, dbs = lay.ts_apps[t], lay.ts_dbs[t + 1] - lay.ts_dbs[t]
            for a in range(first, lay.ts_apps[t + 1]):
                me = lay.ci_id(app, a)
                for k in range(3):  # two of the three nodes must be up
                    yield me, _RUN, lay.ci_id(vm, (2 * a + k) % pool), {
                        "redundancyGroup": f"{me}-nodes", "minUp": 2}
                yield me, _DEP, lay.ci_id(db, lay.ts_dbs[t] + (a - first) % dbs), _REQUIRED
                if a % 10 == 5 and (a * 7 + 3) % apps != a:
                    yield me, _DEP, lay.ci_id(app, (a * 7 + 3) % apps), {"required": False}
                if a % 500 < 3 and a - a % 500 + 2 < apps:  # a cycle of three
                    nxt = a + 1 if a % 500 < 2 else a - 2
                    yield me, _DEP, lay.ci_id(app, nxt), {"required": False}
        for d in range(lay.counts[db]):
            yield lay.ci_id(db, d), _RUN, lay.ci_id(vm, pool + d), _REQUIRED

    def _infrastructure_relations(
        self,
    ) -> Iterator[tuple[str, RelationType, str, dict[str, Any]]]:
        lay = self.layout
        c = lay.counts
        vol, vm, host = CIClass.STORAGE_VOLUME, CIClass.VIRTUAL_MACHINE, CIClass.HYPERVISOR_HOST
        cluster, net = CIClass.CLUSTER, CIClass.NETWORK_DEVICE
        # storage: databases, then VMs, each on a volume of their own
        for d in range(c[CIClass.DATABASE]):
            yield lay.ci_id(CIClass.DATABASE, d), _USE, lay.ci_id(vol, lay.clusters + d), \
                _REQUIRED
        first_vm_volume = lay.clusters + c[CIClass.DATABASE]
        for v in range(c[vm]):
            yield lay.ci_id(vm, v), _RUN, lay.ci_id(host, lay.vm_host[v]), _REQUIRED
            if first_vm_volume + v < c[vol]:
                yield lay.ci_id(vm, v), _USE, lay.ci_id(vol, first_vm_volume + v), _REQUIRED
        for h in range(c[host]):
            k, _, size = lay.cluster_of_host(h)
            me = lay.ci_id(host, h)
            yield me, _MEM, lay.ci_id(cluster, k), {  # N+1: one host may be down
                "redundancyGroup": lay.ci_id(cluster, k), "minUp": max(1, size - 1)}
            yield me, _USE, lay.ci_id(vol, k), _REQUIRED
            yield from self._uplinks(me, lay.site_of_cluster(k), h)
        for s in range(c[CIClass.SERVER]):
            yield from self._uplinks(lay.ci_id(CIClass.SERVER, s), s % lay.sites, s)
        for i in range(c[CIClass.LOAD_BALANCER]):
            yield from self._uplinks(lay.ci_id(CIClass.LOAD_BALANCER, i), i % lay.sites, i, 1)
        for i in range(c[net]):
            role, site, pos = self._net_role(i)
            base = lay.net_sites[site]
            if role == "core" and pos == 0:
                yield lay.ci_id(net, i), _CON, lay.ci_id(net, base + 1), {"link": "2x100G"}
            elif role != "core":
                upper = (0, 2) if role == "distribution" else (2, 4)
                for k in range(*upper):
                    yield lay.ci_id(net, i), _CON, lay.ci_id(net, base + k), {
                        "redundancyGroup": f"{lay.ci_id(net, i)}-uplinks"}
        pools, desktops = CIClass.DESKTOP_POOL, CIClass.VIRTUAL_DESKTOP
        for p in range(c[pools]):
            yield lay.ci_id(pools, p), _DEP, lay.ci_id(cluster, self._pool_cluster(p)), \
                _REQUIRED
        for d in range(c[desktops]):
            yield lay.ci_id(desktops, d), _MEM, lay.ci_id(pools, self._desktop_pool(d)), {}
            yield lay.ci_id(desktops, d), _RUN, lay.ci_id(host, self._desktop_host(d)), \
                _REQUIRED

    def _uplinks(self, me: str, site: int, i: int, links: int = 2
                 ) -> Iterator[tuple[str, RelationType, str, dict[str, Any]]]:
        """Two links (or one) to access switches of the site."""
        lay = self.layout
        first, access = lay.net_sites[site] + 6, lay.net_sites[site + 1] - lay.net_sites[site] - 6
        for k in range(links):
            target = lay.ci_id(CIClass.NETWORK_DEVICE, first + (i + k) % access)
            yield me, _CON, target, {"redundancyGroup": f"{me}-uplinks"} if links > 1 \
                else _REQUIRED

    def _installs(
        self, rng: random.Random
    ) -> Iterator[tuple[str, RelationType, str, dict[str, Any]]]:
        """Packages on hosts; popular packages are installed far more often (skewed)."""
        lay = self.layout
        packages = lay.counts[CIClass.SOFTWARE_PACKAGE]
        for cls, per_host in INSTALLS.items():
            for h in range(lay.counts[cls]):
                chosen: set[int] = set()
                while len(chosen) < per_host:
                    chosen.add(int(packages * rng.random() ** 2))
                target = lay.ci_id(cls, h)
                for p in sorted(chosen):
                    yield lay.ci_id(CIClass.SOFTWARE_PACKAGE, p), _INS, target, {}

    # ------------------------------------------------------------------------ totals

    def relation_count(self) -> int:
        """The number of rows ``relations()`` yields, without building them."""
        lay = self.layout
        c = lay.counts
        n_ts, n_bs, apps = lay.technical_services, lay.business_services, c[
            CIClass.APPLICATION_INSTANCE]
        total = n_ts + sum(1 for t in range(0, n_ts, 5) if (t * 7 + 3) % n_bs != t % n_bs)
        total += apps + c[CIClass.LOAD_BALANCER] + lay.ts_apps[c[CIClass.LOAD_BALANCER]]
        total += 4 * apps + sum(1 for a in range(5, apps, 10) if (a * 7 + 3) % apps != a)
        total += sum(1 for a in range(apps) if a % 500 < 3 and a - a % 500 + 2 < apps)
        total += 2 * c[CIClass.DATABASE]
        vm_volumes = c[CIClass.STORAGE_VOLUME] - lay.clusters - c[CIClass.DATABASE]
        total += c[CIClass.VIRTUAL_MACHINE] + min(vm_volumes, c[CIClass.VIRTUAL_MACHINE])
        total += 4 * c[CIClass.HYPERVISOR_HOST] + 2 * c[CIClass.SERVER]
        total += c[CIClass.LOAD_BALANCER]
        for s in range(lay.sites):
            size = lay.net_sites[s + 1] - lay.net_sites[s]
            total += 1 + 2 * (size - 2)
        total += c[CIClass.DESKTOP_POOL] + 2 * c[CIClass.VIRTUAL_DESKTOP]
        total += sum(c[cls] * k for cls, k in INSTALLS.items())
        return total

    def summary(self) -> dict[str, Any]:
        lay = self.layout
        return {
            "tier": self.tier, "seed": self.seed, "generator": GENERATOR_VERSION,
            "cis": lay.cis, "services": lay.services, "relations": self.relation_count(),
            "ownerGroups": lay.owner_groups, "costCentres": lay.cost_centres,
            "locations": len(REGIONS) + lay.sites,
            "classes": {cls.value: n for cls, n in lay.counts.items()},
        }
