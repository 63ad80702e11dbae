"""The data stage, MindFormers' alpaca_converter.py and llama_preprocess.py:
alpaca.py (alpaca -> conversation JSON), template.py (FastChat vicuna_v1.1, for
training rows and generation prompts), tokenizer.py (SentencePiece as
MindFormers' LlamaTokenizer), rows.py (qa and wiki rows, stats), wikitext.py (wiki
input), preprocess.py (workers -> MindRecord), mindrecord_writer.py (the fast
MindRecord writer), cli.py (the two subcommands); reader.py reads MindRecord
batches for training and evaluation."""
