"""livechat: the backend of a real-time customer-support chat."""

__version__ = "0.1.0"
