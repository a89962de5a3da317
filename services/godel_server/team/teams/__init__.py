"""Teams: the four execution strategies and the orchestrator that runs them on agent events."""
