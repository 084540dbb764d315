"""The demo enterprise as plain data: org units, services, CIs and relationships (its
people and their desktop sessions are in ``people``).

Everything refers to everything else by a stable key: owner groups and locations by name,
cost centres by code, services and CIs by name (unique across both). The names are relied on
by tests and the README; change them only together.

The story it tells: the physical server ``server123`` is down, and that is why Payroll is down:

    Payroll -DEPENDS_ON-> Payroll Application Service -DEPENDS_ON-> payroll-app
            -DEPENDS_ON-> payroll-db -RUNS_ON-> server123

Relationship properties carry hints for the health roll-up: ``required`` (this provider down
takes the consumer down) and ``redundancyGroup`` (providers that stand in for one another).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from cmdb.core.models import Criticality, OrgKind
from cmdb.demo.specs import CISpec, OrgSpec, RelSpec, ServiceSpec
from cmdb.items.models import CIClass, RelationType, ServiceKind

# ---------------------------------------------------------------------------------------------
# Organisation
# ---------------------------------------------------------------------------------------------

LONDON = "DC London"
FRANKFURT = "DC Frankfurt"
_DOMAIN = {LONDON: "lon.corp.example", FRANKFURT: "fra.corp.example"}

LOCATIONS: tuple[OrgSpec, ...] = (
    OrgSpec(OrgKind.LOCATION, LONDON, description="Primary data centre (Docklands), Tier III"),
    OrgSpec(OrgKind.LOCATION, FRANKFURT, description="Secondary data centre, active/active"),
)

COST_CENTRES: tuple[OrgSpec, ...] = (
    OrgSpec(OrgKind.COST_CENTRE, "Corporate", "CC-1000"),
    OrgSpec(OrgKind.COST_CENTRE, "Finance", "CC-1100", "CC-1000"),
    OrgSpec(OrgKind.COST_CENTRE, "Trading Desk", "CC-1200", "CC-1000"),
    OrgSpec(OrgKind.COST_CENTRE, "IT Operations", "CC-1300", "CC-1000"),
    OrgSpec(OrgKind.COST_CENTRE, "Data Centre Infrastructure", "CC-1310", "CC-1300"),
    OrgSpec(OrgKind.COST_CENTRE, "End User Computing", "CC-1320", "CC-1300"),
    OrgSpec(OrgKind.COST_CENTRE, "HR", "CC-1400", "CC-1000"),
)

_GROUPS = {
    "Unix Ops": "unix-ops",
    "Windows Ops": "windows-ops",
    "DBA Team": "dba",
    "Network Team": "network",
    "Storage Team": "storage",
    "Virtualisation Team": "virtualisation",
    "EUC Team": "euc",
    "Messaging Team": "messaging",
    "Collaboration Team": "collaboration",
    "App Support Payroll": "app-support-payroll",
    "App Support Trading": "app-support-trading",
}
OWNER_GROUPS: tuple[OrgSpec, ...] = tuple(
    OrgSpec(OrgKind.OWNER_GROUP, name, email=f"{mail}@corp.example")
    for name, mail in _GROUPS.items()
)

ORG_UNITS: tuple[OrgSpec, ...] = LOCATIONS + COST_CENTRES + OWNER_GROUPS

# ---------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------


def _sla(availability: str, response: int, restore: int, *windows: str) -> dict[str, Any]:
    return {"availability_target": Decimal(availability), "response_target_minutes": response,
            "restore_target_minutes": restore, "maintenance_windows": list(windows)}


def _value(revenue_per_hour: str, users: int) -> dict[str, Any]:
    return {"revenue_per_hour": Decimal(revenue_per_hour), "users": users}


# Each business service and the technical service it runs on promise the same.
_PAYROLL_SLA = _sla("99.9", 15, 240, "Sun 02:00-04:00")
_MAIL_SLA = _sla("99.9", 30, 240, "Sat 23:00-01:00")
_TRADING_SLA = _sla("99.99", 5, 30, "Sat 06:00-10:00")
_VDI_SLA = _sla("99.5", 30, 480, "Sun 04:00-06:00")
_COLLAB_SLA = _sla("99.5", 60, 480, "Sun 06:00-08:00")

_B, _T = ServiceKind.BUSINESS, ServiceKind.TECHNICAL
_CRIT, _HIGH, _MED, _LOW = (Criticality.CRITICAL, Criticality.HIGH, Criticality.MEDIUM,
                            Criticality.LOW)

BUSINESS_SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("Payroll", _B, _CRIT, "App Support Payroll", "CC-1400", LONDON,
                "Monthly and off-cycle pay runs, payslips and tax filings for all employees.",
                _PAYROLL_SLA, _value("12000.00", 4200),
                # Pay day: an outage in these days outranks everything else.
                {"criticalPeriods": ["Monthly 25-28"]}),
    ServiceSpec("Email", _B, _HIGH, "Messaging Team", "CC-1300", LONDON,
                "Corporate email, calendars and mobile mail.",
                _MAIL_SLA, _value("8000.00", 5200)),
    ServiceSpec("Trading", _B, _CRIT, "App Support Trading", "CC-1200", LONDON,
                "Order entry and execution for the trading desk.",
                _TRADING_SLA, _value("250000.00", 350)),
    ServiceSpec("Virtual Desktop", _B, _HIGH, "EUC Team", "CC-1320", LONDON,
                "Standard and trader virtual desktops, available from anywhere.",
                _VDI_SLA, _value("6000.00", 1800)),
    ServiceSpec("Collaboration", _B, _MED, "Collaboration Team", "CC-1300", FRANKFURT,
                "Team sites, document sharing and intranet.",
                _COLLAB_SLA, _value("2000.00", 5200)),
)

TECHNICAL_SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("Payroll Application Service", _T, _CRIT, "App Support Payroll", "CC-1400",
                LONDON, "PeopleSoft HCM payroll web and application tiers with their database.",
                _PAYROLL_SLA),
    ServiceSpec("Exchange Messaging", _T, _HIGH, "Messaging Team", "CC-1300", LONDON,
                "Exchange 2019 mailbox DAG and client access behind the London load balancer.",
                _MAIL_SLA),
    ServiceSpec("Trading Platform", _T, _CRIT, "App Support Trading", "CC-1200", LONDON,
                "Trader web portal, matching engines and the trading database.",
                _TRADING_SLA),
    ServiceSpec("VDI Platform", _T, _HIGH, "EUC Team", "CC-1320", LONDON,
                "Horizon connection servers, desktop pools and the VDI cluster.",
                _VDI_SLA),
    ServiceSpec("SharePoint Platform", _T, _MED, "Collaboration Team", "CC-1300", FRANKFURT,
                "SharePoint Subscription Edition farm in Frankfurt.",
                _COLLAB_SLA),
    ServiceSpec("Directory Services", _T, _HIGH, "Windows Ops", "CC-1310", LONDON,
                "Active Directory authentication, shared by most services.",
                _sla("99.95", 15, 120, "Sun 01:00-02:00")),
    ServiceSpec("Hosting Platform", _T, _MED, "Virtualisation Team", "CC-1310", LONDON,
                "Virtual machines and databases on the ESX clusters, ordered from the "
                "catalogue.", _sla("99.5", 60, 480, "Sun 03:00-05:00")),
)

SERVICES: tuple[ServiceSpec, ...] = BUSINESS_SERVICES + TECHNICAL_SERVICES

# ---------------------------------------------------------------------------------------------
# Configuration items
# ---------------------------------------------------------------------------------------------


def _host_ids(name: str, location: str, serial: str | None, mac: str) -> dict[str, str]:
    ids = {"host_name": name.replace("_", "-"), "domain": _DOMAIN[location], "mac_address": mac}
    if serial:
        ids["serial_number"] = serial
    return ids


def _server(name: str, crit: Criticality, owner: str, cc: str, loc: str, serial: str, mac: str,
            model: str, cpu: int, memory_gb: int, description: str | None = None) -> CISpec:
    return CISpec(name, CIClass.SERVER, crit, owner, cc, loc, _host_ids(name, loc, serial, mac),
                  {"os": "RHEL 9.4", "cpu": cpu, "memoryGb": memory_gb, "model": model,
                   "vendor": "HPE"}, description)


def _esx(name: str, cc: str, loc: str, serial: str, mac: str) -> CISpec:
    return CISpec(name, CIClass.HYPERVISOR_HOST, _HIGH, "Virtualisation Team", cc, loc,
                  _host_ids(name, loc, serial, mac),
                  {"hypervisor": "VMware ESXi 8.0 U2", "cpu": 64, "memoryGb": 1024,
                   "model": "Dell PowerEdge R760", "vendor": "Dell"})


def _vm(name: str, crit: Criticality, owner: str, cc: str, loc: str, mac: str, os: str,
        vcpu: int, memory_gb: int) -> CISpec:
    return CISpec(name, CIClass.VIRTUAL_MACHINE, crit, owner, cc, loc,
                  _host_ids(name, loc, None, mac),
                  {"os": os, "cpu": vcpu, "memoryGb": memory_gb})


def _app(name: str, crit: Criticality, owner: str, cc: str, loc: str, product: str,
         version: str, port: int) -> CISpec:
    return CISpec(name, CIClass.APPLICATION_INSTANCE, crit, owner, cc, loc,
                  attributes={"product": product, "version": version, "port": port})


def _db(name: str, crit: Criticality, cc: str, loc: str, engine: str, version: str,
        size_gb: int, port: int, description: str | None = None) -> CISpec:
    return CISpec(name, CIClass.DATABASE, crit, "DBA Team", cc, loc,
                  attributes={"engine": engine, "version": version, "sizeGb": size_gb,
                              "port": port}, description=description)


def _volume(name: str, crit: Criticality, cc: str, loc: str, size_gb: int, array: str,
            lun: int) -> CISpec:
    return CISpec(name, CIClass.STORAGE_VOLUME, crit, "Storage Team", cc, loc,
                  attributes={"sizeGb": size_gb, "tier": "tier1-flash", "array": array,
                              "lun": lun})


def _switch(name: str, loc: str, serial: str, mac: str, model: str, firmware: str) -> CISpec:
    return CISpec(name, CIClass.NETWORK_DEVICE, _CRIT, "Network Team", "CC-1310", loc,
                  _host_ids(name, loc, serial, mac),
                  {"model": model, "firmware": firmware, "vendor": model.split()[0]})


def _desktop(name: str, cc: str, mac: str, user: str | None) -> CISpec:
    attributes: dict[str, Any] = {"os": "Windows 11 23H2", "cpu": 4, "memoryGb": 16}
    if user:
        attributes["assignedUser"] = user
    return CISpec(name, CIClass.VIRTUAL_DESKTOP, _LOW, "EUC Team", cc, LONDON,
                  _host_ids(name, LONDON, None, mac), attributes)


def _package(name: str, owner: str, cc: str, loc: str, vendor: str, version: str,
             licence: str) -> CISpec:
    return CISpec(name, CIClass.SOFTWARE_PACKAGE, _MED, owner, cc, loc,
                  attributes={"vendor": vendor, "version": version, "licence": licence})


_RHEL, _WIN = "RHEL 9.4", "Windows Server 2022"

PHYSICAL: tuple[CISpec, ...] = (
    _server("server123", _CRIT, "Unix Ops", "CC-1310", LONDON, "CZJ91203K7",
            "94:40:C9:12:30:01", "HPE ProLiant DL380 Gen11", 32, 512,
            "Physical database server for payroll (rack LON-R12)."),
    _server("trd-srv-01", _CRIT, "Unix Ops", "CC-1200", LONDON, "CZJ91204A1",
            "94:40:C9:12:40:01", "HPE ProLiant DL360 Gen11", 48, 768),
    _server("trd-srv-02", _CRIT, "Unix Ops", "CC-1200", LONDON, "CZJ91204A2",
            "94:40:C9:12:40:02", "HPE ProLiant DL360 Gen11", 48, 768),
    _server("trd-db-srv-01", _CRIT, "Unix Ops", "CC-1200", LONDON, "CZJ91205B1",
            "94:40:C9:12:50:01", "HPE ProLiant DL380 Gen11", 64, 1024),
    _server("trd-db-srv-02", _CRIT, "Unix Ops", "CC-1200", FRANKFURT, "CZJ91205B2",
            "94:40:C9:12:50:02", "HPE ProLiant DL380 Gen11", 64, 1024),
    _esx("esx-a-01", "CC-1310", LONDON, "MXQ3280A01", "B0:7B:25:A0:00:01"),
    _esx("esx-a-02", "CC-1310", LONDON, "MXQ3280A02", "B0:7B:25:A0:00:02"),
    _esx("esx-a-03", "CC-1310", LONDON, "MXQ3280A03", "B0:7B:25:A0:00:03"),
    _esx("esx-b-01", "CC-1310", FRANKFURT, "MXQ3280B01", "B0:7B:25:B0:00:01"),
    _esx("esx-b-02", "CC-1310", FRANKFURT, "MXQ3280B02", "B0:7B:25:B0:00:02"),
    _esx("vdi-esx-01", "CC-1320", LONDON, "MXQ3280V01", "B0:7B:25:C0:00:01"),
    _esx("vdi-esx-02", "CC-1320", LONDON, "MXQ3280V02", "B0:7B:25:C0:00:02"),
    CISpec("esx-cluster-a", CIClass.CLUSTER, _HIGH, "Virtualisation Team", "CC-1310", LONDON,
           attributes={"platform": "vSphere 8.0", "nodes": 3, "haEnabled": True,
                       "drsEnabled": True},
           description="Three-node general-purpose cluster; survives the loss of one host."),
    CISpec("esx-cluster-b", CIClass.CLUSTER, _HIGH, "Virtualisation Team", "CC-1310", FRANKFURT,
           attributes={"platform": "vSphere 8.0", "nodes": 2, "haEnabled": True,
                       "drsEnabled": True}),
    CISpec("vdi-cluster-a", CIClass.CLUSTER, _HIGH, "Virtualisation Team", "CC-1320", LONDON,
           attributes={"platform": "vSphere 8.0", "nodes": 2, "haEnabled": True,
                       "drsEnabled": False}),
    _switch("core-sw-lon-01", LONDON, "FDO2412X0AB", "00:3A:9C:10:00:01",
            "Cisco Nexus 9336C-FX2", "NX-OS 10.3(4a)"),
    _switch("core-sw-fra-01", FRANKFURT, "FDO2412X0AC", "00:3A:9C:20:00:01",
            "Cisco Nexus 9336C-FX2", "NX-OS 10.3(4a)"),
    _switch("fw-lon-01", LONDON, "PA5420LON01", "D4:F4:BE:10:00:01",
            "Palo Alto PA-5420", "PAN-OS 11.1.2"),
    _switch("fw-fra-01", FRANKFURT, "PA5420FRA01", "D4:F4:BE:20:00:01",
            "Palo Alto PA-5420", "PAN-OS 11.1.2"),
    CISpec("lb-lon-01", CIClass.LOAD_BALANCER, _CRIT, "Network Team", "CC-1310", LONDON,
           _host_ids("lb-lon-01", LONDON, "f5-lonx-4821", "00:94:A1:10:00:01"),
           {"model": "F5 BIG-IP i5800", "version": "17.1.1",
            "pools": ["exchange-owa", "trading-web"]},
           "Load balancer in front of the Exchange client-access and trading web tiers."),
    CISpec("lb-fra-01", CIClass.LOAD_BALANCER, _HIGH, "Network Team", "CC-1310", FRANKFURT,
           _host_ids("lb-fra-01", FRANKFURT, "f5-frax-4822", "00:94:A1:20:00:01"),
           {"model": "F5 BIG-IP i5800", "version": "17.1.1", "pools": ["sharepoint-web"]}),
)

STORAGE: tuple[CISpec, ...] = (
    _volume("vol-payroll-data", _CRIT, "CC-1400", LONDON, 2048, "pure-lon-01", 12),
    _volume("vol-payroll-logs", _HIGH, "CC-1400", LONDON, 512, "pure-lon-01", 13),
    _volume("vol-trading-data", _CRIT, "CC-1200", LONDON, 4096, "pure-lon-01", 20),
    _volume("vol-exchange-db01", _HIGH, "CC-1300", LONDON, 8192, "pure-lon-01", 30),
    _volume("vol-exchange-db02", _HIGH, "CC-1300", FRANKFURT, 8192, "pure-fra-01", 30),
    _volume("vol-esx-a-ds01", _HIGH, "CC-1310", LONDON, 16384, "pure-lon-01", 1),
    _volume("vol-esx-b-ds01", _HIGH, "CC-1310", FRANKFURT, 8192, "pure-fra-01", 1),
    _volume("vol-vdi-ds01", _HIGH, "CC-1320", LONDON, 8192, "pure-lon-01", 2),
)

VIRTUAL_MACHINES: tuple[CISpec, ...] = (
    _vm("payroll-app-vm01", _CRIT, "Unix Ops", "CC-1400", LONDON, "00:50:56:A1:00:01",
        _RHEL, 8, 32),
    _vm("payroll-web-vm01", _HIGH, "Unix Ops", "CC-1400", LONDON, "00:50:56:A1:00:02",
        _RHEL, 4, 16),
    _vm("exch-mbx-vm01", _HIGH, "Windows Ops", "CC-1300", LONDON, "00:50:56:A1:00:03",
        _WIN, 16, 128),
    _vm("exch-mbx-vm02", _HIGH, "Windows Ops", "CC-1300", FRANKFURT, "00:50:56:B1:00:03",
        _WIN, 16, 128),
    _vm("exch-cas-vm01", _HIGH, "Windows Ops", "CC-1300", LONDON, "00:50:56:A1:00:04",
        _WIN, 8, 32),
    _vm("exch-cas-vm02", _HIGH, "Windows Ops", "CC-1300", LONDON, "00:50:56:A1:00:05",
        _WIN, 8, 32),
    _vm("trd-web-vm01", _CRIT, "Unix Ops", "CC-1200", LONDON, "00:50:56:A1:00:06",
        _RHEL, 8, 32),
    _vm("trd-web-vm02", _CRIT, "Unix Ops", "CC-1200", LONDON, "00:50:56:A1:00:07",
        _RHEL, 8, 32),
    _vm("sp-web-vm01", _MED, "Windows Ops", "CC-1300", FRANKFURT, "00:50:56:B1:00:01",
        _WIN, 8, 32),
    _vm("sp-web-vm02", _MED, "Windows Ops", "CC-1300", FRANKFURT, "00:50:56:B1:00:02",
        _WIN, 8, 32),
    _vm("sp-sql-vm01", _MED, "Windows Ops", "CC-1300", FRANKFURT, "00:50:56:B1:00:04",
        _WIN, 16, 64),
    _vm("ad-dc-vm01", _HIGH, "Windows Ops", "CC-1310", LONDON, "00:50:56:A1:00:08",
        _WIN, 4, 16),
    _vm("ad-dc-vm02", _HIGH, "Windows Ops", "CC-1310", FRANKFURT, "00:50:56:B1:00:05",
        _WIN, 4, 16),
    _vm("vdi-cs-vm01", _HIGH, "EUC Team", "CC-1320", LONDON, "00:50:56:A1:00:09",
        _WIN, 4, 16),
    _vm("vdi-cs-vm02", _HIGH, "EUC Team", "CC-1320", LONDON, "00:50:56:A1:00:0A",
        _WIN, 4, 16),
    _vm("vdi-db-vm01", _LOW, "EUC Team", "CC-1320", LONDON, "00:50:56:A1:00:0B",
        _WIN, 4, 16),
)

APPLICATIONS: tuple[CISpec, ...] = (
    _app("payroll-web", _HIGH, "App Support Payroll", "CC-1400", LONDON,
         "PeopleSoft HCM web tier", "9.2", 443),
    _app("payroll-app", _CRIT, "App Support Payroll", "CC-1400", LONDON,
         "PeopleSoft HCM Payroll", "9.2", 9000),
    _app("exchange-mbx-01", _HIGH, "Messaging Team", "CC-1300", LONDON,
         "Exchange mailbox server", "2019 CU14", 443),
    _app("exchange-mbx-02", _HIGH, "Messaging Team", "CC-1300", FRANKFURT,
         "Exchange mailbox server", "2019 CU14", 443),
    _app("exchange-cas-01", _HIGH, "Messaging Team", "CC-1300", LONDON,
         "Exchange client access (OWA)", "2019 CU14", 443),
    _app("exchange-cas-02", _HIGH, "Messaging Team", "CC-1300", LONDON,
         "Exchange client access (OWA)", "2019 CU14", 443),
    _app("trading-web-01", _CRIT, "App Support Trading", "CC-1200", LONDON,
         "Trader portal", "5.8.2", 443),
    _app("trading-web-02", _CRIT, "App Support Trading", "CC-1200", LONDON,
         "Trader portal", "5.8.2", 443),
    _app("trading-engine-01", _CRIT, "App Support Trading", "CC-1200", LONDON,
         "Order matching engine", "12.4", 7001),
    _app("trading-engine-02", _CRIT, "App Support Trading", "CC-1200", LONDON,
         "Order matching engine", "12.4", 7001),
    _app("sharepoint-web-01", _MED, "Collaboration Team", "CC-1300", FRANKFURT,
         "SharePoint Server Subscription Edition", "16.0.17328", 443),
    _app("sharepoint-web-02", _MED, "Collaboration Team", "CC-1300", FRANKFURT,
         "SharePoint Server Subscription Edition", "16.0.17328", 443),
    _app("ad-dc-01", _HIGH, "Windows Ops", "CC-1310", LONDON,
         "Active Directory Domain Services", "2022", 389),
    _app("ad-dc-02", _HIGH, "Windows Ops", "CC-1310", FRANKFURT,
         "Active Directory Domain Services", "2022", 389),
    _app("vdi-connection-01", _HIGH, "EUC Team", "CC-1320", LONDON,
         "VMware Horizon Connection Server", "8.12", 443),
    _app("vdi-connection-02", _HIGH, "EUC Team", "CC-1320", LONDON,
         "VMware Horizon Connection Server", "8.12", 443),
)

DATABASES: tuple[CISpec, ...] = (
    _db("payroll-db", _CRIT, "CC-1400", LONDON, "Oracle", "19.22", 1400, 1521,
        "Payroll database (PSHRPRD), directly on the physical server123."),
    _db("trading-db", _CRIT, "CC-1200", LONDON, "Oracle", "19.22", 3200, 1521,
        "Trading database, Data Guard primary."),
    _db("trading-db-standby", _HIGH, "CC-1200", FRANKFURT, "Oracle", "19.22", 3200, 1521,
        "Trading database, Data Guard standby in Frankfurt."),
    _db("sharepoint-sql", _MED, "CC-1300", FRANKFURT, "Microsoft SQL Server", "2022 CU12",
        900, 1433),
    _db("vdi-events-db", _LOW, "CC-1320", LONDON, "Microsoft SQL Server", "2022 CU12", 60,
        1433),
)

DESKTOP_POOLS: tuple[CISpec, ...] = (
    CISpec("pool-standard", CIClass.DESKTOP_POOL, _HIGH, "EUC Team", "CC-1320", LONDON,
           attributes={"image": "win11-23h2-std", "provisioning": "instant-clone",
                       "maxDesktops": 1500}),
    CISpec("pool-trader", CIClass.DESKTOP_POOL, _HIGH, "EUC Team", "CC-1200", LONDON,
           attributes={"image": "win11-23h2-trader", "provisioning": "instant-clone",
                       "maxDesktops": 300}),
)

# (desktop, pool, host, cost centre of its user, MAC, user or None)
_DESKTOPS: tuple[tuple[str, str, str, str, str, str | None], ...] = (
    ("virtdesk_123", "pool-standard", "vdi-esx-01", "CC-1100", "00:50:56:9A:01:23", "johnW"),
    ("virtdesk_982", "pool-standard", "vdi-esx-02", "CC-1320", "00:50:56:9A:09:82", None),
    ("virtdesk_204", "pool-standard", "vdi-esx-01", "CC-1400", "00:50:56:9A:02:04", "maryK"),
    ("virtdesk_311", "pool-standard", "vdi-esx-02", "CC-1100", "00:50:56:9A:03:11", "priyaS"),
    ("virtdesk_415", "pool-trader", "vdi-esx-01", "CC-1200", "00:50:56:9A:04:15", "alexT"),
    ("virtdesk_516", "pool-trader", "vdi-esx-02", "CC-1200", "00:50:56:9A:05:16", "samR"),
)
VIRTUAL_DESKTOPS: tuple[CISpec, ...] = tuple(
    _desktop(name, cc, mac, user) for name, _, _, cc, mac, user in _DESKTOPS
)

SOFTWARE: tuple[CISpec, ...] = (
    _package("Oracle Database 19c", "DBA Team", "CC-1310", LONDON, "Oracle", "19.22",
             "processor"),
    _package("Microsoft SQL Server 2022", "DBA Team", "CC-1310", FRANKFURT, "Microsoft",
             "16.0.4125", "core"),
    _package("Microsoft Exchange Server 2019", "Messaging Team", "CC-1300", LONDON,
             "Microsoft", "15.2.1544", "server"),
    _package("VMware Horizon Agent", "EUC Team", "CC-1320", LONDON, "VMware", "8.12",
             "concurrent-user"),
    _package("Microsoft 365 Apps", "EUC Team", "CC-1320", LONDON, "Microsoft", "2408",
             "per-user"),
    _package("Bloomberg Terminal", "EUC Team", "CC-1200", LONDON, "Bloomberg", "2024.3",
             "per-user"),
    _package("PeopleSoft HCM Client", "App Support Payroll", "CC-1400", LONDON, "Oracle",
             "9.2", "per-user"),
)

# Loaded in this order, one progress line each.
CI_SECTIONS: tuple[tuple[str, tuple[CISpec, ...]], ...] = (
    ("hardware, clusters and network", PHYSICAL),
    ("storage volumes", STORAGE),
    ("virtual machines", VIRTUAL_MACHINES),
    ("applications", APPLICATIONS),
    ("databases", DATABASES),
    ("desktop pools", DESKTOP_POOLS),
    ("virtual desktops", VIRTUAL_DESKTOPS),
    ("software packages", SOFTWARE),
)
CIS: tuple[CISpec, ...] = tuple(ci for _, section in CI_SECTIONS for ci in section)

# ---------------------------------------------------------------------------------------------
# Relationships: consumer -> provider
# ---------------------------------------------------------------------------------------------

_DEP, _RUN, _MEM = RelationType.DEPENDS_ON, RelationType.RUNS_ON, RelationType.MEMBER_OF
_CON, _USE, _INS = RelationType.CONNECTS_TO, RelationType.USES, RelationType.INSTALLED_ON
REQUIRED: Mapping[str, Any] = {"required": True}
OPTIONAL: Mapping[str, Any] = {"required": False}


def _group(name: str) -> Mapping[str, Any]:
    return {"redundancyGroup": name}


def _each(sources: tuple[str, ...], rel: RelationType, targets: tuple[str, ...],
          properties: Mapping[str, Any]) -> tuple[RelSpec, ...]:
    return tuple(RelSpec(s, rel, t, properties) for s in sources for t in targets)


_ESX_A = ("esx-a-01", "esx-a-02", "esx-a-03")
_ESX_B = ("esx-b-01", "esx-b-02")
_VDI_HOSTS = ("vdi-esx-01", "vdi-esx-02")
_DESKTOP_NAMES = tuple(d[0] for d in _DESKTOPS)

SERVICE_RELATIONS: tuple[RelSpec, ...] = (
    # business -> technical
    RelSpec("Payroll", _DEP, "Payroll Application Service", REQUIRED),
    RelSpec("Email", _DEP, "Exchange Messaging", REQUIRED),
    RelSpec("Trading", _DEP, "Trading Platform", REQUIRED),
    RelSpec("Virtual Desktop", _DEP, "VDI Platform", REQUIRED),
    RelSpec("Collaboration", _DEP, "SharePoint Platform", REQUIRED),
    RelSpec("Collaboration", _DEP, "Exchange Messaging", OPTIONAL),
    # technical -> shared technical
    *_each(("Payroll Application Service", "Exchange Messaging", "VDI Platform",
            "SharePoint Platform"), _DEP, ("Directory Services",), REQUIRED),
    # technical -> CIs
    RelSpec("Payroll Application Service", _DEP, "payroll-app", REQUIRED),
    RelSpec("Payroll Application Service", _DEP, "payroll-web", REQUIRED),
    RelSpec("Exchange Messaging", _DEP, "lb-lon-01", REQUIRED),
    *_each(("Exchange Messaging",), _DEP, ("exchange-cas-01", "exchange-cas-02"),
           _group("exchange-cas")),
    *_each(("Exchange Messaging",), _DEP, ("exchange-mbx-01", "exchange-mbx-02"),
           _group("exchange-dag")),
    RelSpec("Trading Platform", _DEP, "lb-lon-01", REQUIRED),
    *_each(("Trading Platform",), _DEP, ("trading-web-01", "trading-web-02"),
           _group("trading-web")),
    *_each(("VDI Platform",), _DEP, ("vdi-connection-01", "vdi-connection-02"),
           _group("vdi-connection")),
    *_each(("VDI Platform",), _DEP, ("pool-standard", "pool-trader"), REQUIRED),
    RelSpec("SharePoint Platform", _DEP, "lb-fra-01", REQUIRED),
    *_each(("SharePoint Platform",), _DEP, ("sharepoint-web-01", "sharepoint-web-02"),
           _group("sharepoint-web")),
    RelSpec("SharePoint Platform", _DEP, "sharepoint-sql", REQUIRED),
    *_each(("Hosting Platform",), _DEP, ("esx-cluster-a", "esx-cluster-b"),
           _group("hosting-clusters")),
    *_each(("Directory Services",), _DEP, ("ad-dc-01", "ad-dc-02"), _group("active-directory")),
)

APPLICATION_RELATIONS: tuple[RelSpec, ...] = (
    RelSpec("payroll-web", _DEP, "payroll-app", REQUIRED),
    RelSpec("payroll-app", _DEP, "payroll-db", REQUIRED),
    *_each(("exchange-cas-01", "exchange-cas-02"), _DEP, ("exchange-mbx-01", "exchange-mbx-02"),
           _group("exchange-dag")),
    *_each(("trading-web-01", "trading-web-02"), _DEP, ("trading-engine-01", "trading-engine-02"),
           _group("trading-engine")),
    *_each(("trading-engine-01", "trading-engine-02"), _DEP, ("trading-db", "trading-db-standby"),
           _group("trading-db")),
    *_each(("sharepoint-web-01", "sharepoint-web-02"), _DEP, ("sharepoint-sql",), REQUIRED),
    *_each(("vdi-connection-01", "vdi-connection-02"), _DEP, ("vdi-events-db",), OPTIONAL),
)

# Where software runs: (workload, host)
_PLACEMENT: tuple[tuple[str, str], ...] = (
    ("payroll-db", "server123"),
    ("payroll-app", "payroll-app-vm01"),
    ("payroll-web", "payroll-web-vm01"),
    ("exchange-mbx-01", "exch-mbx-vm01"),
    ("exchange-mbx-02", "exch-mbx-vm02"),
    ("exchange-cas-01", "exch-cas-vm01"),
    ("exchange-cas-02", "exch-cas-vm02"),
    ("trading-web-01", "trd-web-vm01"),
    ("trading-web-02", "trd-web-vm02"),
    ("trading-engine-01", "trd-srv-01"),
    ("trading-engine-02", "trd-srv-02"),
    ("trading-db", "trd-db-srv-01"),
    ("trading-db-standby", "trd-db-srv-02"),
    ("sharepoint-web-01", "sp-web-vm01"),
    ("sharepoint-web-02", "sp-web-vm02"),
    ("sharepoint-sql", "sp-sql-vm01"),
    ("ad-dc-01", "ad-dc-vm01"),
    ("ad-dc-02", "ad-dc-vm02"),
    ("vdi-connection-01", "vdi-cs-vm01"),
    ("vdi-connection-02", "vdi-cs-vm02"),
    ("vdi-events-db", "vdi-db-vm01"),
    # VMs on hypervisor hosts
    ("payroll-app-vm01", "esx-a-01"),
    ("payroll-web-vm01", "esx-a-02"),
    ("exch-mbx-vm01", "esx-a-01"),
    ("exch-mbx-vm02", "esx-b-01"),
    ("exch-cas-vm01", "esx-a-02"),
    ("exch-cas-vm02", "esx-a-03"),
    ("trd-web-vm01", "esx-a-01"),
    ("trd-web-vm02", "esx-a-03"),
    ("sp-web-vm01", "esx-b-01"),
    ("sp-web-vm02", "esx-b-02"),
    ("sp-sql-vm01", "esx-b-01"),
    ("ad-dc-vm01", "esx-a-03"),
    ("ad-dc-vm02", "esx-b-02"),
    ("vdi-cs-vm01", "esx-a-02"),
    ("vdi-cs-vm02", "esx-a-03"),
    ("vdi-db-vm01", "esx-a-01"),
    # virtual desktops on VDI hosts
    *((d[0], d[2]) for d in _DESKTOPS),
)

INFRASTRUCTURE_RELATIONS: tuple[RelSpec, ...] = (
    *(RelSpec(w, _RUN, h, REQUIRED) for w, h in _PLACEMENT),
    # cluster membership: the hosts of a cluster stand in for one another
    # 2 of 3 hosts carry the load: one down degrades the cluster, two take it down.
    *_each(_ESX_A, _MEM, ("esx-cluster-a",), {"redundancyGroup": "esx-cluster-a", "minUp": 2}),
    *_each(_ESX_B, _MEM, ("esx-cluster-b",), _group("esx-cluster-b")),
    *_each(_VDI_HOSTS, _MEM, ("vdi-cluster-a",), _group("vdi-cluster-a")),
    *(RelSpec(d[0], _MEM, d[1]) for d in _DESKTOPS),
    *_each(("pool-standard", "pool-trader"), _DEP, ("vdi-cluster-a",), REQUIRED),
    # storage
    *_each(("payroll-db",), _USE, ("vol-payroll-data", "vol-payroll-logs"), REQUIRED),
    RelSpec("trading-db", _USE, "vol-trading-data", REQUIRED),
    RelSpec("exchange-mbx-01", _USE, "vol-exchange-db01", REQUIRED),
    RelSpec("exchange-mbx-02", _USE, "vol-exchange-db02", REQUIRED),
    *_each(_ESX_A, _USE, ("vol-esx-a-ds01",), REQUIRED),
    *_each(_ESX_B, _USE, ("vol-esx-b-ds01",), REQUIRED),
    *_each(_VDI_HOSTS, _USE, ("vol-vdi-ds01",), REQUIRED),
    # network: boxes uplink to their data centre's core switch
    *_each(("server123", "trd-srv-01", "trd-srv-02", "trd-db-srv-01", *_ESX_A, *_VDI_HOSTS,
            "lb-lon-01"), _CON, ("core-sw-lon-01",), REQUIRED),
    *_each(("trd-db-srv-02", *_ESX_B, "lb-fra-01"), _CON, ("core-sw-fra-01",), REQUIRED),
    RelSpec("core-sw-lon-01", _CON, "fw-lon-01", REQUIRED),
    RelSpec("core-sw-fra-01", _CON, "fw-fra-01", REQUIRED),
    RelSpec("core-sw-lon-01", _CON, "core-sw-fra-01", {"link": "DCI 2x100G"}),
    # installed software
    *_each(("Oracle Database 19c",), _INS, ("server123", "trd-db-srv-01", "trd-db-srv-02"), {}),
    *_each(("Microsoft SQL Server 2022",), _INS, ("sp-sql-vm01", "vdi-db-vm01"), {}),
    *_each(("Microsoft Exchange Server 2019",), _INS,
           ("exch-mbx-vm01", "exch-mbx-vm02", "exch-cas-vm01", "exch-cas-vm02"), {}),
    *_each(("VMware Horizon Agent", "Microsoft 365 Apps"), _INS, _DESKTOP_NAMES, {}),
    *_each(("Bloomberg Terminal",), _INS, ("virtdesk_415", "virtdesk_516"), {}),
    # the services desktop software needs (a user's environment health reads them)
    RelSpec("Bloomberg Terminal", _DEP, "Trading", OPTIONAL),
    *_each(("Microsoft 365 Apps",), _DEP, ("Email", "Collaboration"), OPTIONAL),
    RelSpec("PeopleSoft HCM Client", _DEP, "Payroll", OPTIONAL),
)

RELATION_SECTIONS: tuple[tuple[str, tuple[RelSpec, ...]], ...] = (
    ("service model", SERVICE_RELATIONS),
    ("application dependencies", APPLICATION_RELATIONS),
    ("infrastructure", INFRASTRUCTURE_RELATIONS),
)
RELATIONS: tuple[RelSpec, ...] = tuple(r for _, section in RELATION_SECTIONS for r in section)

# The chain the README walks, from the failed server up to the business service.
PAYROLL_CHAIN: tuple[str, ...] = (
    "server123", "payroll-db", "payroll-app", "Payroll Application Service", "Payroll",
)
