"""Everything that speaks the forge's language: webhook events, signatures, the API client."""
