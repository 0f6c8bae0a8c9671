"""The durable lease-and-claim schedule and the consumer loop that works it."""
