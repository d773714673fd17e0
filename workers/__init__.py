"""The worker side: the model zoo (registry and families), the device runtime, settings, frames, and the launcher."""
