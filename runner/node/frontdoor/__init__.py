"""The front door on the coordinator: one OpenAI-compatible endpoint over the serving replicas."""
