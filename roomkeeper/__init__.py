"""The `roomkeeper` command line (api, worker, dev, create-rooms)."""
