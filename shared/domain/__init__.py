"""The decision core: values, messages, policy, the breaker's arithmetic, events. Pure: no I/O."""
