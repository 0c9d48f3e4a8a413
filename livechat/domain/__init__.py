"""The domain: models, access policy and services. No aiohttp and no database driver here."""
