"""Protocol glue shared by both runtimes: V1 / V2 / OpenAI requests in, JSON and tensors out."""
