"""Runtime-1 servers that several modules here use (the same process serves every module that asks for one
checkpoint with the same arguments; see tests/servers.py)."""

from ..servers import served

minilm = served("minilm", "minilm")
classifier = served("sequence_classification", "sentiment")
tagger = served("token_classification", "ner")
filler = served("fill_mask", "mask")
writer = served("text_generation", "writer")
translator = served("text2text_generation", "t5")
