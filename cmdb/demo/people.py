"""The demo enterprise's people: business roles and their entitlements, users with their
managers, cost centres and memberships, and a few days of desktop sessions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cmdb.demo.specs import RoleSpec, UserSpec

EMPLOYEE = "Employee"
ROLES: tuple[RoleSpec, ...] = (
    RoleSpec(EMPLOYEE, "Everyone on the payroll: mail, office and the standard desktop.",
             ("Microsoft 365 Apps", "VMware Horizon Agent")),
    RoleSpec("Trader", "Front-office trader on the trading desk.", ("Bloomberg Terminal",)),
    RoleSpec("Head of Trading", "Runs the trading desk.", ("Bloomberg Terminal",)),
    RoleSpec("Payroll Clerk", "Prepares and checks the pay runs.", ("PeopleSoft HCM Client",)),
    RoleSpec("Payroll Manager", "Approves the pay runs.", ("PeopleSoft HCM Client",)),
    RoleSpec("Finance Analyst", "Management accounts and chargeback.", ()),
    RoleSpec("IT Operator", "Runs the data centres and the service desk.", ()),
    RoleSpec("Executive", "Member of the executive committee.", ()),
)

USERS: tuple[UserSpec, ...] = (
    UserSpec("helenC", "Helen Carter", "CC-1000", (EMPLOYEE, "Executive"), owns=("CC-1000",)),
    UserSpec("maryS", "Mary Shaw", "CC-1200", (EMPLOYEE, "Head of Trading", "Trader"),
             manager="helenC", owns=("CC-1200",)),
    UserSpec("johnW", "John Walker", "CC-1200", (EMPLOYEE, "Trader"), manager="maryS"),
    UserSpec("alexT", "Alex Turner", "CC-1200", (EMPLOYEE, "Trader"), manager="maryS"),
    UserSpec("samR", "Sam Reid", "CC-1200", (EMPLOYEE, "Trader"), manager="maryS"),
    UserSpec("paulH", "Paul Hughes", "CC-1400", (EMPLOYEE, "Payroll Manager"),
             manager="helenC", owns=("CC-1400",)),
    UserSpec("maryK", "Mary King", "CC-1400", (EMPLOYEE, "Payroll Clerk"), manager="paulH"),
    UserSpec("priyaS", "Priya Shah", "CC-1100", (EMPLOYEE, "Finance Analyst"),
             manager="helenC", owns=("CC-1100",)),
    UserSpec("tomO", "Tom Okafor", "CC-1310", (EMPLOYEE, "IT Operator"), manager="helenC",
             owner_groups=("Unix Ops", "Windows Ops")),
)

# When the demo memberships began (fixed, so reloading changes nothing).
MEMBERSHIP_SINCE = "2024-01-08T09:00:00+00:00"

# Desktop history: (user, today's desktop, pool, past desktops on the days before).
# The past desktops were torn down (they are not CIs any more); the sessions keep them.
SESSION_HISTORY: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("johnW", "virtdesk_123", "pool-standard",
     ("virtdesk_731", "virtdesk_744", "virtdesk_759", "virtdesk_768")),
    ("alexT", "virtdesk_415", "pool-trader", ("virtdesk_802", "virtdesk_815", "virtdesk_826")),
    ("maryK", "virtdesk_204", "pool-standard", ("virtdesk_640", "virtdesk_652")),
)


def demo_session_events(now: datetime) -> list[dict[str, Any]]:
    """Broker events for the demo history: a working day on another (since torn down)
    desktop on each of the days before today, and a logon this morning (or an hour ago)
    on the user's desktop, still open. Event ids are per user and day, so reloading on the
    same day sends only duplicates."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hosts = ("vdi-esx-01", "vdi-esx-02")
    events: list[dict[str, Any]] = []
    for u, (user, desktop, pool, past) in enumerate(SESSION_HISTORY):
        for back, old_desktop in enumerate(past, start=1):
            day = today - timedelta(days=back)
            key = f"{user}-{day:%Y%m%d}"
            start = day + timedelta(hours=8, minutes=5 * u + back)
            common = {"sessionId": f"demo-{key}", "user": f"CORP\\{user}",
                      "desktop": old_desktop, "host": hosts[(back + u) % 2], "pool": pool,
                      "protocol": "BLAST"}
            events.append({**common, "eventId": f"demo-{key}-logon", "eventType": "LOGON",
                           "timestamp": start.isoformat(),
                           "logonDurationMs": 14_000 + 900 * back + 300 * u,
                           "profileLoadMs": 4_000 + 200 * back, "groupPolicyMs": 2_100})
            events.append({**common, "eventId": f"demo-{key}-sample", "eventType": "SAMPLE",
                           "timestamp": (start + timedelta(hours=3)).isoformat(),
                           "roundTripMs": 18 + 3 * back, "cpuPercent": 22 + 4 * back})
            events.append({**common, "eventId": f"demo-{key}-logoff", "eventType": "LOGOFF",
                           "timestamp": (start + timedelta(hours=9)).isoformat()})
        key = f"{user}-{today:%Y%m%d}"
        start = min(today + timedelta(hours=8, minutes=5 * u),
                    now.replace(second=0, microsecond=0) - timedelta(hours=1))
        events.append({"sessionId": f"demo-{key}", "user": f"CORP\\{user}",
                       "desktop": desktop, "pool": pool, "protocol": "BLAST",
                       "eventId": f"demo-{key}-logon", "eventType": "LOGON",
                       "timestamp": start.isoformat(), "logonDurationMs": 12_500 + 400 * u,
                       "profileLoadMs": 3_800, "groupPolicyMs": 2_000})
    return events
