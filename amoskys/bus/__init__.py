"""The EventBus: signed envelopes in over mutual TLS, durably stored, fanned out to subscribers."""
