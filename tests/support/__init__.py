"""What the tests share: the stack, processes, receivers, the seed request, `eventually`."""
