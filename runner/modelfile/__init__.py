"""GGUF model files: memory estimates and the generated tiny test model."""
