"""The support demo app: a tracked ticket summariser on an offline model, and the tickets it is fed."""
