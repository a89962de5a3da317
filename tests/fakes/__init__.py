"""Test doubles shared by unit and integration tests: a fake OpenAI-compatible endpoint
(openai_server.FakeOpenAI) and a fake agent-service replica for workers (worker_controller)."""
