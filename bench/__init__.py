"""livechat's benchmark: ``python -m bench`` (or ``make bench``).

One process drives everything over loopback: it starts livechat with its embedded SecantusDB
(or targets ``--base``), sets up users and conversations through the public API, runs the
scenarios (chat, capacity, limits, connections, logins, startup), prints one JSON line per
scenario and a table of the figures and targets. See ``python -m bench --help``.
"""
