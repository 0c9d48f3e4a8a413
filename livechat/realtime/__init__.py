"""Real-time chat: the WebSocket route, its protocol, and the hub of rooms and outboxes."""
