"""ticketlog's composition root: settings, the application service, storage wiring and CLI."""
