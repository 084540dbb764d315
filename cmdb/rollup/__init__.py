"""The health roll-up: items' own states worsened up the relationships that carry impact,
by the rules on those relationships, with every change recorded."""
