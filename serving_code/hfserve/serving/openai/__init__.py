"""OpenAI-compatible routes (/openai/v1/...), written after OpenAI's published API.

kserve's own OpenAI routes need vllm; these serve the same paths from our models."""
