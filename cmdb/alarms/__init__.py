"""Monitoring alarms: raised on CIs, de-duplicated, acknowledged, cleared; they set CI state."""
