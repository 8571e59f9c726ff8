"""Payment gateway and vault adapters."""
