"""Storage adapters: MongoDB repositories and the embedded development database."""
