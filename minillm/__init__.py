"""minillm: a compact teaching transformer for the course *Long Context, From Scratch*.

One way through the code: text -> ByteTokenizer -> ids -> MiniLLM(ids, positions, mask_mod | cache)
-> logits (+ attention weights). Every chapter varies one step of that path.
"""

__version__ = "0.1.0"
