"""roomkeeper's HTTP edge: plugNmeet's room API, LiveKit's webhook and the operational routes."""
