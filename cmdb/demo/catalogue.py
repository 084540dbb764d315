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


_STORAGE = ("storage-gb-month", "GB-month", "0.10")


def _name_field(title: str, pattern: str = "^[a-z][a-z0-9-]{2,30}$") -> dict[str, Any]:
    return {"type": "string", "title": title, "pattern": pattern,
            "description": "lower-case letters, digits and '-', 3 to 31 characters"}


def _form(*required: str, **properties: Any) -> dict[str, Any]:
    """A closed object form; ``required`` fields first."""
    form: dict[str, Any] = {"type": "object", "additionalProperties": False}
    if required:
        form["required"] = list(required)
    return form | {"properties": properties}


def _choice(kind: str, title: str, choices: list[Any], default: Any) -> dict[str, Any]:
    return {"type": kind, "title": title, "enum": choices, "default": default}


def _rel(source: str, target: str, kind: str = "DEPENDS_ON", **properties: Any
         ) -> dict[str, Any]:
    rel: dict[str, Any] = {"source": source, "type": kind, "target": target}
    return rel | {"properties": properties} if properties else rel


def _offered(service: str, ci: str) -> dict[str, Any]:
    """The service offering a CI depends on it, for information only."""
    return _rel(f"service:{service}", f"ci:{ci}", **_INFO)


def _item(
    category: str, name: str, description: str, form: dict[str, Any], steps: list[Any],
    price: tuple[str, str], recipe: dict[str, Any], *usage: tuple[str, str, str],
) -> dict[str, Any]:
    """An offering; ``price``: (one-off, monthly) in EUR, ``usage``: (meter, unit, rate)."""
    plan: dict[str, Any] = {"currency": "EUR", "one_off": price[0], "monthly": price[1]}
    if usage:
        plan["usage"] = [{"meter": m, "unit": u, "rate": r} for m, u, r in usage]
    return {"category": category, "name": name, "description": description,
            "form_schema": form, "approval_policy": {"steps": steps}, "price_plan": plan,
            "recipe": recipe}


def _desktop(kind: str, label: str, description: str, pool: str, host: str, steps: list[Any],
             monthly: str, form: dict[str, Any], **attributes: str) -> dict[str, Any]:
    ci = {"key": "desktop", "ciClass": "VirtualDesktop", "name": f"vd-{kind}-{{user}}-{{order}}",
          "attributes": {"pool": pool, **attributes, "assignedUser": "{user}"}}
    recipe = {"service": "Virtual Desktop", "cis": [ci], "relationships": [
        _rel("ci:desktop", f"item:{pool}", "MEMBER_OF"),
        _rel("ci:desktop", f"item:{host}", "RUNS_ON"),
    ]}
    return _item("Workplace", f"VDI desktop ({label})", description, form, steps,
                 ("0.00", monthly), recipe)


