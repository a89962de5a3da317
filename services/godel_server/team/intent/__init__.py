"""Natural language to structured work (spec §4.4): intent parsing, complexity analysis and team
(swarm) configuration. Deterministic by default; an OpenAI-compatible model can parse intents too."""
