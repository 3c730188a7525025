"""Outbound notifications: the delivery state beside the notifications view, email, webhooks."""