_SITE_FORM = _form(
    "siteName", "title",
    siteName=_name_field("Site address (…/sites/<name>)"),
    title={"type": "string", "title": "Title", "minLength": 3, "maxLength": 100},
    visibility=_choice("string", "Who can find it", ["private", "team", "organisation"],
                       "team"),
    quotaGb={"type": "integer", "title": "Storage quota (GB)", "minimum": 1, "maximum": 100,
             "default": 25},
)
_SITE_RECIPE = {
    "service": "Collaboration",
    "cis": [{"key": "site", "ciClass": "ApplicationInstance", "name": "sp-site-{siteName}",
             "description": "{title}",
             "attributes": {"url": "https://sharepoint.corp.example/sites/{siteName}",
                            "visibility": "{visibility}", "quotaGb": "{quotaGb}",
                            "siteOwner": "{user}"}}],
    "relationships": [
        _offered("SharePoint Platform", "site"),
        _rel("ci:site", "item:sharepoint-web-01", redundancyGroup="sharepoint-web"),
        _rel("ci:site", "item:sharepoint-web-02", redundancyGroup="sharepoint-web"),
        _rel("ci:site", "item:sharepoint-sql"),
    ],
}
_LIBRARY_RECIPE = {
    "service": "Collaboration",
    "cis": [{"key": "library", "ciClass": "StorageVolume", "name": "sp-files-{libraryName}",
             "attributes": {"sizeGb": "{sizeGb}", "libraryOwner": "{user}"}}],
    "relationships": [_offered("SharePoint Platform", "library"),
                      _rel("ci:library", "item:sharepoint-sql")],
}
_MAILBOX_RECIPE = {
    "service": "Email",
    "cis": [{"key": "mailbox", "ciClass": "ApplicationInstance",
             "name": "mailbox-{user}-{order}",
             "attributes": {"quotaGb": "{quotaGb}", "mailboxOwner": "{user}"}}],
    "relationships": [
        _offered("Exchange Messaging", "mailbox"),
        _rel("ci:mailbox", "item:exchange-mbx-01", redundancyGroup="exchange-dag"),
        _rel("ci:mailbox", "item:exchange-mbx-02", redundancyGroup="exchange-dag"),
    ],
}
_DATABASE_RECIPE = {
    "service": "Hosting Platform",
    "cis": [
        {"key": "vm", "ciClass": "VirtualMachine", "name": "dbvm-{dbName}",
         "hostName": "dbvm-{dbName}", "domain": "lon.corp.example",
         "attributes": {"vcpus": 2, "memoryGb": 8, "os": "linux"}},
        {"key": "db", "ciClass": "Database", "name": "db-{dbName}",
         "attributes": {"engine": "{engine}", "sizeGb": 100, "dbOwner": "{user}"}},
    ],
    "relationships": [_rel("ci:vm", "item:esx-cluster-a", "RUNS_ON"),
                      _rel("ci:db", "ci:vm", "RUNS_ON"),
                      _offered("Hosting Platform", "db")],
}
_VM_RECIPE = {
    "service": "Hosting Platform",
    "cis": [{"key": "vm", "ciClass": "VirtualMachine", "name": "{hostName}",
             "hostName": "{hostName}", "domain": "lon.corp.example",
             "attributes": {"vcpus": "{vcpus}", "memoryGb": "{memoryGb}", "os": "linux",
                            "vmOwner": "{user}"}}],
    "relationships": [_rel("ci:vm", "item:esx-cluster-a", "RUNS_ON"),
                      _offered("Hosting Platform", "vm")],
}

ITEMS: tuple[dict[str, Any], ...] = (
    _item("Collaboration", "SharePoint collaboration site",
          "A team site with document library, lists and a team calendar.",
          _SITE_FORM, _MANAGER, ("0.00", "15.00"), _SITE_RECIPE, _STORAGE),
    _item("Collaboration", "SharePoint file storage",
          "A document library for files shared across teams, billed by size.",
          _form("libraryName", libraryName=_name_field("Library name"),
                sizeGb=_choice("integer", "Size (GB)", [50, 100, 250, 500], 100)),
          _MANAGER_THEN_OWNER, ("0.00", "9.00"), _LIBRARY_RECIPE, _STORAGE),
    _desktop("std", "standard", "A Windows 11 virtual desktop from the standard pool.",
             "pool-standard", "vdi-esx-01", [], "35.00", _form()),
    _desktop("pwr", "power user",
             "A larger virtual desktop from the trader pool, with an optional GPU.",
             "pool-trader", "vdi-esx-02", _MANAGER, "75.00",
             _form(gpu={"type": "boolean", "title": "GPU", "default": False}), gpu="{gpu}"),
    _item("Collaboration", "Mailbox", "An Exchange mailbox with calendar and mobile mail.",
          _form(quotaGb=_choice("integer", "Quota (GB)", [50, 100], 50)),
          [], ("0.00", "4.50"), _MAILBOX_RECIPE, ("archive-gb-month", "GB-month", "0.05")),
    _item("Hosting", "Small database",
          "A database on its own small VM: 2 vCPU, 8 GB, 100 GB storage.",
          _form("dbName", dbName=_name_field("Database name"),
                engine=_choice("string", "Engine",
                               ["PostgreSQL 16", "Microsoft SQL Server 2022"], "PostgreSQL 16")),
          _MANAGER_THEN_OWNER, ("250.00", "120.00"), _DATABASE_RECIPE, _STORAGE),
    _item("Hosting", "Linux VM", "A Linux virtual machine in London, sized to order.",
          _form("hostName", hostName=_name_field("Host name"),
                vcpus=_choice("integer", "vCPUs", [2, 4, 8], 2),
                memoryGb=_choice("integer", "Memory (GB)", [4, 8, 16, 32], 8)),
          _MANAGER, ("50.00", "60.00"), _VM_RECIPE,
          ("vcpu-hours", "vCPU-hour", "0.02"), _STORAGE),
)
