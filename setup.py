from setuptools import find_packages, setup

setup(
    name="livechat",
    version="0.1.0",
    description="Real-time customer-support chat backend (aiohttp + MongoDB)",
    python_requires=">=3.11",
    packages=find_packages(include=["livechat", "livechat.*"]),
    install_requires=[
        # Security floors: aiohttp 3.14.3 fixes request-smuggling/DoS advisories, PyJWT 2.12
        # rejects short HMAC keys and non-string subjects, bcrypt 5 refuses >72-byte input
        # instead of silently truncating. aiohttp 4 changes middlewares and keys.
        "aiohttp>=3.14.3,<4",
        "aiohttp-jinja2>=1.6",
        "motor>=3.6,<4",
        # Both drivers are selectable ([database] driver); AsyncMongoClient is GA since 4.13.
        "pymongo>=4.13,<5",
        "pyjwt>=2.12,<3",
        "bcrypt>=5,<6",
        "attrs>=24.1",
        "cattrs>=24.1",
        # GET /metrics: the Prometheus text format and its registry, rather than a hand-written
        # exposition. 0.20 has everything used (per-app registries, Gauge.set_function); < 1 in
        # case a 1.0 renames the API.
        "prometheus-client>=0.20,<1",
    ],
    extras_require={
        # The embedded development/test database. GPL-2.0: it runs as a separate process
        # (secantusd-py) and is never imported by livechat.
        "embedded": ["SecantusDB>=0.7.0b3"],
        "test": [
            "SecantusDB>=0.7.0b3",
            "pytest>=8",
            "pytest-aiohttp>=1.1",
            # Property-based fuzzing of the parsers and the WebSocket handler (tests/security/test_fuzz.py).
            "hypothesis>=6",
            # Browser tests (tests/browser) drive the system Chromium; no browser download.
            "playwright>=1.45",
            # The API documents (docs/openapi.json, docs/asyncapi.yaml): validated, answers checked
            # against them, and the running server fuzzed from the OpenAPI one (tests/test_api_documents.py).
            "openapi-spec-validator>=0.7",
            "jsonschema>=4.18",
            "pyyaml>=6",
            "schemathesis>=4,<5",
        ],
    },
)
