"""Business and technical services: SLA, business value, the top of a service model."""
