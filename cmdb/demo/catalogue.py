"""The demo catalogue: standard offerings whose recipes build real CIs under the demo services.

Every item may be ordered by the ``requester`` role. Approval policies are chosen so that the
demo story works: johnW (cost centre CC-1200, manager maryS) orders a SharePoint
collaboration site, and it waits for maryS. Prices are EUR, exact decimals as strings.
Names are relied on by tests and the README; change them together.
"""

from __future__ import annotations

from typing import Any

CATEGORIES: tuple[tuple[str, str], ...] = (
    ("Collaboration", "Team sites, document libraries and mail."),
    ("Workplace", "Virtual desktops for every way of working."),
    ("Hosting", "Virtual machines and databases on the ESX clusters."),
)

_INFO = {"impact": "INFORMATIONAL"}
_MANAGER = [{"kind": "MANAGER"}]
_MANAGER_THEN_OWNER = [{"kind": "MANAGER"}, {"kind": "COST_CENTRE_OWNER", "above": "1000.00"}]


def _name_field(title: str, pattern: str = "^[a-z][a-z0-9-]{2,30}$") -> dict[str, Any]:
    return {"type": "string", "title": title, "pattern": pattern,
            "description": "lower-case letters, digits and '-', 3 to 31 characters"}


ITEMS: tuple[dict[str, Any], ...] = (
    {
        "category": "Collaboration",
        "name": "SharePoint collaboration site",
        "description": "A team site with document library, lists and a team calendar.",
        "form_schema": {
            "type": "object", "additionalProperties": False, "required": ["siteName", "title"],
            "properties": {
                "siteName": _name_field("Site address (…/sites/<name>)"),
                "title": {"type": "string", "title": "Title", "minLength": 3,
                          "maxLength": 100},
                "visibility": {"type": "string", "title": "Who can find it",
                               "enum": ["private", "team", "organisation"],
                               "default": "team"},
                "quotaGb": {"type": "integer", "title": "Storage quota (GB)", "minimum": 1,
                            "maximum": 100, "default": 25},
            },
        },
        "approval_policy": {"steps": _MANAGER},
        "price_plan": {"currency": "EUR", "one_off": "0.00", "monthly": "15.00",
                       "usage": [{"meter": "storage-gb-month", "unit": "GB-month",
                                  "rate": "0.10"}]},
        "recipe": {
            "service": "Collaboration",
            "cis": [{"key": "site", "ciClass": "ApplicationInstance",
                     "name": "sp-site-{siteName}", "description": "{title}",
                     "attributes": {"url": "https://sharepoint.corp.example/sites/{siteName}",
                                    "visibility": "{visibility}", "quotaGb": "{quotaGb}",
                                    "siteOwner": "{user}"}}],
            "relationships": [
                {"source": "service:SharePoint Platform", "type": "DEPENDS_ON",
                 "target": "ci:site", "properties": _INFO},
                {"source": "ci:site", "type": "DEPENDS_ON", "target": "item:sharepoint-web-01",
                 "properties": {"redundancyGroup": "sharepoint-web"}},
                {"source": "ci:site", "type": "DEPENDS_ON", "target": "item:sharepoint-web-02",
                 "properties": {"redundancyGroup": "sharepoint-web"}},
                {"source": "ci:site", "type": "DEPENDS_ON", "target": "item:sharepoint-sql"},
            ],
        },
    },
    {
        "category": "Collaboration",
        "name": "SharePoint file storage",
        "description": "A document library for files shared across teams, billed by size.",
        "form_schema": {
            "type": "object", "additionalProperties": False, "required": ["libraryName"],
            "properties": {
                "libraryName": _name_field("Library name"),
                "sizeGb": {"type": "integer", "title": "Size (GB)", "enum": [50, 100, 250,
                                                                            500],
                           "default": 100},
            },
        },
        "approval_policy": {"steps": _MANAGER_THEN_OWNER},
        "price_plan": {"currency": "EUR", "one_off": "0.00", "monthly": "9.00",
                       "usage": [{"meter": "storage-gb-month", "unit": "GB-month",
                                  "rate": "0.10"}]},
        "recipe": {
            "service": "Collaboration",
            "cis": [{"key": "library", "ciClass": "StorageVolume",
                     "name": "sp-files-{libraryName}",
                     "attributes": {"sizeGb": "{sizeGb}", "libraryOwner": "{user}"}}],
            "relationships": [
                {"source": "service:SharePoint Platform", "type": "DEPENDS_ON",
                 "target": "ci:library", "properties": _INFO},
                {"source": "ci:library", "type": "DEPENDS_ON", "target": "item:sharepoint-sql"},
            ],
        },
    },
    {
        "category": "Workplace",
        "name": "VDI desktop (standard)",
        "description": "A Windows 11 virtual desktop from the standard pool.",
        "form_schema": {"type": "object", "additionalProperties": False, "properties": {}},
        "approval_policy": {"steps": []},
        "price_plan": {"currency": "EUR", "one_off": "0.00", "monthly": "35.00"},
        "recipe": {
            "service": "Virtual Desktop",
            "cis": [{"key": "desktop", "ciClass": "VirtualDesktop",
                     "name": "vd-std-{user}-{order}",
                     "attributes": {"pool": "pool-standard", "assignedUser": "{user}"}}],
            "relationships": [
                {"source": "ci:desktop", "type": "MEMBER_OF", "target": "item:pool-standard"},
                {"source": "ci:desktop", "type": "RUNS_ON", "target": "item:vdi-esx-01"},
            ],
        },
    },
    {
        "category": "Workplace",
        "name": "VDI desktop (power user)",
        "description": "A larger virtual desktop from the trader pool, with an optional GPU.",
        "form_schema": {
            "type": "object", "additionalProperties": False,
            "properties": {"gpu": {"type": "boolean", "title": "GPU", "default": False}},
        },
        "approval_policy": {"steps": _MANAGER},
        "price_plan": {"currency": "EUR", "one_off": "0.00", "monthly": "75.00"},
        "recipe": {
            "service": "Virtual Desktop",
            "cis": [{"key": "desktop", "ciClass": "VirtualDesktop",
                     "name": "vd-pwr-{user}-{order}",
                     "attributes": {"pool": "pool-trader", "gpu": "{gpu}",
                                    "assignedUser": "{user}"}}],
            "relationships": [
                {"source": "ci:desktop", "type": "MEMBER_OF", "target": "item:pool-trader"},
                {"source": "ci:desktop", "type": "RUNS_ON", "target": "item:vdi-esx-02"},
            ],
        },
    },
    {
        "category": "Collaboration",
        "name": "Mailbox",
        "description": "An Exchange mailbox with calendar and mobile mail.",
        "form_schema": {
            "type": "object", "additionalProperties": False,
            "properties": {"quotaGb": {"type": "integer", "title": "Quota (GB)",
                                       "enum": [50, 100], "default": 50}},
        },
        "approval_policy": {"steps": []},
        "price_plan": {"currency": "EUR", "one_off": "0.00", "monthly": "4.50",
                       "usage": [{"meter": "archive-gb-month", "unit": "GB-month",
                                  "rate": "0.05"}]},
        "recipe": {
            "service": "Email",
            "cis": [{"key": "mailbox", "ciClass": "ApplicationInstance",
                     "name": "mailbox-{user}-{order}",
                     "attributes": {"quotaGb": "{quotaGb}", "mailboxOwner": "{user}"}}],
            "relationships": [
                {"source": "service:Exchange Messaging", "type": "DEPENDS_ON",
                 "target": "ci:mailbox", "properties": _INFO},
                {"source": "ci:mailbox", "type": "DEPENDS_ON", "target": "item:exchange-mbx-01",
                 "properties": {"redundancyGroup": "exchange-dag"}},
                {"source": "ci:mailbox", "type": "DEPENDS_ON", "target": "item:exchange-mbx-02",
                 "properties": {"redundancyGroup": "exchange-dag"}},
            ],
        },
    },
    {
        "category": "Hosting",
        "name": "Small database",
        "description": "A database on its own small VM: 2 vCPU, 8 GB, 100 GB storage.",
        "form_schema": {
            "type": "object", "additionalProperties": False, "required": ["dbName"],
            "properties": {
                "dbName": _name_field("Database name"),
                "engine": {"type": "string", "title": "Engine",
                           "enum": ["PostgreSQL 16", "Microsoft SQL Server 2022"],
                           "default": "PostgreSQL 16"},
            },
        },
        "approval_policy": {"steps": _MANAGER_THEN_OWNER},
        "price_plan": {"currency": "EUR", "one_off": "250.00", "monthly": "120.00",
                       "usage": [{"meter": "storage-gb-month", "unit": "GB-month",
                                  "rate": "0.10"}]},
        "recipe": {
            "service": "Hosting Platform",
            "cis": [
                {"key": "vm", "ciClass": "VirtualMachine", "name": "dbvm-{dbName}",
                 "hostName": "dbvm-{dbName}", "domain": "lon.corp.example",
                 "attributes": {"vcpus": 2, "memoryGb": 8, "os": "linux"}},
                {"key": "db", "ciClass": "Database", "name": "db-{dbName}",
                 "attributes": {"engine": "{engine}", "sizeGb": 100, "dbOwner": "{user}"}},
            ],
            "relationships": [
                {"source": "ci:vm", "type": "RUNS_ON", "target": "item:esx-cluster-a"},
                {"source": "ci:db", "type": "RUNS_ON", "target": "ci:vm"},
                {"source": "service:Hosting Platform", "type": "DEPENDS_ON", "target": "ci:db",
                 "properties": _INFO},
            ],
        },
    },
    {
        "category": "Hosting",
        "name": "Linux VM",
        "description": "A Linux virtual machine in London, sized to order.",
        "form_schema": {
            "type": "object", "additionalProperties": False, "required": ["hostName"],
            "properties": {
                "hostName": _name_field("Host name"),
                "vcpus": {"type": "integer", "title": "vCPUs", "enum": [2, 4, 8],
                          "default": 2},
                "memoryGb": {"type": "integer", "title": "Memory (GB)",
                             "enum": [4, 8, 16, 32], "default": 8},
            },
        },
        "approval_policy": {"steps": _MANAGER},
        "price_plan": {"currency": "EUR", "one_off": "50.00", "monthly": "60.00",
                       "usage": [{"meter": "vcpu-hours", "unit": "vCPU-hour", "rate": "0.02"},
                                 {"meter": "storage-gb-month", "unit": "GB-month",
                                  "rate": "0.10"}]},
        "recipe": {
            "service": "Hosting Platform",
            "cis": [{"key": "vm", "ciClass": "VirtualMachine", "name": "{hostName}",
                     "hostName": "{hostName}", "domain": "lon.corp.example",
                     "attributes": {"vcpus": "{vcpus}", "memoryGb": "{memoryGb}",
                                    "os": "linux", "vmOwner": "{user}"}}],
            "relationships": [
                {"source": "ci:vm", "type": "RUNS_ON", "target": "item:esx-cluster-a"},
                {"source": "service:Hosting Platform", "type": "DEPENDS_ON", "target": "ci:vm",
                 "properties": _INFO},
            ],
        },
    },
)
