"""Rooms: the create request, records, submit, create pipeline, ending, timers, LiveKit events."""
